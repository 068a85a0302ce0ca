"""The desk's HTTP intake on a real server and a real HTTP client: tokens, refusals that name the fault, Chinese."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dispatch.desk import Desk
from dispatch.intake_http import IntakeServer, operator_for
from dispatch.operators import Operator, Operators
from heatwatch.core.timeutil import SettableClock

T0 = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
TOKENS = {"tok-王芳-7f3a": "王芳", "tok-li-91c2": "li.dispatch"}
ORDER = {
    "reporter": "张伟", "phone": "13800000000", "address": "阳光小区 3号楼 2单元 501", "home_id": "H-0501",
    "community": "阳光小区", "category": "not_warm", "content": "卧室只有15度，暖气片不热", "handling_unit": "阳光换热站班组",
}


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


@pytest.fixture
def desk(tmp_path: Path, clock: SettableClock) -> Desk:
    users = {name: Operator(name, token=token) for token, name in TOKENS.items()} | {"no-token": Operator("no-token")}
    return Desk.open_file(tmp_path / "desk.sqlite", clock, operators=Operators(users))


@pytest.fixture
def server(desk: Desk) -> Iterator[IntakeServer]:
    srv = IntakeServer(desk, "127.0.0.1", 0, max_body=4096).start()  # tokens: the desk's configured operators
    yield srv
    srv.stop()


def call(srv: IntakeServer, method: str, path: str, body: Any = None, token: str | None = "tok-王芳-7f3a",
         content_type: str | None = "application/json", raw: bytes | None = None) -> tuple[int, dict[str, Any], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    headers: dict[str, str] = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
    if data is not None and content_type:
        headers["Content-Type"] = content_type
    try:
        # header values are latin-1 on the wire: a Chinese token goes as its UTF-8 bytes
        conn.putrequest(method, path)
        for k, v in headers.items():
            conn.putheader(k, v.encode("utf-8"))
        if data is not None:
            conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data)
        resp = conn.getresponse()
        payload = resp.read()
        assert resp.getheader("Content-Type") == "application/json; charset=utf-8"
        return resp.status, dict(resp.getheaders()), json.loads(payload.decode("utf-8"))
    finally:
        conn.close()


def test_without_a_valid_token_nothing_is_taken_or_shown(server: IntakeServer, desk: Desk) -> None:
    status, headers, body = call(server, "POST", "/orders", ORDER, token=None)
    assert status == 401 and "Authorization: Bearer <token>" in body["error"]
    assert headers["WWW-Authenticate"].startswith("Bearer")
    status, _, body = call(server, "POST", "/orders", ORDER, token="tok-王芳-7f3b")  # one character off
    assert (status, body["error"]) == (401, "invalid token: it matches no operator's")
    status, _, body = call(server, "GET", "/orders", token="")
    assert status == 401
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/orders", headers={"Authorization": "Basic bGk6cHc="})
    resp = conn.getresponse()
    assert resp.status == 401 and "'Bearer <token>'" in json.loads(resp.read())["error"]
    conn.close()
    status, _, body = call(server, "GET", "/orders")
    assert (status, body) == (200, {"orders": []})  # nothing was stored by the refused requests


def test_a_chinese_order_round_trips_and_names_its_operator(server: IntakeServer, desk: Desk) -> None:
    status, headers, made = call(server, "POST", "/orders", {**ORDER, "ref": "CC-2026-0001"})
    assert status == 201 and headers["Location"] == f"/orders/{made['order_id']}"
    assert (made["reporter"], made["content"], made["category_name"]) == ("张伟", ORDER["content"], "不热 not warm")
    assert (made["source"], made["urgency"], made["stage"]) == ("http", "urgent", "received")
    status, _, got = call(server, "GET", f"/orders/{made['order_id']}?history=1", token="tok-li-91c2")
    assert status == 200 and got["address"] == "阳光小区 3号楼 2单元 501" and got["handling_unit"] == "阳光换热站班组"
    assert [(e["event"], e["by"]) for e in got["history"]] == [("open", "王芳")]
    # the call-centre retries with the same ref: the same order, 200, not a second one
    status, _, again = call(server, "POST", "/orders", {**ORDER, "ref": "CC-2026-0001"}, token="tok-li-91c2")
    assert (status, again["order_id"]) == (200, made["order_id"])
    status, _, listed = call(server, "GET", "/orders?stage=received")
    assert [o["order_id"] for o in listed["orders"]] == [made["order_id"]]
    assert call(server, "GET", "/orders?stage=closed")[2] == {"orders": []}
    assert {c["clock"]: c["state"] for c in got["clocks"]}["not_warm_respond"] == "running"


def test_overdue_orders_are_listed_with_their_late_clocks(server: IntakeServer, clock: SettableClock) -> None:
    made = call(server, "POST", "/orders", ORDER)[2]
    assert call(server, "GET", "/orders?overdue=1")[2] == {"orders": []}
    clock.advance(hours=2, minutes=1)  # 不热: respond within 2 h (004)
    status, _, body = call(server, "GET", "/orders?overdue=1&stage=received")
    assert status == 200 and [o["order_id"] for o in body["orders"]] == [made["order_id"]]
    assert "not_warm_respond" in {c["clock"] for c in body["orders"][0]["overdue"]}
    assert call(server, "GET", "/orders?overdue=1&stage=dispatched")[2] == {"orders": []}


def test_bad_input_is_refused_naming_what_was_wrong(server: IntakeServer, desk: Desk) -> None:
    no_phone = {k: v for k, v in ORDER.items() if k not in ("phone", "handling_unit")}
    status, _, body = call(server, "POST", "/orders", no_phone)
    assert (status, body["error"]) == (400, "order refused: missing phone, handling_unit")
    status, _, body = call(server, "POST", "/orders", {**ORDER, "category": "冷", "colour": "red"})
    assert status == 400 and "category:" in body["error"] and "colour: Extra inputs are not permitted" in body["error"]
    status, _, body = call(server, "POST", "/orders", {**ORDER, "received_at": "2026-12-01T08:00"})
    assert status == 400 and "received_at" in body["error"] and "time zone" in body["error"]
    status, _, body = call(server, "POST", "/orders", {**ORDER, "source": "sensor"})
    assert status == 400 and "source: 'sensor' cannot come over HTTP" in body["error"]
    status, _, body = call(server, "POST", "/orders", raw=b'{"reporter": "\xe5\xbc\xa0",}')
    assert (status, body["error"]) == (400, "invalid JSON: Expecting property name enclosed in double quotes at line 1 column 18")
    status, _, body = call(server, "POST", "/orders", raw=b"\xff\xfe{}")
    assert status == 400 and body["error"].startswith("body is not UTF-8")
    status, _, body = call(server, "POST", "/orders", ["not", "an", "object"])
    assert (status, body["error"]) == (400, "the body must be a JSON object (an order), not list")
    status, _, body = call(server, "POST", "/orders", ORDER, content_type="text/plain")
    assert status == 415 and "application/json" in body["error"]
    status, _, body = call(server, "POST", "/orders", ORDER, content_type="application/json; charset=gbk")
    assert status == 415 and "gbk" in body["error"]
    status, _, body = call(server, "POST", "/orders", {**ORDER, "content": "很冷" * 2000})
    assert status == 413 and "over the limit of 4096 bytes" in body["error"]
    status, _, body = call(server, "GET", "/orders/W-nope")
    assert (status, body["error"]) == (404, "no order 'W-nope'")
    status, _, body = call(server, "GET", "/orders?stage=done")
    assert status == 400 and "stage 'done' is not one of received" in body["error"]
    status, _, body = call(server, "GET", "/orders?overdue=yes")
    assert status == 400 and "overdue='yes'" in body["error"]
    status, _, body = call(server, "POST", "/measurements", {"home_id": "H-0501"})
    assert status == 404 and "measurement" in body["error"]
    status, _, body = call(server, "DELETE", "/orders")
    assert status == 405
    assert call(server, "GET", "/orders")[2] == {"orders": []}  # none of it was stored


def test_tokens_are_compared_whole() -> None:
    assert operator_for(TOKENS, "tok-li-91c2") == "li.dispatch"
    assert operator_for(TOKENS, "tok-li-91c") is None
    assert operator_for(TOKENS, "tok-li-91c2 ") is None
    assert operator_for({}, "") is None


def test_a_measurement_record_is_kept_and_a_cosigned_cold_one_opens_an_order(tmp_path: Path, desk: Desk) -> None:
    from dispatch.intake_http import measurement_recorder
    from dispatch.measurements import MeasurementBook
    from heatwatch.core.config import load_config
    from heatwatch.core.registry import Home, Registry, Station

    cfg = load_config(environ={}, overrides={"general": {"data_dir": str(tmp_path / "data")}})
    home = Home("H-0501", "阳光小区", "3号楼", "2", 5, 6, False, "residential", None, "S1", "阳光小区 3号楼 2单元 501",
                "13800000000")
    reg = Registry({"H-0501": home}, {"S1": Station("S1", "阳光换热站", ("阳光小区",), 35.0, 75.0)})
    hook = measurement_recorder(MeasurementBook.open(cfg), desk, cfg, reg)
    srv = IntakeServer(desk, "127.0.0.1", 0, measurement=hook).start()
    record = {"home_id": "H-0501", "measured_at": "2026-12-01T08:40+08:00", "rooms": {"客厅": 16.9, "主卧": 16.2},
              "staff": ["张三", "李四"], "instrument_id": "TH-0042", "calibrated_on": "2026-06-01", "cosigned": True,
              "cosigner": "张伟", "note": "门窗关闭"}
    try:
        status, _, body = call(srv, "POST", "/measurements", record)
        assert status == 201 and body["below"] is True and body["action"] == "opened" and body["recorded_by"] == "王芳"
        assert body["record"]["rooms"] == [["客厅", 16.9], ["主卧", 16.2]]
        o = desk.get(body["order_id"])
        assert (o.category, o.source, o.home_id) == ("not_warm", "measurement", "H-0501")
        status, _, body = call(srv, "POST", "/measurements", {**record, "staff": ["张三"], "rooms": {"客厅": "冷"}, "colour": 1})
        assert status == 400 and body["error"].startswith("measurement refused: colour: unknown element")
        assert "rooms: ('客厅', '冷') is not a room name with a temperature" in body["error"]
        status, _, body = call(srv, "POST", "/measurements", {**record, "staff": ["张三"]})
        assert (status, body["error"]) == (400, "2 distinct staff required, got 1 (张三)")
        status, _, body = call(srv, "POST", "/measurements", {k: v for k, v in record.items() if k != "calibrated_on"})
        assert (status, body["error"]) == (400, "measurement refused: missing calibrated_on")
    finally:
        srv.stop()
