"""InfluxDB 1.x HTTP API backend: line protocol to ``/write``, InfluxQL to ``/query``.

Only InfluxQL that 1.x, 2.x's 1.x-compatibility API and InfluxDB 3 all accept is used, values
always travel as bind parameters (``params``), and identifiers are quoted. Results are read as
InfluxDB's chunked JSON stream and turned into DataFrames chunk by chunk, so a million-row answer
never exists as one giant JSON document or list of Python rows.

Error mapping (the collector spools on StoreUnavailable and dead-letters on StoreError; ``classify_http``):
connection errors, timeouts and 5xx → ``StoreUnavailable``; 401/403/404 → ``StoreAccessDenied``;
a limit or a full disk (``partial write: max-values-per-tag limit exceeded`` is a 400) →
``StoreCapacityError``; other 4xx (bad line, field type conflict) → ``StoreError`` with
InfluxDB's own message. A database dropped at runtime is created again on the next write
(when ``create_database`` is on, as at start).
"""

from __future__ import annotations

import base64
import gzip
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from heatwatch.core import schema
from heatwatch.core.config import Config
from heatwatch.core.model import Point
from heatwatch.core.timeutil import to_ns
from heatwatch.infra.storage.base import (
    INT_FIELDS,
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

log = logging.getLogger(__name__)

def quote_ident(name: str) -> str:
    """An InfluxQL double-quoted identifier (measurement, tag or field name)."""
    if not name or "\n" in name or "\r" in name:
        raise StoreError(f"invalid name {name!r} for an InfluxQL identifier")
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _lines(resp: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """Newline-separated JSON documents of a chunked /query answer, as they arrive."""
    rest = b""
    for block in resp.stream(1 << 18):
        rest += block
        if b"\n" not in block:
            continue
        *done, rest = rest.split(b"\n")
        yield from (d for d in done if d.strip())
    if rest.strip():
        yield rest


def _placed(row: list[Any], pos: list[int], width: int) -> list[Any]:
    out: list[Any] = [None] * width
    for p, v in zip(pos, row, strict=True):
        out[p] = v
    return out


def _to_array(vals: list[Any], kind: str) -> npt.NDArray[Any]:
    """One column of rows as numpy: int (time, count), float (null → NaN), text (null → ''), or value (numbers
    as a numeric array when they all are numbers, else objects: a derived field may be a string)."""
    if kind == "int":
        return np.fromiter(vals, dtype=np.int64, count=len(vals))
    if kind == "float":
        return np.array(vals, dtype=np.float64)
    if kind == "value" and all(type(v) is float or type(v) is int for v in vals):
        return np.array(vals, dtype=np.float64 if any(type(v) is float for v in vals) else np.int64)
    out = np.empty(len(vals), dtype=object)
    out[:] = ["" if v is None else v for v in vals] if kind == "text" else vals
    return out


class _Answer:
    """An answer's rows, every series together (never an object per series).

    With ``kinds`` (column → int / float / text / value / object) the rows become numpy columns every
    ``CHUNK_ROWS`` rows, so a city-sized answer is held as compact arrays plus one chunk of Python rows.
    Without, the rows stay Python values (small answers of derived measurements, typed by pandas).
    """

    CHUNK_ROWS = 50_000

    def __init__(self, kinds: Mapping[str, str] | None = None) -> None:
        self.kinds = kinds
        self.columns: list[str] = []
        self.rows: list[list[Any]] = []
        self.n = 0
        self._parts: dict[str, list[npt.NDArray[Any]]] = {}
        self._keys: list[str] = []
        self._counts: list[int] = []
        self.arrays: dict[str, npt.NDArray[Any]] = {}
        self.keys: npt.NDArray[np.object_] = np.empty(0, dtype=object)

    def add(self, tag_value: str | None, cols: list[str], values: list[list[Any]]) -> None:
        if not self.columns:
            self.columns = list(cols)
        elif cols != self.columns:  # another shape (never for one SELECT of ours, but cheap to be right)
            self._flush()
            union = self.columns + [c for c in cols if c not in self.columns]
            self.rows = [r + [None] * (len(union) - len(self.columns)) for r in self.rows]
            self.columns = union
            pos = [union.index(c) for c in cols]
            values = [_placed(v, pos, len(union)) for v in values]
        self.rows.extend(values)
        self.n += len(values)
        if tag_value is not None:
            self._keys.append(tag_value)
            self._counts.append(len(values))
        if self.kinds is not None and len(self.rows) >= self.CHUNK_ROWS:
            self._flush()

    def column(self, name: str) -> list[Any]:
        """The unconverted values of one column (None where a row has none)."""
        if name not in self.columns:
            return [None] * len(self.rows)
        i = self.columns.index(name)
        return [r[i] for r in self.rows]

    def _flush(self) -> None:
        if self.kinds is None or not self.rows:
            return
        for name, kind in self.kinds.items():
            self._parts.setdefault(name, []).append(_to_array(self.column(name), kind))
        self.rows = []

    def finish(self) -> _Answer:
        self._flush()
        if self.kinds is not None:
            for name, kind in self.kinds.items():
                parts = self._parts.get(name) or [_to_array([], kind)]
                self.arrays[name] = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if self._counts:
            self.keys = np.repeat(np.array(self._keys, dtype=object), self._counts)
        return self


class _Cond:
    """WHERE clause text with its bind parameters (values never enter the query text)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.params: dict[str, Any] = {}
        self.impossible = False  # an empty value list: nothing can match

    def param(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return "$" + name

    def time_range(self, start: datetime, end: datetime) -> None:
        self.parts.append(f"time >= {self.param(to_ns(start))} AND time < {self.param(to_ns(end))}")

    def tags(self, where: Where | None) -> None:
        for key, vals in where_values(where):
            if not vals:
                self.impossible = True
                continue
            ident = quote_ident(key)
            alts = " OR ".join(f"{ident} = {self.param(str(v))}" for v in vals)
            self.parts.append(f"({alts})" if len(vals) > 1 else alts)

    def sql(self) -> str:
        return " WHERE " + " AND ".join(self.parts) if self.parts else ""


class Influxdb1Store(Store):
    """InfluxDB 1.x (and the 1.x API of 2.x / 3.x) over HTTP: line protocol writes, InfluxQL reads."""

    name = "influxdb1"
    read_concurrency = 4  # a small pool: the server runs queries on its own cores

    def __init__(
        self,
        url: str,
        database: str,
        retention_policy: str = "",
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        create_database: bool = True,
        chunk_size: int = 10_000,
        gzip_min_bytes: int = 256 * 1024,
        max_body_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.rp = retention_policy
        self.create_database = create_database
        self.chunk_size = chunk_size
        self.gzip_min_bytes = gzip_min_bytes
        self.max_body_bytes = max_body_bytes
        headers: dict[str, str] = {}
        if username:
            # UTF-8, as influxd reads it: urllib3's make_headers encodes Latin-1 and fails on a Chinese password
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        self._http = urllib3.PoolManager(
            num_pools=2,
            maxsize=8,
            headers=headers,
            retries=False,  # the collector decides about retries (spool); never hide an outage here
            timeout=urllib3.Timeout(connect=min(timeout_s, 5.0), read=timeout_s),
        )
        self._ready = not create_database
        self._ready_lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: Config) -> Influxdb1Store:
        """The store ``[influxdb1]`` describes (url and database are checked by the config itself)."""
        s = cfg.influxdb1
        return cls(
            s.url,
            s.database,
            s.retention_policy,
            s.username,
            cfg.secret("influxdb1", "password"),
            s.timeout_s,
            s.create_database,
        )

    # --- HTTP -----------------------------------------------------------------------------
    def _request(
        self, method: str, path: str, *, body: bytes | None = None, fields: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None, stream: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        try:
            if fields is not None:
                resp = self._http.request(
                    method, self.url + path, fields=dict(fields), encode_multipart=False, preload_content=not stream
                )
            else:
                # urllib3 replaces the pool's default headers (the credentials) when a request passes its own
                resp = self._http.request(
                    method, self.url + path, body=body, headers={**self._http.headers, **(headers or {})},
                    preload_content=not stream,
                )
        except (Urllib3Error, OSError) as exc:
            raise StoreUnavailable(f"InfluxDB at {self.url} unreachable: {exc}") from exc
        if resp.status >= 300:
            raise classify_http(resp.status, self.url, self._error_text(resp))
        return resp

    @staticmethod
    def _error_text(resp: urllib3.BaseHTTPResponse) -> str:
        try:
            raw = resp.data
        except (Urllib3Error, OSError):
            raw = b""
        try:
            return str(orjson.loads(raw).get("error", raw.decode("utf-8", "replace")))
        except (orjson.JSONDecodeError, AttributeError):
            return raw.decode("utf-8", "replace")[:500] or resp.reason or "no detail"

    def _ensure_database(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            try:
                self._statement(f"CREATE DATABASE {quote_ident(self.database)}")
            except (StoreError, StoreAccessDenied) as exc:  # no admin rights, or a 2.x/3.x server: it must exist already
                log.warning("could not create database %r (%s); assuming it exists", self.database, exc)
            self._ready = True

    def _statement(self, q: str) -> None:
        resp = self._request("POST", "/query", fields={"q": q})
        for result in orjson.loads(resp.data).get("results", []):
            if "error" in result:
                raise StoreError(f"InfluxDB: {result['error']}")

    # --- writes ---------------------------------------------------------------------------
    def write(self, points: Sequence[Point]) -> None:
        """Store the points durably (see ``Store.write``)."""
        if not points:
            return
        # here, not at import: it loads influxdb-client (~11 MB, 0.15 s), which a process that only reads never needs
        from heatwatch.infra.storage.lineproto import encode

        self._ensure_database()
        lines: list[str] = []
        size = 0
        for p in points:
            line = encode(p)
            lines.append(line)
            size += len(line) + 1
            if size >= self.max_body_bytes:
                self._post_lines(lines)
                lines, size = [], 0
        if lines:
            self._post_lines(lines)

    def _post_lines(self, lines: list[str]) -> None:
        body = "\n".join(lines).encode("utf-8")
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if len(body) >= self.gzip_min_bytes:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        query = {"db": self.database, "precision": "ns"}
        if self.rp:
            query["rp"] = self.rp
        path = "/write?" + urlencode(query)
        try:
            self._request("POST", path, body=body, headers=headers)
        except StoreAccessDenied as exc:  # 404 "database not found"
            if "database not found" in str(exc) and self.create_database:
                log.warning("database %r is gone (dropped while we were writing?): creating it again", self.database)
                self._ready = False
                self._ensure_database()
                self._request("POST", path, body=body, headers=headers)  # once; a second 404 is spooled by the caller
                return
            raise

    # --- reads ----------------------------------------------------------------------------
    def _from(self, measurement: str) -> str:
        if self.rp:
            return f"{quote_ident(self.database)}.{quote_ident(self.rp)}.{quote_ident(measurement)}"
        return quote_ident(measurement)

    def _series(self, q: str, params: Mapping[str, Any],
                epoch: str = "ns") -> Iterator[tuple[dict[str, str], list[str], list[list[Any]]]]:
        """(tags, columns, rows) per series piece, read from InfluxDB's chunked JSON stream."""
        self._ensure_database()
        fields = {
            "db": self.database,
            "q": q,
            "epoch": epoch,
            "params": orjson.dumps(dict(params)).decode(),
            "chunked": "true",
            "chunk_size": str(self.chunk_size),
        }
        if self.rp:
            fields["rp"] = self.rp
        resp = self._request("POST", "/query", fields=fields, stream=True)
        try:
            for line in _lines(resp):
                doc = orjson.loads(line)
                if "error" in doc:
                    raise StoreError(f"InfluxDB query failed: {doc['error']}")
                for result in doc.get("results", []):
                    if "error" in result:
                        if str(result["error"]).startswith("database not found"):
                            return
                        raise StoreError(f"InfluxDB query failed: {result['error']} (query: {q})")
                    for s in result.get("series", []):
                        yield s.get("tags") or {}, s["columns"], s.get("values") or []
        except (Urllib3Error, OSError) as exc:
            raise StoreUnavailable(f"InfluxDB at {self.url}: connection lost while reading: {exc}") from exc
        except orjson.JSONDecodeError as exc:
            raise StoreUnavailable(f"InfluxDB at {self.url}: truncated or invalid response: {exc}") from exc
        finally:
            resp.release_conn()

    def _collect(self, q: str, params: Mapping[str, Any], tag: str | None = None,
                 kinds: Mapping[str, str] | None = None, epoch: str = "ns") -> _Answer:
        """Every series piece of the answer in one ``_Answer``, with each row's ``tag`` value when asked."""
        ans = _Answer(kinds)
        for tags, cols, values in self._series(q, params, epoch):
            ans.add(None if tag is None else tags.get(tag, ""), cols, values)
        return ans.finish()

    def _field_types(self, measurement: str) -> dict[str, str]:
        types: dict[str, str] = {}
        for _, _, rows in self._series(f"SHOW FIELD KEYS FROM {self._from(measurement)}", {}):
            types.update({str(k): str(t) for k, t in rows})
        return types

    def _cond(self, start: datetime, end: datetime, where: Where | None) -> _Cond:
        cond = _Cond()
        cond.time_range(start, end)
        cond.tags(where)
        return cond

    def _query(
        self, measurement: str, start: datetime, end: datetime, where: Where | None, fields: list[str] | None
    ) -> pd.DataFrame:
        cond = self._cond(start, end, where)
        if measurement in schema.FIELDS:
            tags, want = schema.TAGS[measurement], list(fields or ())
            sel = ", ".join(quote_ident(c) for c in (*want, *tags))
            kinds = {"time": "int", **{t: "text" for t in tags},
                     **{f: "object" if (measurement, f) in INT_FIELDS else "float" for f in want}}
            ans = self._collect(f"SELECT {sel} FROM {self._from(measurement)}{cond.sql()}", cond.params, kinds=kinds)
            return pd.DataFrame(ans.arrays)
        # derived measurement: whatever fields exist, typed as InfluxDB declares them
        types = self._field_types(measurement)
        ans = self._collect(f"SELECT * FROM {self._from(measurement)}{cond.sql()}", cond.params)
        if not ans.n:
            return pd.DataFrame({"time": np.empty(0, dtype=np.int64)})
        names = [c for c in ans.columns if c == "time" or c not in types or not fields or c in fields]
        df = pd.DataFrame({c: ans.column(c) for c in names})  # small: pandas infers each field's type
        for col in names:
            if types.get(col) == "float":
                df[col] = pd.to_numeric(df[col]).astype("float64")
            elif col not in types and col != "time":  # a tag
                df[col] = df[col].astype(object)
        df["time"] = _to_array(ans.column("time"), "int")
        return df

    def _hourly(
        self, measurement: str, field: str, start: datetime, end: datetime, offset_s: int, by: str,
        where: Where | None, stats: tuple[str, ...],
    ) -> HourlyArrays:
        cond = self._cond(start, end, where)
        f = quote_ident(field)
        q = (
            f"SELECT {', '.join(f'{s}({f})' for s in stats)} FROM {self._from(measurement)}{cond.sql()} "
            f"GROUP BY time(1h{f', {offset_s}s' if offset_s else ''}), {quote_ident(by)} fill(none)"
        )
        # hours start on whole seconds: epoch=s keeps every time exact in 10 digits instead of 19 (a city's answer
        # is millions of them, encoded by influxd and parsed here)
        kinds = {"time": "int", **{s: "int" if s == "count" else "float" for s in stats}}
        ans = self._collect(q, cond.params, tag=by, kinds=kinds, epoch="s")
        if not ans.n:
            return HourlyArrays.empty(stats)
        return HourlyArrays(ans.keys, ans.arrays["time"] * 1_000_000_000, {s: ans.arrays[s] for s in stats})

    def _last(
        self, measurement: str, field: str, by: str, where: Where | None, start: datetime, end: datetime
    ) -> LastArrays:
        cond = self._cond(start, end, where)
        q = f"SELECT last({quote_ident(field)}) FROM {self._from(measurement)}{cond.sql()} GROUP BY {quote_ident(by)}"
        ans = self._collect(q, cond.params, tag=by, kinds={"time": "int", "last": "value"})
        return LastArrays(ans.keys, ans.arrays["time"], ans.arrays["last"])

    def _count(self, measurement: str, start: datetime, end: datetime, where: Where | None, field: str | None) -> int:
        cond = self._cond(start, end, where)
        target = field or REQUIRED_FIELD.get(measurement)
        # a derived measurement's points may carry different fields: the widest field count is the point count
        expr = f"count({quote_ident(target)})" if target else "count(*)"
        best = 0
        for _, columns, rows in self._series(f"SELECT {expr} FROM {self._from(measurement)}{cond.sql()}", cond.params):
            for row in rows:
                best = max([best, *(int(v) for c, v in zip(columns, row, strict=True) if c != "time" and v is not None)])
        return best

    def delete_before(self, measurement: str, before: datetime) -> None:
        """Delete the measurement's points before ``before`` (see ``Store.delete_before``)."""
        fields = {"db": self.database, "q": f"DELETE FROM {quote_ident(measurement)} WHERE time < $p0",
                  "params": orjson.dumps({"p0": to_ns(before)}).decode()}
        resp = self._request("POST", "/query", fields=fields)
        for result in orjson.loads(resp.data).get("results", []):
            if "error" in result and not str(result["error"]).startswith("database not found"):
                raise StoreError(f"InfluxDB: {result['error']}")

    def ping(self) -> None:
        """Raise StoreUnavailable when the store cannot be reached."""
        resp = self._request("GET", "/ping")
        if resp.status != 204:
            raise StoreUnavailable(f"InfluxDB at {self.url} answered /ping with {resp.status}")

    def close(self) -> None:
        """Release the connections."""
        self._http.clear()
