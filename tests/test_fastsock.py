"""The collector's faster paho receive path (heatwatch/infra/mqtt/fastsock.py) must deliver exactly what stock paho does."""

from __future__ import annotations

import select
import socket
import struct
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from heatwatch.infra.mqtt.fastsock import BufferedSocket, FastClient, plain_publish
from tools.servers import Mosquitto


def readable(sock: socket.socket, timeout: float = 5.0) -> bool:
    """The kernel says there is something to read (data or EOF): no sleep-and-hope."""
    return bool(select.select([sock], [], [], timeout)[0])


def test_buffered_socket_serves_small_reads_from_one_recv() -> None:
    a, b = socket.socketpair()
    try:
        b.setblocking(False)
        buf = BufferedSocket(b)
        with pytest.raises(BlockingIOError):
            buf.recv(1)
        a.sendall(b"\x30\x05hello" + b"x" * 10)
        assert readable(b)
        assert buf.recv(1) == b"\x30"
        assert buf.pending() == 16
        assert buf.recv(1) == b"\x05"
        assert buf.recv(5) == b"hello"
        assert buf.recv(100) == b"x" * 10  # a short read, as recv may return
        assert buf.pending() == 0
        with pytest.raises(BlockingIOError):
            buf.recv(1)
        assert buf.fileno() == b.fileno()
        a.close()
        assert readable(b)
        assert buf.recv(1) == b""  # EOF passes through
    finally:
        b.close()


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311])
def test_fast_client_receives_what_was_published(mosquitto: Mosquitto, protocol: int) -> None:
    """QoS 0/1, empty and binary payloads, UTF-8 topics, and MQTT 5 properties (paho's own path)."""
    got: list[tuple[str, bytes, int, object]] = []
    done = threading.Event()
    n_expected = 203
    sub = FastClient(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"fast-{protocol}", protocol=protocol)

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        props = getattr(msg.properties, "UserProperty", None) if msg.properties is not None else None
        got.append((msg.topic, bytes(msg.payload), msg.qos, props))
        if len(got) >= n_expected:
            done.set()

    subscribed = threading.Event()
    sub.on_message = on_message
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", mosquitto.port)
    sub.subscribe(f"fast{protocol}/#", qos=1)
    sub.loop_start()
    assert subscribed.wait(10)
    pub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    expected: list[tuple[str, bytes, int, object]] = []
    for i in range(200):
        topic, body, qos = f"fast{protocol}/indoor/H{i:03d}", f'{{"i": {i}}}'.encode(), i % 2
        pub.publish(topic, body, qos=qos).wait_for_publish(10)
        expected.append((topic, body, qos, None))
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = ("k", "v")
    for topic, body in ((f"fast{protocol}/empty", b""), (f"fast{protocol}/二进制", bytes(range(256)))):
        pub.publish(topic, body, qos=1).wait_for_publish(10)
        expected.append((topic, body, 1, None))
    pub.publish(f"fast{protocol}/props", b"p", qos=1, properties=props).wait_for_publish(10)
    expected.append((f"fast{protocol}/props", b"p", 1, [("k", "v")] if protocol == mqtt.MQTTv5 else None))
    assert done.wait(20), f"received {len(got)} of {n_expected}"
    pub.disconnect()
    pub.loop_stop()
    sub.disconnect()
    sub.loop_stop()
    assert sorted(got, key=repr) == sorted(expected, key=repr)


def _publish_body(topic: bytes, mid: int, qos: int, props: bytes | None, payload: bytes) -> bytes:
    body = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if qos else b"")
    return body + (props if props is not None else b"") + payload


def test_plain_publish_decodes_only_what_it_may() -> None:
    t = b"heat/indoor/H1"
    m = plain_publish(0x32, _publish_body(t, 7, 1, b"\x00", b"{}"), v5=True)
    assert m is not None and (m.mid, m.topic, m.qos, m.payload, m.retain, m.dup) == (7, "heat/indoor/H1", 1, b"{}", False, False)
    m = plain_publish(0x3B, _publish_body(t, 65535, 1, None, b""), v5=False)  # dup + retain, QoS 1, empty payload
    assert m is not None and (m.mid, m.payload, m.retain, m.dup) == (65535, b"", True, True)
    m = plain_publish(0x30, _publish_body(t, 0, 0, None, b"x"), v5=False)
    assert m is not None and (m.mid, m.qos, m.payload) == (0, 0, b"x")
    assert plain_publish(0x32, _publish_body(t, 7, 1, b"\x03\x23\x00\x01", b"{}"), v5=True) is None  # properties: paho's path
    assert plain_publish(0x34, _publish_body(t, 7, 2, b"\x00", b"{}"), v5=True) is None  # QoS 2: paho's path
    assert plain_publish(0x32, b"\x00", v5=True) is None  # truncated
    assert plain_publish(0x32, _publish_body(t, 7, 1, None, b"")[:-1], v5=False) is None
    assert plain_publish(0x30, _publish_body(b"", 0, 0, None, b"x"), v5=False) is None  # empty topic is malformed in 3.1.1
