"""Where work orders go: MQTT ``heat/alerts/{category}``, a signed webhook, a JSONL file.

A sink either takes the message or raises ``SinkError``; the outbox keeps it for later.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from heatwatch.core.redact import mask_url
from heatwatch.core.timeutil import Backoff
from heatwatch.infra.mqtt.client import Publisher, PublishError
from heatwatch.infra.mqtt.topics import alert_topic

log = logging.getLogger("heatwatch.alerts")
SIGNATURE_HEADER = "X-Heatwatch-Signature"
TIMESTAMP_HEADER = "X-Heatwatch-Timestamp"


class SinkError(Exception):
    """The sink did not take the message; it stays in the outbox."""


class Sink(Protocol):
    name: str

    def send(self, category: str, body: bytes, delivery_id: str) -> None: ...


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """``sha256=<hex>`` over ``"<timestamp>." + body``: the timestamp is signed too, so a receiver that rejects
    old timestamps (say, more than 5 minutes from its clock) cannot be fed a replayed request (docs/CONTROL.md)."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, timestamp: str, signature: str, now: float, tolerance_s: float = 300.0) -> bool:
    """What a receiver does: recompute the signature in constant time and refuse stale or future timestamps."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, ts), signature)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx to a POST is a failure: following it would turn the POST into a GET and report a delivery
    that never reached the receiver."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class MqttSink:
    name = "mqtt"

    def __init__(self, publisher: Publisher, topic_prefix: str, timeout_s: float = 10.0) -> None:
        self.publisher = publisher
        self.prefix = topic_prefix
        self.timeout_s = timeout_s

    def send(self, category: str, body: bytes, delivery_id: str) -> None:
        try:
            self.publisher.publish(alert_topic(self.prefix, category), body, qos=1, retain=False, timeout=self.timeout_s)
        except PublishError as exc:
            raise SinkError(f"mqtt: {exc}") from None


class WebhookSink:
    """POST JSON with an HMAC-SHA256 signature; retries 5xx and connection errors with exponential backoff."""

    name = "webhook"

    def __init__(
        self, url: str, secret: str | None, retries: int = 3, backoff_s: float = 1.0, timeout_s: float = 5.0
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"alerts.webhook_url must start with http:// or https://, got {mask_url(url)!r}")
        self.url = url
        self.shown_url = mask_url(url)  # the path or query is often the receiver's token: never logged
        self._secret = secret
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.clock = time.time
        if not secret:
            log.warning(
                "WEBHOOK WITHOUT A SECRET: work orders to %s are sent unsigned, so the receiver cannot tell them from "
                "forged or replayed requests; set [alerts] webhook_secret_file (or HEATWATCH_ALERTS_WEBHOOK_SECRET)",
                self.shown_url,
            )

    def send(self, category: str, body: bytes, delivery_id: str) -> None:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "heatwatch-alerts",
            "X-Heatwatch-Category": category,
            "X-Heatwatch-Delivery": delivery_id,
        }
        last = ""
        backoff = Backoff(self.backoff_s, self.backoff_s * 2 ** max(self.retries - 1, 0)) if self.backoff_s > 0 else None
        for attempt in range(self.retries + 1):
            if attempt and backoff is not None:
                time.sleep(backoff.next())  # jittered: many controllers must not retry one receiver in step
            ts = int(self.clock())
            headers[TIMESTAMP_HEADER] = str(ts)
            if self._secret:
                headers[SIGNATURE_HEADER] = sign(self._secret, body, ts)
            req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with _OPENER.open(req, timeout=self.timeout_s) as resp:
                    if 200 <= resp.status < 300:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
                if 300 <= exc.code < 400:
                    last += " (a redirect: not followed, the webhook URL is wrong or moved)"
                    break
                if 400 <= exc.code < 500 and exc.code not in (408, 429):
                    break  # the receiver refuses this request; retrying now will not help
            except (urllib.error.URLError, OSError) as exc:
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        raise SinkError(f"webhook {self.shown_url}: {last} after {attempt + 1} attempt(s)")


class JsonlSink:
    """One JSON object per line, fsynced: the audit trail dispatch can grep."""

    name = "jsonl"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def send(self, category: str, body: bytes, delivery_id: str) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock, self.path.open("ab") as fh:
                fh.write(body.rstrip(b"\n") + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise SinkError(f"jsonl {self.path}: {exc.strerror}") from None
