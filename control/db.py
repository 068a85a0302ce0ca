"""Control's own state: proposals and their history, recheck runs, alerts and the alert outbox.

One SQLite file under data_dir (``[control] db_path``), SQLAlchemy Core, WAL so the service and
the CLI can use it at the same time. Times are stored as RFC 3339 UTC text (sortable, readable).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)

from heatwatch.core.config import Config

metadata = MetaData()

proposals = Table(
    "proposals",
    metadata,
    Column("proposal_id", String, primary_key=True),
    Column("station_id", String, nullable=False, index=True),
    Column("kind", String, nullable=False),
    Column("community", String, nullable=False, default=""),
    Column("home_id", String, nullable=False, default=""),
    Column("status", String, nullable=False, index=True),
    Column("origin", String, nullable=False, default="analytics"),
    Column("outcome", String),
    Column("current_c", Float),
    Column("proposed_c", Float),
    Column("delta_c", Float),
    Column("before_c", Float),
    Column("after_c", Float),
    Column("evidence", Text, nullable=False),
    Column("targets", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("note", Text, nullable=False, default=""),
    Column("created_at", String, nullable=False, index=True),
    Column("effective_at", String, nullable=False),
    Column("applied_at", String),
    Column("published_at", String),  # when the setpoint went out on MQTT
    Column("recheck_due_at", String),
    Column("updated_at", String),
)

proposal_history = Table(
    "proposal_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("proposal_id", String, nullable=False, index=True),
    Column("at", String, nullable=False),
    Column("from_status", String),
    Column("to_status", String, nullable=False),
    Column("actor", String, nullable=False),
    Column("note", Text, nullable=False, default=""),
)

# one row per recheck that ran: the primary key makes "exactly once" a database fact
recheck_runs = Table(
    "recheck_runs",
    metadata,
    Column("proposal_id", String, primary_key=True),
    Column("ran_at", String, nullable=False),
    Column("outcome", String, nullable=False),
    Column("before_c", Float),
    Column("after_c", Float),
    Column("window_from", String, nullable=False),
    Column("window_to", String, nullable=False),
    Column("detail", Text, nullable=False),
)

alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", String, primary_key=True),
    Column("dedupe_key", String, nullable=False, index=True),
    Column("category", String, nullable=False),
    Column("status", String, nullable=False, index=True),  # open | acked | resolved
    Column("created_at", String, nullable=False),
    Column("updated_at", String, nullable=False),
    Column("recovering_since", String),
    Column("body", Text, nullable=False),  # the work order as JSON
)

outbox = Table(
    "alert_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sink", String, nullable=False),
    Column("alert_id", String, nullable=False),
    Column("event", String, nullable=False),  # open | resolve | ack
    Column("payload", Text, nullable=False),
    Column("created_at", String, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", String, nullable=False),
    Column("delivered_at", String),
    Column("last_error", Text, nullable=False, default=""),
)


def db_path(cfg: Config) -> Path:
    return cfg.control.db_path or cfg.general.data_dir / "control.sqlite"


def jobstore_url(cfg: Config) -> str:
    return cfg.control.jobstore_url or f"sqlite:///{(cfg.general.data_dir / 'jobs.sqlite').resolve()}"


def open_engine(path: Path) -> Engine:
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    metadata.create_all(engine)
    return engine


def ts(dt: datetime | None) -> str | None:
    """UTC text with microseconds so that lexical order is time order."""
    return None if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(text: str | None) -> datetime | None:
    return None if text is None else datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str)
