"""Test helpers: configs, a listener, and waits on the product's own signals (a collector's status.json) instead of
sleeps. The registries and the QoS 1 publisher live in tools.fixtures (the benchmarks use them too) and are
re-exported here."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from heatwatch.app.status import ready as service_ready
from heatwatch.core.config import Config, load_config
from tools.fixtures import COMMUNITIES, Publisher, design_scenario, make_homes, make_registry_files, registry_for

__all__ = [
    "COMMUNITIES", "Listener", "Publisher", "config", "design_scenario", "make_homes", "make_registry_files", "read_status",
    "registry_for", "wait_subscribed", "wait_until",
]


def config(tmp: Path, port: int, **sections: dict[str, Any]) -> Config:
    base: dict[str, dict[str, Any]] = {
        "general": {"data_dir": str(tmp / "data")},
        "mqtt": {"port": port, "client_id": f"hw-test-{tmp.name}"[:60], "reconnect_min_s": 1, "reconnect_max_s": 2},
        "collector": {"batch_interval_s": 0.2, "metrics_interval_s": 1.0, "store_retry_s": 0.5, "store_retry_max_s": 2.0},
    }
    for k, v in sections.items():
        base.setdefault(k, {}).update(v)
    return load_config(environ={}, overrides=base)


class Listener:
    """Collects messages on a topic filter (e.g. the dead-letter topic)."""

    def __init__(self, port: int, topic: str, protocol: int = mqtt.MQTTv311) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=protocol)
        self.ready = threading.Event()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self.ready.wait(10):
            raise TimeoutError("listener did not subscribe")

    def wait_for(self, n: int, timeout: float = 20.0) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(cond: Callable[[], Any], timeout: float, what: str, poll_s: float = 0.05) -> Any:
    """Poll ``cond`` until it returns something truthy (returned); AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll_s)


def read_status(data_dir: Path) -> dict[str, Any] | None:
    """The snapshot a running ``heatwatch collect``/``run`` keeps in ``<data_dir>/status.json`` (None if absent)."""
    try:
        doc = json.loads((data_dir / "status.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):  # not written yet, or (never: it is replaced atomically) torn
        return None
    return doc if isinstance(doc, dict) else None


def wait_subscribed(
    data_dir: Path, timeout: float = 60.0, proc: subprocess.Popen[Any] | None = None, connects: int = 1
) -> dict[str, Any]:
    """Block until the collector writing ``data_dir`` is ready — the broker acknowledged its subscriptions
    (``heatwatch.app.status.ready``: what ``heatwatch status --wait ready`` and ``/readyz`` answer; status.json is
    rewritten as soon as it changes): from then on nothing published is lost.

    With ``proc`` the snapshot must come from that process (a SIGKILLed predecessor's file still says
    ready, and is fresh for a while, so ``status --wait ready`` could be fooled) and its exit ends the wait
    at once; ``connects`` asks for that many MQTT connections (2: it has reconnected after a broker restart).
    """

    def subscribed() -> dict[str, Any] | None:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the collector exited with code {proc.returncode} before subscribing")
        snap = read_status(data_dir)
        if not snap or not service_ready(snap) or (proc is not None and snap.get("pid") != proc.pid):
            return None
        return snap if int((snap.get("broker") or {}).get("connects", 1)) >= connects else None

    result: dict[str, Any] = wait_until(subscribed, timeout, f"the collector in {data_dir} to subscribe")
    return result
