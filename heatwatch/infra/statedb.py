"""SQLite state files (control's proposals, work orders and outbox): one engine setup, one time format.

The service and the CLI open the same file at the same time, so every connection gets WAL, a full
fsync per commit and a generous busy timeout. Times are RFC 3339 UTC text with microseconds, so
lexical order is time order and a row reads the same in ``sqlite3``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event


def open_engine(path: Path, *schemas: MetaData) -> Engine:
    """An engine on ``path`` (directories created) with every table of ``schemas`` created if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    for md in schemas:
        md.create_all(engine)
    return engine


def ts(dt: datetime | None) -> str | None:
    """UTC text with microseconds so that lexical order is time order."""
    return None if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(text: str | None) -> datetime | None:
    """The aware UTC datetime a ``ts`` text column holds (None stays None)."""
    return None if text is None else datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def dumps(obj: Any) -> str:
    """JSON for a text column: Chinese names as they are, keys sorted (stable rows)."""
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str)
