"""heatwatch.infra.mqtt.client.AckedPublisher on a real Mosquitto: acknowledged means acknowledged."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from heatwatch.infra.mqtt.client import AckedPublisher, Endpoint, PublishError
from heatwatch.infra.mqtt.topics import setpoint_filter, setpoint_topic
from tools.servers import Mosquitto, free_port


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """Anonymous clients may write ``allowed/#`` and nothing else."""
    (tmp_path / "acl").write_text("topic readwrite allowed/#\n", encoding="utf-8")
    broker = Mosquitto(tmp_path / "mosquitto", extra_conf=f"acl_file {tmp_path / 'acl'}").start()
    yield broker
    broker.stop()


def test_publish_returns_after_the_puback_and_a_listener_gets_it(mosquitto: Mosquitto) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    listener = AckedPublisher(Endpoint(port=mosquitto.port), f"l-{prefix}", subscribe=[setpoint_filter(prefix)]).connect()
    pub = AckedPublisher(Endpoint(port=mosquitto.port), f"p-{prefix}").start()  # background connect
    try:
        pub.publish(setpoint_topic(prefix, "阳光换热站"), "供水 66 °C".encode(), retain=True)
        assert (pub.sent, pub.acked, pub.outstanding) == (1, 1, 0)
        got = listener.inbox.get(timeout=10)
        assert got == (f"{prefix}/control/setpoint/阳光换热站", "供水 66 °C".encode())
    finally:
        pub.client.publish(setpoint_topic(prefix, "阳光换热站"), b"", qos=1, retain=True)  # clear the retained message
        pub.close()
        listener.close()


def test_send_streams_and_drain_waits_for_every_puback(mosquitto: Mosquitto) -> None:
    pub = AckedPublisher(Endpoint(port=mosquitto.port), f"s-{uuid.uuid4().hex[:8]}", max_inflight=20).connect()
    try:
        for i in range(500):
            pub.send(f"t/stream/{i % 7}", b"x")
            assert pub.outstanding <= 20
        assert pub.drain(30)
        assert (pub.sent, pub.acked) == (500, 500)
    finally:
        pub.close()


def test_a_publish_the_broker_refuses_is_not_reported_sent(acl_broker: Mosquitto) -> None:
    """MQTT 5 PUBACK reason codes (an ACL denial) raise; MQTT 3.1.1 has none, so a broker drops such a message unseen."""
    pub = AckedPublisher(Endpoint(port=acl_broker.port, protocol="5"), "refused-5").connect()
    try:
        pub.publish("allowed/x", b"1")
        with pytest.raises(PublishError, match=r"refused denied/阳光: Not authorized"):
            pub.publish("denied/阳光", b"1")
        assert pub.refused == 1
    finally:
        pub.close()


def test_an_unreachable_broker_is_named(tmp_path: Path) -> None:
    port = free_port()
    with pytest.raises(PublishError, match=rf"cannot connect to MQTT broker 127\.0\.0\.1:{port}"):
        AckedPublisher(Endpoint(port=port, protocol="5"), "nobody").connect(timeout=3)
    pub = AckedPublisher(Endpoint(port=port, protocol="5"), "nobody").start()
    try:
        with pytest.raises(PublishError, match=rf"not connected to MQTT broker 127\.0\.0\.1:{port}"):
            pub.publish("t/x", b"1", timeout=0.5)
    finally:
        pub.close()


def test_endpoint_keeps_the_password_out_of_its_repr() -> None:
    assert "s3cret" not in repr(Endpoint(username="collector", password="s3cret"))
    with pytest.raises(ValueError, match="MQTT protocol '4'"):
        Endpoint(protocol="4")
