"""The desk's doors for other systems and its figures for Grafana, wired from the config.

``DeskDoors`` runs the HTTP JSON intake (``[desk] http_port``) and the MQTT intake (``[desk] mqtt_intake``)
on one desk, in ``heatwatch run`` and in ``heatwatch orders serve``. ``write_points`` puts the monthly figures
of the current and the previous local month and the overdue count into the store (``desk_figures``,
``desk_overdue``), where Grafana reads them: the desk's own database is SQLite, Grafana reads the store.
"""

from __future__ import annotations

import errno
import logging
from datetime import datetime, timedelta
from typing import Any

from dispatch.desk import Desk
from dispatch.figures import month_of, month_start, monthly, overdue_counts, overdue_points, points
from dispatch.intake_http import IntakeServer, measurement_recorder
from dispatch.intake_mqtt import MqttIntake
from dispatch.measurements import MeasurementBook
from heatwatch.core.config import Config
from heatwatch.core.errors import ConfigError
from heatwatch.core.registry import Registry
from heatwatch.core.timeutil import Clock
from heatwatch.infra.storage.base import Store

log = logging.getLogger("heatwatch.desk")
ALL_ORDERS = 1_000_000  # Desk.find's limit when the figures read every order


class DeskPortUnavailable(ConfigError):
    """``[desk] http_port`` cannot be bound: one line for the operator, exit 2."""

    def __init__(self, host: str, port: int, exc: OSError) -> None:
        why = ("is already in use (another heatwatch process, or [run] http_port on the same port)"
               if exc.errno == errno.EADDRINUSE else f"cannot be bound: {exc.strerror or exc}")
        super().__init__(f"[desk] http_port {port} (HEATWATCH_DESK_HTTP_PORT) on {host} {why}; 0 turns the HTTP intake off")


class DeskDoors:
    """The HTTP and MQTT intake of one desk; either may be off (``http_port`` 0, ``mqtt`` False)."""

    def __init__(self, cfg: Config, registry: Registry, desk: Desk, *, http_port: int, http_host: str, mqtt: bool) -> None:
        self.cfg = cfg
        self.desk = desk
        self.http: IntakeServer | None = None
        self.mqtt: MqttIntake | None = None
        if http_port:
            if not any(op.token for op in desk.operators.users.values()):
                log.warning("[desk] http_port is set but no [desk.operators] user has a token: every request will be refused")
            hook = measurement_recorder(MeasurementBook.open(cfg), desk, cfg, registry)
            try:  # bound here, so a taken port stops the service before it starts anything
                self.http = IntakeServer(desk, http_host, http_port, max_body=cfg.desk.http_max_body_kb * 1024,
                                         measurement=hook)
            except OSError as exc:
                raise DeskPortUnavailable(http_host, http_port, exc) from None
        if mqtt:
            self.mqtt = MqttIntake.from_config(desk, cfg)

    @classmethod
    def from_config(cls, cfg: Config, registry: Registry, clock: Clock, desk: Desk | None = None) -> DeskDoors:
        """As ``[desk]`` says (``http_port``, ``http_host``, ``mqtt_intake``)."""
        d = cfg.desk
        return cls(cfg, registry, desk or Desk.from_config(cfg, clock), http_port=d.http_port, http_host=d.http_host,
                   mqtt=d.mqtt_intake)

    @staticmethod
    def enabled(cfg: Config) -> bool:
        """Whether ``[desk]`` opens any door (``heatwatch run`` starts them only then)."""
        return bool(cfg.desk.http_port or cfg.desk.mqtt_intake)

    def start(self) -> DeskDoors:
        if self.http is not None:
            self.http.start()
        if self.mqtt is not None:
            self.mqtt.start()
        return self

    def stop(self) -> None:
        if self.mqtt is not None:
            self.mqtt.stop()
        if self.http is not None:
            self.http.stop()

    def snapshot(self) -> dict[str, Any]:
        """For the status snapshot: where the doors are and what came through MQTT."""
        out: dict[str, Any] = {}
        if self.http is not None:
            out["http_port"] = self.http.port
        if self.mqtt is not None:
            out["mqtt"] = {"topic": self.mqtt.topic, "subscribed": self.mqtt.subscribed.is_set(),
                           "accepted": self.mqtt.accepted, "refused": self.mqtt.refused, "failed": self.mqtt.failed}
        return out


def recent_months(now: datetime, cfg: Config) -> list[str]:
    """The previous and the current local month: the ones whose figures still move."""
    tz = cfg.general.tz
    first = now.astimezone(tz).replace(day=1)
    return [month_of(first - timedelta(days=1), tz), month_of(first, tz)]


def write_points(desk: Desk, store: Store, cfg: Config, now: datetime, months: list[str] | None = None) -> int:
    """Write ``desk_figures`` for ``months`` (default: the previous and current) and ``desk_overdue`` now; points written."""
    tz = cfg.general.tz
    months = months or recent_months(now, cfg)
    orders = desk.find(limit=ALL_ORDERS, received_since=min(month_start(m, tz) for m in months))
    pts = []
    for m in months:
        pts += points(monthly(orders, tz, now, clock_states=desk.clocks, month=m), tz)
    pts += overdue_points(overdue_counts(desk.find(open_only=True, limit=ALL_ORDERS), now, clock_states=desk.clocks), now)
    store.write(pts)
    return len(pts)
