"""Durable local spool for batches the store could not take.

A SQLite file (synchronous=FULL): a batch appended here survives a crash, so the collector may
acknowledge the MQTT messages. Batches are replayed oldest first when the store returns. The
spool is bounded; when full the collector stops acknowledging (the broker keeps the backlog),
it never drops.

Corruption never blocks the spool: each entry carries a CRC-32 of its bytes, and an entry that
fails it (or cannot be decoded) is moved to the ``set_aside`` table with the reason, logged and
counted, and replay goes on with the next one. A file SQLite itself reports as malformed is moved
to ``corrupt/`` beside it (with a ``.reason.txt``) after every entry still readable was copied
into a fresh spool.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sqlite3
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from heatwatch.core.model import Point

log = logging.getLogger("heatwatch.spool")
SALVAGE_GAP = 1000  # salvaging a damaged file: this many missing entry numbers in a row end the search


class CorruptEntry(ValueError):
    """A spool entry whose bytes are not what was written."""


@dataclass(frozen=True, slots=True)
class SetAside:
    """A spool entry that could not be replayed, kept with the reason for an operator."""

    seq: int
    n: int  # readings the entry said it held
    data: bytes
    reason: str
    set_aside_at: float  # epoch seconds


def _encode(points: Sequence[Point]) -> bytes:
    return orjson.dumps([[p.measurement, p.tags, p.fields, p.ts_ns] for p in points])


def _point(item: Any) -> Point:
    if not (isinstance(item, list) and len(item) == 4):
        raise CorruptEntry(f"an element is not [measurement, tags, fields, ts_ns]: {str(item)[:80]}")
    m, tags, fields, ts = item
    if not (isinstance(m, str) and isinstance(tags, dict) and isinstance(fields, dict) and fields and type(ts) is int):
        raise CorruptEntry(f"an element has the wrong types: {str(item)[:80]}")
    if not all(isinstance(v, str) for v in tags.values()) or not all(
        isinstance(v, int | float | str | bool) for v in fields.values()
    ):
        raise CorruptEntry(f"an element has tag or field values of the wrong type: {str(item)[:80]}")
    return Point(m, tags, fields, ts)


def _decode(blob: bytes, crc: int | None) -> list[Point]:
    """The batch, or CorruptEntry naming what is wrong (``crc`` is None for entries of a spool from before checksums)."""
    if crc is not None and zlib.crc32(blob) != crc:
        raise CorruptEntry(f"checksum mismatch (stored {crc:#010x}, bytes give {zlib.crc32(blob):#010x})")
    try:
        items = orjson.loads(blob)
    except orjson.JSONDecodeError as exc:
        raise CorruptEntry(f"entry cannot be read: {exc}") from None
    if not isinstance(items, list) or not items:
        raise CorruptEntry("entry cannot be read: not a non-empty list of points")
    try:
        return [_point(item) for item in items]
    except CorruptEntry as exc:
        raise CorruptEntry(f"entry cannot be read: {exc}") from None


def _malformed(exc: sqlite3.Error) -> bool:
    """SQLite says the file itself is damaged (not: locked, busy, disk full — those pass or are the disk's)."""
    name = getattr(exc, "sqlite_errorname", "")
    return name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or "malformed" in str(exc) or "not a database" in str(exc)


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "spool.sqlite"
        self.corrupt_dir = directory / "corrupt"
        self.max_bytes = max_bytes
        self.quarantined = 0  # entries set aside by this process (the table keeps every one)
        self.files_set_aside = 0  # whole spool files moved to corrupt/ by this process
        self._lock = threading.RLock()  # re-entered when a damaged file is salvaged while reading
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            if not _malformed(exc):
                raise
            self._set_aside_file(f"opening the spool failed: {exc}")

    def _open(self) -> None:
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL, data BLOB NOT NULL)"
            )
            if "crc" not in {r[1] for r in self._db.execute("PRAGMA table_info(batches)")}:
                self._db.execute("ALTER TABLE batches ADD COLUMN crc INTEGER")  # a spool from before checksums
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS set_aside (seq INTEGER PRIMARY KEY, n INTEGER NOT NULL, data BLOB NOT NULL, "
                "reason TEXT NOT NULL, set_aside_at REAL NOT NULL)"
            )
            row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(n), 0), COALESCE(SUM(LENGTH(data)), 0) FROM batches").fetchone()
        except sqlite3.Error:
            self._db.close()
            raise
        self.batches, self.points, self.bytes = int(row[0]), int(row[1]), int(row[2])

    def has_room(self, extra: int = 0) -> bool:
        return self.bytes + extra <= self.max_bytes

    def append(self, points: Sequence[Point]) -> int:
        """Store a batch durably; returns its size in bytes. Raises OSError-like sqlite errors on disk trouble."""
        blob = _encode(points)
        with self._lock:
            self._db.execute("INSERT INTO batches (n, data, crc) VALUES (?, ?, ?)", (len(points), blob, zlib.crc32(blob)))
            self.batches += 1
            self.points += len(points)
            self.bytes += len(blob)
        return len(blob)

    def oldest(self) -> tuple[int, list[Point]] | None:
        """The oldest readable batch; entries that are not readable are set aside on the way."""
        while True:
            with self._lock:
                try:
                    row = self._db.execute("SELECT seq, n, data, crc FROM batches ORDER BY seq LIMIT 1").fetchone()
                except sqlite3.DatabaseError as exc:
                    if not _malformed(exc):
                        raise
                    self._set_aside_file(f"reading the oldest entry failed: {exc}")
                    continue
                if row is None:
                    return None
                seq, n, data, crc = int(row[0]), int(row[1]), bytes(row[2]), row[3]
                try:
                    return seq, _decode(data, crc)
                except CorruptEntry as exc:
                    reason = str(exc)
                try:
                    self._set_aside(seq, n, data, reason)
                except sqlite3.DatabaseError as exc:
                    if not _malformed(exc):
                        raise
                    self._set_aside_file(f"setting aside entry {seq} ({reason}) failed: {exc}")

    def _set_aside(self, seq: int, n: int, data: bytes, reason: str) -> None:
        """Move one entry out of the replay queue, keeping its bytes and the reason (lock held)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("INSERT OR REPLACE INTO set_aside VALUES (?, ?, ?, ?, ?)", (seq, n, data, reason, time.time()))
            self._db.execute("DELETE FROM batches WHERE seq = ?", (seq,))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self.batches -= 1
        self.points -= n
        self.bytes -= len(data)
        self.quarantined += 1
        log.error("spool entry %d (%d readings) is corrupt and was set aside in %s, table set_aside: %s",
                  seq, n, self.path, reason)

    def _set_aside_file(self, reason: str) -> None:
        """SQLite reports the file as damaged: copy what can still be read into a fresh spool, keep the file in corrupt/."""
        with contextlib.suppress(AttributeError, sqlite3.Error):  # no connection yet, or one SQLite cannot close
            self._db.close()
        self.corrupt_dir.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{time.time_ns() % 1_000_000_000:09d}"
        kept = self.corrupt_dir / f"spool-{stamp}.sqlite"
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                shutil.move(str(src), str(kept) + suffix)
        self._open()
        copied, lost = self._salvage(kept)
        self.files_set_aside += 1
        note = (f"{reason}\nset aside {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}; "
                f"{copied} readable entries copied to the new spool, {lost} could not be read\n")
        Path(str(kept) + ".reason.txt").write_text(note, encoding="utf-8")
        log.critical("spool file %s is damaged (%s): moved to %s; %d readable entries kept, %d lost",
                     self.path, reason, kept, copied, lost)

    def _salvage(self, old_path: Path) -> tuple[int, int]:
        """Copy each entry of a damaged spool file that SQLite can still read and that passes its checksum.

        A scan stops at the first damaged page, so entries are looked up one by one (by key, which only touches
        the pages on the way to it), from the newest down: the spool is a queue, so its entries have consecutive
        numbers and a long run of numbers that are not there means the oldest has been passed.
        """
        found: list[list[Point]] = []
        lost = misses = 0
        try:
            old = sqlite3.connect(f"file:{old_path}?mode=ro", uri=True)
        except sqlite3.Error:
            return 0, 0
        try:
            try:
                row = old.execute("SELECT seq FROM sqlite_sequence WHERE name = 'batches'").fetchone()
            except sqlite3.Error:
                row = None
            seq = int(row[0]) if row else 0
            while seq > 0 and misses < SALVAGE_GAP:
                try:
                    got = old.execute("SELECT n, data, crc FROM batches WHERE seq = ?", (seq,)).fetchone()
                except sqlite3.Error:
                    got, lost, misses = None, lost + 1, misses + 1
                else:
                    if got is None:
                        misses += 1
                    else:
                        misses = 0
                        try:
                            found.append(_decode(bytes(got[1]), got[2]))
                        except CorruptEntry:
                            lost += 1
                seq -= 1
        finally:
            old.close()
        for points in reversed(found):  # oldest first, as they were
            self.append(points)
        return len(found), lost

    def set_aside(self) -> list[SetAside]:
        """Every entry set aside, oldest first (for an operator, and the tests)."""
        with self._lock:
            rows = self._db.execute("SELECT seq, n, data, reason, set_aside_at FROM set_aside ORDER BY seq").fetchall()
        return [SetAside(int(r[0]), int(r[1]), bytes(r[2]), str(r[3]), float(r[4])) for r in rows]

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
