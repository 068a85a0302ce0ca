"""MQTT transport: a paho-mqtt 2.x client set up for at-least-once delivery.

Persistent session (stable client id, clean_start=False + session expiry on MQTT 5,
clean_session=False on 3.1.1), manual acknowledgement, subscriptions renewed in on_connect,
reconnect with capped backoff. Messages are handed on with the connection *generation* they
arrived on: a PUBACK for a message of an earlier connection must not be sent on a later one
(its packet id may by then name a different message); the broker redelivers it instead.
"""

from __future__ import annotations

import logging
import ssl
import struct
import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.fastsock import FastClient
from heatwatch.config import Config

log = logging.getLogger("heatwatch.mqtt")


class Inbound(NamedTuple):
    """One received message (a NamedTuple: built once per message on paho's thread, so it must be cheap)."""

    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes


_negotiated: dict[tuple[str, int], str] = {}
_neg_lock = threading.Lock()
UNSUPPORTED_PROTOCOL = (1, 132)  # CONNACK codes: 3.1.1 "unacceptable protocol version", 5 "unsupported protocol version"


def _setup_auth(client: mqtt.Client, cfg: Config) -> None:
    m = cfg.mqtt
    if m.username:
        client.username_pw_set(m.username, cfg.secret("mqtt", "password"))
    if m.tls:
        client.tls_set(
            ca_certs=str(m.ca_file) if m.ca_file else None,
            certfile=str(m.cert_file) if m.cert_file else None,
            keyfile=str(m.key_file) if m.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        client.tls_insecure_set(m.tls_insecure)


def resolve_protocol(cfg: Config, timeout: float = 10.0) -> str:
    """The MQTT version to speak: as configured, or for "auto" 5 unless the broker refuses it."""
    m = cfg.mqtt
    if m.protocol != "auto":
        return m.protocol
    key = (m.host, m.port)
    with _neg_lock:
        if key in _negotiated:
            return _negotiated[key]
        result: dict[str, int] = {}
        done = threading.Event()
        probe = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        _setup_auth(probe, cfg)

        def on_connect(c: mqtt.Client, u: Any, f: Any, rc: Any, p: Any) -> None:
            result["rc"] = int(rc.value)
            done.set()

        probe.on_connect = on_connect
        try:
            probe.connect(m.host, m.port, keepalive=10)
            probe.loop_start()
            done.wait(timeout)
        except OSError:
            return "5"  # broker not reachable yet: keep 5, the caller's reconnect loop reports it
        finally:
            probe.disconnect()
            probe.loop_stop()
        if "rc" not in result:
            return "5"
        version = "3.1.1" if result["rc"] in UNSUPPORTED_PROTOCOL else "5"
        if version == "3.1.1":
            log.info("broker %s:%s does not speak MQTT 5; using MQTT 3.1.1", m.host, m.port)
        _negotiated[key] = version
        return version


_PUBACK = struct.Struct("!BBH")
PUBACK = 0x40


def make_client(
    cfg: Config, client_id: str | None = None, persistent: bool = True, manual_ack: bool = False, fast: bool = False
) -> mqtt.Client:
    """A configured paho client (protocol, credentials, TLS, backoff); not yet connected."""
    m = cfg.mqtt
    v5 = resolve_protocol(cfg) == "5"
    client = (FastClient if fast else mqtt.Client)(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id if client_id is not None else m.client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else not persistent,
        manual_ack=manual_ack,
    )
    _setup_auth(client, cfg)
    client.reconnect_delay_set(min_delay=max(1, int(m.reconnect_min_s)), max_delay=max(1, int(m.reconnect_max_s)))
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    return client


def connect_properties(cfg: Config, persistent: bool = True) -> Properties | None:
    if resolve_protocol(cfg) != "5":
        return None
    props = Properties(PacketTypes.CONNECT)
    if persistent:
        props.SessionExpiryInterval = cfg.mqtt.session_expiry_s
    props.ReceiveMaximum = cfg.mqtt.receive_maximum
    return props


class Subscriber:
    """Keeps a persistent, manually acknowledged subscription and hands messages to ``on_inbound``."""

    def __init__(
        self,
        cfg: Config,
        filters: list[str],
        on_inbound: Callable[[Inbound], None],
        client_id: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.filters = filters
        self.on_inbound = on_inbound
        self.client = make_client(cfg, client_id, persistent=True, manual_ack=True, fast=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.generation = 0
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.session_lost = 0  # times the broker had no session for us on reconnect
        self.connects = 0
        self._lock = threading.Lock()
        self.accepting = True

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        m = self.cfg.mqtt
        v5 = resolve_protocol(self.cfg) == "5"
        kwargs: dict[str, Any] = {"keepalive": m.keepalive_s}
        if v5:
            kwargs["clean_start"] = False
            kwargs["properties"] = connect_properties(self.cfg)
        self.client.connect_async(m.host, m.port, **kwargs)
        self.client.loop_start()

    def stop_consuming(self) -> None:
        """New messages are left unacknowledged at the broker (redelivered to the next session)."""
        self.accepting = False

    def disconnect(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    # --- acks --------------------------------------------------------------------------------
    def ack(self, generation: int, mid: int, qos: int) -> bool:
        """Acknowledge a stored message; False when its connection is gone (the broker will redeliver)."""
        if qos == 0:
            return True
        with self._lock:
            if generation != self.generation or not self.connected.is_set():
                return False
            rc = self.client.ack(mid, qos)
        return rc == mqtt.MQTT_ERR_SUCCESS

    def ack_many(self, messages: Sequence[Inbound]) -> tuple[int, int]:
        """Acknowledge a stored batch: (acked, skipped). QoS-1 PUBACKs go out as one write — per-message
        ``client.ack`` wakes paho's loop once per message, which the profile showed as a quarter of the worker."""
        acked = skipped = 0
        mids: list[int] = []
        with self._lock:
            live = self.connected.is_set()
            for msg in messages:
                if msg.qos == 0:
                    acked += 1
                elif msg.generation != self.generation or not live:
                    skipped += 1
                elif msg.qos == 1:
                    mids.append(msg.mid)
                elif self.client.ack(msg.mid, msg.qos) == mqtt.MQTT_ERR_SUCCESS:
                    acked += 1
                else:
                    skipped += 1
            if mids:
                queue = getattr(self.client, "_packet_queue", None)
                if queue is not None:  # paho 2.x: one "packet" holding every PUBACK
                    blob = b"".join([_PUBACK.pack(PUBACK, 2, mid) for mid in mids])
                    ok = queue(PUBACK, blob, 0, 0) == mqtt.MQTT_ERR_SUCCESS
                    acked, skipped = (acked + len(mids), skipped) if ok else (acked, skipped + len(mids))
                else:
                    for mid in mids:
                        if self.client.ack(mid, 1) == mqtt.MQTT_ERR_SUCCESS:
                            acked += 1
                        else:
                            skipped += 1
        return acked, skipped

    # --- callbacks (paho network thread) -----------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.error("MQTT connect refused by %s:%s: %s", self.cfg.mqtt.host, self.cfg.mqtt.port, reason_code)
            return
        with self._lock:
            self.generation += 1
            self.connects += 1
            self.connected.set()
        present = bool(getattr(flags, "session_present", False))
        if self.connects > 1 and not present:
            self.session_lost += 1
            log.warning(
                "MQTT reconnected WITHOUT a persistent session (broker restarted without persistence, or the "
                "session expired): messages published while we were away may be gone"
            )
        log.info("MQTT connected to %s:%s (session present: %s)", self.cfg.mqtt.host, self.cfg.mqtt.port, present)
        self.subscribed.clear()
        client.subscribe([(f, int(self.cfg.mqtt.qos)) for f in self.filters])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        bad = [rc for rc in reason_codes if getattr(rc, "is_failure", False)]
        if bad:
            log.error("MQTT subscription refused: %s (check the broker ACL for %s)", bad, self.filters)
        else:
            self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        with self._lock:
            self.connected.clear()
        if self.accepting:
            log.warning("MQTT disconnected (%s); reconnecting with backoff", reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if not self.accepting:
            return
        # MQTT topics are UTF-8 by the spec; a broken one is kept readable for the dead letter
        topic = bytes(msg._topic).decode("utf-8", errors="replace")
        self.on_inbound(Inbound(self.generation, msg.mid, msg.qos, topic, bytes(msg.payload)))
