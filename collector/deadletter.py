"""Dead letters: what was rejected, exactly as received, and why (docs/MQTT.md)."""

from __future__ import annotations

import base64

import orjson

from collector.codec import Reject
from heatwatch.timeutil import from_ns, rfc3339


def deadletter_topic(prefix: str) -> str:
    return f"{prefix}/deadletter"


def encode_payload(payload: bytes) -> tuple[str, str]:
    try:
        return payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(payload).decode("ascii"), "base64"


def deadletter(topic: str, payload: bytes, reject: Reject, received_ns: int) -> bytes:
    """The dead-letter message; for an array element, the element alone (the rest was stored)."""
    if reject.index is not None:
        text, enc = orjson.dumps(reject.element).decode("utf-8"), "utf-8"
    else:
        text, enc = encode_payload(payload)
    body: dict[str, object] = {
        "topic": topic,
        "payload": text,
        "payload_encoding": enc,
        "reason": reject.reason,
        "code": reject.code,
        "received": rfc3339(from_ns(received_ns)),
    }
    if reject.index is not None:
        body["index"] = reject.index
    return orjson.dumps(body)
