"""The collector's memory of its MQTT session, so a broker that forgot it is noticed even after our own restart.

MQTT tells a client only "session present: yes/no". A first start and a broker that lost its persistence
both say "no"; the difference is whether this client id had subscribed at this broker before, within the
session expiry. That fact lives in ``<data_dir>/mqtt-session.json`` (client id, broker, last seen).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from heatwatch.core.config import Config

log = logging.getLogger("heatwatch.collector")
SEEN_EVERY_S = 30.0  # how often "last seen" is rewritten while subscribed


class SessionMarker:
    def __init__(self, path: Path, cfg: Config, now: float | None = None) -> None:
        self.path = path
        self.identity = {"client_id": cfg.mqtt.client_id, "broker": f"{cfg.mqtt.host}:{cfg.mqtt.port}"}
        self.expiry_s = cfg.mqtt.session_expiry_s
        self._written_at = 0.0
        self._now = now

    def expects_session(self) -> bool:
        """True when this client id subscribed at this broker before, recently enough for the session to live."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as exc:
            log.warning("cannot read %s (%s); a lost MQTT session after this start may go unnoticed", self.path, exc)
            return False
        if any(data.get(k) != v for k, v in self.identity.items()):
            return False
        now = self._now if self._now is not None else time.time()
        return now - float(data.get("last_seen", 0)) < self.expiry_s

    def seen(self, force: bool = False) -> None:
        """Record that the broker holds our session now (cheap: rewritten at most every ``SEEN_EVERY_S``)."""
        now = time.time()
        if not force and now - self._written_at < SEEN_EVERY_S:
            return
        self._written_at = now
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({**self.identity, "last_seen": now}), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("cannot write %s: %s", self.path, exc)
