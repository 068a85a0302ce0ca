"""Webhook delivery that a dispatcher can trust: no redirect counts as delivered, signatures resist replay,
a missing secret is loud, and the URL (often carrying a token) never shows in errors, logs or config check."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from control.alerts.sinks import SIGNATURE_HEADER, TIMESTAMP_HEADER, SinkError, WebhookSink, sign, verify
from heatwatch.core.config import effective_settings, load_config
from heatwatch.core.redact import mask_url
from tools.servers import free_port

SECRET = "供热-secret"


class Redirecting:
    """POST /hook answers 302 → /elsewhere, and GET /elsewhere answers 200: a client that follows the redirect
    would report a delivery the receiver never got."""

    def __init__(self) -> None:
        self.posts = 0
        self.gets = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts += 1
                self.send_response(302)
                self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                outer.gets += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def redirecting() -> Iterator[Redirecting]:
    r = Redirecting()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_a_redirect_is_a_failure_never_followed(redirecting: Redirecting) -> None:
    url = f"http://127.0.0.1:{redirecting.port}/hook/TOKEN-abc123?key=s3cr3t"
    sink = WebhookSink(url, SECRET, retries=2, backoff_s=0.01)
    with pytest.raises(SinkError) as err:
        sink.send("home_below_standard", b'{"x": 1}', "d1")
    assert redirecting.posts == 1 and redirecting.gets == 0  # not retried, not followed as a GET
    assert "302" in str(err.value) and "redirect" in str(err.value)
    assert "TOKEN" not in str(err.value) and "s3cr3t" not in str(err.value)


def test_signature_covers_the_timestamp_so_a_replay_is_refused() -> None:
    body = '{"alert": "幸福小区"}'.encode()
    now = time.time()
    ts = int(now)
    sig = sign(SECRET, body, ts)
    assert verify(SECRET, body, str(ts), sig, now)
    assert not verify(SECRET, body, str(ts), sig, now + 3600)  # the same request an hour later: refused
    assert not verify(SECRET, body, str(ts + 3600), sig, now + 3600)  # a fresh timestamp does not match the signature
    assert not verify(SECRET, body + b" ", str(ts), sig, now)  # body tampered
    assert not verify("other", body, str(ts), sig, now)
    assert not verify(SECRET, body, "not-a-number", sig, now)


def test_headers_carry_timestamp_and_signature(tmp_path: Path) -> None:
    got: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.update(dict(self.headers))
            got["body"] = body.decode()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        WebhookSink(f"http://127.0.0.1:{server.server_address[1]}/h", SECRET).send("c", b"{}", "d")
    finally:
        server.shutdown()
        server.server_close()
    assert verify(SECRET, got["body"].encode(), got[TIMESTAMP_HEADER], got[SIGNATURE_HEADER], time.time())


def test_an_empty_secret_is_a_loud_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="heatwatch.alerts"):
        WebhookSink("https://hooks.example.com/services/T0/B0/XXXX", None)
    text = caplog.text
    assert "WITHOUT A SECRET" in text and "webhook_secret" in text
    assert "XXXX" not in text and "hooks.example.com" in text


def test_url_masked_in_config_check(tmp_path: Path) -> None:
    cfg = load_config(environ={}, overrides={"alerts": {"webhook_url": "https://user:pw@hooks.example.com/services/T0/B0/XXXX?k=v"},
                                             "general": {"data_dir": str(tmp_path)}})
    shown = effective_settings(cfg)["alerts"]["webhook_url"]
    assert shown == "https://hooks.example.com/…"
    assert effective_settings(cfg)["influxdb1"]["url"] == "http://127.0.0.1:8086"  # nothing secret: unchanged
    assert mask_url("http://127.0.0.1:8086/") == "http://127.0.0.1:8086"
    assert mask_url("not a url") == "(URL hidden)"
