"""Work orders and the outbox in control's SQLite file (tables: ``control.alerts.tables``).

An alert change and its outbox rows (one per sink) are written in one transaction, so a crash or
a sink that is down never loses a message: undelivered rows are retried until a sink takes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update

from control.alerts import tables
from control.alerts.model import Event, WorkOrder
from control.alerts.tracker import OpenAlert
from heatwatch.infra import statedb


class UnknownAlert(LookupError):
    def __init__(self, alert_id: str) -> None:
        super().__init__(f"no alert with id {alert_id!r} (see `heatwatch alerts list`)")


def message(order: WorkOrder, event: Event, at: datetime) -> dict[str, Any]:
    """What every sink receives."""
    return {"event": event, "at": order.updated_at.isoformat() if order.updated_at else at.isoformat(), "alert": order.to_json()}


class AlertRepo:
    def __init__(self, engine: Engine, sinks: Sequence[str]) -> None:
        self.engine = engine
        self.sinks = tuple(sinks)

    # --- alerts ---------------------------------------------------------------------------------
    def _save(self, conn: Any, order: WorkOrder, event: Event, at: datetime, new: bool, recovering: Any = ...) -> None:
        values: dict[str, Any] = {
            "status": order.status,
            "updated_at": statedb.ts(order.updated_at or at),
            "body": statedb.dumps(order.to_json()),
        }
        if recovering is not ...:
            values["recovering_since"] = statedb.ts(recovering)
        if new:
            conn.execute(
                insert(tables.alerts).values(
                    alert_id=order.alert_id, dedupe_key=order.key, category=order.category,
                    created_at=statedb.ts(order.created_at), recovering_since=None, **values,
                )
            )
        else:
            conn.execute(update(tables.alerts).where(tables.alerts.c.alert_id == order.alert_id).values(**values))
        payload = statedb.dumps(message(order, event, at))
        for sink in self.sinks:
            conn.execute(
                insert(tables.outbox).values(
                    sink=sink, alert_id=order.alert_id, event=event, payload=payload, created_at=statedb.ts(at),
                    attempts=0, next_attempt_at=statedb.ts(at), last_error="",
                )
            )

    def record(
        self,
        opened: Iterable[WorkOrder] = (),
        updated: Iterable[WorkOrder] = (),
        resolved: Iterable[WorkOrder] = (),
        recovering: dict[str, datetime | None] | None = None,
        at: datetime | None = None,
    ) -> None:
        """Apply a tracker plan atomically, queueing a message per sink for every change."""
        with self.engine.begin() as conn:
            for o in opened:
                self._save(conn, o, "open", at or o.created_at, new=True)
            for o in updated:
                self._save(conn, o, "update", at or o.created_at, new=False)
            for o in resolved:
                self._save(conn, o, "resolve", at or o.created_at, new=False, recovering=None)
            for aid, since in (recovering or {}).items():
                conn.execute(update(tables.alerts).where(tables.alerts.c.alert_id == aid).values(recovering_since=statedb.ts(since)))

    def get(self, alert_id: str) -> WorkOrder:
        with self.engine.connect() as conn:
            r = conn.execute(select(tables.alerts.c.body).where(tables.alerts.c.alert_id == alert_id)).first()
        if r is None:
            raise UnknownAlert(alert_id)
        return WorkOrder.from_json(json.loads(r[0]))

    def has_key(self, key: str) -> bool:
        """Any order, in any status, ever opened under this dedupe key (one-off events open once)."""
        with self.engine.connect() as conn:
            row = conn.execute(select(tables.alerts.c.alert_id).where(tables.alerts.c.dedupe_key == key).limit(1)).first()
        return row is not None

    def open_alerts(self) -> list[OpenAlert]:
        q = select(tables.alerts.c.body, tables.alerts.c.recovering_since).where(tables.alerts.c.status.in_(["open", "acked"]))
        with self.engine.connect() as conn:
            return [OpenAlert(WorkOrder.from_json(json.loads(b)), statedb.parse_ts(rs)) for b, rs in conn.execute(q)]

    def find(self, statuses: Iterable[str] | None = None, category: str | None = None, limit: int = 1000) -> list[WorkOrder]:
        q = select(tables.alerts.c.body).order_by(tables.alerts.c.created_at.desc()).limit(limit)
        if statuses is not None:
            q = q.where(tables.alerts.c.status.in_(list(statuses)))
        if category is not None:
            q = q.where(tables.alerts.c.category == category)
        with self.engine.connect() as conn:
            return [WorkOrder.from_json(json.loads(b)) for (b,) in conn.execute(q)]

    def set_status(self, alert_id: str, status: str, at: datetime, note: str = "") -> WorkOrder:
        """Operator ack / resolve; queues an ``ack`` or ``resolve`` message."""
        order = self.get(alert_id)
        if order.status == "resolved":
            raise ValueError(f"alert {alert_id} is already resolved")
        if status == order.status:
            raise ValueError(f"alert {alert_id} is already {status}")
        new = replace(
            order, status=status, updated_at=at, note=note or order.note,  # type: ignore[arg-type]
            resolved_at=at if status == "resolved" else order.resolved_at,
        )
        with self.engine.begin() as conn:
            self._save(conn, new, "resolve" if status == "resolved" else "ack", at, new=False)
        return new

    # --- outbox ---------------------------------------------------------------------------------
    def due(self, now: datetime | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """Undelivered rows, oldest first; only those due at ``now`` when given."""
        q = select(tables.outbox).where(tables.outbox.c.delivered_at.is_(None)).order_by(tables.outbox.c.id).limit(limit)
        if now is not None:
            q = q.where(tables.outbox.c.next_attempt_at <= statedb.ts(now))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def delivered(self, row_id: int, at: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(tables.outbox).where(tables.outbox.c.id == row_id).values(delivered_at=statedb.ts(at)))

    def failed(self, row_id: int, attempts: int, next_at: datetime, error: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(tables.outbox)
                .where(tables.outbox.c.id == row_id)
                .values(attempts=attempts, next_attempt_at=statedb.ts(next_at), last_error=error[:500])
            )

    def pending_count(self) -> dict[str, int]:
        q = select(tables.outbox.c.sink).where(tables.outbox.c.delivered_at.is_(None))
        out: dict[str, int] = {}
        with self.engine.connect() as conn:
            for (sink,) in conn.execute(q):
                out[sink] = out.get(sink, 0) + 1
        return out
