"""MQTT intake for the desk: orders published as JSON on ``<prefix>/orders/new`` (QoS 1).

Each message is validated with ``OrderInput.parse``; an order that passes is opened on the desk and
answered on ``<prefix>/orders/accepted`` (its order id and deadline), one that does not is answered on
``<prefix>/orders/refused`` with the error naming every missing or bad element. Nothing accepted is lost:
the session is persistent and the message is acknowledged (PUBACK) only after the order is stored or its
refusal handed to the client, so a crash in between makes the broker deliver it again — and a redelivery
finds the order already opened under its ``ref`` (a message without one gets a ref from its bytes).

The work runs on paho's network thread, inside the callback that received the message: the PUBACK goes
out on the connection the message came in on (a packet id means nothing on a later connection), and
opening an order is one short SQLite transaction.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from typing import Any

from dispatch.desk import Desk
from dispatch.model import Order, OrderInput, OrderRefused
from heatwatch.core.config import Config
from heatwatch.infra import statedb
from heatwatch.infra.mqtt.client import Client, Endpoint, Message, connect_options, endpoint, make_client
from heatwatch.infra.mqtt.topics import orders_accepted_topic, orders_new_topic, orders_refused_topic

log = logging.getLogger("heatwatch.dispatch.mqtt")

REDELIVER_AFTER_S = 5.0  # after a failure to store, reconnect this much later: the broker resends unacknowledged orders
SYSTEM_OPERATOR = "system:mqtt"  # who the audit log says opened an order that came over MQTT
SOURCES_OVER_MQTT = ("mqtt", "hotline", "sensor")  # a front end, a call-centre bridge, another monitoring system
MAX_PAYLOAD = 64 * 1024
ECHO_CHARS = 300  # how much of a refused payload the refusal quotes back


def payload_ref(payload: bytes) -> str:
    """A ref for a message that brought none: the same bytes redelivered open no second order."""
    return "mqtt:" + hashlib.sha256(payload).hexdigest()[:24]


def read_order(payload: bytes) -> OrderInput:
    """An order from a message's bytes; OrderRefused naming what was wrong (size, encoding, JSON, elements)."""
    if len(payload) > MAX_PAYLOAD:
        raise OrderRefused(f"order refused: message of {len(payload)} bytes is over the limit of {MAX_PAYLOAD} bytes")
    try:
        data = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise OrderRefused(f"order refused: message is not UTF-8: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise OrderRefused(f"order refused: invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise OrderRefused(f"order refused: the message must be a JSON object (an order), not {type(data).__name__}")
    data.setdefault("source", "mqtt")
    if data["source"] not in SOURCES_OVER_MQTT:
        raise OrderRefused(f"order refused: source: {data['source']!r} cannot come over MQTT "
                           f"(use one of {', '.join(SOURCES_OVER_MQTT)})")
    if not data.get("ref"):
        data["ref"] = payload_ref(payload)
    return OrderInput.parse(data)


def refusal(error: str, payload: bytes) -> dict[str, Any]:
    """The answer on ``orders/refused``: the error, the ref when one could be read, and the start of the message."""
    ref = ""
    try:
        data = json.loads(payload.decode("utf-8"))
        if isinstance(data, dict) and isinstance(data.get("ref"), str):
            ref = data["ref"]
    except (UnicodeDecodeError, ValueError):
        pass
    return {"error": error, "ref": ref, "message": payload[:ECHO_CHARS * 4].decode("utf-8", "replace")[:ECHO_CHARS]}


def acceptance(o: Order) -> dict[str, Any]:
    """The answer on ``orders/accepted``: enough for the sender to follow its order."""
    return {"order_id": o.order_id, "ref": o.ref, "category": o.category, "stage": o.stage,
            "received_at": statedb.ts(o.received_at), "deadline": statedb.ts(o.deadline)}


class MqttIntake:
    """Subscribes to ``<prefix>/orders/new`` on a persistent, manually acknowledged session and feeds the desk.

    ``cfg`` is the product's config (its ``[mqtt]`` broker) or an Endpoint; MQTT 5 and 3.1.1 alike.
    ``accepted`` / ``refused`` / ``failed`` count messages; ``subscribed`` is set once the broker granted
    the subscription (orders published from then on reach the desk).
    """

    def __init__(self, desk: Desk, cfg: Config | Endpoint, prefix: str, client_id: str, by: str = SYSTEM_OPERATOR,
                 redeliver_after_s: float = REDELIVER_AFTER_S) -> None:
        self.desk = desk
        self.endpoint = endpoint(cfg)
        self.prefix = prefix
        self.topic = orders_new_topic(prefix)
        self.accepted_topic = orders_accepted_topic(prefix)
        self.refused_topic = orders_refused_topic(prefix)
        self.by = by
        self.client_id = client_id
        self.accepted = 0
        self.refused = 0
        self.failed = 0  # not stored (the desk's database failed): left unacknowledged, the broker redelivers it
        self.redeliveries = 0  # reconnects made so that the broker sends what was left unacknowledged
        self.redeliver_after_s = redeliver_after_s
        self._redeliver: threading.Timer | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self.subscribed = threading.Event()
        self.client: Client = make_client(self.endpoint, client_id, persistent=True, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    @classmethod
    def from_config(cls, desk: Desk, cfg: Config) -> MqttIntake:
        """On ``[mqtt]``'s broker and topic prefix, as ``<client_id>-desk`` (its own persistent session)."""
        return cls(desk, cfg, cfg.mqtt.topic_prefix, f"{cfg.mqtt.client_id}-desk")

    def start(self) -> MqttIntake:
        """Connect in the background (and reconnect); ``subscribed`` says when orders are taken."""
        self.client.connect_async(self.endpoint.host, self.endpoint.port, **connect_options(self.endpoint, persistent=True))
        self.client.loop_start()
        return self

    def stop(self) -> None:
        """Disconnect; messages not yet acknowledged stay with the broker for the next session."""
        with self._lock:
            self._stopped = True
            if self._redeliver is not None:
                self._redeliver.cancel()
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    # --- paho's network thread ---------------------------------------------------------------------------------
    def _on_connect(self, client: Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.error("desk MQTT intake: broker %s:%s refused the connection: %s", self.endpoint.host, self.endpoint.port,
                      reason_code)
            return
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, client: Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        if any(getattr(rc, "is_failure", False) for rc in reason_codes):
            log.error("desk MQTT intake: the broker refused the subscription to %s (%s): check its ACL", self.topic,
                      ", ".join(str(rc) for rc in reason_codes))
            return
        self.subscribed.set()

    def _on_message(self, client: Client, userdata: Any, msg: Message) -> None:
        payload = bytes(msg.payload)
        try:
            answer_topic, answer = self.take(payload)
        except Exception:  # the desk's database: leave the message to the broker, it comes again on the next session
            self.failed += 1
            log.exception("desk MQTT intake: an order could not be stored; it stays unacknowledged at the broker, "
                          "which sends it again after a reconnect in %g s", self.redeliver_after_s)
            self._reconnect_later()
            return
        client.publish(answer_topic, json.dumps(answer, ensure_ascii=False).encode("utf-8"), qos=1)
        client.ack(msg.mid, msg.qos)

    def _reconnect_later(self) -> None:
        """Brokers resend unacknowledged messages only on a new connection: make one, once, a little later."""
        with self._lock:
            if self._stopped or self._redeliver is not None:
                return
            self._redeliver = threading.Timer(self.redeliver_after_s, self._reconnect)
            self._redeliver.daemon = True
            self._redeliver.start()

    def _reconnect(self) -> None:
        with self._lock:
            self._redeliver = None
            if self._stopped:
                return
            self.redeliveries += 1
            self.subscribed.clear()
            self.client.disconnect()
            self.client.loop_stop()
            self.client.connect_async(self.endpoint.host, self.endpoint.port,
                                      **connect_options(self.endpoint, persistent=True))
            self.client.loop_start()

    def take(self, payload: bytes) -> tuple[str, dict[str, Any]]:
        """Open the order a message carries; (topic, answer) for the accepted or refused answer."""
        try:
            inp = read_order(payload)
            o = self.desk.open(inp, self.by)
        except OrderRefused as exc:
            self.refused += 1
            log.info("desk MQTT intake refused an order: %s", exc)
            return self.refused_topic, refusal(str(exc), payload)
        self.accepted += 1
        return self.accepted_topic, acceptance(o)
