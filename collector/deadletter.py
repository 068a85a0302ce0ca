"""Dead letters: what was rejected, exactly as received, and why (docs/MQTT.md).

Each one is published on ``<prefix>/deadletter`` and kept in the store (measurement ``deadletter``), written before
the batch is acknowledged like a reading: nothing subscribes to the topic by default, so the broker would drop them.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pandas as pd

from collector.codec import Reject
from heatwatch.core import schema
from heatwatch.core.model import FieldValue, Point
from heatwatch.core.timeutil import from_ns, rfc3339


def encode_payload(payload: bytes) -> tuple[str, str]:
    try:
        return payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(payload).decode("ascii"), "base64"


def _payload(payload: bytes, reject: Reject) -> tuple[str, str]:
    """What was rejected: for an array element the element alone (the rest was stored), else the message."""
    if reject.index is not None:
        return orjson.dumps(reject.element).decode("utf-8"), "utf-8"
    return encode_payload(payload)


def deadletter(topic: str, payload: bytes, reject: Reject, received_ns: int) -> bytes:
    """The dead-letter message; for an array element, the element alone (the rest was stored)."""
    text, enc = _payload(payload, reject)
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


def deadletter_point(
    topic: str, payload: bytes, reject: Reject, received_ns: int, ts_ns: int, collector_id: str, max_bytes: int
) -> Point:
    """The dead letter as a point of ``deadletter``; ``ts_ns`` must be unique for the collector (see schema).

    The payload is kept up to ``max_bytes`` (the largest payload the collector accepts): a ``too_large`` one is cut
    there and marked ``truncated``, and cannot be replayed.
    """
    raw = orjson.dumps(reject.element) if reject.index is not None else payload
    truncated = len(raw) > max_bytes
    text, enc = encode_payload(raw[:max_bytes]) if truncated else _payload(payload, reject)
    fields: dict[str, FieldValue] = {
        "topic": topic, "payload": text, "payload_encoding": enc, "payload_bytes": len(raw), "detail": reject.detail,
        "received_at": rfc3339(from_ns(received_ns)), "status": schema.DEADLETTER_PENDING,
    }
    if reject.index is not None:
        fields["index"] = reject.index
    if truncated:
        fields["truncated"] = True
    return Point(schema.DEADLETTER, {"reason": reject.code, "collector_id": collector_id}, fields, ts_ns)


@dataclass(frozen=True, slots=True)
class StoredLetter:
    """A dead letter as read back from the store."""

    ts_ns: int  # with reason and collector_id, its identity: writing the same three again replaces it
    reason: str
    collector_id: str
    topic: str
    payload: str
    payload_encoding: str
    payload_bytes: int
    detail: str
    received_at: str
    status: str
    index: int | None = None
    truncated: bool = False
    note: str = ""

    @property
    def raw(self) -> bytes:
        """The payload's bytes as received (for an array element: the element)."""
        return base64.b64decode(self.payload) if self.payload_encoding == "base64" else self.payload.encode("utf-8")

    @property
    def pending(self) -> bool:
        return self.status != schema.DEADLETTER_REPLAYED

    def point(self, **changes: FieldValue) -> Point:
        """This letter as a point again, with ``changes`` to its fields (same identity: it replaces the stored one)."""
        fields: dict[str, FieldValue] = {
            "topic": self.topic, "payload": self.payload, "payload_encoding": self.payload_encoding,
            "payload_bytes": self.payload_bytes, "detail": self.detail, "received_at": self.received_at, "status": self.status,
        }
        if self.index is not None:
            fields["index"] = self.index
        if self.truncated:
            fields["truncated"] = True
        if self.note:
            fields["note"] = self.note
        fields.update(changes)
        return Point(schema.DEADLETTER, {"reason": self.reason, "collector_id": self.collector_id}, fields, self.ts_ns)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "time": rfc3339(from_ns(self.ts_ns)), "reason": self.reason, "collector_id": self.collector_id, "topic": self.topic,
            "payload": self.payload, "payload_encoding": self.payload_encoding, "payload_bytes": self.payload_bytes,
            "detail": self.detail, "received_at": self.received_at, "status": self.status,
        }
        if self.index is not None:
            out["index"] = self.index
        if self.truncated:
            out["truncated"] = True
        if self.note:
            out["note"] = self.note
        return out


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and value is not pd.NA


def stored_letters(df: pd.DataFrame) -> Iterator[StoredLetter]:
    """The rows of ``Store.query(schema.DEADLETTER, …)``, whichever backend answered (missing fields are NaN or absent)."""
    for row in df.to_dict("records"):
        get = {k: v for k, v in row.items() if _present(v)}
        yield StoredLetter(
            ts_ns=int(pd.Timestamp(row["time"]).value), reason=str(get.get("reason", "")),
            collector_id=str(get.get("collector_id", "")), topic=str(get.get("topic", "")), payload=str(get.get("payload", "")),
            payload_encoding=str(get.get("payload_encoding", "utf-8")), payload_bytes=int(get.get("payload_bytes", 0)),
            detail=str(get.get("detail", "")), received_at=str(get.get("received_at", "")),
            status=str(get.get("status", schema.DEADLETTER_PENDING)),
            index=int(get["index"]) if "index" in get else None,
            truncated=bool(get.get("truncated", False)) and str(get.get("truncated")).lower() != "false",
            note=str(get.get("note", "")),
        )
