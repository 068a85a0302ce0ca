"""Embedded default store: SQLite in WAL mode under the data directory.

The four input measurements get typed tables (so hourly means are plain SQL aggregates);
derived measurements (analytics results, collector metrics, alerts) go to one generic table
with JSON tags/fields. ``INSERT OR REPLACE`` on (series, time) keeps writes idempotent.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from heatwatch.core import schema
from heatwatch.core.model import Point
from heatwatch.core.timeutil import to_ns
from heatwatch.infra.storage.base import (
    INT_FIELDS,
    Store,
    StoreCapacityError,
    StoreCorrupt,
    StoreError,
    StoreUnavailable,
    Where,
    empty_hourly,
    hour_offset_s,
    typed_frame,
    where_values,
)

H_NS = 3_600 * 1_000_000_000

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
    name = "sqlite"

    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc
        self._lock = threading.RLock()
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
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS indoor_community_ts ON indoor (community, ts_ns)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS points (measurement TEXT NOT NULL, series TEXT NOT NULL, "
                "ts_ns INTEGER NOT NULL, tags TEXT NOT NULL, fields TEXT NOT NULL, "
                "PRIMARY KEY (measurement, series, ts_ns)) WITHOUT ROWID"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS points_ts ON points (measurement, ts_ns)")

    # --- writes ---------------------------------------------------------------------------
    def write(self, points: Sequence[Point]) -> None:
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
                if key not in _TYPED[meas][0]:
                    raise StoreError(f"{meas} has no tag {key!r}")
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

    def _read_sql(self, sql: str, params: Sequence[Any]) -> pd.DataFrame:
        with self._lock:
            try:
                cur = self._db.execute(sql, params)
                cols = [d[0] for d in cur.description]
                rows = cur.fetchall()
            except sqlite3.OperationalError as exc:
                raise sqlite_failure(exc, self.path, "read") from exc
            except sqlite3.DatabaseError as exc:  # a damaged file (not a programming error, which stays raised)
                raise sqlite_failure(exc, self.path, "read") from exc
        return pd.DataFrame.from_records(rows, columns=cols)

    def query(
        self,
        measurement: str,
        start: datetime,
        end: datetime,
        where: Where | None = None,
        fields: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        cond, params = self._where_sql(measurement, start, end, where)
        if measurement in _TYPED:
            tags_c, fields_c, _ = _TYPED[measurement]
            want = [f for f in (fields or fields_c)]
            unknown = set(want) - set(fields_c)
            if unknown:
                raise StoreError(f"{measurement} has no field(s) {sorted(unknown)}")
            sel = ", ".join([_q(c) for c in (*tags_c, *want)] + ["ts_ns AS time"])
            df = self._read_sql(f"SELECT {sel} FROM {_q(measurement)} WHERE {cond} ORDER BY ts_ns", params)
            return typed_frame(measurement, df, tags_c, want)
        else:
            raw = self._read_sql(f"SELECT tags, fields, ts_ns FROM points WHERE {cond} ORDER BY ts_ns", params)
            recs = []
            for t, f, ts in raw.itertuples(index=False):
                vals = json.loads(f)
                if fields:
                    vals = {k: v for k, v in vals.items() if k in fields}
                recs.append({**json.loads(t), **vals, "ts_ns": ts})
            df = pd.DataFrame.from_records(recs) if recs else pd.DataFrame({"ts_ns": pd.Series([], dtype="int64")})
        df.insert(0, "time", pd.to_datetime(df.pop("ts_ns").astype("int64"), unit="ns", utc=True))
        return df.reset_index(drop=True)

    def hourly(
        self,
        measurement: str,
        field: str,
        start: datetime,
        end: datetime,
        tz: ZoneInfo,
        by: str,
        where: Where | None = None,
    ) -> pd.DataFrame:
        off = hour_offset_s(tz, start) * 1_000_000_000
        cond, params = self._where_sql(measurement, start, end, where)
        if measurement in _TYPED:
            tags_c, fields_c, _ = _TYPED[measurement]
            if by not in tags_c or field not in fields_c:
                raise StoreError(f"{measurement} has no tag {by!r} or field {field!r}")
            val, key, table = _q(field), _q(by), _q(measurement)
        else:
            val, key, table = f"json_extract(fields, '$.\"{field}\"')", f"json_extract(tags, '$.\"{by}\"')", "points"
        sql = (
            f"SELECT {key} AS k, ((ts_ns - {off}) / {H_NS}) * {H_NS} + {off} AS h, "
            f"AVG({val}), MIN({val}), MAX({val}), COUNT({val}) FROM {table} "
            f"WHERE {cond} AND {val} IS NOT NULL GROUP BY k, h ORDER BY k, h"
        )
        df = self._read_sql(sql, params)
        if df.empty:
            return empty_hourly(by)
        df.columns = [by, "hour", "mean", "min", "max", "count"]
        df["hour"] = pd.to_datetime(df["hour"].astype("int64"), unit="ns", utc=True)
        df["count"] = df["count"].astype("int64")
        for c in ("mean", "min", "max"):
            df[c] = df[c].astype("float64")
        return df

    def last(
        self,
        measurement: str,
        field: str,
        by: str,
        where: Where | None = None,
        before: datetime | None = None,
        lookback: timedelta = timedelta(days=30),
    ) -> pd.DataFrame:
        end = before or datetime.now().astimezone()
        cond, params = self._where_sql(measurement, end - lookback, end, where)
        if measurement in _TYPED:
            if by not in _TYPED[measurement][0] or field not in _TYPED[measurement][1]:
                raise StoreError(f"{measurement} has no tag {by!r} or field {field!r}")
            val, key, table = _q(field), _q(by), _q(measurement)
        else:
            val, key, table = f"json_extract(fields, '$.\"{field}\"')", f"json_extract(tags, '$.\"{by}\"')", "points"
        # SQLite returns the bare column from the row holding MAX(ts_ns)
        sql = f"SELECT {key} AS k, MAX(ts_ns) AS t, {val} AS v FROM {table} WHERE {cond} AND {val} IS NOT NULL GROUP BY k"
        df = self._read_sql(sql, params)
        df.columns = [by, "time", "value"]
        if measurement in _TYPED and (measurement, field) not in INT_FIELDS:
            df["value"] = df["value"].astype("float64")
        df["time"] = pd.to_datetime(df["time"].astype("int64"), unit="ns", utc=True)
        return df.sort_values(by).reset_index(drop=True)

    def count(
        self,
        measurement: str,
        start: datetime,
        end: datetime,
        where: Where | None = None,
        field: str | None = None,
    ) -> int:
        cond, params = self._where_sql(measurement, start, end, where)
        table = _q(measurement) if measurement in _TYPED else "points"
        if field and measurement in _TYPED:
            if field not in _TYPED[measurement][1]:
                raise StoreError(f"{measurement} has no field {field!r}")
            cond += f" AND {_q(field)} IS NOT NULL"
        elif field:
            cond += f" AND json_extract(fields, '$.\"{field}\"') IS NOT NULL"
        with self._lock:
            try:
                return int(self._db.execute(f"SELECT COUNT(*) FROM {table} WHERE {cond}", params).fetchone()[0])
            except sqlite3.DatabaseError as exc:
                raise sqlite_failure(exc, self.path, "read") from exc

    def delete_before(self, measurement: str, before: datetime) -> None:
        table, cond = (_q(measurement), "") if measurement in _TYPED else ("points", "measurement = ? AND ")
        params = ([] if measurement in _TYPED else [measurement]) + [to_ns(before)]
        with self._lock:
            try:
                self._db.execute(f"DELETE FROM {table} WHERE {cond}ts_ns < ?", params)
            except sqlite3.Error as exc:
                raise sqlite_failure(exc, self.path, "delete") from exc

    def ping(self) -> None:
        with self._lock:
            try:
                self._db.execute("SELECT 1").fetchone()
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite store {self.path} unusable: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

