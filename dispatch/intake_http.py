"""HTTP JSON intake for the desk: a call-centre system or a WeChat front end posts orders here.

Standard library only (``ThreadingHTTPServer``, like heatwatch/app/status.py): a handful of JSON endpoints
need no framework. Every request names its operator with ``Authorization: Bearer <token>``; the token is
compared in constant time against each configured operator's, and the operator's name is who the audit log
says did it. Refusals are JSON ``{"error": ...}`` naming what was wrong (docs/SERVICE_DESK.md, "HTTP API"):

- ``POST /orders``  body = an order (OrderInput JSON) -> 201 and the order (200 when ``ref`` was seen before)
- ``GET /orders/<id>`` -> the order (``?history=1`` adds its audit log)
- ``GET /orders?stage=<stage>&overdue=1`` -> the orders, newest first (overdue: most overdue first)
- ``POST /measurements`` body = an in-home measurement record (when the desk is given a recorder for them)
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from dispatch import measurements
from dispatch.desk import Desk, order_to_json
from dispatch.model import STAGES, Order, OrderInput, OrderRefused
from dispatch.operators import Operators
from heatwatch.core.config import Config
from heatwatch.core.registry import Registry

log = logging.getLogger("heatwatch.dispatch.http")

MAX_BODY = 64 * 1024  # an order is a few hundred bytes; a measurement record with every room a few KB
SOURCES_OVER_HTTP = ("http", "hotline")  # a sensor or outage order comes from inside, never over this door
LIST_LIMIT = 1000  # GET /orders answers the newest this many
REQUEST_TIMEOUT_S = 30.0  # a client that stops sending mid-request does not hold a thread forever

# optional hook, wired when the part that owns it is there
MeasurementFn = Callable[[dict[str, Any], str], dict[str, Any]]  # (record JSON, operator) -> stored record JSON


class HttpRefusal(Exception):
    """A request answered with ``status`` and a JSON error naming what was wrong."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


def operator_for(tokens: Mapping[str, str], presented: str) -> str | None:
    """The operator whose token is ``presented``, compared in constant time; None when none matches.

    Every configured token is compared (no early exit), so the time taken says nothing about which
    tokens exist or how much of one was right.
    """
    got = presented.encode("utf-8")
    found: str | None = None
    for token, name in tokens.items():
        if secrets.compare_digest(token.encode("utf-8"), got) and token:
            found = name
    return found


def bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; HttpRefusal 401 saying what is missing."""
    if not header:
        raise HttpRefusal(401, "authentication required: send 'Authorization: Bearer <token>' with an operator's token")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HttpRefusal(401, f"authentication required: the Authorization header must be 'Bearer <token>', not {scheme!r} ...")
    token = token.strip()
    try:  # header bytes arrive decoded as latin-1: a token with non-ASCII characters was sent as UTF-8
        return token.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return token


def json_body(content_type: str | None, length: str | None, read: Callable[[int], bytes], max_body: int) -> Any:
    """The request's JSON body; HttpRefusal 415 / 411 / 413 / 400 naming the fault (the body is not read when too big)."""
    media, _, params = (content_type or "").partition(";")
    if media.strip().lower() != "application/json":
        raise HttpRefusal(415, f"Content-Type must be application/json (UTF-8), not {content_type or 'none'!r}")
    for p in params.split(";"):
        key, _, value = p.strip().partition("=")
        if key.lower() == "charset" and value.strip('"').lower() not in ("utf-8", "utf8"):
            raise HttpRefusal(415, f"charset must be utf-8, not {value!r}")
    if length is None:
        raise HttpRefusal(411, "Content-Length required (chunked bodies are not accepted)")
    try:
        n = int(length)
    except ValueError:
        raise HttpRefusal(400, f"Content-Length {length!r} is not a number") from None
    if n < 0:
        raise HttpRefusal(400, f"Content-Length {n} is negative")
    if n > max_body:
        raise HttpRefusal(413, f"body of {n} bytes is over the limit of {max_body} bytes")
    raw = read(n)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HttpRefusal(400, f"body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise HttpRefusal(400, f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def order_json(o: Order) -> dict[str, Any]:
    """An order as the API answers it: every field, times in UTC, plus the category's Chinese name."""
    return {**order_to_json(o), "category_name": o.category_name}


def tokens_of(operators: Operators) -> dict[str, str]:
    """token -> operator name, for the configured users that have a token (``[desk.operators."<name>"]``)."""
    return {op.token: op.name for op in operators.users.values() if op.token}


def take_order(desk: Desk, body: Any, by: str) -> tuple[int, Order]:
    """Validate and open an order from an HTTP body; (201, new order) or (200, the one already under its ``ref``)."""
    if not isinstance(body, dict):
        raise HttpRefusal(400, f"the body must be a JSON object (an order), not {type(body).__name__}")
    data = dict(body)
    data.setdefault("source", "http")
    if data["source"] not in SOURCES_OVER_HTTP:
        allowed = ", ".join(SOURCES_OVER_HTTP)
        raise HttpRefusal(400, f"order refused: source: {data['source']!r} cannot come over HTTP (use one of {allowed})")
    try:
        inp = OrderInput.parse(data)
    except OrderRefused as exc:
        raise HttpRefusal(400, str(exc)) from None
    seen = desk.by_ref(inp.ref)  # a retry answers 200, not 201
    if seen is not None:
        return 200, seen
    try:
        return 201, desk.open(inp, by)
    except OrderRefused as exc:
        raise HttpRefusal(400, str(exc)) from None


MEASUREMENT_KEYS = ("home_id", "measured_at", "rooms", "staff", "instrument_id", "calibrated_on", "cosigned", "cosigner",
                    "note", "supersedes")


def measurement_from_body(data: Mapping[str, Any]) -> measurements.Measurement:
    """A measurement record from a JSON body; ValueError naming every missing or malformed element.

    ``rooms`` is ``{"客厅": 17.2, …}`` or ``[["客厅", 17.2], …]`` in the order measured; ``measured_at`` carries its
    time zone; ``calibrated_on`` is a date. The record's own rules (two staff, calibration, …) are checked by
    ``dispatch.measurements.record``."""
    bad: list[str] = [f"{k}: unknown element" for k in data if k not in MEASUREMENT_KEYS]
    missing = [k for k in ("home_id", "measured_at", "rooms", "staff", "instrument_id", "calibrated_on") if k not in data]
    if missing:
        bad.append("missing " + ", ".join(missing))

    def text(key: str) -> str:
        v = data.get(key, "")
        if not isinstance(v, str):
            bad.append(f"{key}: expected a string")
            return ""
        return v.strip()

    at: datetime | None = None
    if "measured_at" in data:
        try:
            at = datetime.fromisoformat(text("measured_at"))
            if at.tzinfo is None:
                bad.append("measured_at: needs a time zone (e.g. 2026-12-03T10:00+08:00)")
        except ValueError:
            bad.append(f"measured_at: {data['measured_at']!r} is not an ISO 8601 time")
    cal: date | None = None
    if "calibrated_on" in data:
        try:
            cal = date.fromisoformat(text("calibrated_on"))
        except ValueError:
            bad.append(f"calibrated_on: {data['calibrated_on']!r} is not a date (YYYY-MM-DD)")
    raw = data.get("rooms", [])
    pairs = list(raw.items()) if isinstance(raw, dict) else raw if isinstance(raw, list) else None
    rooms: list[tuple[str, float]] = []
    if pairs is None:
        bad.append("rooms: expected {\"room\": °C, …} or [[\"room\", °C], …]")
    else:
        for item in pairs:
            ok = isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[0], str)
            val = item[1] if ok else None
            if not ok or isinstance(val, bool) or not isinstance(val, int | float) or not math.isfinite(val):
                bad.append(f"rooms: {item!r} is not a room name with a temperature in °C")
                continue
            rooms.append((str(item[0]).strip(), float(val)))
    staff = data.get("staff", [])
    if not isinstance(staff, list) or not all(isinstance(x, str) for x in staff):
        bad.append("staff: expected a list of names")
        staff = []
    cosigned = data.get("cosigned", False)
    if not isinstance(cosigned, bool):
        bad.append("cosigned: expected true or false")
    home_id, instrument, cosigner, note, supersedes = (text(k) for k in ("home_id", "instrument_id", "cosigner", "note",
                                                                          "supersedes"))
    if bad or at is None or cal is None:
        raise ValueError("measurement refused: " + "; ".join(bad))
    return measurements.Measurement(home_id, at.astimezone(UTC), tuple(rooms), tuple(s.strip() for s in staff), instrument,
                                    cal, bool(cosigned), cosigner, note, supersedes)


def measurement_recorder(book: measurements.MeasurementBook, desk: Desk, cfg: Config, registry: Registry) -> MeasurementFn:
    """``POST /measurements``: check and keep the record; a co-signed one under the standard opens or notes an order."""

    def take(data: dict[str, Any], by: str) -> dict[str, Any]:
        m = measurement_from_body(data)
        out = measurements.record(book, m, cfg=cfg, registry=registry, now=desk.clock(), by=by, desk=desk)
        return {"record_id": out.record.record_id, "record": measurements.to_json(m), "recorded_by": by,
                "threshold_c": out.threshold_c, "below": out.below, "order_id": out.order_id, "action": out.action}

    return take


@dataclass(frozen=True)
class Route:
    """What a request asks for: method, path parts and query."""

    method: str
    parts: tuple[str, ...]
    query: dict[str, list[str]]


class IntakeServer:
    """The HTTP intake on ``host:port`` (0: a free port, read ``self.port``), serving from a thread of its own.

    ``tokens`` maps each operator's token to the operator's name; None: the desk's configured operators'.
    """

    def __init__(
        self, desk: Desk, host: str, port: int, tokens: Mapping[str, str] | None = None, *, max_body: int = MAX_BODY,
        measurement: MeasurementFn | None = None,
    ) -> None:
        self.desk = desk
        self.tokens = {t: n for t, n in (tokens_of(desk.operators) if tokens is None else tokens).items() if t}
        self.max_body = max_body
        self.measurement = measurement
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = REQUEST_TIMEOUT_S
            server_version = "heatwatch-desk"

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PUT(self) -> None:
                self._handle("PUT")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

            def _handle(self, method: str) -> None:
                try:
                    url = urlsplit(self.path)
                    route = Route(method, tuple(unquote(p) for p in url.path.split("/") if p), parse_qs(url.query))
                    by = server.authenticate(self.headers.get("Authorization"))
                    code, body = server.answer(route, by, self._body)
                except HttpRefusal as exc:
                    code, body = exc.status, {"error": str(exc), **exc.extra}
                    if method != "GET":  # the body may be unread: it must not be taken for the next request
                        self.close_connection = True
                except Exception:
                    log.exception("desk HTTP %s %s failed", method, self.path)
                    code, body = 500, {"error": "internal error; the desk's log has the details"}
                self._send(code, body)

            def _body(self) -> Any:
                return json_body(self.headers.get("Content-Type"), self.headers.get("Content-Length"), self.rfile.read,
                                 server.max_body)

            def _send(self, code: int, body: Any) -> None:
                data = json.dumps(body, ensure_ascii=False).encode("utf-8")
                self.send_response(code)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                if code == 401:
                    self.send_header("WWW-Authenticate", 'Bearer realm="heatwatch desk"')
                if code == 201 and isinstance(body, dict) and "order_id" in body:
                    self.send_header("Location", f"/orders/{body['order_id']}")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("desk http %s", format % args)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="heatwatch-desk-http", daemon=True)

    def authenticate(self, header: str | None) -> str:
        """The operator a request's bearer token belongs to; HttpRefusal 401 otherwise."""
        if not self.tokens:
            raise HttpRefusal(401, "no operator has a token: set [desk] operators' tokens to use the HTTP intake")
        name = operator_for(self.tokens, bearer(header))
        if name is None:
            raise HttpRefusal(401, "invalid token: it matches no operator's")
        return name

    def answer(self, r: Route, by: str, body: Callable[[], Any]) -> tuple[int, Any]:
        """(status, JSON) for an authenticated request."""
        if r.parts == ("orders",) and r.method == "POST":
            code, o = take_order(self.desk, body(), by)
            return code, order_json(o)
        if r.parts == ("orders",) and r.method == "GET":
            return 200, {"orders": self._listed(r.query)}
        if len(r.parts) == 2 and r.parts[0] == "orders" and r.method == "GET":
            try:
                o = self.desk.get(r.parts[1])
            except KeyError:
                raise HttpRefusal(404, f"no order {r.parts[1]!r}") from None
            now = self.desk.clock()
            out = {**order_json(o), "clocks": [c.to_json(now) for c in self.desk.clocks(o)]}
            if r.query.get("history", [""])[0] in ("1", "true"):
                out["history"] = self.desk.history(o.order_id)
            return 200, out
        if r.parts == ("measurements",) and r.method == "POST":
            if self.measurement is None:
                raise HttpRefusal(404, "measurement records are not taken over HTTP by this desk")
            data = body()
            if not isinstance(data, dict):
                raise HttpRefusal(400, f"the body must be a JSON object (a measurement record), not {type(data).__name__}")
            try:
                return 201, self.measurement(data, by)
            except ValueError as exc:
                raise HttpRefusal(400, str(exc)) from None
        known = r.parts in (("orders",), ("measurements",)) or (len(r.parts) == 2 and r.parts[0] == "orders")
        if known:
            raise HttpRefusal(405, f"{r.method} is not allowed on /{'/'.join(r.parts)}")
        raise HttpRefusal(404, f"no such path /{'/'.join(r.parts)}; try POST /orders, GET /orders/<id>, GET /orders?stage=")

    def _listed(self, query: Mapping[str, list[str]]) -> list[dict[str, Any]]:
        unknown = sorted(set(query) - {"stage", "overdue"})
        if unknown:
            raise HttpRefusal(400, f"unknown query parameter {', '.join(unknown)}; expected stage, overdue")
        stage = query.get("stage", [""])[0]
        if stage and stage not in STAGES:
            raise HttpRefusal(400, f"stage {stage!r} is not one of {', '.join(STAGES)}")
        overdue = query.get("overdue", [""])[0]
        if overdue not in ("", "0", "1", "true", "false"):
            raise HttpRefusal(400, f"overdue={overdue!r}: expected 1 or 0")
        if overdue in ("1", "true"):
            now = self.desk.clock()
            return [{**order_json(o), "overdue": [c.to_json(now) for c in late]}
                    for o, late in self.desk.overdue(now) if not stage or o.stage == stage]
        return [order_json(o) for o in self.desk.find([stage] if stage else None, limit=LIST_LIMIT)]

    def start(self) -> IntakeServer:
        self._thread.start()
        log.info("desk HTTP intake on port %d (%d operators with tokens)", self.port, len(self.tokens))
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
