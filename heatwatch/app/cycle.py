"""One analyse-then-control cycle — the one ``heatwatch run`` runs every ``analytics.interval_min``, and
the demo and the closed-loop tests run at each simulated cycle time.

1. analytics over the last ``window_h`` hours up to ``at``;
2. the results written to the store for Grafana (a store that refuses is a warning: control still runs);
3. with ``coldsnap=True``, the cold-snap job (``heatwatch run`` schedules that job on its own; a simulation
   runs it with every cycle);
4. the setpoints that fell due, then control: proposals, auto-apply, work orders, the rechecks that fell due.

With a ``ServiceState`` the analysis sees only the homes heated on the cycle's local date, and control raises
no cold alert outside the heating season or for homes told of an outage (issue 16).

The loop's clock must read ``at``. Written once so that the service, the demo and the tests cannot drift.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from heatwatch.core.timeutil import rfc3339
from heatwatch.infra.storage.base import StoreError, StoreUnavailable

if TYPE_CHECKING:
    from analytics.results import AnalysisResult
    from control.proposal import Proposal
    from control.service import ControlLoop, CycleReport
    from heatwatch.app.servicestate import ServiceState
    from heatwatch.core.config import Config
    from heatwatch.core.registry import Registry
    from heatwatch.infra.storage.base import Store

log = logging.getLogger("heatwatch.run")


@dataclass(frozen=True, kw_only=True)
class CycleSummary:
    """What one cycle did: the analysis, the cold-snap job's proposals, control's report (None without control)."""

    at: datetime
    result: AnalysisResult
    planned: list[Proposal] = field(default_factory=list)
    report: CycleReport | None = None
    duration_s: float = 0.0

    def for_status(self) -> dict[str, Any]:
        """The ``last_analysis`` object of status.json."""
        r = self.result
        out: dict[str, Any] = {
            "at": rfc3339(self.at), "duration_s": round(self.duration_s, 3),
            "communities": len(r.communities),
            "cold_communities": sum(1 for c in r.communities if c.status == "cold"),
            "homes_below_standard": len(r.homes_below_standard),
        }
        if self.report is not None:
            rep = self.report
            out.update(proposals=len(rep.proposals), alerts_opened=len(rep.opened), rechecked=len(rep.rechecked))
        return out


class Cycle:
    """Analytics, then control (``loop`` None: analytics only, as in ``heatwatch run`` without the control part)."""

    def __init__(
        self, store: Store, registry: Registry, cfg: Config, loop: ControlLoop | None = None, *, window_h: float,
        coldsnap: bool = False, service: ServiceState | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.cfg = cfg
        self.loop = loop
        self.window_h = window_h
        self.with_coldsnap = coldsnap
        self.service = service  # home statuses, outages and the season (None: every home heated, no quiet)

    def run(self, at: datetime) -> CycleSummary:
        from analytics.engine import analyze, write_results

        t0 = time.monotonic()
        registry, quiet = (self.registry, None) if self.service is None else self.service.at(self.registry, at)
        # only the homes heated on the day count in averages and flags; the loop hears what stays quiet
        result = analyze(self.store, registry, self.cfg, at - timedelta(hours=self.window_h), at, now=at)
        try:
            write_results(self.store, result, at=at)
        except (StoreUnavailable, StoreError) as exc:
            log.warning("analytics results not written to the store: %s", exc)
        planned: list[Proposal] = []
        report = None
        if self.loop is not None:
            if self.with_coldsnap:
                planned = self.loop.run_coldsnap()
            # setpoints that fell due go out before this cycle's new proposals are applied: a station's newest
            # change must be the last one published, as the retained message is the one that counts
            self.loop.publish_due_setpoints()
            report = self.loop.evaluate(result, quiet)
            if self.service is not None:  # an outage past 8 h: control asked for a user notice; the homes are told
                told = self.service.tell_unplanned(self.registry, self.loop.alerts, [*report.opened, *report.escalated], at)
                if told:
                    self.loop.dispatcher.deliver_due()
        return CycleSummary(at=at, result=result, planned=planned, report=report, duration_s=time.monotonic() - t0)

    def coldsnap(self) -> list[Proposal]:
        """The cold-snap job alone, then the setpoints due by now (a simulation that runs no analytics)."""
        if self.loop is None:
            return []
        planned = self.loop.run_coldsnap()
        self.loop.publish_due_setpoints()
        return planned
