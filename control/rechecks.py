"""48-hour rechecks: the recheck itself, and its job (and delayed setpoints') on APScheduler 3.

Jobs carry only the proposal id and name a module-level function, so they survive a restart:
the function finds the running ``ControlLoop`` through ``activate``. Job ids are explicit
(``recheck:<id>``, ``setpoint:<id>``), added with ``replace_existing``; ``misfire_grace_time=None``
and ``coalesce`` make a job that fell due while heatwatch was down run once when it is back.
``Jobs`` schedules them at a clock time (the clock may be simulated and faster than the wall);
``Rechecker`` re-runs analytics after the change and records the verdict exactly once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import create_engine, text

from analytics.results import AnalysisResult
from control.db import jobstore_url
from control.outcome import judge
from control.points import PointWriter
from control.proposal import Proposal
from control.repo import ProposalRepo
from heatwatch.core.config import Config
from heatwatch.core.registry import Registry
from heatwatch.core.timeutil import Clock, utc_now
from heatwatch.infra.storage.base import Store

if TYPE_CHECKING:
    from control.alerting import Alerting

log = logging.getLogger("heatwatch.control.rechecks")
loop_log = logging.getLogger("heatwatch.control")
AnalyzeFn = Callable[..., AnalysisResult]
JOB_TABLE = "heatwatch_jobs"


class _Loop(Protocol):
    def recheck(self, proposal_id: str, by: str = ...) -> Any: ...

    def publish_setpoint(self, proposal_id: str) -> Any: ...


_active: _Loop | None = None
_active_lock = threading.Lock()


def activate(loop: _Loop | None) -> None:
    """The loop that persistent jobs act on in this process (set by ControlLoop.start)."""
    global _active
    with _active_lock:
        _active = loop


def _loop() -> _Loop:
    with _active_lock:
        if _active is None:
            raise RuntimeError("no ControlLoop is running in this process; the job will be caught by the next sweep")
        return _active


def recheck_job(proposal_id: str) -> None:
    _loop().recheck(proposal_id, by="scheduler")


def setpoint_job(proposal_id: str) -> None:
    _loop().publish_setpoint(proposal_id)


def build_scheduler(cfg: Config) -> BackgroundScheduler:
    return BackgroundScheduler(
        jobstores={
            "default": SQLAlchemyJobStore(url=jobstore_url(cfg), tablename=JOB_TABLE),
            "memory": MemoryJobStore(),
        },
        job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
        timezone=UTC,
    )


def add_persistent(scheduler: BackgroundScheduler, kind: str, proposal_id: str, run_at: datetime) -> str:
    func = {"recheck": "control.rechecks:recheck_job", "setpoint": "control.rechecks:setpoint_job"}[kind]
    job_id = f"{kind}:{proposal_id}"
    scheduler.add_job(
        func, trigger="date", run_date=run_at, id=job_id, args=[proposal_id], replace_existing=True,
        misfire_grace_time=None, coalesce=True, jobstore="default", name=f"{kind} {proposal_id}",
    )
    return job_id


def schedule_offline(cfg: Config, kind: str, proposal_id: str, run_at: datetime) -> str:
    """Write a job into the persistent store from a process that runs no scheduler (the CLI)."""
    sched = build_scheduler(cfg)
    sched.start(paused=True)
    try:
        return add_persistent(sched, kind, proposal_id, run_at)
    finally:
        sched.shutdown(wait=False)


def stored_jobs(cfg: Config) -> list[dict[str, Any]]:
    """Jobs in the persistent store (id, next run), read without unpickling, for ``heatwatch rechecks list``."""
    url = jobstore_url(cfg)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return []  # nothing was ever scheduled; do not create the file just to look
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            try:
                rows = conn.execute(text(f"SELECT id, next_run_time FROM {JOB_TABLE} ORDER BY next_run_time")).all()
            except Exception:  # table not created yet: nothing scheduled
                return []
    finally:
        engine.dispose()
    return [
        {"job_id": r[0], "next_run": None if r[1] is None else datetime.fromtimestamp(float(r[1]), UTC)} for r in rows
    ]


class Jobs:
    """Schedules ``recheck``/``setpoint`` jobs at a time on the loop's clock.

    ``time_scale`` is simulated seconds per wall second: APScheduler waits in wall time, so an accelerated
    clock's time is translated. Without a running scheduler (the CLI) the job goes straight into the
    persistent store, where the service's scheduler finds it.
    """

    def __init__(self, cfg: Config, clock: Clock, time_scale: float = 1.0) -> None:
        self.cfg = cfg
        self.clock = clock
        self.time_scale = time_scale
        self.scheduler: BackgroundScheduler | None = None

    def wall(self, at: datetime) -> datetime:
        """A clock time as the wall time APScheduler waits for (accelerated clocks run faster)."""
        return utc_now() + (at - self.clock()) / self.time_scale

    def schedule(self, kind: str, proposal_id: str, at: datetime) -> None:
        wall = self.wall(at)
        if self.scheduler is not None and self.scheduler.running:
            add_persistent(self.scheduler, kind, proposal_id, wall)
        else:
            schedule_offline(self.cfg, kind, proposal_id, wall)


class Rechecker:
    """Re-runs analytics after an applied change and records improved / not improved / confounded, exactly once.

    ``analyze`` stands in for ``analytics.engine.analyze`` (tests); a ``not_improved`` verdict opens an
    urgent work order through ``alerting``.
    """

    def __init__(
        self,
        cfg: Config,
        registry: Registry,
        store: Store,
        proposals: ProposalRepo,
        clock: Clock,
        points: PointWriter,
        alerting: Alerting,
        analyze: AnalyzeFn | None = None,
        lock: threading.RLock | None = None,
    ) -> None:
        self.cfg = cfg
        self.registry = registry
        self.store = store
        self.proposals = proposals
        self.clock = clock
        self.points = points
        self.alerting = alerting
        self._analyze = analyze
        self._lock = lock or threading.RLock()

    def analyze(self, start: datetime, end: datetime, community: str) -> AnalysisResult:
        fn = self._analyze
        if fn is None:
            from analytics.engine import analyze as fn  # type: ignore[import-not-found,no-redef,unused-ignore]
        assert fn is not None
        return fn(self.store, self.registry, self.cfg, start, end, community=community, now=end)

    def recheck(self, proposal_id: str, by: str = "sweep") -> Proposal | None:
        """Re-run analytics over a comparable window, record before/after; exactly once per proposal."""
        with self._lock:
            p = self.proposals.get(proposal_id)
            if p.status != "applied":
                return None
            now = self.clock()
            window_h = float(p.evidence.get("window_h") or self.cfg.control.recheck_window_h)
            changed = max(p.applied_at or now, p.effective_at)
            since_h = (now - changed).total_seconds() / 3600
            if 0 < since_h < window_h:
                window_h = since_h  # only the time after the change counts
            start = now - timedelta(hours=window_h)
            if p.kind == "home_visit":
                home = self.registry.homes.get(p.home_id)
                comms = [home.community] if home else [p.community]
            else:
                comms = list(p.targets) or [p.community]
            results = [self.analyze(start, now, c) for c in comms if c]
            c = self.cfg.control
            verdict = judge(p, results, self.cfg.standard.target_c, c.warm_ceiling_c, c.improve_min_c)
            after = verdict.after_c
            others = self.confounders(p, changed, now)
            outcome = "confounded" if others else verdict.outcome
            detail = {"by": by, "window_h": round(window_h, 4), "communities": comms, "why": verdict.why,
                      "still_below": list(verdict.still_below), "no_data": list(verdict.no_data),
                      "confounded_by": [o.proposal_id for o in others]}
            new = self.proposals.record_recheck(p, outcome, None if after is None else round(after, 2), (start, now), now, detail)
            if new is None:
                return None
            self.points.proposals([new], now)
            loop_log.info("recheck of %s: %s (before %s °C, after %s °C)", proposal_id, outcome, p.before_c, new.after_c)
            if outcome == "not_improved":
                self.alerting.recheck_not_improved(new, now, verdict.why)
        self.alerting.deliver_due()
        return new

    def confounders(self, p: Proposal, since: datetime, now: datetime) -> list[Proposal]:
        """Other changes that took effect at ``p``'s station between ``p`` and its recheck: a setpoint sent (a
        cold-snap step, an operator's change), or balancing or home valves set in a community ``p`` served. Either could have
        made the difference, so the recheck cannot credit or blame ``p``. A model step is not confounded by the
        model's own later steps: the plan is re-made every cycle, so its recheck judges the plan (were the homes
        at their standard 48 h on?) — every model step was "confounded" before, which said nothing."""
        out = []
        for q in self.proposals.find(statuses=["applied", "rechecked"], station_id=p.station_id, limit=100_000):
            if q.proposal_id == p.proposal_id:
                continue
            if p.origin == q.origin == "model" or (p.kind == "home_valves" and q.origin == "model"):
                continue  # the model's later steps are the same plan, re-made every cycle: judged with it (a
                # home-valve job is judged on its throttled homes under that plan: did any of them go cold?)
            if q.is_setpoint:
                at = q.published_at
            elif q.kind in ("balancing", "home_valves") and p.kind != "home_visit" and q.community in p.targets:
                at = q.applied_at
            else:
                continue
            if at is not None and since < at <= now:
                out.append(q)
        return sorted(out, key=lambda q: q.published_at or q.applied_at or q.created_at)

    def run_due(self, by: str = "sweep") -> list[Proposal]:
        """Every applied change whose recheck is due on the clock (the sweep behind the scheduler's jobs)."""
        now = self.clock()
        done = []
        for p in self.proposals.pending_rechecks():
            if p.recheck_due_at is not None and p.recheck_due_at <= now:
                r = self.recheck(p.proposal_id, by=by)
                if r is not None:
                    done.append(r)
        return done
