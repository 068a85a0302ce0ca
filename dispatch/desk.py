"""The desk: opens orders and records every change in the audit log, on one SQLite file.

Intake (CLI, HTTP, MQTT, sensor bridge, outages, measurements) all come through ``Desk.open`` so an
order is validated, deduplicated by ``ref`` and audited the same way wherever it came from.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, insert, select, update

from dispatch import lifecycle, tables
from dispatch.deadlines import ClockState, Policy, clocks, overdue
from dispatch.model import Order, OrderInput, OrderRefused
from dispatch.operators import SYSTEM_PREFIX, Operator, Operators, UnknownOperator
from heatwatch.core.timeutil import Clock
from heatwatch.infra import statedb

if TYPE_CHECKING:
    from heatwatch.core.config import Config

# respond-by hours per category when no deadline plan is given (DOMAIN.md: 不热 2 h, measurement 24 h, leak contact 0.5 h)
DEFAULT_RESPOND_H: dict[str, float] = {
    "not_warm": 2.0, "measurement": 24.0, "leak": 0.5, "no_heat": 1.0, "billing": 48.0, "complaint": 120.0, "other": 24.0,
}
URGENT_BY_DEFAULT = frozenset({"not_warm", "leak", "no_heat"})

DeadlineFn = Callable[[str, datetime], datetime]


def new_order_id() -> str:
    return "W" + secrets.token_hex(5)


def _default_deadline(category: str, received_at: datetime) -> datetime:
    return received_at + timedelta(hours=DEFAULT_RESPOND_H.get(category, 24.0))


def order_to_json(o: Order) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in Order.__dataclass_fields__:
        v = getattr(o, name)
        if isinstance(v, datetime):
            v = statedb.ts(v)
        elif name == "stage_at":
            v = {k: statedb.ts(t) for k, t in v.items()}
        out[name] = v
    return out


def order_from_json(d: Mapping[str, Any]) -> Order:
    body = dict(d)
    for k in ("received_at", "deadline", "expected_at", "updated_at"):
        body[k] = statedb.parse_ts(body.get(k))
    body["stage_at"] = {k: statedb.parse_ts(t) for k, t in body.get("stage_at", {}).items()}
    return Order(**body)


class UnknownOrder(KeyError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no such order"


def desk_path(cfg: Config) -> Path:
    """``[desk] db_path``, else ``<data_dir>/desk.sqlite``."""
    return cfg.desk.db_path or cfg.general.data_dir / "desk.sqlite"


class Desk:
    """``operators``: the configured users every lifecycle step must name (None: none configured, steps refused);
    ``policy``: the standards' clocks (None: the defaults of ``[desk]``)."""

    def __init__(self, engine: Engine, clock: Clock, deadline: DeadlineFn | None = None, *,
                 operators: Operators | None = None, policy: Policy | None = None) -> None:
        self.engine = engine
        self.clock = clock
        if policy is None:
            from heatwatch.core.config import Config

            policy = Policy.from_config(Config())
        self.policy = policy
        self.deadline = deadline or policy.respond_by
        self.operators = operators or Operators({})
        self._lock = threading.Lock()

    @classmethod
    def open_file(cls, path: Path, clock: Clock, deadline: DeadlineFn | None = None, *,
                  operators: Operators | None = None, policy: Policy | None = None) -> Desk:
        return cls(statedb.open_engine(path, tables.metadata), clock, deadline, operators=operators, policy=policy)

    @classmethod
    def from_config(cls, cfg: Config, clock: Clock) -> Desk:
        """The desk of a configuration: its file, its users, its clocks and calendar."""
        return cls.open_file(desk_path(cfg), clock, operators=Operators.from_config(cfg), policy=Policy.from_config(cfg))

    def _audit(self, conn: Any, order_id: str, by: str, event: str, detail: Mapping[str, Any]) -> None:
        conn.execute(insert(tables.events).values(order_id=order_id, at=statedb.ts(self.clock()), by=by, event=event,
                                                  detail=statedb.dumps(dict(detail))))

    def _save(self, conn: Any, o: Order, new: bool) -> None:
        row = {"ref": o.ref, "category": o.category, "stage": o.stage, "home_id": o.home_id,
               "received_at": statedb.ts(o.received_at), "deadline": statedb.ts(o.deadline),
               "updated_at": statedb.ts(o.updated_at or o.received_at), "body": statedb.dumps(order_to_json(o))}
        if new:
            conn.execute(insert(tables.orders).values(order_id=o.order_id, **row))
        else:
            conn.execute(update(tables.orders).where(tables.orders.c.order_id == o.order_id).values(**row))

    def open(self, inp: OrderInput, by: str) -> Order:
        """Open an order (or return the one already opened under the same ``ref``: intake may retry)."""
        missing = inp.missing()
        if missing:
            raise OrderRefused("order refused: missing " + ", ".join(missing))
        if not by:
            raise OrderRefused("order refused: no operator named (by)")
        now = self.clock()
        received = inp.received_at or now
        with self._lock, self.engine.begin() as conn:
            if inp.ref:
                row = conn.execute(select(tables.orders.c.body).where(tables.orders.c.ref == inp.ref)).first()
                if row is not None:
                    return order_from_json(json.loads(row[0]))
            urgency = inp.urgency or ("urgent" if inp.category in URGENT_BY_DEFAULT else "normal")
            o = Order(
                order_id=new_order_id(), source=inp.source, reporter=inp.reporter, phone=inp.phone, address=inp.address,
                home_id=inp.home_id, community=inp.community, station_id=inp.station_id, category=inp.category,
                content=inp.content, urgency=urgency, handling_unit=inp.handling_unit, received_at=received,
                deadline=self.deadline(inp.category, received), expected_at=inp.expected_at, ref=inp.ref,
                evidence=dict(inp.evidence), stage_at={"received": received}, updated_at=now,
            )
            self._save(conn, o, new=True)
            self._audit(conn, o.order_id, by, "open", {"source": inp.source, "category": inp.category})
        return o

    def get(self, order_id: str) -> Order:
        with self.engine.connect() as conn:
            row = conn.execute(select(tables.orders.c.body).where(tables.orders.c.order_id == order_id)).first()
        if row is None:
            raise UnknownOrder(f"no order {order_id!r} (see `heatwatch orders list`)")
        return order_from_json(json.loads(row[0]))

    def by_ref(self, ref: str) -> Order | None:
        """The order opened under intake's reference (a sensor alert id, a call-centre ticket), if any."""
        if not ref:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(tables.orders.c.body).where(tables.orders.c.ref == ref)).first()
        return None if row is None else order_from_json(json.loads(row[0]))

    def find(self, stages: Sequence[str] | None = None, category: str | None = None, open_only: bool = False,
             limit: int = 1000, received_since: datetime | None = None) -> list[Order]:
        """Orders newest first, by stage and category (and received at or after ``received_since``)."""
        q = select(tables.orders.c.body).order_by(tables.orders.c.received_at.desc()).limit(limit)
        if received_since is not None:
            q = q.where(tables.orders.c.received_at >= statedb.ts(received_since))
        if stages is not None:
            q = q.where(tables.orders.c.stage.in_(list(stages)))
        if open_only:
            q = q.where(tables.orders.c.stage != "closed")
        if category is not None:
            q = q.where(tables.orders.c.category == category)
        with self.engine.connect() as conn:
            return [order_from_json(json.loads(r[0])) for r in conn.execute(q)]

    # --- clocks ---------------------------------------------------------------------------------
    def clocks(self, o: Order) -> list[ClockState]:
        return clocks(o.category, o.phone, o.evidence, o.stage_at, self.policy, o.expected_at)

    def overdue(self, now: datetime | None = None) -> list[tuple[Order, list[ClockState]]]:
        """Open orders past any of their clocks, with those clocks, most overdue first."""
        now = now or self.clock()
        out = []
        for o in self.find(open_only=True, limit=100_000):
            late = overdue(self.clocks(o), now)
            if late:
                out.append((o, late))
        return sorted(out, key=lambda x: min(c.due_at or now for c in x[1]))

    # --- the lifecycle: every step names a configured user and is audited -------------------------
    def _operator(self, by: str, supervisor: bool = False) -> Operator:
        if by.startswith(SYSTEM_PREFIX):
            raise UnknownOperator(f"{by!r} is the system: a lifecycle step names a desk user")
        return self.operators.require(by, supervisor)

    def _step(self, order_id: str, by: str, event: str, fn: Callable[[Order, datetime], Order],
              detail: Mapping[str, Any], supervisor: bool = False) -> Order:
        op = self._operator(by, supervisor)
        now = self.clock()
        with self._lock, self.engine.begin() as conn:
            row = conn.execute(select(tables.orders.c.body).where(tables.orders.c.order_id == order_id)).first()
            if row is None:
                raise UnknownOrder(f"no order {order_id!r} (see `heatwatch orders list`)")
            old = order_from_json(json.loads(row[0]))
            new = fn(old, now)
            self._save(conn, new, new=False)
            self._audit(conn, order_id, op.name, event, {"from": old.stage, "to": new.stage, **detail})
        return new

    def dispatch_to(self, order_id: str, by: str, unit: str = "") -> Order:
        return self._step(order_id, by, "dispatch", lambda o, t: lifecycle.dispatch(o, t, unit), {"unit": unit})

    def assign(self, order_id: str, by: str, assignee: str, unit: str = "", opinion: str = "") -> Order:
        """Dispatch (when still received) and route to a first-line worker in one step, each stage audited."""
        if not assignee.strip():  # checked before the dispatch step, so a refused call changes nothing
            raise lifecycle.TransitionError("assign needs the first-line worker's name (assignee)")
        o = self.get(order_id)
        if o.stage == "received":
            self.dispatch_to(order_id, by, unit)
        return self._step(order_id, by, "accept", lambda o, t: lifecycle.accept(o, t, assignee),
                          {"assignee": assignee, **({"opinion": opinion} if opinion else {})})

    def advance(self, order_id: str, by: str, to: str, text: str = "") -> Order:
        return self._step(order_id, by, "stage", lambda o, t: lifecycle.advance(o, to, t), {"text": text} if text else {})

    def mark(self, order_id: str, by: str, name: str, text: str = "") -> Order:
        return self._step(order_id, by, "mark", lambda o, t: lifecycle.mark(o, name, t, text), {"mark": name, "text": text})

    def reply(self, order_id: str, by: str, cause: str, action: str, result: str, opinion: str) -> Order:
        """The reply with its four elements; contacted-in-time is the contact clock's verdict."""
        elements = {"cause": cause, "action": action, "result": result, "opinion": opinion}

        def step(o: Order, t: datetime) -> Order:
            states = [c for c in self.clocks(o) if c.rule.target[0] == "contacted" and c.started_at is not None]
            in_time = None if not o.phone else all(c.state(t) in ("met", "running") for c in states)
            return lifecycle.reply(o, t, elements, in_time)

        return self._step(order_id, by, "reply", step, {"reply": elements})

    def review(self, order_id: str, by: str, ok: bool, missing: Sequence[str] = (), reason: str = "") -> Order:
        return self._step(order_id, by, "review" if ok else "send_back",
                          lambda o, t: lifecycle.review(o, t, ok, tuple(missing), reason),
                          {"ok": ok, "missing": list(missing), "reason": reason})

    def callback(self, order_id: str, by: str, satisfaction: lifecycle.Satisfaction, note: str = "") -> Order:
        return self._step(order_id, by, "callback", lambda o, t: lifecycle.callback(o, t, satisfaction, note),
                          {"satisfaction": satisfaction, "note": note})

    def reopen(self, order_id: str, by: str, reason: str) -> Order:
        """After an unsatisfied callback: back to the handling unit, its clocks running again."""
        return self._step(order_id, by, "reopen", lambda o, t: lifecycle.reopen(o, t, reason), {"reason": reason})

    def close(self, order_id: str, by: str, reason: str = "") -> Order:
        """After the callback; without one only a supervisor closes, and says why."""
        op = self._operator(by)
        return self._step(order_id, op.name, "close", lambda o, t: lifecycle.close(o, t, reason, op.is_supervisor),
                          {"reason": reason})

    def find_open(self, home_id: str, category: str | None = None) -> list[Order]:
        """Orders of a home that are not closed (a new report about it is evidence on one of these)."""
        q = select(tables.orders.c.body).where(tables.orders.c.home_id == home_id, tables.orders.c.stage != "closed")
        if category is not None:
            q = q.where(tables.orders.c.category == category)
        with self.engine.connect() as conn:
            return [order_from_json(json.loads(r[0])) for r in conn.execute(q.order_by(tables.orders.c.received_at))]

    def note(self, order_id: str, by: str, text: str, evidence: Mapping[str, Any] | None = None) -> Order:
        """Add evidence to an order without moving it (sensor recovery, a notice sent, a measurement)."""
        with self._lock, self.engine.begin() as conn:
            row = conn.execute(select(tables.orders.c.body).where(tables.orders.c.order_id == order_id)).first()
            if row is None:
                raise KeyError(f"no order {order_id!r}")
            o = order_from_json(json.loads(row[0]))
            notes = list(o.evidence.get("notes", []))
            notes.append({"at": statedb.ts(self.clock()), "by": by, "text": text, **({"evidence": dict(evidence)} if evidence else {})})
            from dataclasses import replace

            o = replace(o, evidence={**o.evidence, "notes": notes}, updated_at=self.clock())
            self._save(conn, o, new=False)
            self._audit(conn, order_id, by, "note", {"text": text, **({"evidence": dict(evidence)} if evidence else {})})
        return o

    def history(self, order_id: str) -> list[dict[str, Any]]:
        """The audit log of one order, oldest first."""
        q = select(tables.events).where(tables.events.c.order_id == order_id).order_by(tables.events.c.id)
        with self.engine.connect() as conn:
            return [{**dict(r._mapping), "detail": json.loads(r.detail)} for r in conn.execute(q)]
