"""Embedded default store: SQLite in WAL mode under the data directory.

The four input measurements get typed tables (so hourly means are plain SQL aggregates);
derived measurements (analytics results, collector metrics, alerts) go to one generic table
with JSON tags/fields. ``INSERT OR REPLACE`` on (series, time) keeps writes idempotent.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from heatwatch.core import schema
from heatwatch.core.model import Point
from heatwatch.core.timeutil import to_ns
from heatwatch.infra.storage.base import (
    HourlyArrays,
    LastArrays,
    Store,
    StoreCapacityError,
    StoreCorrupt,
    StoreError,
    StoreUnavailable,
    Where,
    where_values,
)

H_NS = 3_600 * 1_000_000_000
_SQL_AGG = {"mean": "AVG", "min": "MIN", "max": "MAX", "count": "COUNT"}

# measurement -> (tag columns, field columns, identity columns of the series)
_TYPED: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    schema.INDOOR: (schema.INDOOR_TAGS, schema.INDOOR_FIELDS, ("home_id", "source")),
    schema.STATION: (schema.STATION_TAGS, schema.STATION_FIELDS, ("station_id",)),
    schema.WEATHER: (schema.WEATHER_TAGS, schema.WEATHER_FIELDS, ("site_id",)),
    schema.FORECAST: (schema.FORECAST_TAGS, schema.FORECAST_FIELDS, ("site_id",)),
}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sqlite_failure(exc: sqlite3.Error, path: Path, doing: str) -> Exception:
    """The store exception for a SQLite error: a damaged file or a full disk is not bad data (spool and alarm); locked,
    busy or I/O trouble may pass (spool); anything else is the request's fault."""
    code = getattr(exc, "sqlite_errorname", "")
    if code in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or "malformed" in str(exc) or "not a database" in str(exc):
        return StoreCorrupt(f"SQLite store {path} is damaged ({doing}: {exc}) — restore it from a backup or run "
                            "`sqlite3 FILE .recover`; readings are kept in the spool meanwhile")
    if code == "SQLITE_FULL" or "database or disk is full" in str(exc):
        return StoreCapacityError(f"SQLite store {path}: {doing} failed, the disk is full ({exc}) — free space; readings "
                                  "are kept in the spool meanwhile", "disk_full")
    if isinstance(exc, sqlite3.OperationalError):  # locked, busy, I/O error: may pass
        return StoreUnavailable(f"SQLite {doing} failed: {exc}")
    return StoreError(f"SQLite rejected the {doing}: {exc}")


class SqliteStore(Store):
    """The embedded store: one SQLite file in WAL mode, typed tables for the input measurements."""

    name = "sqlite"
    read_concurrency = 2
    FETCH_ROWS = 20_000  # rows converted to numpy at a time (Python rows cost ~250 bytes each until then)

    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc
        self._lock = threading.RLock()
        self._idle_readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_readers: list[sqlite3.Connection] = []
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'FULL' else 'NORMAL'}")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._create()
        except sqlite3.Error as exc:
            self._db.close()
            raise sqlite_failure(exc, self.path, "opening") from exc

    def _create(self) -> None:
        with self._lock:
            for meas, (tags, fields, ident) in _TYPED.items():
                tag_cols = [f"{_q(t)} TEXT NOT NULL DEFAULT ''" for t in tags]
                cols = ", ".join([*tag_cols, *(_q(f) for f in fields), "ts_ns INTEGER NOT NULL"])
                pk = ", ".join([*(_q(c) for c in ident), "ts_ns"])
                self._db.execute(f"CREATE TABLE IF NOT EXISTS {_q(meas)} ({cols}, PRIMARY KEY ({pk})) WITHOUT ROWID")
                self._db.execute(f"CREATE INDEX IF NOT EXISTS {_q(meas + '_ts')} ON {_q(meas)} (ts_ns)")
            # the analytics read whole communities over a window: this index alone answers their hourly aggregates,
            # the manual-readings count and the last reading (source is in it as part of the primary key), without
            # a lookup into the table per row (3-10× faster: docs/SCHEMA.md). It replaces (community, ts_ns); an
            # existing database builds it once when first opened (~1.5 s per million readings).
            self._db.execute("CREATE INDEX IF NOT EXISTS indoor_community_ts_temp ON indoor (community, ts_ns, temp_c)")
            self._db.execute("DROP INDEX IF EXISTS indoor_community_ts")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS points (measurement TEXT NOT NULL, series TEXT NOT NULL, "
                "ts_ns INTEGER NOT NULL, tags TEXT NOT NULL, fields TEXT NOT NULL, "
                "PRIMARY KEY (measurement, series, ts_ns)) WITHOUT ROWID"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS points_ts ON points (measurement, ts_ns)")

    # --- writes ---------------------------------------------------------------------------
    def write(self, points: Sequence[Point]) -> None:
        """Store the points durably (see ``Store.write``)."""
        if not points:
            return
        typed: dict[str, list[tuple[Any, ...]]] = {}
        generic: list[tuple[Any, ...]] = []
        for p in points:
            spec = _TYPED.get(p.measurement)
            if spec is None:
                tags = json.dumps(dict(sorted(p.tags.items())), ensure_ascii=False)
                generic.append((p.measurement, tags, p.ts_ns, tags, json.dumps(dict(p.fields), ensure_ascii=False)))
                continue
            tags_c, fields_c, _ = spec
            row = tuple(p.tags.get(t, "") for t in tags_c) + tuple(p.fields.get(f) for f in fields_c) + (p.ts_ns,)
            typed.setdefault(p.measurement, []).append(row)
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for meas, rows in typed.items():
                        tags_c, fields_c, _ = _TYPED[meas]
                        cols = [*tags_c, *fields_c, "ts_ns"]
                        self._db.executemany(
                            f"INSERT OR REPLACE INTO {_q(meas)} ({', '.join(map(_q, cols))}) "
                            f"VALUES ({', '.join('?' * len(cols))})",
                            rows,
                        )
                    if generic:
                        self._db.executemany("INSERT OR REPLACE INTO points VALUES (?, ?, ?, ?, ?)", generic)
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:  # SQLite has already rolled back after some errors (a full disk)
                        self._db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise sqlite_failure(exc, self.path, "write") from exc

    # --- reads ----------------------------------------------------------------------------
    def _where_sql(self, meas: str, start: datetime, end: datetime, where: Where | None) -> tuple[str, list[Any]]:
        clauses = ["ts_ns >= ?", "ts_ns < ?"]
        params: list[Any] = [to_ns(start), to_ns(end)]
        if meas in _TYPED:
            for key, vals in where_values(where):
                clauses.append(f"{_q(key)} IN ({', '.join('?' * len(vals))})")
                params.extend(vals)
        else:
            clauses.insert(0, "measurement = ?")
            params.insert(0, meas)
            for key, vals in where_values(where):
                clauses.append(f"json_extract(tags, ?) IN ({', '.join('?' * len(vals))})")
                params.append(f'$."{key}"')
                params.extend(vals)
        return " AND ".join(clauses), params

    def _reader(self) -> sqlite3.Connection:
        """A read connection of its own: SQLite runs reads on separate connections in parallel (WAL), and releases
        the GIL while it does, so the analytics' partitions read on both cores."""
        try:
            return self._idle_readers.get_nowait()
        except queue.Empty:
            pass
        try:
            db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA query_only=1")
        except sqlite3.Error as exc:
            raise sqlite_failure(exc, self.path, "read") from exc
        with self._lock:
            self._all_readers.append(db)
        return db

    def _rows(self, sql: str, params: Sequence[Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
        cols: list[str] = []
        rows: list[tuple[Any, ...]] = []
        for c, chunk in self._chunks(sql, params):
            cols = c
            rows.extend(chunk)
        return cols, rows

    def _chunks(self, sql: str, params: Sequence[Any]) -> Iterator[tuple[list[str], list[tuple[Any, ...]]]]:
        """The rows of one SELECT, ``FETCH_ROWS`` at a time (at least one, possibly empty, chunk)."""
        size = self.FETCH_ROWS
        db = self._reader()
        try:
            cur = db.execute(sql, params)
            cols = [d[0] for d in cur.description]
            while True:
                chunk = cur.fetchmany(size)
                yield cols, chunk
                if len(chunk) < size:
                    return
        except sqlite3.DatabaseError as exc:  # locked, busy, I/O, or a damaged file (not a programming error)
            raise sqlite_failure(exc, self.path, "read") from exc
        finally:
            self._idle_readers.put(db)

    def _read_sql(self, sql: str, params: Sequence[Any]) -> pd.DataFrame:
        cols, rows = self._rows(sql, params)
        return pd.DataFrame.from_records(rows, columns=cols)

    def _columns(self, sql: str, params: Sequence[Any], dtypes: Sequence[Any]) -> list[npt.NDArray[Any]]:
        """The answer column by column: rows fetched a chunk at a time and turned into numpy arrays as they come,
        so a city-sized answer never exists as one list of Python rows."""
        parts: list[list[npt.NDArray[Any]]] = [[] for _ in dtypes]
        for _, chunk in self._chunks(sql, params):
            if not chunk:
                continue
            for i, (col, dtype) in enumerate(zip(zip(*chunk, strict=True), dtypes, strict=True)):
                if dtype is object:  # tag values repeat: one string object per distinct value, not one per row
                    codes, uniques = pd.factorize(np.array(col, dtype=object), use_na_sentinel=False)
                    arr = np.asarray(uniques, dtype=object)[codes]
                else:
                    arr = np.array(col, dtype=dtype)
                parts[i].append(arr)
        return [np.concatenate(p) if p else np.empty(0, dtype=d) for p, d in zip(parts, dtypes, strict=True)]

    def _query(
        self, measurement: str, start: datetime, end: datetime, where: Where | None, fields: list[str] | None
    ) -> pd.DataFrame:
        cond, params = self._where_sql(measurement, start, end, where)
        if measurement in _TYPED:
            tags_c = _TYPED[measurement][0]
            sel = ", ".join([_q(c) for c in (*tags_c, *(fields or ()))] + ["ts_ns AS time"])
            return self._read_sql(f"SELECT {sel} FROM {_q(measurement)} WHERE {cond} ORDER BY ts_ns", params)
        _, raw = self._rows(f"SELECT tags, fields, ts_ns FROM points WHERE {cond} ORDER BY ts_ns", params)
        recs = []
        for t, f, ts in raw:
            vals = json.loads(f)
            if fields:
                vals = {k: v for k, v in vals.items() if k in fields}
            recs.append({"time": ts, **json.loads(t), **vals})
        return pd.DataFrame.from_records(recs) if recs else pd.DataFrame({"time": np.empty(0, dtype=np.int64)})

    def _target(self, measurement: str, field: str, by: str) -> tuple[str, str, str]:
        """(value expression, key expression, table) of a typed or a generic measurement."""
        if measurement in _TYPED:
            return _q(field), _q(by), _q(measurement)
        return f"json_extract(fields, '$.\"{field}\"')", f"json_extract(tags, '$.\"{by}\"')", "points"

    def _hourly(
        self, measurement: str, field: str, start: datetime, end: datetime, offset_s: int, by: str,
        where: Where | None, stats: tuple[str, ...],
    ) -> HourlyArrays:
        off = offset_s * 1_000_000_000
        cond, params = self._where_sql(measurement, start, end, where)
        val, key, table = self._target(measurement, field, by)
        aggs = ", ".join(f"{_SQL_AGG[s]}({val})" for s in stats)
        sql = (
            f"SELECT {key} AS k, ((ts_ns - {off}) / {H_NS}) * {H_NS} + {off} AS h, {aggs} FROM {table} "
            f"WHERE {cond} AND {val} IS NOT NULL GROUP BY k, h"
        )
        dtypes = [object, np.int64, *(np.int64 if s == "count" else np.float64 for s in stats)]
        cols = self._columns(sql, params, dtypes)
        if not len(cols[0]):
            return HourlyArrays.empty(stats)
        keys = np.where(pd.isna(cols[0]), "", cols[0])
        return HourlyArrays(keys, cols[1], dict(zip(stats, cols[2:], strict=True)))

    def _last(
        self, measurement: str, field: str, by: str, where: Where | None, start: datetime, end: datetime
    ) -> LastArrays:
        cond, params = self._where_sql(measurement, start, end, where)
        val, key, table = self._target(measurement, field, by)
        # SQLite returns the bare column from the row holding MAX(ts_ns)
        sql = f"SELECT {key} AS k, MAX(ts_ns) AS t, {val} AS v FROM {table} WHERE {cond} AND {val} IS NOT NULL GROUP BY k"
        k, t, v = self._columns(sql, params, [object, np.int64, object])
        values = v
        if len(v) and all(type(x) is float or type(x) is int for x in v):
            values = v.astype(np.float64) if any(type(x) is float for x in v) else v.astype(np.int64)
        return LastArrays(np.where(pd.isna(k), "", k) if len(k) else k, t.astype(np.int64), values)

    def _count(self, measurement: str, start: datetime, end: datetime, where: Where | None, field: str | None) -> int:
        cond, params = self._where_sql(measurement, start, end, where)
        table = _q(measurement) if measurement in _TYPED else "points"
        if field and measurement in _TYPED:
            cond += f" AND {_q(field)} IS NOT NULL"
        elif field:
            cond += f" AND json_extract(fields, '$.\"{field}\"') IS NOT NULL"
        _, rows = self._rows(f"SELECT COUNT(*) FROM {table} WHERE {cond}", params)
        return int(rows[0][0])

    def delete_before(self, measurement: str, before: datetime) -> None:
        """Delete the measurement's points before ``before`` (see ``Store.delete_before``)."""
        table, cond = (_q(measurement), "") if measurement in _TYPED else ("points", "measurement = ? AND ")
        params = ([] if measurement in _TYPED else [measurement]) + [to_ns(before)]
        with self._lock:
            try:
                self._db.execute(f"DELETE FROM {table} WHERE {cond}ts_ns < ?", params)
            except sqlite3.Error as exc:
                raise sqlite_failure(exc, self.path, "delete") from exc

    def ping(self) -> None:
        """Raise StoreUnavailable when the store cannot be reached."""
        with self._lock:
            try:
                self._db.execute("SELECT 1").fetchone()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite store {self.path} unusable: {exc}") from exc

    def close(self) -> None:
        """Release the connections."""
        with self._lock:
            for db in self._all_readers:
                db.close()
            self._all_readers.clear()
            self._db.close()

