"""The zero-setup path: amqtt (MQTT 3.1.1 only) in-process; protocol "auto" falls back from 5 to 3.1.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.service import Collector
from heatwatch.core import schema
from heatwatch.core.timeutil import utc_now
from heatwatch.infra.embedded_broker import EmbeddedBroker
from heatwatch.infra.mqtt.client import resolve_protocol
from heatwatch.infra.storage.sqlite import SqliteStore
from tests.helpers import Publisher, config, registry_for
from tools.servers import Mosquitto


@pytest.fixture
def amqtt_broker() -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker().start()
    yield broker
    broker.stop()


def test_auto_protocol_falls_back_to_311_on_amqtt_and_stores(tmp_path: Path, amqtt_broker: EmbeddedBroker) -> None:
    cfg = config(tmp_path, amqtt_broker.port, mqtt={"protocol": "auto"})
    assert resolve_protocol(cfg) == "3.1.1"
    store = SqliteStore(tmp_path / "s.sqlite")
    col = Collector(cfg, registry_for(20), store).start()
    assert col.wait_ready()
    pub = Publisher(amqtt_broker.port, "amqtt-pub")
    t0 = utc_now().timestamp() - 600
    for i in range(300):
        pub.publish(f"heat/indoor/H{i % 20:06d}", {"ts": t0 + i, "temp_c": 20.0})
    pub.wait_all(300)
    deadline = time.monotonic() + 30
    while col.snapshot()["stored"] < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    col.stop()
    pub.close()
    assert store.count(schema.INDOOR, utc_now().replace(year=2000), utc_now()) == 300


def test_auto_protocol_picks_5_on_mosquitto(tmp_path: Path, mosquitto: Mosquitto) -> None:
    assert resolve_protocol(config(tmp_path, mosquitto.port, mqtt={"protocol": "auto"})) == "5"
