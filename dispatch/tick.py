"""The desk's periodic job in ``heatwatch run``: bring in new sensor work orders, escalate what is overdue, deliver."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dispatch.desk import Desk
from dispatch.escalation import Escalation, Escalator
from dispatch.sensors import SensorBridge, SyncReport

if TYPE_CHECKING:
    from control.alerts.repo import AlertRepo
    from heatwatch.core.config import Config
    from heatwatch.core.timeutil import Clock
    from heatwatch.infra.mqtt.client import Publisher


@dataclass
class TickReport:
    synced: SyncReport
    escalated: list[Escalation]
    delivered: int


class DeskTick:
    def __init__(self, desk: Desk, escalator: Escalator, alerts: AlertRepo | None = None) -> None:
        self.desk = desk
        self.escalator = escalator
        self.alerts = alerts
        self.bridge = SensorBridge(desk)

    @classmethod
    def from_config(cls, cfg: Config, clock: Clock, publisher: Publisher | None, alerts: AlertRepo | None) -> DeskTick:
        desk = Desk.from_config(cfg, clock)
        return cls(desk, Escalator.from_config(cfg, desk, publisher), alerts)

    def __call__(self) -> TickReport:
        synced = self.bridge.sync(self.alerts) if self.alerts is not None else SyncReport()
        escalated, delivered = self.escalator.tick()
        return TickReport(synced, escalated, delivered)
