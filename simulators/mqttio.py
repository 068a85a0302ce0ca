"""MQTT for the simulators: the broker to publish to, and a publisher bound to it.

The client is heatwatch.infra.mqtt's ``AckedPublisher`` (protocol, credentials and TLS as everywhere else):
the simulators stream with ``send`` (QoS as configured, at most ``max_inflight`` messages awaiting their
PUBACK, ``drain`` waits for the rest). One client both publishes and (optionally) listens for setpoints,
so the closed loop needs a single connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

from heatwatch.core.config import Config
from heatwatch.infra.mqtt.client import AckedPublisher, Endpoint


@dataclass(frozen=True)
class MqttTarget(Endpoint):
    """A broker and the topic prefix and QoS to publish with: ``[mqtt]`` (``from_config``), or any broker
    (the load generator and tests aim at one directly)."""

    protocol: str = "5"
    reconnect_max_s: float = 10.0
    topic_prefix: str = "heat"
    qos: int = 1

    @classmethod
    def from_config(cls, cfg: Config) -> MqttTarget:
        """``[mqtt]``'s broker (Endpoint.from_config), its prefix and QoS; a simulator retries within 10 s."""
        base = Endpoint.from_config(cfg)
        conn = {f.name: getattr(base, f.name) for f in fields(Endpoint)}
        return cls(**{**conn, "reconnect_max_s": min(base.reconnect_max_s, 10.0)},
                   topic_prefix=cfg.mqtt.topic_prefix, qos=cfg.mqtt.qos)


class Publisher(AckedPublisher):
    """The simulators' client: publishes with the target's QoS, at most ``max_inflight`` unacknowledged."""

    def __init__(self, target: MqttTarget, client_id: str, max_inflight: int = 500, subscribe: Sequence[str] = ()) -> None:
        super().__init__(target, client_id, max_inflight=max_inflight, subscribe=subscribe, qos=target.qos)
        self.target = target
