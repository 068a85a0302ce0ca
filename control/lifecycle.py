"""The proposal lifecycle: add, approve, reject, apply, auto-apply — each step stored, annotated and logged.

    proposed ──approve──> approved ──apply──> applied ──recheck──> rechecked
        └────reject──────────┴──reject──> rejected

Transitions are compare-and-set in ``ProposalRepo`` (the CLI and the service cannot both apply one
proposal); applying publishes a setpoint that is effective now, or schedules it, and schedules the
48 h recheck. The CLI uses this class on its own — no scheduler, no alert sinks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import timedelta

from control.curve import auto_apply_for
from control.points import PointWriter
from control.proposal import OPEN, SETPOINT_KINDS, Proposal
from control.rechecks import Jobs
from control.repo import ProposalRepo
from control.setpoints import ApplyError, Setpoints, UnsafeSetpoint, publishes_now
from heatwatch.core.config import Config
from heatwatch.core.timeutil import Clock

log = logging.getLogger("heatwatch.control")
Key = tuple[str, ...]


def key(p: Proposal) -> Key:
    """What makes two proposals the same: one setpoint per station, one balancing per community, one visit per home."""
    if p.kind in SETPOINT_KINDS:
        return ("setpoint", p.station_id)
    if p.kind == "home_visit":
        return ("home_visit", p.home_id)
    return (p.kind, p.station_id, p.community)


class Lifecycle:
    def __init__(
        self,
        cfg: Config,
        proposals: ProposalRepo,
        clock: Clock,
        points: PointWriter,
        setpoints: Setpoints,
        jobs: Jobs,
        lock: threading.RLock | None = None,
    ) -> None:
        self.cfg = cfg
        self.proposals = proposals
        self.clock = clock
        self.points = points
        self.setpoints = setpoints
        self.jobs = jobs
        self._lock = lock or threading.RLock()

    # --- new proposals ----------------------------------------------------------------------------
    def live_keys(self) -> set[Key]:
        """Keys of proposals still open (setpoints: undecided; on-site work: until rechecked)."""
        keys = set()
        for p in self.proposals.find(statuses=[*OPEN, "applied"], limit=1_000_000):
            if p.kind in SETPOINT_KINDS and p.status == "applied":
                continue  # an applied setpoint is held back by the pending recheck rule, not here
            keys.add(key(p))
        return keys

    def unseen(self, ps: Iterable[Proposal]) -> list[Proposal]:
        """``ps`` without those already open under the same key (nor a second one of the same key in ``ps``)."""
        live = self.live_keys()
        out = []
        for p in ps:
            if key(p) in live:
                continue
            live.add(key(p))
            out.append(p)
        return out

    def add_many(self, ps: list[Proposal], actor: str = "heatwatch") -> None:
        with self._lock:
            self.proposals.add_many(ps, actor)
            self.points.proposals(ps)
        for p in ps:
            log.info("proposal %s (%s, %s): %s", p.proposal_id, p.kind, p.station_id, p.reason)

    # --- transitions ----------------------------------------------------------------------------
    def approve(self, proposal_id: str, actor: str = "operator", note: str = "") -> Proposal:
        return self._move(proposal_id, "approved", actor, note)

    def reject(self, proposal_id: str, actor: str = "operator", note: str = "") -> Proposal:
        return self._move(proposal_id, "rejected", actor, note)

    def _move(self, proposal_id: str, to: str, actor: str, note: str) -> Proposal:
        with self._lock:
            p = self.proposals.move(proposal_id, to, self.clock(), actor, note)
            self.points.proposals([p], self.clock())
            return p

    def apply(self, proposal_id: str, actor: str = "operator", note: str = "") -> Proposal:
        """Publish the setpoint (now, or at its effective time) and schedule the recheck."""
        with self._lock:
            p = self.proposals.get(proposal_id)
            p.check_transition("applied")
            now = self.clock()
            publish_now = publishes_now(p, now)
            if publish_now:
                self.setpoints.send(p, now)
            due = max(now, p.effective_at) + timedelta(hours=self.cfg.control.recheck_after_h)
            new = self.proposals.move(proposal_id, "applied", now, actor, note, applied_at=now, recheck_due_at=due)
            if publish_now:
                self.proposals.mark_published(proposal_id, now)
                new = self.proposals.get(proposal_id)
            self.jobs.schedule("recheck", new.proposal_id, due)
            if p.is_setpoint and not publish_now:
                self.jobs.schedule("setpoint", new.proposal_id, p.effective_at)
            self.points.proposals([new], now)
            return new

    def auto_apply(self, ps: Iterable[Proposal]) -> None:
        """Approve and apply, as ``auto_apply``, each setpoint whose station has auto-apply on.

        Only setpoints: applying a home visit or a balancing job means "done on site", which only the
        people who did it can say (auto-applying them recorded visits that never happened). A setpoint the
        publish check refuses is withdrawn with the reason, not left approved.
        """
        for p in ps:
            if not p.is_setpoint or not auto_apply_for(self.cfg, p.station_id) or p.evidence.get("hold_for_operator"):
                continue
            try:
                self.approve(p.proposal_id, actor="auto_apply", note="auto-apply is on for this station")
                self.apply(p.proposal_id, actor="auto_apply")
            except UnsafeSetpoint as exc:
                self.setpoints.withdraw(p.proposal_id, str(exc).split(": ", 1)[-1], actor="auto_apply")
            except ApplyError as exc:
                log.error("auto-apply of %s failed: %s (it stays approved)", p.proposal_id, exc)
