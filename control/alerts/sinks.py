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
from typing import Protocol

from control.publish import Publisher, PublishError

log = logging.getLogger("heatwatch.alerts")
SIGNATURE_HEADER = "X-Heatwatch-Signature"


class SinkError(Exception):
    """The sink did not take the message; it stays in the outbox."""


class Sink(Protocol):
    name: str

    def send(self, category: str, body: bytes, delivery_id: str) -> None: ...


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex>`` over the exact request body, as GitHub-style receivers verify it."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class MqttSink:
    name = "mqtt"

    def __init__(self, publisher: Publisher, topic_prefix: str, timeout_s: float = 10.0) -> None:
        self.publisher = publisher
        self.prefix = topic_prefix
        self.timeout_s = timeout_s

    def send(self, category: str, body: bytes, delivery_id: str) -> None:
        try:
            self.publisher.publish(f"{self.prefix}/alerts/{category}", body, qos=1, retain=False, timeout=self.timeout_s)
        except PublishError as exc:
            raise SinkError(f"mqtt: {exc}") from None


class WebhookSink:
    """POST JSON with an HMAC-SHA256 signature; retries 5xx and connection errors with exponential backoff."""

    name = "webhook"

    def __init__(
        self, url: str, secret: str | None, retries: int = 3, backoff_s: float = 1.0, timeout_s: float = 5.0
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"alerts.webhook_url must start with http:// or https://, got {url[:40]!r}")
        self.url = url
        self._secret = secret
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s

    def send(self, category: str, body: bytes, delivery_id: str) -> None:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "heatwatch-alerts",
            "X-Heatwatch-Category": category,
            "X-Heatwatch-Delivery": delivery_id,
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    if 200 <= resp.status < 300:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
                if 400 <= exc.code < 500 and exc.code not in (408, 429):
                    break  # the receiver refuses this request; retrying now will not help
            except (urllib.error.URLError, OSError) as exc:
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        raise SinkError(f"webhook {self.url}: {last} after {attempt + 1} attempt(s)")


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
