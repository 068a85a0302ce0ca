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
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd

from heatwatch.core.model import Point

Where = Mapping[str, str | Sequence[str]]

HOURLY_COLUMNS = ("hour", "mean", "min", "max", "count")


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


class Store(ABC):
    name: str = "store"

    @abstractmethod
    def write(self, points: Sequence[Point]) -> None:
        """Store points durably, or raise StoreUnavailable / StoreError."""

    @abstractmethod
    def query(
        self,
        measurement: str,
        start: datetime,
        end: datetime,
        where: Where | None = None,
        fields: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Raw points in [start, end): column ``time`` (UTC), tag columns, field columns; sorted by time."""

    @abstractmethod
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
        """Per ``by`` tag and local clock hour [h, h+1): mean, min, max, count — computed in the database.

        Columns: ``by``, ``hour`` (UTC timestamp of the hour's start), mean, min, max, count.
        Only hours with readings appear.
        """

    @abstractmethod
    def last(
        self,
        measurement: str,
        field: str,
        by: str,
        where: Where | None = None,
        before: datetime | None = None,
        lookback: timedelta = timedelta(days=30),
    ) -> pd.DataFrame:
        """The latest value per ``by`` tag: columns ``by``, ``time``, ``value``."""

    @abstractmethod
    def count(
        self,
        measurement: str,
        start: datetime,
        end: datetime,
        where: Where | None = None,
        field: str | None = None,
    ) -> int:
        """Number of points (of ``field`` when given) in [start, end)."""

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


def empty_hourly(by: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            by: pd.Series([], dtype=object),
            "hour": pd.Series([], dtype="datetime64[ns, UTC]"),
            "mean": pd.Series([], dtype=float),
            "min": pd.Series([], dtype=float),
            "max": pd.Series([], dtype=float),
            "count": pd.Series([], dtype="int64"),
        }
    )


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
    out["time"] = pd.to_datetime(df["time"].astype("int64"), unit="ns", utc=True) if len(df) else pd.Series(
        [], dtype="datetime64[ns, UTC]"
    )
    for t in tags:
        col = df[t] if t in df.columns else pd.Series([""] * len(df), index=df.index, dtype=object)
        out[t] = col.where(col.notna(), "").astype(object)
    for f in fields:
        col = df[f] if f in df.columns else pd.Series([None] * len(df), index=df.index, dtype=object)
        out[f] = pd.to_numeric(col).astype("Int64" if (measurement, f) in INT_FIELDS else "float64")
    return out.reset_index(drop=True)


def where_values(where: Where | None) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    for key, val in (where or {}).items():
        vals = [val] if isinstance(val, str) else list(val)
        out.append((key, vals))
    return out
