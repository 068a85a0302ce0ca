"""Fixtures shared by the tests and the benchmarks: made-up registries, a design-point scenario, and a QoS 1
publisher independent of heatwatch's own MQTT code (so a test of the collector does not test it with itself).

Not part of the product (the wheel ships no ``tools``): ``tests/`` and ``bench/`` import from here, and
``bench/`` imports nothing from ``tests/`` (import-linter, pyproject.toml).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from heatwatch.core.registry import Home, Registry, Station, write_homes, write_stations
from simulators.scenario import Scenario, parse_scenario

COMMUNITIES = ("幸福小区", "阳光花园", "Riverside")


def make_homes(n: int, communities: Iterable[str] = COMMUNITIES, floors: int = 6) -> list[Home]:
    """``n`` residential homes spread over ``communities`` (station S1, S2, … per community), a mix of edge homes."""
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


def _stations() -> list[Station]:
    return [Station(f"S{i + 1}", f"{c}换热站", (c,), 35.0, 75.0) for i, c in enumerate(COMMUNITIES)]


def make_registry_files(tmp: Path, n: int) -> tuple[Path, Path]:
    """``make_homes(n)`` and their stations written as ``tmp/homes.csv`` and ``tmp/stations.csv``."""
    hp, sp = tmp / "homes.csv", tmp / "stations.csv"
    write_homes(hp, make_homes(n))
    write_stations(sp, _stations())
    return hp, sp


def registry_for(n: int) -> Registry:
    """The registry of ``make_homes(n)``, in memory."""
    return Registry({h.home_id: h for h in make_homes(n)}, {s.station_id: s for s in _stations()})


def design_scenario(**over: Any) -> Scenario:
    """A one-station, one-community scenario with constant weather at the design point; ``over`` replaces
    top-level tables."""
    body: dict[str, Any] = {
        "name": "test",
        "seed": 5,
        "duration_h": 24,
        "step_min": 15,
        "network": {
            "design": {"outdoor_c": -9.0, "indoor_c": 20.0, "supply_c": 60.0, "return_c": 45.0,
                       "margin_top_c": 2.0, "margin_ground_c": 1.5, "margin_gable_c": 1.0, "home_spread_c": 0.2},
            "stations": [{"id": "S1", "name": "测试换热站", "setpoint_c": 60.0, "supply_min_c": 35.0,
                          "supply_max_c": 80.0}],
            "communities": [{"name": "测试小区", "code": "T", "station": "S1", "buildings": 4, "floors": 7,
                             "entrances": 3, "homes_per_floor": 2, "coverage": 1.0}],
        },
        "weather": {"mean_c": -9.0, "diurnal_amplitude_c": 0.0, "front_sd_c": 0.0},
    }
    body.update(over)
    return parse_scenario(body, "test scenario")


class Publisher:
    """QoS 1 publisher with a persistent session: what is not acknowledged is resent after a reconnect."""

    MAX_OUTSTANDING = 30_000  # well under the 65,535 MQTT packet ids: paho drops a publish whose id is still in use

    def __init__(
        self, port: int, client_id: str, protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv311, max_inflight: int = 200
    ) -> None:
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
        """Block until ``n`` publishes are acknowledged (TimeoutError after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.acked >= n:
                return
            time.sleep(0.05)
        raise TimeoutError(f"only {self.acked} of {n} publishes acknowledged")

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()
