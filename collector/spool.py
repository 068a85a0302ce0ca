"""Durable local spool for batches the store could not take.

A SQLite file (synchronous=FULL): a batch appended here survives a crash, so the collector may
acknowledge the MQTT messages. Batches are replayed oldest first when the store returns. The
spool is bounded; when full the collector stops acknowledging (the broker keeps the backlog),
it never drops.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import orjson

from heatwatch.model import Point


def _encode(points: Sequence[Point]) -> bytes:
    return orjson.dumps([[p.measurement, p.tags, p.fields, p.ts_ns] for p in points])


def _decode(blob: bytes) -> list[Point]:
    return [Point(m, t, f, ts) for m, t, f, ts in orjson.loads(blob)]


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "spool.sqlite"
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL, data BLOB NOT NULL)"
        )
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(n), 0), COALESCE(SUM(LENGTH(data)), 0) FROM batches").fetchone()
        self.batches, self.points, self.bytes = int(row[0]), int(row[1]), int(row[2])

    def has_room(self, extra: int = 0) -> bool:
        return self.bytes + extra <= self.max_bytes

    def append(self, points: Sequence[Point]) -> int:
        """Store a batch durably; returns its size in bytes. Raises OSError-like sqlite errors on disk trouble."""
        blob = _encode(points)
        with self._lock:
            self._db.execute("INSERT INTO batches (n, data) VALUES (?, ?)", (len(points), blob))
            self.batches += 1
            self.points += len(points)
            self.bytes += len(blob)
        return len(blob)

    def oldest(self) -> tuple[int, list[Point]] | None:
        with self._lock:
            row = self._db.execute("SELECT seq, data FROM batches ORDER BY seq LIMIT 1").fetchone()
        if row is None:
            return None
        return int(row[0]), _decode(row[1])

    def remove(self, seq: int) -> None:
        with self._lock:
            row = self._db.execute("SELECT n, LENGTH(data) FROM batches WHERE seq = ?", (seq,)).fetchone()
            if row is None:
                return
            self._db.execute("DELETE FROM batches WHERE seq = ?", (seq,))
            self.batches -= 1
            self.points -= int(row[0])
            self.bytes -= int(row[1])
            if self.batches == 0:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def __len__(self) -> int:
        return self.batches

    def close(self) -> None:
        with self._lock:
            self._db.close()
