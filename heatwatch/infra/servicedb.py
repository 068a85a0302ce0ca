"""The service desk's own facts in SQLite: dated home status changes and announced outages.

Append-only: a status change is a new row (the latest in effect wins, ``heatwatch.core.homestatus``);
an outage, once announced, is kept with every notice it sent. One file, ``[season] db_path`` (default
``<data_dir>/service.sqlite``), opened with ``heatwatch.infra.statedb`` so the service and the CLI can
use it at once. Other modules (the measurement records) add their tables to the same file.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, Text, insert, select

from heatwatch.core.config import Config
from heatwatch.core.homestatus import StatusChange
from heatwatch.infra import statedb

__all__ = ["Outage", "ServiceDb", "db_path", "metadata", "new_outage_id"]

metadata = MetaData()

status_changes = Table(
    "home_status_changes",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("home_id", String, nullable=False, index=True),
    Column("status", String, nullable=False),
    Column("effective", String, nullable=False),  # local date YYYY-MM-DD
    Column("by", String, nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("order_id", String, nullable=False, default=""),
    Column("recorded_at", String, nullable=False),
)

outages = Table(
    "outages",
    metadata,
    Column("outage_id", String, primary_key=True),
    Column("station_id", String, nullable=False, index=True),
    Column("start", String, nullable=False),
    Column("end", String),  # the expected restoration time (NULL: unplanned, not known yet)
    Column("reason", Text, nullable=False),
    Column("planned", Integer, nullable=False),
    Column("by", String, nullable=False),
    Column("homes", Text, nullable=False),  # JSON list of the homes told
    Column("order_id", String, nullable=False, default=""),
    Column("announced_at", String, nullable=False),
)


def new_outage_id() -> str:
    """A fresh outage id."""
    return "O" + secrets.token_hex(5)


def db_path(cfg: Config) -> Path:
    """``[season] db_path``, else ``<data_dir>/service.sqlite``."""
    return cfg.season.db_path or cfg.general.data_dir / "service.sqlite"


@dataclass(frozen=True, slots=True)
class Outage:
    """A heat outage announced to the homes of a station: from ``start`` to the expected restoration ``end`` (UTC;
    None for an unplanned outage whose restoration time is not known yet)."""

    outage_id: str
    station_id: str
    start: datetime
    end: datetime | None
    reason: str
    planned: bool
    by: str
    homes: tuple[str, ...]
    announced_at: datetime
    order_id: str = ""

    def covers(self, at: datetime) -> bool:
        """Is ``at`` inside the announced window? (An open-ended unplanned outage quiets nothing: its station fault
        order groups the cold homes.)"""
        return self.end is not None and self.start <= at < self.end


class ServiceDb:
    """The tables above on one engine (extra ``schemas`` are created in the same file)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, cfg: Config, *schemas: MetaData) -> ServiceDb:
        """The configured file, every table created if missing."""
        return cls(statedb.open_engine(db_path(cfg), metadata, *schemas))

    # --- home status ---------------------------------------------------------------------------
    def add_status(self, change: StatusChange, at: datetime) -> StatusChange:
        """Append a change (never updated or deleted); returns it with its row number."""
        with self.engine.begin() as conn:
            res = conn.execute(insert(status_changes).values(
                home_id=change.home_id, status=change.status, effective=change.effective.isoformat(), by=change.by,
                reason=change.reason, order_id=change.order_id, recorded_at=statedb.ts(at),
            ))
            seq = int(res.inserted_primary_key[0]) if res.inserted_primary_key else 0
        return StatusChange(change.home_id, change.status, change.effective, change.by, change.reason, change.order_id,
                            at, seq)

    def status_changes(self, home_id: str | None = None) -> list[StatusChange]:
        """Every recorded change (of one home), oldest recorded first."""
        q = select(status_changes).order_by(status_changes.c.seq)
        if home_id is not None:
            q = q.where(status_changes.c.home_id == home_id)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [StatusChange(r["home_id"], r["status"], date.fromisoformat(r["effective"]), r["by"], r["reason"],
                             r["order_id"], statedb.parse_ts(r["recorded_at"]), r["seq"]) for r in rows]

    # --- outages -------------------------------------------------------------------------------
    def add_outage(self, station_id: str, start: datetime, end: datetime | None, reason: str, planned: bool, by: str,
                   homes: Iterable[str], at: datetime, order_id: str = "", outage_id: str = "") -> Outage:
        """Record an announced outage (append-only)."""
        o = Outage(outage_id or new_outage_id(), station_id, start, end, reason, planned, by, tuple(homes), at, order_id)
        with self.engine.begin() as conn:
            conn.execute(insert(outages).values(
                outage_id=o.outage_id, station_id=station_id, start=statedb.ts(start), end=statedb.ts(end), reason=reason,
                planned=int(planned), by=by, homes=statedb.dumps(list(o.homes)), order_id=order_id,
                announced_at=statedb.ts(at),
            ))
        return o

    def outages(self, covering: datetime | None = None) -> list[Outage]:
        """Every announced outage (only those whose window holds ``covering``), by start."""
        import json

        q = select(outages).order_by(outages.c.start)
        if covering is not None:
            t = statedb.ts(covering)
            q = q.where(outages.c.start <= t, outages.c.end.is_not(None), outages.c.end > t)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        out = []
        for r in rows:
            start, end, at = statedb.parse_ts(r["start"]), statedb.parse_ts(r["end"]), statedb.parse_ts(r["announced_at"])
            assert start is not None and at is not None
            out.append(Outage(r["outage_id"], r["station_id"], start, end, r["reason"], bool(r["planned"]), r["by"],
                              tuple(json.loads(r["homes"])), at, r["order_id"]))
        return out
