"""Setpoints out to the stations: a supply change goes out on MQTT, retained, once the broker acknowledged it.

A change effective within ``PUBLISH_NOW`` is sent when it is applied; one effective later (cold-snap ramp
steps) is sent at its effective time by its ``setpoint:<id>`` job, or by the cycle's sweep if the job was
missed — never early, so ramp steps do not overwrite each other's retained message.

Every send is checked first, whoever asks (the loop, a job, the CLI): the value lies in the station's
range and at most ``max_step_c`` from the setpoint the station was last sent — or, when it was never sent
one, from a plausible measured supply — in the direction its kind says (when that setpoint shifted the
station's curve, the station aims for its curve at the outdoor temperature now plus the offset: with the
outdoor temperature known, both are compared as the supply the station would aim for now); and the loop's own check (a
cold-snap step whose snap a newer forecast cancelled). A send that fails the check is refused
(``UnsafeSetpoint``); a step that fails it when it falls due is withdrawn, never sent.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from control.curve import EPS, design_for, heating_curve, plausible_supply
from control.points import PointWriter
from control.proposal import TRANSITIONS, Proposal
from control.repo import ProposalRepo
from heatwatch.core.config import Config
from heatwatch.core.registry import Registry
from heatwatch.core.timeutil import Clock
from heatwatch.infra.mqtt.client import Publisher, PublishError
from heatwatch.infra.mqtt.setpoint import setpoint_payload
from heatwatch.infra.mqtt.topics import setpoint_topic

log = logging.getLogger("heatwatch.control")
PUBLISH_NOW = timedelta(minutes=1)  # setpoints effective sooner than this go out at once


class ApplyError(Exception):
    """The change could not be applied (e.g. the broker did not acknowledge the setpoint)."""


class UnsafeSetpoint(ApplyError):
    """The setpoint breaks an invariant now (range, step from what the station was last sent, direction)."""


MeasuredFn = Callable[[str], "float | None"]  # station_id → its measured supply (or outdoor temperature) now
CheckFn = Callable[[Proposal, datetime], "str | None"]  # why it must not go out now (None: it may)


def curve_offset(p: Proposal) -> float | None:
    """The shift of the station's heating curve a setpoint asks for (model setpoints), else None (a fixed supply)."""
    v = p.evidence.get("curve_offset_c")
    return None if v is None else float(v)


def publishes_now(p: Proposal, now: datetime) -> bool:
    """Is this a setpoint that goes out when it is applied (rather than at its effective time)?"""
    return p.is_setpoint and p.effective_at <= now + PUBLISH_NOW


class Setpoints:
    """Sends applied setpoints; ``publisher`` None (no [mqtt]) makes every send an ``ApplyError``.

    ``registry`` gives each station's range (else the range the proposal recorded), ``measured`` the supply
    a station measures now (the reference before anything was sent; else the proposal's own reference),
    ``check`` the loop's extra test, ``points`` where withdrawals are annotated, ``outdoor`` the outdoor
    temperature a station measures now (where a curve offset aims; None: offsets are compared as offsets).
    """

    def __init__(
        self, cfg: Config, proposals: ProposalRepo, clock: Clock, publisher: Publisher | None,
        lock: threading.RLock | None = None, *, registry: Registry | None = None, measured: MeasuredFn | None = None,
        check: CheckFn | None = None, points: PointWriter | None = None, outdoor: MeasuredFn | None = None,
    ) -> None:
        self.cfg = cfg
        self.proposals = proposals
        self.clock = clock
        self.publisher = publisher
        self._lock = lock or threading.RLock()
        self.registry = registry
        self.measured = measured
        self.check = check
        self.points = points
        self.outdoor = outdoor

    def unsafe(self, p: Proposal, now: datetime) -> str | None:
        """Why ``p`` must not be sent now; None when it may."""
        v = p.proposed_c
        if v is None or not math.isfinite(v):
            return "it has no supply temperature"
        st = self.registry.stations.get(p.station_id) if self.registry is not None else None
        rng = (st.supply_min_c, st.supply_max_c) if st is not None else p.evidence.get("supply_range_c")
        if rng is not None:
            lo, hi = float(rng[0]), float(rng[1])
            if not lo - EPS <= v <= hi + EPS:
                return f"{v:.1f} °C is outside the station's range {lo:g}..{hi:g} °C"
        else:
            lo, hi = -math.inf, math.inf
        last = self.proposals.last_published(p.station_id, exclude=p.proposal_id).get(p.station_id)
        offset, last_offset = curve_offset(p), curve_offset(last) if last is not None else None
        out_now = self.outdoor(p.station_id) if self.outdoor is not None and last_offset is not None else None
        if last_offset is not None and out_now is not None:
            # the station follows its curve shifted by the last offset: the step is from where it aims now
            curve_now = heating_curve(design_for(self.cfg, p.station_id), out_now).supply_c
            ref = min(max(curve_now + last_offset, lo), hi)
            if offset is not None:
                v = min(max(curve_now + offset, lo), hi)
            what = (f"the last published curve offset {last_offset:+.1f} °C ({ref:.1f} °C at {out_now:.1f} °C "
                    "outdoors now)")
        elif offset is not None and last_offset is not None:
            # both shift the station's curve: the step is the change of the shift (the supply between them
            # follows the outdoor temperature along the curve, as it does with no setpoint at all)
            v, ref, what = offset, last_offset, f"the last published curve offset {last_offset:+.1f} °C"
        elif last is not None and last.proposed_c is not None:
            ref, what = last.proposed_c, f"the last published setpoint {last.proposed_c:.1f} °C"
        else:
            measured = self.measured(p.station_id) if self.measured is not None else p.current_c
            if measured is None:
                return "nothing was published to the station and its supply is not measured: no reference for the step"
            if not plausible_supply(measured, lo, hi):
                return f"nothing was published and the measured supply {measured:.1f} °C is implausible"
            ref, what = measured, f"the measured supply {measured:.1f} °C"
        step = self.cfg.control.max_step_c
        if abs(v - ref) > step + 1e-6:
            return f"{v:.1f} °C is {abs(v - ref):.1f} °C from {what}, more than the {step:g} °C step"
        if abs(v - ref) >= 0.05 and (p.kind == "supply") != (v > ref):
            verb = "raise" if p.kind == "supply" else "lower"
            return f"a {verb} to {v:.1f} °C would move the other way from {what}"
        return self.check(p, now) if self.check is not None else None

    def send(self, p: Proposal, now: datetime) -> None:
        """Check, publish ``p``'s setpoint (QoS 1, retained) and wait for the broker.

        ``UnsafeSetpoint`` when the check refuses it; ``ApplyError`` when the broker does not acknowledge.
        """
        if p.proposed_c is None:
            raise ApplyError(f"proposal {p.proposal_id} has no supply temperature to publish")
        why = self.unsafe(p, now)
        if why is not None:
            raise UnsafeSetpoint(f"setpoint {p.proposal_id} for {p.station_id} not sent: {why}")
        if self.publisher is None:
            raise ApplyError("no MQTT publisher: cannot send the setpoint (is [mqtt] configured?)")
        body = setpoint_payload(p.proposal_id, p.station_id, p.proposed_c, p.effective_at, now, p.reason,
                                curve_offset(p))
        try:
            self.publisher.publish(setpoint_topic(self.cfg.mqtt.topic_prefix, p.station_id), body, qos=1, retain=True)
        except PublishError as exc:
            raise ApplyError(f"setpoint for {p.station_id} not acknowledged by the broker: {exc}") from None

    def withdraw(self, proposal_id: str, why: str, actor: str = "heatwatch") -> Proposal | None:
        """Withdraw a setpoint that was not sent (and never will be); None when it was sent meanwhile."""
        with self._lock:
            p = self.proposals.get(proposal_id)
            if p.published_at is not None or "withdrawn" not in TRANSITIONS[p.status]:
                return None
            now = self.clock()
            new = self.proposals.move(proposal_id, "withdrawn", now, actor, f"withdrawn: {why}")
            if self.points is not None:
                self.points.proposals([new], now)
            log.warning("setpoint %s for %s withdrawn: %s", proposal_id, p.station_id, why)
            return new

    def publish_setpoint(self, proposal_id: str) -> bool:
        """Send an applied setpoint whose effective time has come (job or sweep); once. Unsafe: withdrawn."""
        with self._lock:
            p = self.proposals.get(proposal_id)
            if not p.is_setpoint or p.published_at is not None or p.status not in ("applied", "rechecked"):
                return False
            now = self.clock()
            try:
                self.send(p, now)
            except UnsafeSetpoint as exc:
                self.withdraw(proposal_id, str(exc).split(": ", 1)[-1])
                return False
            except ApplyError as exc:
                log.error("%s; will retry on the next cycle", exc)
                return False
            return self.proposals.mark_published(proposal_id, now)

    def publish_due(self) -> None:
        """The sweep: every applied setpoint not yet sent whose effective time has come, oldest first."""
        now = self.clock()
        for p in sorted(self.proposals.unpublished(), key=lambda q: q.effective_at):
            if p.effective_at <= now + PUBLISH_NOW:
                self.publish_setpoint(p.proposal_id)

