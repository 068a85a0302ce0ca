"""The work orders' tables in control's SQLite file: alerts and the outbox of messages to the sinks.

Their own ``metadata``: the alerts package owns its tables and imports nothing from the control loop;
``control.db.open_engine`` creates these next to the proposals' tables in the same file.
"""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, String, Table, Text

metadata = MetaData()

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
