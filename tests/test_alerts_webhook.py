"""Alert sinks: a real HTTP receiver checks the HMAC signature and sees the retry after a 500; a sink that is
down keeps its messages in the outbox until it comes back, in order."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from control.alerting import build_sinks
from control.alerts.dispatch import Dispatcher
from control.alerts.model import Candidate, WorkOrder
from control.alerts.repo import AlertRepo
from control.alerts.sinks import SIGNATURE_HEADER, JsonlSink, Sink, WebhookSink
from control.db import open_engine
from heatwatch.core.config import load_config
from heatwatch.core.timeutil import SettableClock
from tools.servers import free_port

SECRET = "s3cret-签名"
T0 = datetime(2026, 1, 10, 2, 0, tzinfo=UTC)


class Receiver:
    """A webhook endpoint: answers the first ``fail`` requests with ``status_on_fail``, then 200."""

    def __init__(self, port: int | None = None) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.fail = 0
        self.status_on_fail = 500
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((dict(self.headers), body))
                code = 200
                if outer.fail > 0:
                    outer.fail -= 1
                    code = outer.status_on_fail
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port or free_port()), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def verify(headers: dict[str, str], body: bytes, secret: str = SECRET) -> bool:
    """As a receiver verifies it: HMAC-SHA256 over "<X-Heatwatch-Timestamp>." + body."""
    signed = headers["X-Heatwatch-Timestamp"].encode() + b"." + body
    want = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers[SIGNATURE_HEADER], want)


def order(n: int, now: datetime = T0) -> WorkOrder:
    c = Candidate(
        key=f"home_below_standard:H{n}", category="home_below_standard", content=f"幸福小区{n}号楼: 16.2 °C",
        evidence={"mean_c": 16.2}, station_id="S1", community="幸福小区", home_id=f"H{n}",
        address=f"幸福小区{n}号楼101", contact="138", responsible_unit="幸福换热站",
    )
    return WorkOrder.from_candidate(c, now)


def test_hmac_signature_and_retry_after_500(tmp_path: Path, receiver: Receiver) -> None:
    repo = AlertRepo(open_engine(tmp_path / "c.sqlite"), ["webhook"])
    sink = WebhookSink(receiver.url, SECRET, retries=3, backoff_s=0.05, timeout_s=5)
    d = Dispatcher(repo, {"webhook": sink}, SettableClock(T0))
    receiver.fail = 1
    o = order(1)
    repo.record(opened=[o], at=T0)
    assert d.deliver_due() == 1
    assert len(receiver.requests) == 2  # the 500, then the retry that succeeded
    for headers, body in receiver.requests:
        assert verify(headers, body)
        assert not verify(headers, body, "wrong secret")
        assert headers["Content-Type"].startswith("application/json")
    body = json.loads(receiver.requests[-1][1].decode("utf-8"))
    assert body["event"] == "open" and body["alert"]["alert_id"] == o.alert_id
    assert body["alert"]["address"] == "幸福小区1号楼101" and "幸福小区" in receiver.requests[-1][1].decode("utf-8")
    assert receiver.requests[0][0]["X-Heatwatch-Delivery"] == receiver.requests[1][0]["X-Heatwatch-Delivery"]
    assert repo.pending_count() == {}


def test_sink_down_keeps_alerts_in_outbox_and_redelivers_in_order(tmp_path: Path) -> None:
    port = free_port()
    repo = AlertRepo(open_engine(tmp_path / "c.sqlite"), ["webhook", "jsonl"])
    clock = SettableClock(T0)
    sinks: dict[str, Sink] = {
        "webhook": WebhookSink(f"http://127.0.0.1:{port}/hook", SECRET, retries=1, backoff_s=0.01, timeout_s=2),
        "jsonl": JsonlSink(tmp_path / "alerts.jsonl"),
    }
    d = Dispatcher(repo, sinks, clock, retry_s=30)
    a, b = order(1), order(2)
    repo.record(opened=[a, b], at=T0)
    assert d.deliver_due() == 2  # the file took both; nothing listens on the webhook port
    assert repo.pending_count() == {"webhook": 2}
    [row] = [r for r in repo.due(T0 + timedelta(seconds=31)) if r["attempts"] == 1]
    assert "webhook" in row["last_error"] and row["alert_id"] == a.alert_id
    assert row["next_attempt_at"] == "2026-01-10T02:00:30.000000Z"  # backing off
    rcv = Receiver(port)
    try:
        assert d.deliver_due() == 0  # still inside the backoff; the second message does not overtake the first
        assert rcv.requests == []
        clock.set(T0 + timedelta(seconds=31))
        assert d.deliver_due() == 2
        ids = [json.loads(body)["alert"]["alert_id"] for _, body in rcv.requests]
        assert ids == [a.alert_id, b.alert_id] and all(verify(h, body) for h, body in rcv.requests)
        assert repo.pending_count() == {}
    finally:
        rcv.close()
    lines = (tmp_path / "alerts.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["alert"]["home_id"] for x in lines] == ["H1", "H2"]


def test_client_error_is_not_hammered_but_kept(tmp_path: Path, receiver: Receiver) -> None:
    repo = AlertRepo(open_engine(tmp_path / "c.sqlite"), ["webhook"])
    d = Dispatcher(repo, {"webhook": WebhookSink(receiver.url, SECRET, retries=3, backoff_s=0.01)}, SettableClock(T0))
    receiver.fail, receiver.status_on_fail = 1, 400
    repo.record(opened=[order(1)], at=T0)
    assert d.deliver_due() == 0 and len(receiver.requests) == 1
    assert repo.pending_count() == {"webhook": 1}


def test_ack_and_resolve_are_messages_too(tmp_path: Path) -> None:
    repo = AlertRepo(open_engine(tmp_path / "c.sqlite"), ["jsonl"])
    clock = SettableClock(T0)
    d = Dispatcher(repo, {"jsonl": JsonlSink(tmp_path / "a.jsonl")}, clock)
    o = order(3)
    repo.record(opened=[o], at=T0)
    repo.set_status(o.alert_id, "acked", T0 + timedelta(minutes=5), "李师傅已接单")
    repo.set_status(o.alert_id, "resolved", T0 + timedelta(hours=3), "阀门已调")
    with pytest.raises(ValueError, match="already resolved"):
        repo.set_status(o.alert_id, "acked", T0 + timedelta(hours=4))
    clock.set(T0 + timedelta(hours=4))
    assert d.deliver_due() == 3
    events = [json.loads(x) for x in (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [e["event"] for e in events] == ["open", "ack", "resolve"]
    assert events[-1]["alert"]["note"] == "阀门已调" and events[-1]["alert"]["status"] == "resolved"


def test_webhook_secret_from_file_and_bad_url(tmp_path: Path, receiver: Receiver) -> None:
    secret_file = tmp_path / "hook.secret"
    secret_file.write_text("from-file\n", encoding="utf-8")
    cfg = load_config(environ={}, overrides={
        "general": {"data_dir": str(tmp_path)},
        "alerts": {"webhook_url": receiver.url, "webhook_secret_file": str(secret_file), "mqtt": False},
    })
    sinks = build_sinks(cfg, None)
    assert set(sinks) == {"jsonl", "webhook"}
    sinks["webhook"].send("station_fault", b'{"x": 1}', "d1")
    headers, body = receiver.requests[0]
    assert verify(headers, body, "from-file")
    with pytest.raises(ValueError, match="webhook_url"):
        WebhookSink("ftp://x", None)
