"""The one MQTT client: every paho client heatwatch opens is made by ``make_client`` (docs/MQTT.md).

It speaks MQTT 5, or 3.1.1 to a broker that refuses 5 (``[mqtt] protocol = "auto"``), and sets credentials,
TLS, reconnect backoff and queue limits from ``[mqtt]`` — or from an ``Endpoint``, for a tool aimed at another
broker (the load generator). ``AckedPublisher`` is the outgoing side: a message counts as sent only once the
broker acknowledged it. The collector's subscriber (``collector.transport``) builds on the same factory.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self, TypeAlias

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from heatwatch.core.config import Config
from heatwatch.infra.mqtt.fastsock import FastClient

log = logging.getLogger("heatwatch.mqtt")

Client: TypeAlias = mqtt.Client
Message: TypeAlias = mqtt.MQTTMessage
MQTT_ERR_SUCCESS = mqtt.MQTT_ERR_SUCCESS
UNSUPPORTED_PROTOCOL = (1, 132)  # CONNACK codes: 3.1.1 "unacceptable protocol version", 5 "unsupported protocol version"
PROTOCOLS = ("auto", "5", "3.1.1")


class PublishError(Exception):
    """The broker could not be reached, refused the message, or did not acknowledge it in time."""


@dataclass(frozen=True)
class Endpoint:
    """Where the broker is and how to log in: the connection part of ``[mqtt]`` (``from_config``)."""

    host: str = "127.0.0.1"
    port: int = 1883
    protocol: str = "auto"  # "auto" (5, or 3.1.1 when the broker refuses 5), "5" or "3.1.1"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False
    keepalive_s: int = 30
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    session_expiry_s: int = 7 * 86_400
    receive_maximum: int = 1000

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"MQTT protocol {self.protocol!r}: expected one of {', '.join(PROTOCOLS)}")

    @classmethod
    def from_config(cls, cfg: Config) -> Endpoint:
        """The broker of ``[mqtt]``; the password secret is read only when a username is set."""
        m = cfg.mqtt
        return cls(
            host=m.host, port=m.port, protocol=m.protocol, username=m.username,
            password=cfg.secret("mqtt", "password") if m.username else None,
            tls=m.tls, ca_file=m.ca_file, cert_file=m.cert_file, key_file=m.key_file, tls_insecure=m.tls_insecure,
            keepalive_s=m.keepalive_s, reconnect_min_s=m.reconnect_min_s, reconnect_max_s=m.reconnect_max_s,
            session_expiry_s=m.session_expiry_s, receive_maximum=m.receive_maximum,
        )


def endpoint(cfg: Config | Endpoint) -> Endpoint:
    """The factory takes either: a Config (the product's own broker) or an Endpoint (a tool aimed elsewhere)."""
    return Endpoint.from_config(cfg) if isinstance(cfg, Config) else cfg


def _setup_auth(client: mqtt.Client, e: Endpoint) -> None:
    if e.username:
        client.username_pw_set(e.username, e.password)
    if e.tls:
        client.tls_set(
            ca_certs=str(e.ca_file) if e.ca_file else None,
            certfile=str(e.cert_file) if e.cert_file else None,
            keyfile=str(e.key_file) if e.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        client.tls_insecure_set(e.tls_insecure)


_negotiated: dict[tuple[str, int], str] = {}
_neg_lock = threading.Lock()


def resolve_protocol(cfg: Config | Endpoint, timeout: float = 10.0) -> str:
    """The MQTT version to speak: as configured, or for "auto" 5 unless the broker refuses it."""
    e = endpoint(cfg)
    if e.protocol != "auto":
        return e.protocol
    key = (e.host, e.port)
    with _neg_lock:
        if key in _negotiated:
            return _negotiated[key]
        result: dict[str, int] = {}
        done = threading.Event()
        probe = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        _setup_auth(probe, e)

        def on_connect(c: mqtt.Client, u: Any, f: Any, rc: Any, p: Any) -> None:
            result["rc"] = int(rc.value)
            done.set()

        probe.on_connect = on_connect
        try:
            probe.connect(e.host, e.port, keepalive=10)
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
            log.info("broker %s:%s does not speak MQTT 5; using MQTT 3.1.1", e.host, e.port)
        _negotiated[key] = version
        return version


def make_client(
    cfg: Config | Endpoint, client_id: str | None = None, persistent: bool = True, manual_ack: bool = False,
    fast: bool = False,
) -> mqtt.Client:
    """A configured paho client (protocol, credentials, TLS, backoff); not yet connected.

    ``client_id`` None: ``[mqtt] client_id`` for a Config, a broker-assigned one for an Endpoint. ``persistent``:
    the broker keeps the session (and queues QoS 1 messages) while the client is away. ``manual_ack``: PUBACK only
    when the caller says so. ``fast``: the collector's cheaper receive path (fastsock.FastClient)."""
    e = endpoint(cfg)
    if client_id is None:
        client_id = cfg.mqtt.client_id if isinstance(cfg, Config) else ""
    v5 = resolve_protocol(e) == "5"
    client = (FastClient if fast else mqtt.Client)(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else not persistent,
        manual_ack=manual_ack,
    )
    _setup_auth(client, e)
    client.reconnect_delay_set(min_delay=max(1, int(e.reconnect_min_s)), max_delay=max(1, int(e.reconnect_max_s)))
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    return client


def connect_properties(cfg: Config | Endpoint, persistent: bool = True) -> Properties | None:
    """MQTT 5 CONNECT properties: the session expiry (persistent sessions) and our Receive Maximum; None on 3.1.1."""
    e = endpoint(cfg)
    if resolve_protocol(e) != "5":
        return None
    props = Properties(PacketTypes.CONNECT)
    if persistent:
        props.SessionExpiryInterval = e.session_expiry_s
    props.ReceiveMaximum = e.receive_maximum
    return props


def connect_options(cfg: Config | Endpoint, persistent: bool = True) -> dict[str, Any]:
    """Keyword arguments for ``connect``/``connect_async`` matching ``make_client(..., persistent)``."""
    e = endpoint(cfg)
    options: dict[str, Any] = {"keepalive": e.keepalive_s}
    if resolve_protocol(e) == "5":
        options["clean_start"] = not persistent
        options["properties"] = connect_properties(e, persistent)
    return options


def error_string(rc: int) -> str:
    """paho's text for a client return code (``MQTTMessageInfo.rc``), for messages."""
    return mqtt.error_string(rc)


class Publisher(Protocol):
    """What sending a setpoint or a work order needs: a publish that returns only once the broker has it."""

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, timeout: float = 10.0) -> None:
        """Return once the broker acknowledged (QoS ≥ 1); raise PublishError otherwise."""


class AckedPublisher:
    """A clean-session client for outgoing messages; a message counts as sent only once the broker acknowledged it.

    Two ways to publish. ``publish`` returns after the acknowledgement (PUBACK; for QoS 0, once written) and raises
    PublishError when it does not come, or comes as a refusal (an MQTT 5 reason code, e.g. the ACL): one setpoint,
    one work order, each known delivered. ``send`` returns once the message is in flight and blocks only while
    ``max_inflight`` messages await theirs, and ``drain`` waits for the rest: a stream at full speed in bounded
    memory (the simulators). Filters in ``subscribe`` are (re)subscribed on every connect; what arrives on them
    waits in ``inbox``. ``start`` connects in the background (and reconnects), ``connect`` waits for the CONNACK.
    """

    def __init__(
        self, cfg: Config | Endpoint, client_id: str, *, max_inflight: int = 1000, subscribe: Sequence[str] = (),
        qos: int = 1, inbox_max: int = 10_000,
    ) -> None:
        self.endpoint = endpoint(cfg)
        self.client_id = client_id
        self.max_inflight = max_inflight
        self.subscriptions = tuple(subscribe)
        self.qos = qos
        self.inbox: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=inbox_max)
        self.sent = 0  # messages handed to paho that it will send (now or after a reconnect)
        self.acked = 0  # of those, acknowledged by the broker (QoS 0: written)
        self.refused = 0  # of those, acknowledged with a failure reason code
        self.dropped_inbox = 0
        self.connected = threading.Event()
        self._connack = threading.Event()
        self._connect_error: str | None = None
        self._closing = False
        self._refusals: dict[int, str] = {}  # mid -> reason code of a refused publish, until its mid is reused
        self._cond = threading.Condition()
        self.client = make_client(self.endpoint, client_id, persistent=False)
        self.client.max_inflight_messages_set(max_inflight)
        self._options = connect_options(self.endpoint, persistent=False)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message

    @property
    def where(self) -> str:
        """``host:port``, for messages."""
        return f"{self.endpoint.host}:{self.endpoint.port}"

    @property
    def outstanding(self) -> int:
        """Messages handed over and not yet acknowledged."""
        return self.sent - self.acked

    # --- connection ---------------------------------------------------------------------------------------
    def start(self) -> Self:
        """Connect in the background: returns at once; publishes wait for the connection (or time out)."""
        self.client.connect_async(self.endpoint.host, self.endpoint.port, **self._options)
        self.client.loop_start()
        return self

    def connect(self, timeout: float = 10.0) -> Self:
        """Connect now: PublishError naming the broker when it cannot be reached or refuses us."""
        try:
            self.client.connect(self.endpoint.host, self.endpoint.port, **self._options)
        except OSError as exc:
            raise PublishError(f"cannot connect to MQTT broker {self.where}: {exc}") from None
        self.client.loop_start()
        if not self._connack.wait(timeout):
            self.close()
            raise PublishError(f"no CONNACK from MQTT broker {self.where} within {timeout:.0f}s")
        if not self.connected.is_set():
            self.close()
            raise PublishError(self._connect_error or f"MQTT broker {self.where} refused the connection")
        return self

    def close(self) -> None:
        """Disconnect cleanly and stop the network thread; what is not acknowledged by then is given up."""
        self._closing = True
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    # --- publishing -------------------------------------------------------------------------------------------
    def publish(
        self, topic: str, payload: bytes, qos: int | None = None, retain: bool = False, timeout: float = 10.0
    ) -> None:
        """Return once the broker acknowledged the message; PublishError otherwise (``timeout`` bounds it all)."""
        deadline = time.monotonic() + timeout
        if not self.connected.wait(timeout):
            why = f" ({self._connect_error})" if self._connect_error else ""
            raise PublishError(f"not connected to MQTT broker {self.where}{why}")
        with self._cond:
            self.sent += 1
        info = self._hand_over(topic, payload, self.qos if qos is None else qos, retain, keep_unsent=False)
        try:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        except (RuntimeError, ValueError) as exc:
            raise PublishError(f"publish to {topic} failed: {exc}") from None
        if not info.is_published():
            raise PublishError(f"broker {self.where} did not acknowledge {topic} within {timeout:g} s")
        with self._cond:  # on_publish ran before the message was marked published: a refusal is recorded by now
            refusal = self._refusals.pop(info.mid, None)
        if refusal is not None:
            raise PublishError(f"broker {self.where} refused {topic}: {refusal}")

    def send(self, topic: str, payload: bytes, qos: int | None = None, retain: bool = False,
             timeout: float = 60.0) -> None:
        """Hand a message over without waiting for its acknowledgement; blocks while ``max_inflight`` messages await
        theirs (backpressure, bounded memory). Sent on reconnect when the connection is down (QoS ≥ 1)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.sent - self.acked >= self.max_inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PublishError(f"{self.outstanding} messages unacknowledged for {timeout:.0f}s")
                self._cond.wait(min(left, 0.5))
            self.sent += 1
        self._hand_over(topic, payload, self.qos if qos is None else qos, retain, keep_unsent=True)

    def _hand_over(self, topic: str, payload: bytes, qos: int, retain: bool, keep_unsent: bool) -> mqtt.MQTTMessageInfo:
        """paho's publish, already counted in ``sent``; uncounted again when paho will never send it."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            return info
        kept = info.rc == mqtt.MQTT_ERR_NO_CONN and qos > 0  # paho holds it and sends it on reconnect
        if kept and keep_unsent:
            return info
        if not kept:
            with self._cond:
                self.sent -= 1
                self._cond.notify_all()
        raise PublishError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until every message handed over is acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.acked < self.sent:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
        return True

    # --- callbacks (paho network thread) ---------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._connect_error = f"MQTT broker {self.where} refused the connection: {reason_code}"
            log.error("%s (client %s)", self._connect_error, self.client_id)
            self._connack.set()
            return
        self._connect_error = None
        for topic in self.subscriptions:
            client.subscribe(topic, qos=1)
        self.connected.set()
        self._connack.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self.connected.clear()
        if not self._closing and getattr(reason_code, "is_failure", False):
            log.warning("client %s disconnected from MQTT broker %s (%s); reconnecting", self.client_id, self.where,
                        reason_code)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        refused = getattr(reason_code, "is_failure", False)
        with self._cond:
            self.acked += 1
            if refused:
                self._refusals[mid] = str(reason_code)
                self.refused += 1
            elif self._refusals:
                self._refusals.pop(mid, None)
            self._cond.notify_all()
        if refused and (self.refused == 1 or self.refused % 1000 == 0):
            log.warning("MQTT broker %s refused a publish from %s (%s; %d refused so far): check its ACL",
                        self.where, self.client_id, reason_code, self.refused)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self.inbox.put_nowait((msg.topic, bytes(msg.payload)))
        except queue.Full:
            self.dropped_inbox += 1
