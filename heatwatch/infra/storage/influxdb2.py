"""InfluxDB 2.x backend: influxdb-client's write API in SYNCHRONOUS mode, Flux queries with ``params``.

SYNCHRONOUS on purpose: the client's batching mode buffers in a background thread and its
``flush()`` does nothing useful, so a "successful" write could still be lost; here ``write``
returns only after InfluxDB answered 204. Lines come from our own encoder (lineproto).

Values reach Flux only as bind parameters (influxdb-client's ``params=``, sent as option
statements in the request's AST); the only text pasted into a query is
identifiers (tag keys), written as escaped Flux string literals. Results are read as annotated
CSV (the ``#datatype`` row keeps float 21.0 a float and times in nanoseconds), table by table.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.dialect import Dialect
from influxdb_client.rest import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from heatwatch.core import schema
from heatwatch.core.config import Config, ConfigError
from heatwatch.core.model import Point
from heatwatch.core.timeutil import utc_now
from heatwatch.infra.storage.base import (
    REQUIRED_FIELD,
    HourlyArrays,
    LastArrays,
    Store,
    StoreAccessDenied,
    StoreError,
    StoreUnavailable,
    Where,
    classify_http,
    where_values,
)
from heatwatch.infra.storage.lineproto import encode

_DIALECT = Dialect(
    header=True, delimiter=",", comment_prefix="#", annotations=["datatype", "group", "default"], date_time_format="RFC3339Nano"
)
_META = {"", "result", "table", "_start", "_stop", "_measurement"}
# deploy/influxdb: init/10-heatwatch.sh creates "<bucket>_hourly"; tasks/downsample_hourly.flux writes the hourly mean of
# every series of these measurements into it, stamped at the hour's start, at 5 minutes past each hour (recomputing
# the two hours before, so a reading spooled up to ~2 h late is included)
HOURLY_SUFFIX = "_hourly"
DOWNSAMPLED = frozenset({schema.INDOOR, schema.STATION, schema.WEATHER})
HOURLY_TASK_LAG = timedelta(minutes=10)  # hour h is in the bucket after h+1 h 5 min; 5 more for the task to finish


def _floor_hour(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _ceil_hour(t: datetime) -> datetime:
    f = _floor_hour(t)
    return f if f == t else f + timedelta(hours=1)


def flux_string(text: str) -> str:
    """A Flux string literal (for identifiers only; values go in ``params``)."""
    esc = text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${").replace("\n", "\\n").replace("\r", "\\r")
    return f'"{esc}"'


class FluxBuilder:
    """A Flux pipeline and its bind parameters."""

    def __init__(self, bucket: str, measurement: str, start: datetime, stop: datetime) -> None:
        # influxdb-client sends params as ``option <name> = <literal>`` (an AST, never text)
        self.params: dict[str, Any] = {"_bucket": bucket, "_m": measurement, "_start": start, "_stop": stop}
        self.lines = [
            "from(bucket: _bucket)",
            "  |> range(start: _start, stop: _stop)",
            "  |> filter(fn: (r) => r._measurement == _m)",
        ]
        self.impossible = False

    def param(self, value: Any) -> str:
        """Bind ``value`` as a new parameter; returns its name for the query text."""
        name = f"_p{len(self.params)}"
        self.params[name] = value
        return name

    def fields(self, names: Sequence[str]) -> FluxBuilder:
        """Keep only these fields (all when empty)."""
        if names:
            alts = " or ".join(f"r._field == {self.param(n)}" for n in names)
            self.lines.append(f"  |> filter(fn: (r) => {alts})")
        return self

    def where(self, where: Where | None) -> FluxBuilder:
        """Keep rows whose tags take one of the allowed values."""
        for key, vals in where_values(where):
            if not vals:
                self.impossible = True
                continue
            col = f"r[{flux_string(key)}]"
            alts = " or ".join(f"{col} == {self.param(str(v))}" for v in vals)
            self.lines.append(f"  |> filter(fn: (r) => {alts})")
        return self

    def then(self, *lines: str) -> FluxBuilder:
        """Append pipeline lines as written (identifiers only; values go through ``param``)."""
        self.lines.extend(lines)
        return self

    def text(self) -> str:
        """The Flux program."""
        return "\n".join(self.lines)


def _convert(col: pd.Series, datatype: str) -> pd.Series:
    if datatype.startswith("dateTime"):
        return pd.to_datetime(col.replace("", None), utc=True, format="ISO8601")
    if datatype == "double":
        return pd.to_numeric(col.replace("", None)).astype("float64")
    if datatype in ("long", "unsignedLong"):
        num = pd.to_numeric(col.replace("", None))
        return num.astype("int64") if not num.isna().any() else num
    if datatype == "boolean":
        return col.map({"true": True, "false": False, "": None})
    return col.astype(object)


def _ns(col: pd.Series) -> npt.NDArray[np.int64]:
    return np.asarray(pd.DatetimeIndex(col).as_unit("ns").asi8, dtype=np.int64)


def _text_lines(resp: Any) -> Iterator[str]:
    """Decoded lines of a streamed response, split on newline only (csv joins quoted multi-line fields)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    rest = ""
    for block in resp.stream(1 << 18):
        rest += decoder.decode(block)
        *done, rest = rest.split("\n")
        yield from (d + "\n" for d in done)
    rest += decoder.decode(b"", final=True)
    if rest:
        yield rest


def _table_frame(datatypes: list[str], defaults: list[str], header: list[str], rows: list[list[str]]) -> pd.DataFrame:
    raw = pd.DataFrame(rows, columns=header, dtype=object) if rows else pd.DataFrame(columns=header, dtype=object)
    for name, default in zip(header, defaults, strict=False):
        if default and name:  # "#default" holds a column's value where the rows leave it empty (e.g. result)
            raw[name] = raw[name].replace("", default)
    if "error" in header and "reference" in header:
        raise StoreError(f"InfluxDB query failed: {raw['error'].iloc[0] if len(raw) else 'unknown error'}")
    out = {name: _convert(raw[name], dt) for name, dt in zip(header, datatypes, strict=False) if name not in ("", "table")}
    return pd.DataFrame(out)


class Influxdb2Store(Store):
    """InfluxDB 2.x: synchronous line-protocol writes, Flux reads parsed from annotated CSV."""

    name = "influxdb2"
    read_concurrency = 4  # a small pool: the server runs queries on its own cores

    def __init__(
        self, url: str, org: str, bucket: str, token: str, timeout_s: float = 10.0,
        max_batch_points: int = 50_000, table_rows: int = 50_000, hourly_bucket: str | None = None,
    ) -> None:
        """``hourly_bucket``: where deploy/influxdb's task writes the hourly means of ``bucket`` (read for
        mean-only ``hourly`` answers over hours it has written; absent or empty: the raw readings are used)."""
        self.url, self.org, self.bucket = url.rstrip("/"), org, bucket
        self.hourly_bucket = hourly_bucket
        self._hourly_bucket_missing = False
        self.max_batch_points = max_batch_points
        self.table_rows = table_rows
        self._client = InfluxDBClient(url=self.url, token=token, org=org, timeout=int(timeout_s * 1000), retries=False)
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._query_api = self._client.query_api()

    @classmethod
    def from_config(cls, cfg: Config) -> Influxdb2Store:
        """The store ``[influxdb2]`` describes (url, org and bucket are checked by the config itself)."""
        s = cfg.influxdb2
        token = cfg.secret("influxdb2", "token")
        if not token:  # only this backend needs one, so the settings cannot require it on their own
            raise ConfigError("influxdb2.token: required with storage.backend = \"influxdb2\" (set token or token_file)")
        return cls(s.url, s.org, s.bucket, token, s.timeout_s, hourly_bucket=f"{s.bucket}{HOURLY_SUFFIX}")

    def _fail(self, exc: Exception) -> Exception:
        if isinstance(exc, ApiException):
            status = int(exc.status or 0)
            text = (exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else str(exc.body or exc.reason))[:500]
            return classify_http(status, self.url, text)
        return StoreUnavailable(f"InfluxDB at {self.url} unreachable: {exc}")

    # --- writes ---------------------------------------------------------------------------
    def write(self, points: Sequence[Point]) -> None:
        """Store the points durably (see ``Store.write``)."""
        for i in range(0, len(points), self.max_batch_points):
            body = "\n".join([encode(p) for p in points[i : i + self.max_batch_points]]).encode("utf-8")
            try:
                self._write_api.write(bucket=self.bucket, org=self.org, record=body, write_precision=WritePrecision.NS)  # type: ignore[arg-type]
            except (ApiException, Urllib3Error, OSError) as exc:
                raise self._fail(exc) from exc

    # --- reads ----------------------------------------------------------------------------
    def _tables(self, flux: FluxBuilder) -> Iterator[pd.DataFrame]:
        """One frame per (piece of a) result table, parsed from the annotated CSV stream."""
        try:
            resp = self._query_api.query_raw(flux.text(), org=self.org, dialect=_DIALECT, params=flux.params)
            datatypes: list[str] = []
            defaults: list[str] = []
            header: list[str] | None = None
            rows: list[list[str]] = []
            try:
                for row in csv.reader(_text_lines(resp)):
                    if not row or row == [""]:  # a blank line ends a table
                        if header is not None and rows:
                            yield _table_frame(datatypes, defaults, header, rows)
                        header, rows = None, []
                    elif row[0] == "#datatype":
                        datatypes, defaults, header, rows = row, [], None, []
                    elif row[0] == "#default":
                        defaults = row
                    elif row[0].startswith("#"):
                        continue
                    elif header is None:
                        header = row
                    else:
                        rows.append(row)
                        if len(rows) >= self.table_rows:
                            yield _table_frame(datatypes, defaults, header, rows)
                            rows = []
                if header is not None and rows:
                    yield _table_frame(datatypes, defaults, header, rows)
            finally:
                resp.release_conn()
        except (ApiException, Urllib3Error, OSError) as exc:
            raise self._fail(exc) from exc

    def _frame(self, flux: FluxBuilder) -> pd.DataFrame:
        """The answer as one long frame: one frame per schema block of the CSV (tables of one shape share a block),
        never one per table, concatenated once."""
        frames = [f for f in self._tables(flux) if len(f)]
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def _query(
        self, measurement: str, start: datetime, end: datetime, where: Where | None, fields: list[str] | None
    ) -> pd.DataFrame:
        typed = measurement in schema.FIELDS
        flux = FluxBuilder(self.bucket, measurement, start, end).fields(fields or []).where(where)
        long = self._frame(flux)
        if long.empty:
            return pd.DataFrame({"time": np.empty(0, dtype=np.int64)})
        tag_cols = [c for c in long.columns if c not in _META and not c.startswith("_")]
        long[tag_cols] = long[tag_cols].fillna("")
        wide = long.pivot_table(index=["_time", *tag_cols], columns="_field", values="_value", aggfunc="last", dropna=False)
        wide = wide.reset_index().rename(columns={"_time": "time"}).sort_values("time", kind="stable")
        wide.columns.name = None
        wide = wide.dropna(how="all", subset=[c for c in wide.columns if c not in ("time", *tag_cols)])
        if typed:
            return wide
        for col in wide.columns:
            if col not in ("time", *tag_cols):
                vals = long.loc[long["_field"] == col, "_value"]
                if len(vals) and all(isinstance(v, float) for v in vals):
                    wide[col] = wide[col].astype("float64")
        return wide

    def _hourly(
        self, measurement: str, field: str, start: datetime, end: datetime, offset_s: int, by: str,
        where: Where | None, stats: tuple[str, ...],
    ) -> HourlyArrays:
        # hourly means alone, on whole UTC hours, of a downsampled measurement: the whole hours the downsampling task
        # has already written come from the hourly bucket (24 points a day per series); the rest from the readings
        segments: list[tuple[datetime, datetime, bool]] = [(start, end, False)]
        if (stats == ("mean",) and offset_s == 0 and measurement in DOWNSAMPLED and self.hourly_bucket
                and not self._hourly_bucket_missing):
            h0, h1 = _ceil_hour(start), _floor_hour(min(end, utc_now() - HOURLY_TASK_LAG))
            if h0 < h1:
                segments = [seg for seg in ((start, h0, False), (h0, h1, True), (h1, end, False)) if seg[0] < seg[1]]
        parts = []
        for a, b, downsampled in segments:
            got = self._from_hourly_bucket(measurement, field, a, b, by, where) if downsampled else None
            parts.append(got if got is not None else self._hourly_from(self.bucket, measurement, field, a, b, offset_s, by,
                                                                        where, stats))
        if len(parts) == 1:
            return parts[0]
        return HourlyArrays(np.concatenate([p.keys for p in parts]), np.concatenate([p.hour_ns for p in parts]),
                            {st: np.concatenate([p.stats[st] for p in parts]) for st in stats})

    def _from_hourly_bucket(self, measurement: str, field: str, start: datetime, end: datetime, by: str,
                            where: Where | None) -> HourlyArrays | None:
        """Hourly means from the downsampled bucket, or None when it is not there or has nothing for these hours
        (no such bucket, or its task is not running): then the caller reads the raw readings."""
        try:
            got = self._hourly_from(self.hourly_bucket or "", measurement, field, start, end, 0, by, where, ("mean",))
        except StoreAccessDenied as exc:  # 404: no such bucket (a deployment without deploy/influxdb's init)
            if "not found" not in str(exc) and "could not find bucket" not in str(exc):
                raise
            self._hourly_bucket_missing = True
            return None
        return got if len(got.hour_ns) else None

    def _hourly_from(
        self, bucket: str, measurement: str, field: str, start: datetime, end: datetime, offset_s: int, by: str,
        where: Where | None, stats: tuple[str, ...],
    ) -> HourlyArrays:
        flux = FluxBuilder(bucket, measurement, start, end).fields([field]).where(where)
        off = flux.param(timedelta(seconds=offset_s))
        flux.lines[0] = "data = " + flux.lines[0]
        flux.then(f"  |> group(columns: [{flux_string(by)}])")
        for fn in stats:
            flux.then(
                f"data |> aggregateWindow(every: 1h, offset: {off}, fn: {fn}, createEmpty: false, timeSrc: \"_start\")"
                f" |> yield(name: \"{fn}\")"
            )
        long = self._frame(flux)
        if long.empty:
            return HourlyArrays.empty(stats)
        keys = long[by].fillna("").to_numpy(dtype=object) if by in long.columns else np.full(len(long), "", dtype=object)
        hours = _ns(long["_time"])
        # one row per (key, hour) and a column per yield, aligned by codes rather than a pivot
        pair, uniq = pd.factorize(pd.MultiIndex.from_arrays([keys, hours]))
        result = long["result"].to_numpy(dtype=object)
        value = pd.to_numeric(long["_value"]).to_numpy(dtype=np.float64)
        out: dict[str, npt.NDArray[Any]] = {}
        for s in stats:
            col = np.full(len(uniq), 0 if s == "count" else np.nan)
            m = result == s
            col[pair[m]] = value[m]
            out[s] = col
        return HourlyArrays(uniq.get_level_values(0).to_numpy(dtype=object), uniq.get_level_values(1).to_numpy(np.int64), out)

    def _last(
        self, measurement: str, field: str, by: str, where: Where | None, start: datetime, end: datetime
    ) -> LastArrays:
        flux = FluxBuilder(self.bucket, measurement, start, end).fields([field]).where(where)
        # the last point of every series (pushed down), then the latest of those per `by`
        flux.then("  |> last()", f"  |> group(columns: [{flux_string(by)}])", '  |> sort(columns: ["_time"])', "  |> last()")
        df = self._frame(flux)
        if df.empty:
            return LastArrays(np.empty(0, dtype=object), np.empty(0, dtype=np.int64), np.empty(0))
        keys = df[by].fillna("").to_numpy(dtype=object) if by in df.columns else np.full(len(df), "", dtype=object)
        return LastArrays(keys, _ns(df["_time"]), df["_value"].to_numpy())

    def _count(self, measurement: str, start: datetime, end: datetime, where: Where | None, field: str | None) -> int:
        target = field or REQUIRED_FIELD.get(measurement)
        flux = FluxBuilder(self.bucket, measurement, start, end).fields([target] if target else []).where(where)
        # per-series counts (pushed down), summed per field; the widest field is the number of points
        flux.then("  |> count()", '  |> group(columns: ["_field"])', "  |> sum()", "  |> group()", "  |> max()")
        df = self._frame(flux)
        return int(df["_value"].iloc[0]) if len(df) and "_value" in df.columns else 0

    def delete_before(self, measurement: str, before: datetime) -> None:
        """Delete the measurement's points before ``before`` (see ``Store.delete_before``)."""
        predicate = f"_measurement={flux_string(measurement)}"  # the delete predicate syntax quotes like Flux strings
        try:
            self._client.delete_api().delete(datetime(1970, 1, 1, tzinfo=UTC), before, predicate, bucket=self.bucket, org=self.org)
        except (ApiException, Urllib3Error, OSError) as exc:
            raise self._fail(exc) from exc

    def ping(self) -> None:
        """Raise StoreUnavailable when the store cannot be reached."""
        if not self._client.ping():
            raise StoreUnavailable(f"InfluxDB at {self.url} does not answer /ping")

    def close(self) -> None:
        """Release the connections."""
        self._write_api.close()
        self._client.close()

