"""What a collector reports about itself: one typed value, read by status, /metrics and the tests."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class CollectorSnapshot:
    received: int = 0  # MQTT messages
    readings: int = 0  # points decoded
    stored: int = 0  # points written to the store (incl. replayed)
    rejected: int = 0  # readings / payloads dead-lettered
    spooled: int = 0
    replayed: int = 0
    acked: int = 0
    ack_skipped: int = 0  # acks dropped because the connection changed (the broker redelivers)
    batches: int = 0
    last_batch_ms: float = 0.0
    spool_batches: int = 0
    spool_points: int = 0
    spool_bytes: int = 0
    queue_depth: int = 0
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    connected: bool = False
    subscribed: bool = False  # SUBACK received for every filter: readings published from now on reach us
    unacked: int = 0  # received, not yet acknowledged
    stalled_s: float = 0.0  # unacknowledged work with no progress for this long
    live: bool = True  # progress-based liveness (see Collector.live)
    not_live_reason: str = ""
    session_lost: int = 0  # the broker forgot our persistent session: readings may be lost
    session_lost_at: float | None = None  # epoch seconds of the last loss
    stalls: int = 0  # stalled sessions detected and reconnected
    redeliveries: int = 0  # reconnects made so the broker resends messages left unacknowledged after an error
    probes: int = 0
    probe_refused: bool = False
    connects: int = 0
    writer_errors: int = 0
    store_alarms: dict[str, int] = field(default_factory=dict)
    deadletters_unpublished: int = 0  # dead letters paho would not publish (they are in the store all the same)
    spool_set_aside: int = 0  # corrupt spool entries set aside (collector/spool.py)

    def __getitem__(self, key: str) -> Any:
        """Mapping-style access for older callers (``snap["stored"]``)."""
        return getattr(self, key)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def log_line(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("rejects_by_reason", "store_alarms")}
