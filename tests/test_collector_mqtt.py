"""The collector against a real Mosquitto: validation, dead letters, spool, acks, sessions, shared subscriptions."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest

from collector.service import Collector
from heatwatch.core import schema
from heatwatch.core.model import Point
from heatwatch.core.timeutil import utc_now
from heatwatch.infra.storage import StoreError, StoreUnavailable
from heatwatch.infra.storage.sqlite import SqliteStore
from tests.helpers import Listener, Publisher, config, registry_for
from tests.test_codec import BAD_CASES
from tools.servers import Mosquitto

REG = registry_for(60)
# Mosquitto itself refuses topics with control characters (it disconnects the publisher), so those
# cases are covered by the codec unit tests only.
MQTT_BAD_CASES = [c for c in BAD_CASES if not any(ord(ch) < 0x20 for ch in c[1])]


def wait_until(cond: object, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def all_indoor(store: SqliteStore) -> dict[tuple[str, int], float]:
    df = store.query(schema.INDOOR, utc_now() - timedelta(days=2), utc_now() + timedelta(hours=1))
    return {(h, int(t.value)): float(v) for h, t, v in zip(df["home_id"], df["time"], df["temp_c"], strict=True)}


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_bad_input_suite_dead_lettered_and_good_readings_stored(tmp_path: Path, mosquitto: Mosquitto, protocol: str) -> None:
    prefix = f"t{protocol.replace('.', '')}{tmp_path.name[-6:]}"
    cfg = config(tmp_path, mosquitto.port, mqtt={"protocol": protocol, "topic_prefix": prefix})
    store = SqliteStore(tmp_path / "s.sqlite")
    dead = Listener(mosquitto.port, f"{prefix}/deadletter")
    col = Collector(cfg, REG, store).start()
    assert col.wait_ready()
    pub = Publisher(mosquitto.port, f"pub-{prefix}")
    t = utc_now().timestamp() - 60
    sent = 0
    for _, topic, payload, _ in MQTT_BAD_CASES:
        pub.publish(topic.replace("heat/", f"{prefix}/", 1), payload)
        sent += 1
    # a gateway batch with good and bad readings, Chinese site name, and a good message after all the bad ones
    pub.publish(f"{prefix}/indoor/H000005", [{"ts": t, "temp_c": 20.5}, {"ts": t + 1, "temp_c": None}, {"ts": t + 2, "temp_c": 21.0}])
    pub.publish(f"{prefix}/weather/北京", {"ts": t, "temp_c": -8.5})
    pub.publish(f"{prefix}/indoor/H000007", {"ts": t, "temp_c": 19.75})
    sent += 3
    pub.wait_all(sent)
    wait_until(lambda: col.snapshot()["received"] >= sent, what="all messages processed")
    letters = dead.wait_for(len(MQTT_BAD_CASES) + 1)
    reasons = [orjson.loads(p)["reason"] for _, p in letters]
    assert len(letters) == len(MQTT_BAD_CASES) + 1 >= 21
    for _, _, _, code in MQTT_BAD_CASES:
        assert any(r.startswith(code) for r in reasons), code
    stored = all_indoor(store)
    assert sorted(stored.values()) == [19.75, 20.5, 21.0]
    assert store.count(schema.WEATHER, utc_now() - timedelta(hours=1), utc_now()) == 1
    snap = col.snapshot()
    assert snap["rejected"] == len(MQTT_BAD_CASES) + 1 and snap["connected"]
    assert snap["rejects_by_reason"]["invalid_json"] == 5
    col.stop()
    # collector self-metrics are in the store for Grafana
    assert store.count(schema.COLLECTOR, utc_now() - timedelta(hours=1), utc_now() + timedelta(minutes=1)) >= 1
    assert store.count(schema.COLLECTOR_REJECTS, utc_now() - timedelta(hours=1), utc_now() + timedelta(minutes=1)) >= 5
    pub.close()
    dead.close()


class FlakyStore(SqliteStore):
    """A real SQLite store that can be switched off (unreachable) or made to refuse some points."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.down = threading.Event()
        self.refuse_temp: float | None = None
        self.calls = 0

    def write(self, points: Sequence[Point]) -> None:
        self.calls += 1
        if self.down.is_set():
            raise StoreUnavailable("test: store switched off")
        if self.refuse_temp is not None and any(p.fields.get("temp_c") == self.refuse_temp for p in points):
            raise StoreError("test: field type conflict")
        super().write(points)


def test_store_outage_spools_then_replays_everything(tmp_path: Path, mosquitto: Mosquitto) -> None:
    prefix = f"sp{tmp_path.name[-6:]}"
    cfg = config(tmp_path, mosquitto.port, mqtt={"topic_prefix": prefix})
    store = FlakyStore(tmp_path / "s.sqlite")
    col = Collector(cfg, REG, store).start()
    assert col.wait_ready()
    pub = Publisher(mosquitto.port, f"pub-{prefix}")
    t0 = utc_now().timestamp() - 3000
    expected = {}
    store.down.set()
    for i in range(600):
        hid = f"H{i % 60:06d}"
        expected[(hid, i)] = 15 + i / 100
        pub.publish(f"{prefix}/indoor/{hid}", {"ts": t0 + i, "temp_c": 15 + i / 100})
    pub.wait_all(600)  # acknowledged by the collector although the store is down: they are in the spool
    wait_until(lambda: col.snapshot()["acked"] == 600, what="acks while store is down")
    snap = col.snapshot()
    assert snap["spooled"] == 600 and snap["stored"] == 0 and snap["spool_points"] == 600
    store.down.clear()
    wait_until(lambda: col.snapshot()["spool_points"] == 0, what="spool drained")
    assert len(all_indoor(store)) == 600
    assert col.snapshot()["replayed"] == 600
    col.stop()
    pub.close()


def test_spool_survives_a_crash_and_is_replayed_by_the_next_collector(tmp_path: Path, mosquitto: Mosquitto) -> None:
    prefix = f"sc{tmp_path.name[-6:]}"
    cfg = config(tmp_path, mosquitto.port, mqtt={"topic_prefix": prefix})
    store = FlakyStore(tmp_path / "s.sqlite")
    store.down.set()
    col = Collector(cfg, REG, store).start()
    assert col.wait_ready()
    pub = Publisher(mosquitto.port, f"pub-{prefix}")
    t0 = utc_now().timestamp() - 3000
    for i in range(100):
        pub.publish(f"{prefix}/indoor/H{i % 60:06d}", {"ts": t0 + i, "temp_c": 20.0})
    pub.wait_all(100)
    wait_until(lambda: col.snapshot()["spool_points"] == 100, what="spooled")
    col.stop()  # the store never came back during this collector's life
    store.down.clear()
    col2 = Collector(cfg, REG, store).start()
    wait_until(lambda: col2.snapshot()["replayed"] == 100, what="replay by the next collector")
    assert len(all_indoor(store)) == 100
    col2.stop()
    pub.close()


def test_points_the_store_refuses_are_isolated_and_dead_lettered(tmp_path: Path, mosquitto: Mosquitto) -> None:
    prefix = f"iso{tmp_path.name[-6:]}"
    cfg = config(tmp_path, mosquitto.port, mqtt={"topic_prefix": prefix})
    store = FlakyStore(tmp_path / "s.sqlite")
    store.refuse_temp = 33.3
    dead = Listener(mosquitto.port, f"{prefix}/deadletter")
    col = Collector(cfg, REG, store).start()
    assert col.wait_ready()
    pub = Publisher(mosquitto.port, f"pub-{prefix}")
    t0 = utc_now().timestamp() - 3000
    body = [{"ts": t0 + k, "temp_c": 33.3 if k == 7 else 20.0 + k / 10} for k in range(40)]
    pub.publish(f"{prefix}/indoor/H000001", body)
    pub.wait_all(1)
    letters = dead.wait_for(1)
    assert len(letters) == 1 and orjson.loads(letters[0][1])["reason"].startswith("store_rejected")
    assert len(all_indoor(store)) == 39
    col.stop()
    pub.close()
    dead.close()


def test_persistent_session_keeps_messages_published_while_collector_is_down(tmp_path: Path, mosquitto: Mosquitto) -> None:
    prefix = f"ps{tmp_path.name[-6:]}"
    for protocol in ("5", "3.1.1"):
        cfg = config(tmp_path, mosquitto.port, mqtt={"topic_prefix": prefix, "protocol": protocol, "client_id": f"c-{prefix}-{protocol}"})
        store = SqliteStore(tmp_path / f"s{protocol}.sqlite")
        col = Collector(cfg, REG, store).start()
        assert col.wait_ready()
        col.stop()  # graceful: session stays at the broker
        pub = Publisher(mosquitto.port, f"pub-{prefix}-{protocol}")
        t0 = utc_now().timestamp() - 3000
        for i in range(200):
            pub.publish(f"{prefix}/indoor/H{i % 60:06d}", {"ts": t0 + i, "temp_c": 21.0})
        pub.wait_all(200)
        pub.close()
        col = Collector(cfg, REG, store).start()
        wait_until(lambda c=col: c.snapshot()["stored"] >= 200, what=f"backlog delivered (MQTT {protocol})")
        col.stop()
        assert len(all_indoor(store)) == 200
        prefix += "b"


def test_shared_subscription_splits_load_without_loss(tmp_path: Path, mosquitto: Mosquitto) -> None:
    prefix = f"sh{tmp_path.name[-6:]}"
    store = SqliteStore(tmp_path / "s.sqlite")
    cols = []
    for k in range(2):
        cfg = config(tmp_path, mosquitto.port, mqtt={"topic_prefix": prefix, "shared_group": "g", "client_id": f"{prefix}-{k}"})
        cols.append(Collector(cfg, REG, store).start())
    assert all(c.wait_ready() for c in cols)
    pub = Publisher(mosquitto.port, f"pub-{prefix}", protocol=mqtt.MQTTv5)
    t0 = utc_now().timestamp() - 3000
    n = 2000
    for i in range(n):
        pub.publish(f"{prefix}/indoor/H{i % 60:06d}", {"ts": t0 + i, "temp_c": 20.0 + (i % 7)})
    pub.wait_all(n)
    wait_until(lambda: sum(int(c.snapshot()["received"]) for c in cols) >= n, what="all delivered")
    shares = [int(c.snapshot()["received"]) for c in cols]
    for c in cols:
        c.stop()
    assert sum(shares) == n and min(shares) > n * 0.2, shares
    assert len(all_indoor(store)) == n
    pub.close()
