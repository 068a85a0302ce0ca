"""Control's own state: proposals and their history, recheck runs — and, in the same file, the alerts' tables.

One SQLite file under data_dir (``[control] db_path``), SQLAlchemy Core, WAL so the service and the CLI
can use it at the same time (``heatwatch.infra.statedb``). Times are stored as RFC 3339 UTC text.
The work orders' tables are ``control.alerts.tables``; ``open_engine`` creates both.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Column, Engine, Float, Integer, MetaData, String, Table, Text

from control.alerts import tables as alert_tables
from heatwatch.core.config import Config
from heatwatch.infra import statedb

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


def db_path(cfg: Config) -> Path:
    return cfg.control.db_path or cfg.general.data_dir / "control.sqlite"


def jobstore_url(cfg: Config) -> str:
    return cfg.control.jobstore_url or f"sqlite:///{(cfg.general.data_dir / 'jobs.sqlite').resolve()}"


def open_engine(path: Path) -> Engine:
    """Control's SQLite file with every table in it: proposals, history, recheck runs, alerts, outbox."""
    return statedb.open_engine(path, metadata, alert_tables.metadata)
