"""Through real Mosquitto: the closed loop (setpoints change the simulated station) and the load generator."""

from __future__ import annotations

import csv
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from heatwatch.app.lockstep import Lockstep
from heatwatch.infra.mqtt.client import PublishError
from simulators.load import LoadGenerator, LoadPlan, expected_readings
from simulators.mqttio import MqttTarget, Publisher
from simulators.runner import ScenarioRunner
from tools.fixtures import design_scenario
from tools.servers import Mosquitto, free_port

pytestmark = pytest.mark.mosquitto


class Collect:
    """A paho subscriber that keeps every message it gets."""

    def __init__(self, port: int, topic: str, protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv5) -> None:
        assert topic.endswith("#")
        self.port, self.topic = port, topic
        self.messages: list[tuple[str, bytes]] = []
        self._marker = f"barrier-{uuid.uuid4().hex[:8]}".encode()
        self._barrier = threading.Event()
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"collect-{uuid.uuid4().hex[:8]}",
                                  protocol=protocol)
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p=None: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._ready.wait(10), "subscription not confirmed"

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.payload == self._marker:
            self._barrier.set()
            return
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def wait_for(self, n: int, timeout: float = 30.0) -> int:
        """How many arrived, once ``n`` have and a marker published after them has (so duplicates would have too:
        the broker queues each subscriber's messages in the order it accepted them)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.messages) < n:
            time.sleep(0.05)
        marker = Publisher(MqttTarget(port=self.port), f"marker-{uuid.uuid4().hex[:8]}").connect()
        try:
            marker.publish(self.topic[:-1] + "barrier", self._marker)
            assert marker.drain(10)
        finally:
            marker.close()
        assert self._barrier.wait(timeout), "the barrier message did not arrive"
        return len(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def collector_factory(mosquitto: Mosquitto) -> Iterator[list[Collect]]:
    made: list[Collect] = []
    yield made
    for c in made:
        c.close()


def publish_retained(port: int, topic: str, body: dict[str, object]) -> None:
    pub = Publisher(MqttTarget(port=port), f"ctl-{uuid.uuid4().hex[:8]}").connect()
    try:
        pub.publish(topic, json.dumps(body, ensure_ascii=False).encode(), retain=True)
        assert pub.drain(10)
    finally:
        pub.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_setpoint_on_mosquitto_changes_the_simulated_station(
    mosquitto: Mosquitto, prefix: str, tmp_path: Path, protocol: str
) -> None:
    until = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    start = until - timedelta(hours=8)
    effective = start + timedelta(hours=3)
    publish_retained(
        mosquitto.port,
        f"{prefix}/control/setpoint/S1",
        {"proposal_id": "p-1", "station_id": "S1", "supply_c": 66.0, "effective_at": effective.isoformat(),
         "issued": start.isoformat(), "reason": "测试：提高供水温度"},
    )
    target = MqttTarget(port=mosquitto.port, topic_prefix=prefix, protocol=protocol)
    sc = design_scenario(duration_h=8)
    runner = ScenarioRunner(sc, target, out_dir=tmp_path, speed=0, start=start, until=until)
    lockstep = Lockstep(runner)
    try:
        lockstep.begin()
        lockstep.deliver_setpoints(1)  # the retained setpoint is with the simulator before its first step
        lockstep.run()
    finally:
        lockstep.close()
    with (tmp_path / "truth_stations.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    before = [r for r in rows if r["ts"] < "2026-01-10T07:00:00Z"]
    after = [r for r in rows if r["ts"] >= "2026-01-10T10:00:00Z"]
    assert all(float(r["supply_c"]) == pytest.approx(60.0, abs=0.01) for r in before), "waits for effective_at"
    assert all(float(r["setpoint_c"]) == 66.0 for r in after)
    assert float(after[-1]["supply_c"]) == pytest.approx(66.0, abs=0.1)
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    applied = [e for e in events if e["kind"] == "setpoint_applied"]
    assert len(applied) == 1 and applied[0]["proposal_id"] == "p-1" and applied[0]["reason"] == "测试：提高供水温度"
    assert applied[0]["ts"].startswith("2026-01-10T07:00:00")
    assert runner.stats()["acked"] == runner.published


def test_runner_publishes_everything_it_says_it_published(
    mosquitto: Mosquitto, prefix: str, tmp_path: Path, collector_factory: list[Collect]
) -> None:
    sub = Collect(mosquitto.port, f"{prefix}/#")
    collector_factory.append(sub)
    until = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    runner = ScenarioRunner(design_scenario(duration_h=3), MqttTarget(port=mosquitto.port, topic_prefix=prefix),
                            out_dir=tmp_path, speed=0, until=until)
    stats = runner.run()
    got = sub.wait_for(stats["published"])
    assert got == stats["published"] > 0
    topics = {t.split("/")[1] for t, _ in sub.messages}
    assert topics == {"indoor", "station", "weather"}
    assert any(t.endswith("/forecast") for t, _ in sub.messages)


def test_malformed_setpoints_are_refused_and_the_run_goes_on(tmp_path: Path) -> None:
    until = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    runner = ScenarioRunner(design_scenario(duration_h=2), None, out_dir=tmp_path, speed=0, until=until)
    runner.submit_setpoint("heat/control/setpoint/S1", b"{not json")
    runner.submit_setpoint("heat/control/setpoint/S1", b'{"supply_c": "hot", "effective_at": "2026-01-10T10:00:00Z"}')
    runner.submit_setpoint("heat/control/setpoint/NOPE", b'{"supply_c": 70, "effective_at": "2026-01-10T10:00:00Z"}')
    runner.submit_setpoint("heat/control/setpoint/S1", b'{"supply_c": 70}')
    runner.submit_setpoint("heat/control/setpoint/S1", b'{"supply_c": 64, "effective_at": "2026-01-10T10:30:00Z"}')
    stats = runner.run()
    assert stats["setpoints_refused"] == 4
    assert stats["setpoints_applied"] == 1
    events = (tmp_path / "events.jsonl").read_text(encoding="utf-8")
    assert "not JSON" in events and "supply_c must be a finite number" in events and "unknown station" in events
    assert "effective_at is missing" in events


def test_load_generator_messages_arrive_on_mosquitto(
    mosquitto: Mosquitto, prefix: str, collector_factory: list[Collect]
) -> None:
    sub = Collect(mosquitto.port, f"{prefix}/indoor/#")
    collector_factory.append(sub)
    ids = tuple(f"幸福里-{k:03d}" for k in range(40))  # Chinese ids in topics
    plan = LoadPlan(ids, total=2003, batch=5, t0_s=1_760_000_000, interval_s=60, seed=3)
    gen = LoadGenerator(MqttTarget(port=mosquitto.port, topic_prefix=prefix), plan, rate=0, client_id=f"load-{prefix}")
    stats = gen.run()
    assert stats["all_acked"] and stats["messages"] == plan.messages == 401
    assert sub.wait_for(plan.messages) == plan.messages
    got: dict[tuple[str, int], float] = {}
    for topic, payload in sub.messages:
        body = json.loads(payload)
        assert isinstance(body, list) and 1 <= len(body) <= 5
        hid = topic.split("/", 2)[2]
        for rd in body:
            ts = int(datetime.fromisoformat(rd["ts"]).timestamp())
            assert (hid, ts) not in got, "every reading is unique"
            got[(hid, ts)] = rd["temp_c"]
    assert got == expected_readings(plan)
    assert len(got) == 2003


def test_load_generator_paces_to_the_target_rate(mosquitto: Mosquitto, prefix: str) -> None:
    plan = LoadPlan(("h1", "h2"), total=600, batch=1, t0_s=1_760_000_000)
    gen = LoadGenerator(MqttTarget(port=mosquitto.port, topic_prefix=prefix), plan, rate=1000.0)
    stats = gen.run()
    assert stats["readings"] == 600
    assert stats["seconds"] >= 0.55, "600 readings at 1000/s cannot go out in less than 0.6 s"


def test_publisher_reports_an_unreachable_broker() -> None:
    with pytest.raises(PublishError, match=r"127\.0\.0\.1:\d+"):
        Publisher(MqttTarget(port=free_port()), "nobody").connect(timeout=3)
