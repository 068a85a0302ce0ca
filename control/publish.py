"""Publishing to MQTT with an acknowledgement: a setpoint or an alert counts as sent only after the PUBACK.

``Publisher`` is the small interface the control loop needs; ``MqttPublisher`` is the paho one.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any, Protocol

import orjson
import paho.mqtt.client as mqtt

from heatwatch.core.config import Config
from heatwatch.core.timeutil import rfc3339

log = logging.getLogger("heatwatch.control.mqtt")


class PublishError(Exception):
    """The broker did not acknowledge in time (down, refused, or not connected)."""


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, timeout: float = 10.0) -> None:
        """Return once the broker acknowledged (QoS ≥ 1); raise PublishError otherwise."""


def setpoint_topic(cfg: Config, station_id: str) -> str:
    return f"{cfg.mqtt.topic_prefix}/control/setpoint/{station_id}"


def alert_topic(cfg: Config, category: str) -> str:
    return f"{cfg.mqtt.topic_prefix}/alerts/{category}"


def setpoint_payload(
    proposal_id: str, station_id: str, supply_c: float, effective_at: datetime, issued: datetime, reason: str
) -> bytes:
    body: dict[str, Any] = {
        "proposal_id": proposal_id,
        "station_id": station_id,
        "supply_c": supply_c,
        "effective_at": rfc3339(effective_at),
        "issued": rfc3339(issued),
        "reason": reason,
    }
    return orjson.dumps(body)  # orjson writes UTF-8, Chinese intact


class MqttPublisher:
    """One clean-session client for control's outgoing messages; reconnects in the background."""

    def __init__(self, cfg: Config, client_id: str | None = None) -> None:
        from collector.transport import connect_properties, make_client

        self.cfg = cfg
        cid = client_id or f"{cfg.mqtt.client_id}-control"[:64]
        self.client = make_client(cfg, cid, persistent=False)
        self.connected = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        kwargs: dict[str, Any] = {"keepalive": cfg.mqtt.keepalive_s}
        if cfg.mqtt.protocol == "5":
            kwargs["clean_start"] = True
            kwargs["properties"] = connect_properties(cfg, persistent=False)
        self.client.connect_async(cfg.mqtt.host, cfg.mqtt.port, **kwargs)
        self.client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.error("control MQTT connect refused: %s", reason_code)
            return
        self.connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self.connected.clear()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, timeout: float = 10.0) -> None:
        if not self.connected.wait(timeout):
            raise PublishError(f"not connected to MQTT broker {self.cfg.mqtt.host}:{self.cfg.mqtt.port}")
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise PublishError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise PublishError(f"publish to {topic} failed: {exc}") from None
        if not info.is_published():
            raise PublishError(f"broker did not acknowledge {topic} within {timeout:g} s")

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
