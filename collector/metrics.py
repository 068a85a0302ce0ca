"""The collector's counters in Prometheus text format (what operations teams scrape), from one snapshot."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector as _PromCollector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# snapshot key -> (metric name without the heatwatch_collector_ prefix, help); counters only grow
COUNTERS: dict[str, tuple[str, str]] = {
    "received": ("messages_received", "MQTT messages received"),
    "readings": ("readings_decoded", "readings decoded from messages"),
    "stored": ("readings_stored", "readings written to the store (including replayed from the spool)"),
    "rejected": ("readings_rejected", "readings or payloads dead-lettered"),
    "spooled": ("readings_spooled", "readings written to the disk spool while the store was down"),
    "replayed": ("readings_replayed", "readings moved from the spool to the store"),
    "acked": ("messages_acked", "messages acknowledged to the broker after durable storage"),
    "ack_skipped": ("acks_skipped", "acknowledgements dropped because the connection changed (redelivered)"),
    "session_lost": ("sessions_lost", "times the broker had forgotten our persistent session: readings may be lost"),
    "stalls": ("session_stalls", "stalled MQTT sessions detected and recovered by reconnecting"),
    "redeliveries": ("redelivery_reconnects", "reconnects made so the broker resends messages left unacknowledged after an error"),
    "connects": ("connects", "MQTT connections made"),
    "writer_errors": ("writer_errors", "unexpected errors in the writer thread (it carries on)"),
}
GAUGES: dict[str, tuple[str, str]] = {
    "connected": ("connected", "1 while connected to the broker"),
    "subscribed": ("subscribed", "1 once the broker acknowledged every subscription"),
    "live": ("live", "1 while making progress (0: unacknowledged work with no progress)"),
    "unacked": ("unacked_messages", "messages received and not yet acknowledged"),
    "stalled_s": ("stalled_seconds", "seconds of unacknowledged work with no progress"),
    "queue_depth": ("queue_depth", "messages waiting for the worker"),
    "spool_batches": ("spool_batches", "batches waiting in the spool"),
    "spool_points": ("spool_readings", "readings waiting in the spool"),
    "spool_bytes": ("spool_bytes", "bytes used by the spool"),
    "last_batch_ms": ("last_batch_milliseconds", "decode + store + ack time of the last batch"),
}


class _SnapshotCollector(_PromCollector):
    def __init__(self, snap: Mapping[str, Any], labels: Mapping[str, str]) -> None:
        self.snap = snap
        self.labels = dict(labels)

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        names, values = list(self.labels), list(self.labels.values())
        for key, (name, doc) in COUNTERS.items():
            if key in self.snap:
                c = CounterMetricFamily(f"heatwatch_collector_{name}", doc, labels=names)
                c.add_metric(values, float(self.snap[key] or 0))
                yield c
        for key, (name, doc) in GAUGES.items():
            if key in self.snap:
                g = GaugeMetricFamily(f"heatwatch_collector_{name}", doc, labels=names)
                g.add_metric(values, float(self.snap[key] or 0))
                yield g
        by_reason = CounterMetricFamily("heatwatch_collector_rejects", "dead-lettered readings by reason",
                                        labels=[*names, "reason"])
        for reason, n in sorted((self.snap.get("rejects_by_reason") or {}).items()):
            by_reason.add_metric([*values, reason], float(n))
        yield by_reason
        alarms = CounterMetricFamily("heatwatch_collector_store_alarms", "store errors that are not bad data, by alarm",
                                     labels=[*names, "alarm"])
        for alarm, n in sorted((self.snap.get("store_alarms") or {}).items()):
            alarms.add_metric([*values, alarm], float(n))
        yield alarms


def render(snap: Mapping[str, Any], labels: Mapping[str, str]) -> bytes:
    """Prometheus exposition text for one collector snapshot (``CollectorSnapshot.as_dict()``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snap, labels))
    return generate_latest(registry)
