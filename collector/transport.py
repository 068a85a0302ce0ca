"""The collector's MQTT session, set up for at-least-once delivery on the client heatwatch.infra.mqtt makes.

Persistent session (stable client id, clean_start=False + session expiry on MQTT 5,
clean_session=False on 3.1.1), manual acknowledgement, subscriptions renewed in on_connect,
reconnect with capped backoff. Messages are handed on with the connection *generation* they
arrived on: a PUBACK for a message of an earlier connection must not be sent on a later one
(its packet id may by then name a different message); the broker redelivers it instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from heatwatch.core.config import Config
from heatwatch.infra.mqtt.client import MQTT_ERR_SUCCESS, Client, Message, connect_options, make_client
from heatwatch.infra.mqtt.fastsock import ack_qos1, message_topic

log = logging.getLogger("heatwatch.mqtt")


class Inbound(NamedTuple):
    """One received message (a NamedTuple: built once per message on paho's thread, so it must be cheap)."""

    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes


class Subscriber:
    """Keeps a persistent, manually acknowledged subscription and hands messages to ``on_inbound``.

    It also watches its own session. Brokers redeliver unacknowledged messages only on a new connection,
    so a session whose in-flight window the broker believes full (Mosquitto 2.0.11 after a resume under
    load: docs/MQTT.md, "Stalled sessions") delivers nothing more while looking connected. When nothing
    arrives for ``probe_idle_s`` and nothing is unacknowledged, a QoS 1 probe is published to a topic only
    this client subscribes to; if no message at all arrives within ``probe_timeout_s`` the session is
    stalled, and a clean reconnect makes the broker resend what it holds.
    """

    def __init__(
        self,
        cfg: Config,
        filters: list[str],
        on_inbound: Callable[[Inbound], None],
        client_id: str | None = None,
        probe: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.probe_topic = probe
        self.filters = filters + ([probe] if probe else [])
        self.on_inbound = on_inbound
        self.clock = clock
        self.client_id = client_id if client_id is not None else cfg.mqtt.client_id
        self.client = make_client(cfg, self.client_id, persistent=True, manual_ack=True, fast=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.generation = 0
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.session_lost = 0  # times the broker had no session for us when it should have had one
        self.session_lost_at: float | None = None  # wall time (epoch s) of the last loss
        self.had_session = False  # set by the owner when an earlier process of this client id had subscribed
        self.on_session_lost: Callable[[], None] | None = None
        self.connects = 0
        self.stalls = 0  # stalled sessions detected (and reconnected)
        self.stranded = 0  # messages of this connection we will not acknowledge (errors): redelivered on reconnect
        self.redeliveries = 0  # reconnects made to have stranded messages redelivered
        self.probes_sent = 0
        self.probe_refused = False  # the broker refused our probe (ACL): stall detection is off, said loudly
        self._lock = threading.Lock()
        self.accepting = True
        # progress, written without a lock by one thread each (GIL-atomic ints and floats)
        self.delivered = 0  # messages handed on (paho thread)
        self.settled = 0  # messages acknowledged or dropped for redelivery (writer thread)
        self.last_rx = clock()
        self.last_settle = clock()
        self._probe_sent_at: float | None = None
        self._probe_mid: int | None = None
        self._probe_misses = 0  # consecutive probes with no traffic at all: suspect the ACL, back off
        self._connect_kwargs: dict[str, Any] = {}

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        m = self.cfg.mqtt
        self._connect_kwargs = connect_options(self.cfg, persistent=True)
        self.client.connect_async(m.host, m.port, **self._connect_kwargs)
        self.client.loop_start()

    def stop_consuming(self) -> None:
        """New messages are left unacknowledged at the broker (redelivered to the next session)."""
        self.accepting = False

    def disconnect(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    def reconnect(self, why: str) -> None:
        """A clean DISCONNECT and a new connection on the same session: the broker resends its in-flight messages."""
        log.warning("MQTT reconnecting on purpose: %s", why)
        with self._lock:
            self.connected.clear()
            self.subscribed.clear()
        self.client.disconnect()
        self.client.loop_stop()
        m = self.cfg.mqtt
        self.client.connect_async(m.host, m.port, **self._connect_kwargs)
        self.client.loop_start()

    # --- progress and liveness ------------------------------------------------------------------
    @property
    def unacked(self) -> int:
        """Messages received and not yet acknowledged (or dropped for redelivery)."""
        return max(0, self.delivered - self.settled)

    def idle_s(self) -> float:
        """Seconds since anything moved: a message in, or an acknowledgement out."""
        return self.clock() - max(self.last_rx, self.last_settle)

    def check(self, pipeline_idle: bool) -> str | None:
        """One watchdog tick (the collector calls it about once a second); returns what it did, if anything.

        ``pipeline_idle``: nothing waits in the collector's own queues, so silence is the broker's.
        """
        c = self.cfg.collector
        if not self.probe_topic or self.probe_refused or not self.subscribed.is_set() or not self.accepting:
            self._probe_sent_at = None
            return None
        now = self.clock()
        if self.stranded and pipeline_idle and self.unacked == 0 and self.idle_s() >= min(c.probe_idle_s, c.probe_timeout_s):
            n, self.redeliveries = self.stranded, self.redeliveries + 1
            log.warning("%d messages on this connection were left unacknowledged after an error; the broker resends them "
                        "only on a new connection: reconnecting (redelivery #%d)", n, self.redeliveries)
            self.reconnect("redeliver unacknowledged messages")
            return "redeliver"
        if self._probe_sent_at is not None:
            if self.last_rx >= self._probe_sent_at:  # something arrived: the session delivers
                self._probe_sent_at = None
                self._probe_misses = 0
                return None
            if now - self._probe_sent_at < c.probe_timeout_s:
                return None
            self._probe_sent_at = None
            self._probe_misses += 1
            self.stalls += 1
            log.error(
                "MQTT session STALLED: connected and subscribed, nothing unacknowledged on our side, yet not even our "
                "own probe on %s arrived in %.0f s (%d messages received, %d acknowledged so far); reconnecting so the "
                "broker resends what it holds in flight (stall #%d; see docs/MQTT.md, 'Stalled sessions')",
                self.probe_topic, c.probe_timeout_s, self.delivered, self.settled, self.stalls,
            )
            if self._probe_misses >= 3:
                log.error("three probes in a row were not echoed with no other traffic: check that the broker ACL lets "
                          "this client write and read %s", self.probe_topic)
            self.reconnect("stalled session")
            return "reconnected"
        backoff = min(2 ** max(0, self._probe_misses - 1), 40)  # a broker that drops our probe must not make us flap
        if pipeline_idle and self.unacked == 0 and now - self.last_rx >= c.probe_idle_s * backoff:
            info = self.client.publish(self.probe_topic, b"probe", qos=1)
            if info.rc == MQTT_ERR_SUCCESS:
                self._probe_sent_at = now
                self._probe_mid = info.mid
                self.probes_sent += 1
                return "probed"
        return None

    # --- acks --------------------------------------------------------------------------------
    def ack(self, generation: int, mid: int, qos: int) -> bool:
        """Acknowledge a stored message; False when its connection is gone (the broker will redeliver)."""
        if qos == 0:
            return True
        with self._lock:
            if generation != self.generation or not self.connected.is_set():
                return False
            rc = self.client.ack(mid, qos)
        return rc == MQTT_ERR_SUCCESS

    def ack_many(self, messages: Sequence[Inbound]) -> tuple[int, int]:
        """Acknowledge a stored batch: (acked, skipped). QoS-1 PUBACKs go out as one write (``ack_qos1``)."""
        acked = skipped = 0
        mids: list[int] = []
        with self._lock:
            live = self.connected.is_set()
            # messages of older connections were settled when the new one came up (the broker resends them)
            self.settled += sum(1 for msg in messages if msg.generation == self.generation)
            for msg in messages:
                if msg.qos == 0:
                    acked += 1
                elif msg.generation != self.generation or not live:
                    skipped += 1
                elif msg.qos == 1:
                    mids.append(msg.mid)
                elif self.client.ack(msg.mid, msg.qos) == MQTT_ERR_SUCCESS:
                    acked += 1
                else:
                    skipped += 1
            if mids:
                n = ack_qos1(self.client, mids)
                acked, skipped = acked + n, skipped + len(mids) - n
        self.last_settle = self.clock()
        return acked, skipped

    def settle(self, messages: Sequence[Inbound]) -> None:
        """Messages left unacknowledged on purpose (an unexpected error): the broker resends them after a reconnect."""
        with self._lock:
            n = sum(1 for msg in messages if msg.generation == self.generation and msg.qos > 0)
            self.settled += sum(1 for msg in messages if msg.generation == self.generation)
            self.stranded += n
        self.last_settle = self.clock()

    # --- callbacks (paho network thread) -----------------------------------------------------
    def _on_connect(self, client: Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.error("MQTT connect refused by %s:%s: %s", self.cfg.mqtt.host, self.cfg.mqtt.port, reason_code)
            return
        with self._lock:
            self.generation += 1
            self.connects += 1
            self.connected.set()
            # whatever was in flight on the old connection is the broker's to resend: no longer ours to ack
            self.settled = self.delivered
            self.stranded = 0
        present = bool(getattr(flags, "session_present", False))
        if (self.connects > 1 or self.had_session) and not present:
            self.session_lost += 1
            self.session_lost_at = time.time()
            log.critical(
                "MQTT SESSION LOST: %s:%s answered 'session present: false' to %s, which had a persistent session. "
                "Readings published while we were away may be gone. Check the broker's persistence (persistence "
                "true, a persistence_location writable by the broker user, autosave settings; docs/OPERATIONS.md)",
                self.cfg.mqtt.host, self.cfg.mqtt.port, self.client_id,
            )
            if self.on_session_lost is not None:
                try:
                    self.on_session_lost()
                except Exception:
                    log.exception("session-lost handler failed")
        log.info("MQTT connected to %s:%s (session present: %s)", self.cfg.mqtt.host, self.cfg.mqtt.port, present)
        self.subscribed.clear()
        self.last_rx = self.clock()
        client.subscribe([(f, int(self.cfg.mqtt.qos)) for f in self.filters])

    def _on_subscribe(self, client: Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        codes = list(reason_codes)
        bad = [(f, rc) for f, rc in zip(self.filters, codes, strict=False) if getattr(rc, "is_failure", False)]
        if self.probe_topic and any(f == self.probe_topic for f, _ in bad):
            self.probe_refused = True
            log.error("MQTT subscription to the liveness probe %s refused (%s): stalled sessions will not be detected; "
                      "let this client read and write it in the broker ACL", self.probe_topic,
                      [rc for f, rc in bad if f == self.probe_topic])
            bad = [(f, rc) for f, rc in bad if f != self.probe_topic]
        if bad:
            log.error("MQTT subscription refused: %s (check the broker ACL for %s)", bad, self.filters)
        else:
            self.subscribed.set()
            log.info("MQTT subscribed to %s", ", ".join(self.filters))

    def _on_publish(self, client: Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        if mid == self._probe_mid and getattr(reason_code, "is_failure", False):
            self.probe_refused = True
            log.error("the broker refused our liveness probe on %s (%s): stalled sessions will not be detected; "
                      "let this client write it in the broker ACL", self.probe_topic, reason_code)

    def _on_disconnect(self, client: Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        with self._lock:
            self.connected.clear()
        self.subscribed.clear()
        if self.accepting:
            log.warning("MQTT disconnected (%s); reconnecting with backoff", reason_code)

    def _on_message(self, client: Client, userdata: Any, msg: Message) -> None:
        if not self.accepting:
            return
        self.last_rx = self.clock()
        topic = message_topic(msg)  # a broken (non-UTF-8) topic is kept readable for its dead letter
        if self.probe_topic is not None and topic == self.probe_topic:
            if msg.qos:
                client.ack(msg.mid, msg.qos)  # the probe is not a reading: acknowledged at once, never stored
            return
        self.delivered += 1
        self.on_inbound(Inbound(self.generation, msg.mid, msg.qos, topic, bytes(msg.payload)))
