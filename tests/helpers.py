"""Test helpers: registries, configs, a QoS 1 publisher that survives broker restarts, and waits on the
product's own signals (a collector's status.json) instead of sleeps."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from heatwatch.app.status import ready as service_ready
from heatwatch.core.config import Config, load_config
from heatwatch.core.registry import Home, Registry, Station, write_homes, write_stations

COMMUNITIES = ("幸福小区", "阳光花园", "Riverside")


def make_homes(n: int, communities: Iterable[str] = COMMUNITIES, floors: int = 6) -> list[Home]:
    comms = list(communities)
    homes = []
    for i in range(n):
        floor = i % floors + 1
        homes.append(
            Home(
                home_id=f"H{i:06d}",
                community=comms[i % len(comms)],
                building=f"{i // 24 % 10 + 1}号楼",
                entrance=str(i // 12 % 2 + 1),
                floor=floor,
                floors=floors,
                gable=(i // floors) % 4 == 0,
                kind="residential",
                min_temp_c=None,
                station_id=f"S{i % len(comms) + 1}",
                address=f"{comms[i % len(comms)]} {i // 24 % 10 + 1}号楼 {floor}0{i % 2 + 1}",
                contact="138-0000-0000",
            )
        )
    return homes


def make_registry_files(tmp: Path, n: int) -> tuple[Path, Path]:
    homes = make_homes(n)
    stations = [
        Station(f"S{i + 1}", f"{c}换热站", (c,), 35.0, 75.0) for i, c in enumerate(COMMUNITIES)
    ]
    hp, sp = tmp / "homes.csv", tmp / "stations.csv"
    write_homes(hp, homes)
    write_stations(sp, stations)
    return hp, sp


def registry_for(n: int) -> Registry:
    homes = make_homes(n)
    stations = {f"S{i + 1}": Station(f"S{i + 1}", f"{c}换热站", (c,), 35.0, 75.0) for i, c in enumerate(COMMUNITIES)}
    return Registry({h.home_id: h for h in homes}, stations)


def config(tmp: Path, port: int, **sections: dict[str, Any]) -> Config:
    base: dict[str, dict[str, Any]] = {
        "general": {"data_dir": str(tmp / "data")},
        "mqtt": {"port": port, "client_id": f"hw-test-{tmp.name}"[:60], "reconnect_min_s": 1, "reconnect_max_s": 2},
        "collector": {"batch_interval_s": 0.2, "metrics_interval_s": 1.0, "store_retry_s": 0.5},
    }
    for k, v in sections.items():
        base.setdefault(k, {}).update(v)
    return load_config(environ={}, overrides=base)


class Publisher:
    """QoS 1 publisher with a persistent session: what is not acknowledged is resent after a reconnect."""

    def __init__(self, port: int, client_id: str, protocol: int = mqtt.MQTTv311, max_inflight: int = 200) -> None:
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
            clean_session=False if protocol == mqtt.MQTTv311 else None,
        )
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 2)
        self.acked = 0
        self.sent = 0
        self._lock = threading.Lock()
        self.client.on_publish = self._on_publish
        kwargs: dict[str, Any] = {}
        if protocol == mqtt.MQTTv5:
            kwargs["clean_start"] = False
        self.client.connect("127.0.0.1", port, keepalive=10, **kwargs)
        self.client.loop_start()

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with self._lock:
            self.acked += 1

    MAX_OUTSTANDING = 30_000  # well under the 65,535 MQTT packet ids: paho drops a publish whose id is still in use

    def publish(self, topic: str, body: Any, qos: int = 1) -> None:
        """Publish, never silently dropping: paho refuses (MQTT_ERR_QUEUE_SIZE) a message whose packet id is still
        taken by an unacknowledged one, which a fast publisher reaches after 65,535 outstanding messages."""
        payload = body if isinstance(body, bytes) else orjson.dumps(body)
        if qos:
            while self.sent - self.acked >= self.MAX_OUTSTANDING:  # wait for the broker's PUBACKs
                time.sleep(0.01)
        info = self.client.publish(topic, payload, qos=qos)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):  # NO_CONN: kept and sent on reconnect
            raise RuntimeError(f"publish to {topic} refused by the client: {mqtt.error_string(info.rc)}")
        if qos:
            self.sent += 1

    def wait_all(self, n: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.acked >= n:
                return
            time.sleep(0.05)
        raise TimeoutError(f"only {self.acked} of {n} publishes acknowledged")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


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
