"""The desk's tables in its own SQLite file: orders (current state) and the append-only audit log."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table, Text

metadata = MetaData()

orders = Table(
    "orders",
    metadata,
    Column("order_id", String, primary_key=True),
    Column("ref", String, nullable=False, index=True),  # intake's own reference ("" when none)
    Column("category", String, nullable=False, index=True),
    Column("stage", String, nullable=False, index=True),
    Column("home_id", String, nullable=False, index=True),
    Column("received_at", String, nullable=False, index=True),
    Column("deadline", String, nullable=False),
    Column("updated_at", String, nullable=False),
    Column("body", Text, nullable=False),  # the order as JSON (Chinese as it is)
)

# every change: who, when, what; rows are only ever inserted
events = Table(
    "order_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", String, nullable=False, index=True),
    Column("at", String, nullable=False),
    Column("by", String, nullable=False),
    Column("event", String, nullable=False),  # open | stage | assign | note | reply | review | escalate ...
    Column("detail", Text, nullable=False),  # JSON
)

# one row per (order, clock) that escalated: an overdue clock escalates once
escalations = Table(
    "order_escalations",
    metadata,
    Column("order_id", String, primary_key=True),
    Column("clock", String, primary_key=True),
    Column("at", String, nullable=False),
    Column("due_at", String, nullable=False),
)

# messages to the supervisors' sinks, written with the escalation; what a sink refuses waits here (like alert_outbox)
outbox = Table(
    "desk_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sink", String, nullable=False),
    Column("order_id", String, nullable=False),
    Column("clock", String, nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", String, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", String, nullable=False),
    Column("delivered_at", String),
    Column("last_error", Text, nullable=False, default=""),
)
