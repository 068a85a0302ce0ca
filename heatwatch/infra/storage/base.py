"""The storage contract every backend fulfils (sqlite, influxdb1, influxdb2).

Writes are idempotent: the same series (measurement + tags) and timestamp overwrite, so an
MQTT redelivery never duplicates a reading. ``write`` returns only once the points are
durable; a backend that cannot reach its server raises ``StoreUnavailable`` so the collector
spools instead of losing them.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pandas as pd

from heatwatch.core import schema
from heatwatch.core.model import Point
from heatwatch.core.timeutil import utc_now

Where = Mapping[str, str | Sequence[str]]



class StoreUnavailable(Exception):
    """The store cannot be reached now; retry later (the collector spools meanwhile)."""

    alarm: str | None = None  # set on the kinds an operator must act on; the collector counts them (store_alarms)


class StoreError(Exception):
    """The store refused the request; retrying the same request will not help."""


class StoreAccessDenied(StoreUnavailable):
    """The store answered but will not take the request until an operator acts: wrong credentials or token (401/403),
    database or bucket missing (404). The readings are fine, so the collector spools them and retries; it never
    dead-letters them for a configuration mistake."""

    alarm = "access_denied"


class StoreCapacityError(StoreUnavailable):
    """The store is full or at a configured limit (series, tag values, disk, cache, plan). The readings are fine and
    will be taken once an operator raises the limit or frees space, so they are spooled, never dead-lettered."""

    def __init__(self, message: str, alarm: str = "store_capacity") -> None:
        super().__init__(message)
        self.alarm = alarm


class StoreCorrupt(StoreUnavailable):
    """The store reports its own files as damaged. Not the readings' fault: spooled until it is repaired or restored."""

    alarm = "store_corrupt"


# HTTP answers that say "not now, not with this configuration" rather than "not this data"
ACCESS_STATUSES = frozenset({401, 403, 404})
RETRY_STATUSES = frozenset({408, 425, 429})


# Answers that say "the store is full, at a limit or damaged" whatever their status (1.x answers a tag-value limit
# with 400 "partial write", like bad data): (pattern, alarm code). InfluxDB 1.x wording, 1.0-1.2 wording, 2.x/Cloud.
CAPACITY_ANSWERS = (
    (re.compile(r"max-values-per-tag limit exceeded|max values per tag exceeded"), "max_values_per_tag"),
    (re.compile(r"max-series-per-database limit exceeded|max series per database exceeded|series cardinality limit"
                r"|exceeded limited_cardinality"), "max_series"),
    (re.compile(r"no space left on device|database or disk is full|disk quota exceeded"), "disk_full"),
    (re.compile(r"cache-max-memory-size exceeded|cache maximum memory size exceeded"), "cache_full"),
    (re.compile(r"exceeded limited_\w+ plan limit"), "plan_limit"),
)
CORRUPT_ANSWER = re.compile(r"\bcorrupt|checksum mismatch|malformed")


def classify_http(status: int, url: str, text: str) -> Exception:
    """The store exception for an HTTP error answer from InfluxDB (1.x, 2.x and 3.x answer alike)."""
    if "unable to parse" not in text:  # a parse error quotes the line: words in the data must not pass for an alarm
        for pattern, alarm in CAPACITY_ANSWERS:
            if pattern.search(text):
                return StoreCapacityError(f"InfluxDB at {url} is at a limit ({status}): {text} — raise the limit or free "
                                          "space; readings are kept in the spool meanwhile", alarm)
        if status >= 500 and CORRUPT_ANSWER.search(text):
            return StoreCorrupt(f"InfluxDB at {url} reports damaged data files ({status}): {text} — repair or restore it; "
                                "readings are kept in the spool meanwhile")
    if status in ACCESS_STATUSES:
        return StoreAccessDenied(f"InfluxDB at {url} denied the request ({status}): {text} — check the database/bucket "
                                 "and the credentials or token; readings are kept in the spool meanwhile")
    if status >= 500 or status in RETRY_STATUSES or status == 0:
        return StoreUnavailable(f"InfluxDB at {url} failed ({status}): {text}")
    return StoreError(f"InfluxDB refused the request ({status}): {text}")


def hour_offset_s(tz: ZoneInfo, at: datetime) -> int:
    """Seconds past the UTC hour at which local hours start (0 for Asia/Shanghai, 1800 for India)."""
    off = tz.utcoffset(at.replace(tzinfo=None))
    return int(off.total_seconds() if off else 0) % 3600


REQUIRED_FIELD = {schema.INDOOR: "temp_c", schema.STATION: "supply_c", schema.WEATHER: "temp_c", schema.FORECAST: "temp_c"}
"""The field every point of an input measurement carries: ``count`` without a field counts it."""

HOURLY_STATS = ("mean", "min", "max", "count")


@dataclass(frozen=True)
class HourlyArrays:
    """One ``hourly`` answer as flat columns (row i: key[i], hour_ns[i], stats[s][i]), in any order.

    Backends fill these straight from the wire (JSON / CSV / SQL rows), so a city-sized answer becomes
    a handful of numpy arrays and one frame, never a frame per series.
    """

    keys: npt.NDArray[np.object_]
    hour_ns: npt.NDArray[np.int64]
    stats: Mapping[str, npt.NDArray[Any]]

    @staticmethod
    def empty(stats: Sequence[str]) -> HourlyArrays:
        """No rows, with the columns of ``stats``."""
        return HourlyArrays(np.empty(0, dtype=object), np.empty(0, dtype=np.int64),
                            {s: np.empty(0, dtype=np.int64 if s == "count" else np.float64) for s in stats})


@dataclass(frozen=True)
class LastArrays:
    """One ``last`` answer as flat columns: the ``by`` value, the time (UTC ns) and the value of each latest point."""

    keys: npt.NDArray[np.object_]
    time_ns: npt.NDArray[np.int64]
    values: npt.NDArray[Any]


def impossible(where: Where | None) -> bool:
    """An empty list of allowed values matches nothing: no request needs to reach the store."""
    return any(not vals for _, vals in where_values(where))


class Store(ABC):
    """The storage contract. The public read methods check the request against the schema, answer the
    trivially empty cases and shape the result here, once; backends implement the ``_``-prefixed parts."""

    name: str = "store"
    read_concurrency: int = 1  # reads that may usefully run at once (analytics partitions use this many threads)

    @abstractmethod
    def write(self, points: Sequence[Point]) -> None:
        """Store points durably, or raise StoreUnavailable / StoreError."""

    # --- reads: the contract ----------------------------------------------------------------
    def query(
        self,
        measurement: str,
        start: datetime,
        end: datetime,
        where: Where | None = None,
        fields: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Raw points in [start, end): column ``time`` (UTC), tag columns, field columns; sorted by time.

        Input measurements (schema.FIELDS) come typed (``typed_frame``); derived ones with whatever fields exist.
        """
        check_where(measurement, where)
        if measurement in schema.FIELDS:
            tags, declared = schema.TAGS[measurement], schema.FIELDS[measurement]
            want = list(fields or declared)
            unknown = set(want) - set(declared)
            if unknown:
                raise StoreError(f"{measurement} has no field(s) {sorted(unknown)}")
            if impossible(where):
                return typed_frame(measurement, pd.DataFrame({"time": []}), tags, want)
            return typed_frame(measurement, self._query(measurement, start, end, where, want), tags, want)
        if impossible(where):
            return empty_raw()
        df = self._query(measurement, start, end, where, list(fields) if fields else None)
        if df.empty:
            return empty_raw()
        if not isinstance(df["time"].dtype, pd.DatetimeTZDtype):
            df["time"] = pd.to_datetime(df["time"].astype("int64"), unit="ns", utc=True)
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
        stats: Sequence[str] = HOURLY_STATS,
    ) -> pd.DataFrame:
        """Per ``by`` tag and local clock hour [h, h+1): mean, min, max, count — computed in the database.

        Columns: ``by``, ``hour`` (UTC timestamp of the hour's start), then ``stats`` (a subset of mean, min,
        max, count, in that order: ask only for what you use — each aggregate is a pass in the database).
        Only hours with readings appear; rows sorted by ``by`` and hour.
        """
        want = hourly_stats(stats)
        check_hourly(measurement, field, by, where)
        if impossible(where):
            return empty_hourly(by, want)
        arrays = self._hourly(measurement, field, start, end, hour_offset_s(tz, start), by, where, want)
        return hourly_frame(by, arrays, want)

    def last(
        self,
        measurement: str,
        field: str,
        by: str,
        where: Where | None = None,
        before: datetime | None = None,
        lookback: timedelta = timedelta(days=30),
    ) -> pd.DataFrame:
        """The latest value per ``by`` tag in [before - lookback, before): columns ``by``, ``time``, ``value``."""
        check_hourly(measurement, field, by, where)
        if impossible(where):
            return empty_last(by)
        end = before or utc_now()
        arrays = self._last(measurement, field, by, where, end - lookback, end)
        return last_frame(measurement, field, by, arrays)

    def count(
        self,
        measurement: str,
        start: datetime,
        end: datetime,
        where: Where | None = None,
        field: str | None = None,
    ) -> int:
        """Number of points (of ``field`` when given) in [start, end)."""
        check_where(measurement, where)
        if field is not None and measurement in schema.FIELDS and field not in schema.FIELDS[measurement]:
            raise StoreError(f"{measurement} has no field {field!r}")
        if impossible(where):
            return 0
        return self._count(measurement, start, end, where, field)

    # --- reads: what each backend implements --------------------------------------------------
    @abstractmethod
    def _query(
        self, measurement: str, start: datetime, end: datetime, where: Where | None, fields: list[str] | None
    ) -> pd.DataFrame:
        """Raw rows with column ``time`` (UTC ns or datetime) first. For an input measurement: the tag and field
        columns present (``typed_frame`` shapes them); for a derived one: every field, typed, or only ``fields``."""

    @abstractmethod
    def _hourly(
        self, measurement: str, field: str, start: datetime, end: datetime, offset_s: int, by: str,
        where: Where | None, stats: tuple[str, ...],
    ) -> HourlyArrays:
        """The aggregates ``stats`` per ``by`` and hour [h, h+1), hours starting ``offset_s`` past the UTC hour."""

    @abstractmethod
    def _last(
        self, measurement: str, field: str, by: str, where: Where | None, start: datetime, end: datetime
    ) -> LastArrays:
        """The latest point of ``field`` per ``by`` value in [start, end)."""

    @abstractmethod
    def _count(self, measurement: str, start: datetime, end: datetime, where: Where | None, field: str | None) -> int:
        """Points in [start, end); of ``field`` when given, else of ``REQUIRED_FIELD`` (or all, derived)."""

    def delete_before(self, measurement: str, before: datetime) -> None:
        """Delete the points of ``measurement`` stamped before ``before`` (retention of dead letters, docs/SCHEMA.md)."""
        raise StoreError(f"the {self.name} store cannot delete points")

    @abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailable when the store cannot be reached."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the contract's checks and shapes, shared by every backend ---------------------------------------
def check_where(measurement: str, where: Where | None) -> None:
    """Input measurements have a fixed set of tags: filtering on another is a mistake, not an empty answer."""
    tags = schema.TAGS.get(measurement)
    if tags is None:
        return
    for key, _ in where_values(where):
        if key not in tags:
            raise StoreError(f"{measurement} has no tag {key!r}")


def check_hourly(measurement: str, field: str, by: str, where: Where | None) -> None:
    """``check_where``, and the grouping tag and the field must be the measurement's own (input measurements)."""
    check_where(measurement, where)
    if measurement in schema.FIELDS and (by not in schema.TAGS[measurement] or field not in schema.FIELDS[measurement]):
        raise StoreError(f"{measurement} has no tag {by!r} or field {field!r}")


def hourly_stats(stats: Sequence[str]) -> tuple[str, ...]:
    """The requested aggregates in canonical order (mean, min, max, count), or StoreError for anything else."""
    unknown = set(stats) - set(HOURLY_STATS)
    if unknown or not stats:
        raise StoreError(f"hourly: stats must be a non-empty subset of {HOURLY_STATS}, got {list(stats)}")
    return tuple(s for s in HOURLY_STATS if s in stats)


def empty_raw() -> pd.DataFrame:
    """A raw query of a derived measurement without rows: just the ``time`` column."""
    return pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]")})


def empty_last(by: str) -> pd.DataFrame:
    """A ``last`` answer without rows, with its columns and dtypes."""
    return pd.DataFrame({by: pd.Series([], dtype=object), "time": pd.Series([], dtype="datetime64[ns, UTC]"),
                         "value": pd.Series([], dtype="float64")})


def _utc(ns: npt.NDArray[np.int64]) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(np.asarray(ns, dtype="datetime64[ns]")).tz_localize("UTC")


def hourly_frame(by: str, a: HourlyArrays, stats: tuple[str, ...]) -> pd.DataFrame:
    """The one frame of an ``hourly`` answer: typed columns, sorted by ``by`` then hour."""
    n = len(a.hour_ns)
    if n == 0:
        return empty_hourly(by, stats)
    keys = np.asarray(a.keys, dtype=object)
    hours = np.asarray(a.hour_ns, dtype=np.int64)
    codes, _ = pd.factorize(keys, sort=True)  # integer codes in key order: a numeric sort instead of string compares
    order = np.lexsort((hours, codes))
    cols: dict[str, Any] = {by: keys[order], "hour": _utc(hours[order])}
    for s in stats:
        v = np.asarray(a.stats[s])[order]
        cols[s] = v.astype(np.int64) if s == "count" else v.astype(np.float64)
    df = pd.DataFrame(cols)
    df[by] = df[by].astype(object)
    return df


def last_frame(measurement: str, field: str, by: str, a: LastArrays) -> pd.DataFrame:
    """The one frame of a ``last`` answer, sorted by ``by``; values float64 unless the field is an integer field
    (input measurements) or the store kept another type (derived measurements)."""
    if len(a.time_ns) == 0:
        return empty_last(by)
    keys = np.asarray(a.keys, dtype=object)
    order = np.argsort(keys, kind="stable")
    values = a.values[order]
    if measurement in schema.FIELDS and (measurement, field) not in INT_FIELDS:
        values = values.astype(np.float64)
    df = pd.DataFrame({by: keys[order], "time": _utc(np.asarray(a.time_ns, dtype=np.int64)[order]), "value": values})
    df[by] = df[by].astype(object)
    return df


def empty_hourly(by: str, stats: Sequence[str] = HOURLY_STATS) -> pd.DataFrame:
    """An ``hourly`` answer without rows, with its columns and dtypes."""
    cols: dict[str, pd.Series] = {by: pd.Series([], dtype=object), "hour": pd.Series([], dtype="datetime64[ns, UTC]")}
    for s in stats:
        cols[s] = pd.Series([], dtype="int64" if s == "count" else "float64")
    return pd.DataFrame(cols)


# fields of the input measurements that are integers; every other declared field is a float
INT_FIELDS = frozenset({("forecast", "issued_s")})


def typed_frame(
    measurement: str, df: pd.DataFrame, tags: Sequence[str], fields: Sequence[str]
) -> pd.DataFrame:
    """Raw-query result of an input measurement in the one shape every backend returns.

    Columns ``time`` (datetime64[ns, UTC]), the tags ('' when absent), the fields (float64,
    or Int64 for integer fields), in that order — also when there are no rows.
    """
    out = pd.DataFrame(index=df.index)
    if not len(df):
        out["time"] = pd.Series([], dtype="datetime64[ns, UTC]")
    elif isinstance(df["time"].dtype, pd.DatetimeTZDtype):
        out["time"] = df["time"].dt.tz_convert("UTC").dt.as_unit("ns")
    else:
        out["time"] = pd.to_datetime(df["time"].astype("int64"), unit="ns", utc=True)
    for t in tags:
        col = df[t] if t in df.columns else pd.Series([""] * len(df), index=df.index, dtype=object)
        out[t] = col.where(col.notna(), "").astype(object)
    for f in fields:
        col = df[f] if f in df.columns else pd.Series([None] * len(df), index=df.index, dtype=object)
        out[f] = pd.to_numeric(col).astype("Int64" if (measurement, f) in INT_FIELDS else "float64")
    return out.reset_index(drop=True)


def where_values(where: Where | None) -> list[tuple[str, list[str]]]:
    """``where`` as (tag, allowed values) pairs; a single value becomes a list of one."""
    out: list[tuple[str, list[str]]] = []
    for key, val in (where or {}).items():
        vals = [val] if isinstance(val, str) else list(val)
        out.append((key, vals))
    return out
