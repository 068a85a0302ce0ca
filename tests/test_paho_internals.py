"""Pins the paho-mqtt internals that heatwatch/infra/mqtt/fastsock.py overrides and calls.

paho promises nothing about its underscored names. pyproject.toml bounds paho to the versions these were
checked against; when that bound is lifted, this file says which internal moved before the collector
silently loses messages, acks or its fast path. Each check names the internal it pins.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import paho.mqtt
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from heatwatch.infra.mqtt.fastsock import FastClient, InboundMessage

RECHECK = "heatwatch/infra/mqtt/fastsock.py must be re-checked against this paho version"
PAHO = f"paho-mqtt {getattr(paho.mqtt, '__version__', '?')}"

# method -> parameter names (in order) our overrides and calls rely on
METHODS: dict[str, list[str]] = {
    "_create_socket": ["self"],  # FastClient wraps the socket it returns
    "loop_read": ["self", "max_packets"],  # FastClient reads on while packets are buffered
    "_handle_publish": ["self"],  # FastClient decodes plain PUBLISHes itself
    "_handle_on_message": ["self", "message"],  # FastClient dispatches straight to on_message
    "_send_puback": ["self", "mid"],  # FastClient acks QoS 1 when not in manual-ack mode
    "_packet_queue": ["self", "command", "packet", "mid", "qos", "info"],  # ack_qos1: one blob of PUBACKs
    "message_callback_add": ["self", "sub", "callback"],  # FastClient falls back to paho's dispatch
    "ack": ["self", "mid", "qos"],  # collector.transport: manual acknowledgement
}


def fail(what: str, detail: str) -> None:
    pytest.fail(f"{PAHO}: {what} {detail}; {RECHECK}", pytrace=False)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_overridden_and_called_methods_keep_their_signature(name: str) -> None:
    method = getattr(mqtt.Client, name, None)
    if not callable(method):
        fail(f"Client.{name}", "is gone")
    params = list(inspect.signature(method).parameters)
    if params != METHODS[name]:
        fail(f"Client.{name}", f"now takes {params}, fastsock/transport were written for {METHODS[name]}")


def _is_lock(v: Any) -> bool:
    return callable(getattr(v, "__enter__", None)) and callable(getattr(v, "acquire", None))


# attribute -> what its value must look like on a freshly constructed client
ATTRIBUTES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "_in_packet": ("a dict with 'command' and 'packet'", lambda v: isinstance(v, dict) and {"command", "packet"} <= v.keys()),
    "_in_callback_mutex": ("a lock", _is_lock),
    "_manual_ack": ("a bool", lambda v: isinstance(v, bool)),
    "_protocol": ("the protocol number", lambda v: v == mqtt.MQTTv311),
    "_sock": ("None before connect", lambda v: v is None),
    "_userdata": ("the userdata", lambda v: v is None),
    "suppress_exceptions": ("a bool", lambda v: isinstance(v, bool)),
}


@pytest.mark.parametrize("name", sorted(ATTRIBUTES))
def test_client_attributes_fastsock_reads_exist(name: str) -> None:
    client = FastClient(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    if not hasattr(client, name):
        fail(f"Client.{name}", "no longer exists on a constructed client")
    what, ok = ATTRIBUTES[name]
    value = getattr(client, name)
    if not ok(value):
        fail(f"Client.{name}", f"is {value!r}, expected {what}")


def test_inbound_message_sets_every_slot_of_paho_message() -> None:
    """InboundMessage skips MQTTMessage.__init__: a slot paho adds would be unset and raise in paho's code."""
    slots = set(getattr(mqtt.MQTTMessage, "__slots__", ()))
    if not slots:
        fail("MQTTMessage.__slots__", "is gone (InboundMessage sets exactly those attributes)")
    msg = InboundMessage(7, b"heat/t", 1, False, False, b"{}")
    unset = sorted(s for s in slots if not hasattr(msg, s))
    if unset:
        fail("MQTTMessage", f"has attributes InboundMessage does not set: {unset}")
    assert msg.topic == "heat/t" and msg.mid == 7  # paho's properties read what InboundMessage wrote
    if not hasattr(mqtt, "mqtt_ms_invalid"):
        fail("mqtt_ms_invalid", "is gone")


@pytest.mark.parametrize(("caller", "needle", "why"), [
    ("_packet_handle", "self._handle_publish()", "PUBLISH must reach the overridden _handle_publish"),
    ("_handle_publish", "self._handle_on_message(", "paho's own PUBLISH path must reach _handle_on_message"),
    ("_loop", ".pending()", "the loop must ask the socket for buffered bytes before select()"),
    ("_packet_read", "self._in_packet", "packets must be assembled in _in_packet"),
])
def test_paho_calls_what_fastclient_overrides(caller: str, needle: str, why: str) -> None:
    fn = getattr(mqtt.Client, caller, None)
    if fn is None:
        fail(f"Client.{caller}", f"is gone ({why})")
    if needle not in inspect.getsource(fn):
        fail(f"Client.{caller}", f"no longer contains {needle!r} ({why})")
