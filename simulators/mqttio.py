"""MQTT publishing for the simulators: paho 2.x, QoS 1, bounded in-flight, wait for every PUBACK.

One client both publishes and (optionally) listens for setpoints, so the closed loop needs a
single connection. ``protocol`` follows ``cfg.mqtt.protocol`` ("5" or "3.1.1": amqtt speaks 3.1.1).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from heatwatch.core.config import Config

log = logging.getLogger(__name__)


class PublishError(Exception):
    """The broker could not be reached or did not acknowledge in time."""


@dataclass(frozen=True)
class MqttTarget:
    host: str = "127.0.0.1"
    port: int = 1883
    protocol: str = "5"
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False
    topic_prefix: str = "heat"
    qos: int = 1
    keepalive_s: int = 30

    @classmethod
    def from_config(cls, cfg: Config) -> MqttTarget:
        m = cfg.mqtt
        return cls(
            host=m.host, port=m.port, protocol=m.protocol, username=m.username, password=cfg.secret("mqtt", "password"),
            tls=m.tls, ca_file=m.ca_file, cert_file=m.cert_file, key_file=m.key_file, tls_insecure=m.tls_insecure,
            topic_prefix=m.topic_prefix, qos=m.qos, keepalive_s=m.keepalive_s,
        )


class Publisher:
    """Publishes with at most ``max_inflight`` unacknowledged messages; ``drain()`` waits for the rest."""

    def __init__(
        self,
        target: MqttTarget,
        client_id: str,
        max_inflight: int = 500,
        subscribe: Sequence[str] = (),
    ) -> None:
        self.target = target
        self.max_inflight = max_inflight
        self.subscriptions = tuple(subscribe)
        self.inbox: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=10_000)
        self.sent = 0
        self.acked = 0
        self.dropped_inbox = 0
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self._connect_error: str | None = None
        v5 = target.protocol == "5"
        proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        kwargs: dict[str, Any] = {"callback_api_version": CallbackAPIVersion.VERSION2, "client_id": client_id,
                                  "protocol": proto}
        if not v5:
            kwargs["clean_session"] = True
        self.client = mqtt.Client(**kwargs)
        self.client.max_inflight_messages_set(max_inflight)
        self.client.reconnect_delay_set(1, 10)
        if target.username:
            self.client.username_pw_set(target.username, target.password)
        if target.tls:
            self.client.tls_set(
                ca_certs=str(target.ca_file) if target.ca_file else None,
                certfile=str(target.cert_file) if target.cert_file else None,
                keyfile=str(target.key_file) if target.key_file else None,
            )
            if target.tls_insecure:
                self.client.tls_insecure_set(True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message

    # --- callbacks (paho network thread) ---------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        if rc.is_failure:
            self._connect_error = f"broker refused the connection: {rc}"
            self._connected.set()
            return
        for topic in self.subscriptions:
            client.subscribe(topic, qos=1)
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        if rc != 0:
            log.warning("simulator disconnected from MQTT (%s); paho will reconnect", rc)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: Any, props: Any = None) -> None:
        with self._cond:
            self.acked += 1
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self.inbox.put_nowait((msg.topic, bytes(msg.payload)))
        except queue.Full:
            self.dropped_inbox += 1

    # --- API -------------------------------------------------------------------
    def connect(self, timeout: float = 10.0) -> Publisher:
        t = self.target
        try:
            self.client.connect(t.host, t.port, keepalive=t.keepalive_s)
        except OSError as exc:
            raise PublishError(f"cannot connect to MQTT broker {t.host}:{t.port}: {exc}") from None
        self.client.loop_start()
        if not self._connected.wait(timeout):
            self.close()
            raise PublishError(f"no CONNACK from MQTT broker {t.host}:{t.port} within {timeout:.0f}s")
        if self._connect_error:
            self.close()
            raise PublishError(self._connect_error)
        return self

    @property
    def outstanding(self) -> int:
        return self.sent - self.acked

    def publish(self, topic: str, payload: bytes, retain: bool = False, timeout: float = 60.0) -> None:
        """Blocks while ``max_inflight`` messages await their PUBACK (backpressure, bounded memory)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.sent - self.acked >= self.max_inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PublishError(f"{self.outstanding} messages unacknowledged for {timeout:.0f}s")
                self._cond.wait(min(left, 0.5))
            self.sent += 1
        info = self.client.publish(topic, payload, qos=self.target.qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise PublishError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        if self.target.qos == 0:
            with self._cond:
                self.acked += 1

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until every published message is acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.acked < self.sent:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
        return True

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
