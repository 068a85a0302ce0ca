"""Control's MQTT client: a setpoint or a work order counts as sent only after the broker acknowledged it.

The client, its acknowledged ``publish`` and ``PublishError`` are heatwatch.infra.mqtt's; the topics
(``setpoint_topic``, ``alert_topic``) and the setpoint message are in heatwatch.infra.mqtt.topics / .setpoint.
"""

from __future__ import annotations

from heatwatch.core.config import Config
from heatwatch.infra.mqtt.client import AckedPublisher


class MqttPublisher(AckedPublisher):
    """A clean session of its own (``<client_id>-control`` unless told), connecting in the background: control
    starts, and makes its proposals, while the broker is away; a publish then waits for it or raises PublishError."""

    def __init__(self, cfg: Config, client_id: str | None = None) -> None:
        super().__init__(cfg, client_id or f"{cfg.mqtt.client_id}-control"[:64])
        self.cfg = cfg
        self.start()
