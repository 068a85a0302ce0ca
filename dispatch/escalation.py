"""Overdue orders escalate to the supervisors, once per clock, through the alerts' sinks (MQTT, webhook, JSONL).

``check`` finds the open orders past a clock that has not escalated yet and, in one transaction, records the
escalation, an ``escalate`` event in the audit log and one outbox row per configured sink. ``deliver_due``
sends the rows oldest first, as control.alerts.dispatch does: a sink that refuses keeps its rows, which are
retried with a doubling wait (at most an hour), and nothing overtakes the oldest row of a sink that is down.
The sinks are control.alerts.sinks' classes, constructed here with the desk's own destinations: MQTT
``<mqtt.topic_prefix>/desk/alerts/<clock>``, ``desk.escalate_webhook_url`` (signed with alerts.webhook_secret),
``desk.escalate_jsonl_path``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update

from control.alerts.dispatch import OutboxRow, deliver_rows
from control.alerts.sinks import JsonlSink, MqttSink, Sink, WebhookSink
from dispatch import tables
from dispatch.deadlines import ClockState
from dispatch.desk import Desk, order_to_json
from dispatch.model import Order
from heatwatch.infra import statedb

if TYPE_CHECKING:
    from heatwatch.core.config import Config
    from heatwatch.infra.mqtt.client import Publisher

log = logging.getLogger("heatwatch.desk")
ACTOR = "system:desk"


def configured_sinks(cfg: Config) -> list[str]:
    """The sinks every escalation is queued for (one outbox row each)."""
    names = ["jsonl"]
    if cfg.desk.escalate_mqtt:
        names.append("mqtt")
    if cfg.desk.escalate_webhook_url:
        names.append("webhook")
    return names


def jsonl_path(cfg: Config) -> Path:
    return cfg.desk.escalate_jsonl_path or cfg.general.data_dir / "desk_escalations.jsonl"


def escalation_prefix(cfg: Config) -> str:
    return f"{cfg.mqtt.topic_prefix}/desk"


def build_sinks(cfg: Config, publisher: Publisher | None) -> dict[str, Sink]:
    """The sinks this process can reach (MQTT only with a publisher: without one its rows wait in the outbox)."""
    sinks: dict[str, Sink] = {"jsonl": JsonlSink(jsonl_path(cfg))}
    if cfg.desk.escalate_mqtt and publisher is not None:
        sinks["mqtt"] = MqttSink(publisher, escalation_prefix(cfg))
    if cfg.desk.escalate_webhook_url:
        a = cfg.alerts
        sinks["webhook"] = WebhookSink(cfg.desk.escalate_webhook_url, cfg.secret("alerts", "webhook_secret"),
                                       a.webhook_retries, a.webhook_backoff_s, a.webhook_timeout_s)
    return sinks


@dataclass(frozen=True, slots=True)
class Escalation:
    order_id: str
    clock: str
    due_at: datetime


def message(o: Order, c: ClockState, now: datetime, supervisors: Sequence[str]) -> dict[str, Any]:
    """What every sink receives: the clock that ran out, the order, who should act."""
    return {"event": "overdue", "at": now.isoformat(), "clock": c.to_json(now), "order": order_to_json(o),
            "supervisors": list(supervisors)}


class Escalator:
    def __init__(self, desk: Desk, sinks: Mapping[str, Sink], sink_names: Sequence[str], retry_s: float = 60.0) -> None:
        self.desk = desk
        self.sinks = dict(sinks)
        self.sink_names = tuple(sink_names)
        self.retry_s = retry_s
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: Config, desk: Desk, publisher: Publisher | None) -> Escalator:
        return cls(desk, build_sinks(cfg, publisher), configured_sinks(cfg), cfg.desk.retry_s)

    def check(self, now: datetime | None = None) -> list[Escalation]:
        """Queue an escalation for every overdue clock that has not escalated yet."""
        now = now or self.desk.clock()
        sups = [op.name for op in self.desk.operators.supervisors()]
        out: list[Escalation] = []
        with self._lock:
            for o, late in self.desk.overdue(now):
                with self.desk.engine.begin() as conn:
                    done = {r[0] for r in conn.execute(
                        select(tables.escalations.c.clock).where(tables.escalations.c.order_id == o.order_id))}
                    for c in late:
                        if c.name in done or c.due_at is None:
                            continue
                        conn.execute(insert(tables.escalations).values(
                            order_id=o.order_id, clock=c.name, at=statedb.ts(now), due_at=statedb.ts(c.due_at)))
                        payload = statedb.dumps(message(o, c, now, sups))
                        for sink in self.sink_names:
                            conn.execute(insert(tables.outbox).values(
                                sink=sink, order_id=o.order_id, clock=c.name, payload=payload, created_at=statedb.ts(now),
                                attempts=0, next_attempt_at=statedb.ts(now), last_error=""))
                        self.desk._audit(conn, o.order_id, ACTOR, "escalate",
                                         {"clock": c.name, "seed": c.rule.seed, "due_at": c.due_at.isoformat(),
                                          "stage": o.stage, "to": sups, "sinks": list(self.sink_names)})
                        out.append(Escalation(o.order_id, c.name, c.due_at))
        for e in out:
            log.warning("order %s overdue on %s (due %s): escalated to the supervisors", e.order_id, e.clock,
                        e.due_at.isoformat())
        return out

    def deliver_due(self) -> int:
        """Send due rows through the alerts' delivery loop (one retry policy for every outbox)."""
        with self._lock:
            now = self.desk.clock()
            q = select(tables.outbox).where(tables.outbox.c.delivered_at.is_(None)).order_by(tables.outbox.c.id).limit(500)
            with self.desk.engine.connect() as conn:
                rows = [OutboxRow(r.id, r.sink, r.next_attempt_at, r.attempts, r.clock, r.payload.encode("utf-8"),
                                  f"{r.order_id}-{r.clock}-{r.id}", f"escalation of {r.order_id}") for r in conn.execute(q)]
            return deliver_rows(
                rows, self.sinks, now, self.retry_s,
                failed=lambda rid, n, at, err: self._update(rid, attempts=n, next_attempt_at=statedb.ts(at), last_error=err[:500]),
                delivered=lambda rid: self._update(rid, delivered_at=statedb.ts(now)), log_name="desk")

    def _update(self, row_id: int, **values: Any) -> None:
        with self.desk.engine.begin() as conn:
            conn.execute(update(tables.outbox).where(tables.outbox.c.id == row_id).values(**values))

    def pending(self) -> dict[str, int]:
        q = select(tables.outbox.c.sink).where(tables.outbox.c.delivered_at.is_(None))
        out: dict[str, int] = {}
        with self.desk.engine.connect() as conn:
            for (sink,) in conn.execute(q):
                out[sink] = out.get(sink, 0) + 1
        return out

    def tick(self, now: datetime | None = None) -> tuple[list[Escalation], int]:
        """The scheduled job: queue what became overdue, then deliver."""
        return self.check(now), self.deliver_due()
