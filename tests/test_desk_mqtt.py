"""The desk's MQTT intake on a real Mosquitto: a good order is stored and answered, a bad one refused by name."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dispatch.desk import Desk
from dispatch.intake_mqtt import MqttIntake
from heatwatch.core.timeutil import SettableClock
from heatwatch.infra.mqtt.client import AckedPublisher, Endpoint
from heatwatch.infra.mqtt.topics import orders_accepted_topic, orders_new_topic, orders_refused_topic
from tools.servers import Mosquitto

T0 = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
ORDER = {
    "reporter": "李娜", "phone": "13900000000", "address": "幸福里 5号楼 1单元 302", "home_id": "H-0302",
    "community": "幸福里", "category": "leak", "content": "楼道暖气管漏水", "handling_unit": "幸福里换热站班组",
}


def answer(listener: AckedPublisher) -> tuple[str, dict[str, Any]]:
    topic, payload = listener.inbox.get(timeout=10)
    return topic, json.loads(payload.decode("utf-8"))


@pytest.mark.mosquitto
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_good_order_is_stored_and_a_bad_one_refused_naming_the_element(
    mosquitto: Mosquitto, tmp_path: Path, protocol: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}/热网"
    ep = Endpoint(port=mosquitto.port, protocol=protocol)
    desk = Desk.open_file(tmp_path / "desk.sqlite", SettableClock(T0))
    listener = AckedPublisher(ep, f"l-{uuid.uuid4().hex[:8]}",
                              subscribe=[orders_accepted_topic(prefix), orders_refused_topic(prefix)]).connect()
    pub = AckedPublisher(ep, f"p-{uuid.uuid4().hex[:8]}").connect()
    intake = MqttIntake(desk, ep, prefix, f"desk-{uuid.uuid4().hex[:8]}").start()
    try:
        assert intake.subscribed.wait(10)
        pub.publish(orders_new_topic(prefix), json.dumps({**ORDER, "ref": "wx-1"}, ensure_ascii=False).encode())
        topic, got = answer(listener)
        assert topic == orders_accepted_topic(prefix) and got["ref"] == "wx-1"
        o = desk.get(got["order_id"])
        assert (o.source, o.reporter, o.content, o.category) == ("mqtt", "李娜", "楼道暖气管漏水", "leak")
        assert [(e["event"], e["by"]) for e in desk.history(o.order_id)] == [("open", "system:mqtt")]

        pub.publish(orders_new_topic(prefix), json.dumps({k: v for k, v in ORDER.items() if k != "phone"}, ensure_ascii=False).encode())
        topic, got = answer(listener)
        assert topic == orders_refused_topic(prefix)
        assert got["error"] == "order refused: missing phone" and "李娜" in got["message"]
        pub.publish(orders_new_topic(prefix), b'{"category": "leak"')
        topic, got = answer(listener)
        assert topic == orders_refused_topic(prefix) and got["error"].startswith("order refused: invalid JSON")
        assert (intake.accepted, intake.refused, intake.failed) == (1, 2, 0)

        # published while the desk is away: the persistent session keeps it, and the desk takes it on its return
        intake.stop()
        pub.publish(orders_new_topic(prefix), json.dumps({**ORDER, "ref": "wx-2", "content": "阀门滴水"}).encode())
        intake = MqttIntake(desk, ep, prefix, intake.client_id).start()
        topic, got = answer(listener)
        assert topic == orders_accepted_topic(prefix) and desk.get(got["order_id"]).content == "阀门滴水"
    finally:
        intake.stop()
        pub.close()
        listener.close()


def test_a_message_without_ref_opens_one_order_however_often_it_comes(tmp_path: Path) -> None:
    desk = Desk.open_file(tmp_path / "desk.sqlite", SettableClock(T0))
    intake = MqttIntake(desk, Endpoint(port=1, protocol="5"), "heat", "desk-x")  # never connected: take() alone
    payload = json.dumps(ORDER, ensure_ascii=False).encode()
    (t1, a1), (t2, a2) = intake.take(payload), intake.take(payload)
    assert t1 == t2 == "heat/orders/accepted" and a1["order_id"] == a2["order_id"]
    topic, refused = intake.take(json.dumps({**ORDER, "source": "outage"}).encode())
    assert topic == "heat/orders/refused" and "source: 'outage' cannot come over MQTT" in refused["error"]


@pytest.mark.mosquitto
def test_an_order_the_desk_could_not_store_comes_again(mosquitto: Mosquitto, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    ep = Endpoint(port=mosquitto.port, protocol="5")
    desk = Desk.open_file(tmp_path / "desk.sqlite", SettableClock(T0))
    real_open, calls = desk.open, []

    def flaky_open(inp: Any, by: str) -> Any:
        calls.append(inp.ref)
        if len(calls) == 1:
            raise RuntimeError("database is locked")  # the desk's file, busy past its timeout
        return real_open(inp, by)

    monkeypatch.setattr(desk, "open", flaky_open)
    listener = AckedPublisher(ep, f"l-{prefix}", subscribe=[orders_accepted_topic(prefix)]).connect()
    intake = MqttIntake(desk, ep, prefix, f"desk-{prefix}", redeliver_after_s=0.05).start()
    try:
        assert intake.subscribed.wait(10)
        listener.publish(orders_new_topic(prefix), json.dumps({**ORDER, "ref": "wx-7"}, ensure_ascii=False).encode())
        topic, got = answer(listener)  # only once the broker redelivered it on the new connection
        assert topic == orders_accepted_topic(prefix) and desk.get(got["order_id"]).ref == "wx-7"
        assert calls == ["wx-7", "wx-7"] and (intake.failed, intake.redeliveries, intake.accepted) == (1, 1, 1)
    finally:
        intake.stop()
        listener.close()
