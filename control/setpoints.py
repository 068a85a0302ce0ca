"""Setpoints out to the stations: a supply change goes out on MQTT, retained, once the broker acknowledged it.

A change effective within ``PUBLISH_NOW`` is sent when it is applied; one effective later (cold-snap ramp
steps) is sent at its effective time by its ``setpoint:<id>`` job, or by the cycle's sweep if the job was
missed — never early, so ramp steps do not overwrite each other's retained message.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from control.proposal import Proposal
from control.repo import ProposalRepo
from heatwatch.core.config import Config
from heatwatch.core.timeutil import Clock
from heatwatch.infra.mqtt.client import Publisher, PublishError
from heatwatch.infra.mqtt.setpoint import setpoint_payload
from heatwatch.infra.mqtt.topics import setpoint_topic

log = logging.getLogger("heatwatch.control")
PUBLISH_NOW = timedelta(minutes=1)  # setpoints effective sooner than this go out at once


class ApplyError(Exception):
    """The change could not be applied (e.g. the broker did not acknowledge the setpoint)."""


def publishes_now(p: Proposal, now: datetime) -> bool:
    """Is this a setpoint that goes out when it is applied (rather than at its effective time)?"""
    return p.is_setpoint and p.effective_at <= now + PUBLISH_NOW


class Setpoints:
    """Sends applied setpoints; ``publisher`` None (no [mqtt]) makes every send an ``ApplyError``."""

    def __init__(
        self, cfg: Config, proposals: ProposalRepo, clock: Clock, publisher: Publisher | None,
        lock: threading.RLock | None = None,
    ) -> None:
        self.cfg = cfg
        self.proposals = proposals
        self.clock = clock
        self.publisher = publisher
        self._lock = lock or threading.RLock()

    def send(self, p: Proposal, now: datetime) -> None:
        """Publish ``p``'s setpoint (QoS 1, retained) and wait for the broker; ApplyError if it does not ack."""
        if p.proposed_c is None:
            raise ApplyError(f"proposal {p.proposal_id} has no supply temperature to publish")
        if self.publisher is None:
            raise ApplyError("no MQTT publisher: cannot send the setpoint (is [mqtt] configured?)")
        body = setpoint_payload(p.proposal_id, p.station_id, p.proposed_c, p.effective_at, now, p.reason)
        try:
            self.publisher.publish(setpoint_topic(self.cfg.mqtt.topic_prefix, p.station_id), body, qos=1, retain=True)
        except PublishError as exc:
            raise ApplyError(f"setpoint for {p.station_id} not acknowledged by the broker: {exc}") from None

    def publish_setpoint(self, proposal_id: str) -> bool:
        """Send an applied setpoint whose effective time has come (job or sweep); once."""
        with self._lock:
            p = self.proposals.get(proposal_id)
            if not p.is_setpoint or p.published_at is not None or p.status not in ("applied", "rechecked"):
                return False
            now = self.clock()
            try:
                self.send(p, now)
            except ApplyError as exc:
                log.error("%s; will retry on the next cycle", exc)
                return False
            return self.proposals.mark_published(proposal_id, now)

    def publish_due(self) -> None:
        """The sweep: every applied setpoint not yet sent whose effective time has come."""
        now = self.clock()
        for p in self.proposals.unpublished():
            if p.effective_at <= now + PUBLISH_NOW:
                self.publish_setpoint(p.proposal_id)
