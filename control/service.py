"""The control loop: what ``heatwatch run`` calls each analytics cycle, and the operator actions.

``ControlLoop`` coordinates; each job is its own module:

- ``control.stations``: the stations' latest readings from the store;
- ``control.diagnosis``: analytics result → proposals (pure);
- ``control.lifecycle``: the proposal state machine (add, approve, reject, apply, auto-apply);
- ``control.setpoints``: setpoints out on MQTT, now or at their effective time;
- ``control.rechecks``: the 48 h recheck and the persistent scheduler jobs;
- ``control.coldsnap``: the cold-snap planner (pure: returns proposals, the loop stores them);
- ``control.alerting``: work orders from the analysis, the stations and failed rechecks; their sinks;
- ``control.points``: everything above as points in the store, for Grafana.

``evaluate(result)`` runs one cycle; ``start()`` runs the scheduler (persistent rechecks, cold-snap job,
outbox redelivery).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from analytics.results import AnalysisResult
from control import rechecks, valves
from control.alerting import Alerting, build_sinks, configured_sinks, jsonl_path
from control.alerts.model import WorkOrder
from control.alerts.rules import Quiet, StationReading
from control.alerts.sinks import Sink
from control.coldsnap import (
    Forecast,
    ForecastCheck,
    ForecastError,
    SetpointHistory,
    check_forecast,
    detect,
    forecast_from_store,
    load_openmeteo,
    plan_station,
    snap_still_forecast,
)
from control.db import db_path, open_engine
from control.diagnosis import diagnose
from control.lifecycle import Lifecycle
from control.mpc import ModelDecision, decide_all, margin_for
from control.outcome import judged_mean
from control.points import PointWriter
from control.proposal import OPEN, SETPOINT_KINDS, Proposal
from control.rechecks import AnalyzeFn, Jobs, Rechecker
from control.repo import ProposalRepo
from control.setpoints import ApplyError, Setpoints, curve_offset
from control.stations import read_stations, station_states
from heatwatch.core import schema
from heatwatch.core.config import Config
from heatwatch.core.registry import Registry, Station
from heatwatch.core.timeutil import Clock, rfc3339, utc_now
from heatwatch.infra.mqtt.client import Publisher
from heatwatch.infra.storage.base import Store, StoreError, StoreUnavailable

__all__ = ["ApplyError", "ControlLoop", "CycleReport", "build_sinks", "configured_sinks", "jsonl_path"]

log = logging.getLogger("heatwatch.control")

SpotFn = Callable[[datetime, datetime], Iterable[valves.Spot]]  # in-home measurements in [start, end)


@dataclass(frozen=True, kw_only=True)
class CycleReport:
    """What one ``evaluate`` did: new proposals, work orders opened and resolved, rechecks that ran."""

    proposals: list[Proposal] = field(default_factory=list)
    opened: list[WorkOrder] = field(default_factory=list)
    resolved: list[WorkOrder] = field(default_factory=list)
    rechecked: list[Proposal] = field(default_factory=list)
    escalated: list[WorkOrder] = field(default_factory=list)  # open orders that got worse (e.g. an outage past 8 h)


class ControlLoop:
    def __init__(
        self,
        cfg: Config,
        registry: Registry,
        store: Store,
        clock: Clock = utc_now,
        publisher: Publisher | None = None,
        *,
        analyze: AnalyzeFn | None = None,
        time_scale: float = 1.0,
        sinks: Mapping[str, Sink] | None = None,
        spots: SpotFn | None = None,
    ) -> None:
        self.cfg = cfg
        self.registry = registry
        self.store = store
        self.clock = clock
        self.publisher = publisher
        self.spots = spots  # in-home measurements (入户测温) in [start, end): the measurement book, from the app layer
        self.engine = open_engine(db_path(cfg))
        self.proposals = ProposalRepo(self.engine)
        self.points = PointWriter(store)
        self._lock = threading.RLock()  # one cycle, job or operator action at a time
        self.alerting = Alerting(
            cfg, registry, store, self.engine, clock, self.points,
            dict(sinks) if sinks is not None else build_sinks(cfg, publisher),
        )
        self.alerts = self.alerting.repo
        self.dispatcher = self.alerting.dispatcher
        self.jobs = Jobs(cfg, clock, time_scale)  # time_scale: simulated seconds per wall second
        self.setpoints = Setpoints(cfg, self.proposals, clock, publisher, self._lock, registry=registry,
                                   measured=self._measured_supply, check=self._still_wanted, points=self.points,
                                   outdoor=self._measured_outdoor)
        self.lifecycle = Lifecycle(cfg, self.proposals, clock, self.points, self.setpoints, self.jobs, self._lock)
        self.rechecker = Rechecker(cfg, registry, store, self.proposals, clock, self.points, self.alerting, analyze, self._lock)
        self.last_means: dict[str, float] = {}  # weighted mean per community from the last cycle (cold-snap feedback)
        self._forecasts: dict[str, Forecast] = {}  # the forecast last used per weather site (to flag a jump)
        self._checks: dict[str, tuple[Forecast, ForecastCheck]] = {}  # the last forecast checked per site, and its check
        # stations whose supply the fitted model decides (strategy "model"; the cold-snap job leaves them alone)
        self.model_stations: set[str] = set(registry.stations) if cfg.control.strategy == "model" else set()
        # stations down for announced work at the last cycle (``Quiet.stations``): no setpoint, no cold-snap step
        self.down: dict[str, str] = {}

    @property
    def scheduler(self) -> Any:
        """The running APScheduler (``start()``), or None."""
        return self.jobs.scheduler

    # --- the analytics cycle --------------------------------------------------------------------
    def evaluate(self, result: AnalysisResult, quiet: Quiet | None = None) -> CycleReport:
        """Proposals and work orders from ``result``, auto-apply, then the sweeps: setpoints, rechecks, outbox.
        ``quiet``: cold alerts not raised now (``control.alerts.rules.Quiet``: outside the season, an announced outage)."""
        with self._lock:
            now = self.clock()
            readings = self.read_stations(now)
            self.last_means.update({c.community: c.weighted_mean_c for c in result.communities if c.weighted_mean_c is not None})
            pending = self._pending_baselines()
            window_h = round((result.window_to - result.window_from).total_seconds() / 3600, 3)
            last = self.proposals.last_published()
            published = {sid: p.proposed_c for sid, p in last.items() if p.proposed_c is not None}
            offsets = {sid: o for sid, p in last.items() if (o := curve_offset(p)) is not None}
            states = station_states(self.registry, readings, published, offsets)
            found = diagnose(result, self.registry, self.cfg, states, pending, now)
            if self.cfg.control.strategy == "model":
                found = self._with_model(found, readings, now)
            self.down = dict(quiet.stations) if quiet is not None else {}
            if self.cfg.control.home_valves:
                found += self.valve_jobs(now, {f.home_id for f in result.sensors})
            if self.down:  # a station down for announced work gets no setpoint: its telemetry says nothing of demand
                found = [p for p in found if not self._down_for(p)]
            made = [replace(p, evidence={**p.evidence, "window_h": window_h}) for p in self.lifecycle.unseen(found)]
            self.lifecycle.add_many(made)
            pl = self.alerting.cycle(result, readings, now, quiet)
        self.lifecycle.auto_apply(made)
        self.publish_due_setpoints()
        rechecked = self.run_due_rechecks(by="sweep")
        self.dispatcher.deliver_due()
        return CycleReport(proposals=made, opened=pl.opened, resolved=pl.resolved, rechecked=rechecked,
                           escalated=pl.escalated)

    def valve_jobs(self, now: datetime, distrusted: Collection[str] = ()) -> list[Proposal]:
        """Inter-home balancing (``control.valves``): a home-valve job per community whose warm classes of homes can be
        throttled, from each station's last ``valve_window_h``. Not for a station down for announced work (its homes
        say nothing of the valves then), nor while the community's last job waits for its recheck (``unseen``).
        ``distrusted``: homes whose sensor analytics flagged (stuck, jumping, implausible…) — they do not speak for
        their class."""
        c = self.cfg.control
        done = self.proposals.find(statuses=["applied", "rechecked"], kinds=["home_valves"], limit=100_000)
        flows = valves.flows_set(done)
        settled_at = valves.settled_times(done, timedelta(hours=c.valve_window_h))
        settled = self.valves_settled()
        spots: list[valves.Spot] | None = None
        live = self.lifecycle.live_keys()
        out: list[Proposal] = []
        for sid, st in sorted(self.registry.stations.items()):
            if sid in self.down or all(("home_valves", sid, cm) in live for cm in st.communities):
                continue  # every community's last job still waits for its crew or recheck: nothing to read
            if spots is None:
                spots = self._spots(now - timedelta(days=c.valve_spot_days), now)
            try:
                w = valves.read_window(self.store, self.registry, self.cfg, st, now, distrusted, spots, settled_at)
            except (StoreUnavailable, StoreError) as exc:
                log.warning("no home-valve advice for %s: store: %s", sid, exc)
                continue
            out += valves.proposals(self.cfg, st, w, flows, now, margin_for(self.cfg, sid in settled), self.registry)
        return out

    def _spots(self, start: datetime, end: datetime) -> list[valves.Spot]:
        """The in-home measurements of [start, end), or none (logged) when they cannot be read: without them a class
        that one sensor home measures is not throttled — the safe side."""
        if self.spots is None:
            return []
        try:
            return list(self.spots(start, end))
        except Exception as exc:  # the measurement book is another database: its failure must not stop the cycle
            log.warning("in-home measurements not read (classes one sensor home measures stay as they are): %s", exc)
            return []

    def valves_settled(self) -> set[str]:
        """``control.valves.settled`` over this loop's proposals."""
        return valves.settled(self.proposals)

    def valves_set(self) -> dict[str, datetime]:
        """``control.valves.set_times`` over this loop's proposals."""
        return valves.set_times(self.proposals)

    def _down_for(self, p: Proposal) -> bool:
        """A setpoint for a station down for announced work (logged: it is not proposed)."""
        if not (p.is_setpoint and p.station_id in self.down):
            return False
        log.info("no %s for %s during its %s", p.kind, p.station_id, self.down[p.station_id])
        return True

    def _with_model(self, found: list[Proposal], readings: Mapping[str, StationReading], now: datetime) -> list[Proposal]:
        """Where a station's model fits, its plan replaces the curve + feedback setpoints; balancing and
        visits stay."""
        decisions = self.model_decisions(now, readings)
        self.model_stations = {d.station_id for d in decisions if d.basis != "fallback"}
        kept = [p for p in found if not (p.is_setpoint and p.station_id in self.model_stations)]
        return kept + [self._with_before(d.proposal) for d in decisions if d.proposal is not None]

    def _with_before(self, p: Proposal) -> Proposal:
        """The weighted mean the recheck compares with (as the analytics' own proposals carry it): the coldest of the
        station's communities this cycle for a raise, the warmest for a cut."""
        before = judged_mean((self.last_means[c] for c in p.targets if c in self.last_means), p.kind == "lower_supply")
        return p if before is None else replace(p, before_c=round(before, 2))

    def model_decisions(self, now: datetime, readings: Mapping[str, StationReading] | None = None) -> list[ModelDecision]:
        """Each station's model this cycle: refitted on its stored telemetry, and what it would send.

        The forecast passes the cold-snap job's checks first: an implausible one is not used, nor one that jumped
        since its previous issue (the plan then holds the outdoor temperature measured now, and says why) — a
        jump is acted on once a later issue repeats it. A plan whose look-ahead holds a forecast cold snap says so
        (``evidence.cold_snap``): the model's pre-adjustment is the cold-snap job of its stations."""
        readings = self.read_stations(now) if readings is None else readings
        notes: dict[str, str] = {}
        used: dict[str, Forecast] = {}  # the forecast each plan was made on (read once, named in _annotated)

        def forecast_for(st: Station, at: datetime) -> Forecast | None:
            fc, check = self._checked_forecast(st, at)
            if fc is None or check is None:
                return None
            if not check.usable:
                notes[st.station_id] = f"forecast not used ({'; '.join(check.problems)})"
                return None
            if check.jump_c is not None and check.jump_at is not None:
                notes[st.station_id] = (f"forecast not used: it changed by {check.jump_c:.1f} °C at "
                                        f"{rfc3339(check.jump_at, self.cfg.general.tz)} since its previous issue; "
                                        "used once a later issue repeats it")
                return None
            used[st.station_id] = fc
            return fc

        decisions = decide_all(self.store, self.registry, self.cfg, now, readings, self.proposals.last_published(),
                               forecast_for, valves_set=self.valves_set(), valves_settled=self.valves_settled())
        return [self._annotated(d, notes.get(d.station_id), used.get(d.station_id), now) for d in decisions]

    def _annotated(self, d: ModelDecision, note: str | None, fc: Forecast | None, now: datetime) -> ModelDecision:
        """The forecast's note and the cold snap the plan answers (``fc``: the forecast it was made on), on the
        decision's proposal."""
        p = d.proposal
        if p is None:
            return d if note is None else replace(d, why=f"{d.why}; {note}")
        evidence, reason = dict(p.evidence), p.reason
        if note is not None:
            evidence["forecast_note"] = note
            reason += f" {note[0].upper()}{note[1:]}."
        elif fc:
            c = self.cfg.control
            st = self.registry.stations[p.station_id]
            snap = detect(fc, now, self._outdoor_daily_mean(st, now), c.coldsnap_threshold_c, c.coldsnap_drop_c,
                          timedelta(hours=c.model_lookahead_h))
            if snap is not None:
                evidence["cold_snap"] = {"arrival": rfc3339(snap.arrival), "min_c": snap.min_c,
                                         "min_at": rfc3339(snap.min_at), "trigger": snap.trigger,
                                         "reference_c": round(snap.reference_c, 2)}
                reason = (f"Cold snap forecast from {rfc3339(snap.arrival, self.cfg.general.tz)} (down to "
                          f"{snap.min_c:.1f} °C, {snap.trigger}): {reason}")
        return replace(d, proposal=replace(p, evidence=evidence, reason=reason))

    def _checked_forecast(self, st: Station, now: datetime) -> tuple[Forecast | None, ForecastCheck | None]:
        """The forecast for ``st`` and its check against the previous issue for its site; one forecast is checked
        once (the model and the cold-snap job share a site's check, so the second does not miss a jump)."""
        fc = self._forecast_for(st, now)
        if fc is None:
            return None, None
        site = st.weather_site
        cached = self._checks.get(site)
        if cached is not None and cached[0] == fc:
            return fc, cached[1]
        check = check_forecast(fc, self._forecasts.get(site), self.cfg)
        self._checks[site] = (fc, check)
        if check.usable:
            self._forecasts[site] = fc
        return fc, check

    def _pending_baselines(self) -> dict[str, float | None]:
        """Per station with a setpoint change awaiting its recheck: the weighted mean before the oldest such change
        (an emergency is measured from there), or None when an emergency change is itself pending — one emergency
        per recheck, so a reading that keeps falling (a sensor dying) cannot ratchet the supply up every cycle."""
        out: dict[str, float | None] = {}
        for p in sorted(self.proposals.pending_rechecks(), key=lambda q: q.applied_at or q.created_at):
            if not p.is_setpoint:
                continue
            if p.evidence.get("emergency"):
                out[p.station_id] = None
            else:
                out.setdefault(p.station_id, p.before_c)
        return out

    def read_stations(self, now: datetime) -> dict[str, StationReading]:
        return read_stations(self.store, self.registry, now, self.cfg)

    def watch_store(self) -> list[WorkOrder]:
        """Does the store answer? When it does not, one ``telemetry_outage`` order (the scheduler asks every
        ``analytics.interval_min``: a store that is down also stops the analyses that would notice)."""
        now = self.clock()
        try:
            self.store.query(schema.COLLECTOR_ALARMS, now - timedelta(minutes=1), now)
        except (StoreUnavailable, StoreError) as exc:
            with self._lock:
                opened = self.alerting.store_unreachable(str(exc) or type(exc).__name__, now)
            self.dispatcher.deliver_due()
            return opened
        return []

    def _measured_supply(self, station_id: str) -> float | None:
        """The station's supply as measured now: the reference of its first setpoint."""
        r = self.read_stations(self.clock()).get(station_id)
        return None if r is None else r.supply_c

    def _measured_outdoor(self, station_id: str) -> float | None:
        """The station's outdoor temperature now: where a curve offset it was sent aims."""
        r = self.read_stations(self.clock()).get(station_id)
        return None if r is None else r.outdoor_c

    def _still_wanted(self, p: Proposal, now: datetime) -> str | None:
        """The loop's own check before a setpoint goes out: a cold-snap raise needs the newest forecast to still
        show its snap (a forecast that cannot be read or checked leaves the plan as it was)."""
        if p.origin != "cold_snap" or p.kind != "supply" or "release_of" in p.evidence:
            return None  # a release back to the curve is not a raise for a snap
        st = self.registry.stations.get(p.station_id)
        fc = self._forecast_for(st, now) if st is not None else None
        if not fc or not check_forecast(fc, None, self.cfg).usable:
            return None
        return None if snap_still_forecast(p, fc, self.cfg, now) else "the newest forecast no longer shows the cold snap"

    # --- operator actions -----------------------------------------------------------------------
    def approve(self, proposal_id: str, actor: str = "operator", note: str = "") -> Proposal:
        return self.lifecycle.approve(proposal_id, actor, note)

    def reject(self, proposal_id: str, actor: str = "operator", note: str = "") -> Proposal:
        return self.lifecycle.reject(proposal_id, actor, note)

    def apply(self, proposal_id: str, actor: str = "operator", note: str = "") -> Proposal:
        """Publish the setpoint (now, or at its effective time) and schedule the recheck."""
        return self.lifecycle.apply(proposal_id, actor, note)

    # --- setpoints and rechecks (also the scheduler's jobs: control.rechecks) ---------------------
    def publish_setpoint(self, proposal_id: str) -> bool:
        return self.setpoints.publish_setpoint(proposal_id)

    def publish_due_setpoints(self) -> None:
        self.setpoints.publish_due()

    def analyze(self, start: datetime, end: datetime, community: str) -> AnalysisResult:
        return self.rechecker.analyze(start, end, community)

    def recheck(self, proposal_id: str, by: str = "sweep") -> Proposal | None:
        return self.rechecker.recheck(proposal_id, by)

    def run_due_rechecks(self, by: str = "sweep") -> list[Proposal]:
        return self.rechecker.run_due(by)

    # --- cold snap ------------------------------------------------------------------------------
    def run_coldsnap(self) -> list[Proposal]:
        """Pre-adjust stations before a forecast cold snap (and release after it): check the forecast, withdraw
        steps a newer forecast cancelled, plan, store, auto-apply."""
        with self._lock:
            now = self.clock()
            readings = self.read_stations(now)
            made: list[Proposal] = []
            for sid, st in self.registry.stations.items():
                if sid in self.model_stations or sid in self.down:
                    continue  # its model plans against the forecast every cycle; or it is down for announced work
                self._withdraw_stale_holds(sid, now)  # whatever the forecast: an hour gone by is gone
                fc, check = self._checked_forecast(st, now)
                if fc is None or check is None:
                    continue
                if not check.usable:
                    log.warning("forecast for %s not used (%s): no cold-snap decision for %s",
                                st.weather_site, "; ".join(check.problems), sid)
                    continue
                self._withdraw_cancelled(sid, fc, now)
                planned = plan_station(self.cfg, st, readings.get(sid), fc, now, self.last_means, self._setpoint_history(sid),
                                       outdoor_ref_c=self._outdoor_daily_mean(st, now))
                if check.jump_c is not None and check.jump_at is not None:
                    planned = [_held(p, check.jump_c, check.jump_at, self.cfg) for p in planned]
                made += planned
            self.lifecycle.add_many(made)
        self.lifecycle.auto_apply(made)
        return made

    def _outdoor_daily_mean(self, st: Station, now: datetime) -> float | None:
        """The mean outdoor temperature measured at ``st``'s weather site over the last 24 h: the reference a
        cold snap's drop is measured from (the daily swing averages out). None without readings."""
        try:
            df = self.store.query(schema.WEATHER, now - timedelta(hours=24), now, where={"site_id": [st.weather_site]},
                                  fields=["temp_c"])
        except (StoreUnavailable, StoreError):
            return None
        if df.empty or "temp_c" not in df:
            return None
        vals = df["temp_c"].dropna()
        return float(vals.mean()) if len(vals) else None

    def _forecast_for(self, st: Station, now: datetime) -> Forecast | None:
        """The forecast for ``st``'s weather_site: the file's when it is for that site ([control] forecast_site,
        or the one site every station shares), else the store's. None: no forecast to act on."""
        c = self.cfg.control
        if c.forecast_file is None:
            try:
                return forecast_from_store(self.store, st.weather_site, now, timedelta(hours=c.coldsnap_horizon_h))
            except (StoreUnavailable, StoreError) as exc:
                log.warning("forecast for %s unavailable: %s", st.weather_site, exc)
                return None
        sites = {s.weather_site for s in self.registry.stations.values()}
        site = c.forecast_site or (next(iter(sites)) if len(sites) == 1 else "")
        if not site:
            log.error("cold-snap check skipped: %s names no site and the stations have %d weather sites (%s); set "
                      "[control] forecast_site", c.forecast_file, len(sites), ", ".join(sorted(sites)))
            return None
        if site not in sites:
            log.error("cold-snap check skipped: forecast_site %r is not the weather_site of any station (%s)",
                      site, ", ".join(sorted(sites)))
            return None
        if st.weather_site != site:
            return None
        try:
            return load_openmeteo(c.forecast_file)
        except ForecastError as exc:
            log.error("cold-snap check skipped: %s", exc)
            return None

    def _withdraw_cancelled(self, station_id: str, fc: Forecast, now: datetime) -> list[Proposal]:
        """Steps of a ramp not sent yet, whose cold snap the newest forecast no longer shows: withdrawn."""
        out = []
        for p in self.proposals.find(statuses=[*OPEN, "applied"], station_id=station_id, kinds=["supply"]):
            if (p.origin != "cold_snap" or p.published_at is not None or "release_of" in p.evidence
                    or snap_still_forecast(p, fc, self.cfg, now)):
                continue
            coldest = min((v for t, v in fc if t >= now), default=None)
            why = ("the newest forecast no longer shows the cold snap"
                   + (f" (coldest {coldest:.1f} °C ahead)" if coldest is not None else ""))
            w = self.setpoints.withdraw(p.proposal_id, why)
            if w is not None:
                out.append(w)
        return out

    def _withdraw_stale_holds(self, station_id: str, now: datetime) -> list[Proposal]:
        """A step held for an operator (its forecast jumped) that nobody decided by a ramp interval past its hour:
        withdrawn as out of date — the forecast of now plans again. Left undecided it blocked every later release
        (a release waits for undecided setpoints) while new ramps still raised the station: on issue 15's 30-day
        season two releases held on day 1 kept both stations climbing to a 28 °C mean."""
        out = []
        stale = now - timedelta(hours=self.cfg.control.ramp_interval_h)
        for p in self.proposals.find(statuses=["proposed"], station_id=station_id, kinds=sorted(SETPOINT_KINDS)):
            if p.origin != "cold_snap" or not p.evidence.get("hold_for_operator") or p.effective_at > stale:
                continue
            why = (f"held for an operator (forecast jump) and not decided by {rfc3339(stale, self.cfg.general.tz)}, "
                   f"{self.cfg.control.ramp_interval_h:g} h after its hour: out of date, the newest forecast plans again")
            w = self.setpoints.withdraw(p.proposal_id, why)
            if w is not None:
                out.append(w)
        return out

    def _setpoint_history(self, station_id: str) -> SetpointHistory:
        kinds = sorted(SETPOINT_KINDS)
        find = self.proposals.find
        return SetpointHistory(
            active=find(statuses=[*OPEN, "applied"], station_id=station_id, kinds=kinds),
            changes=find(statuses=["applied", "rechecked"], station_id=station_id, kinds=kinds),
            undecided=bool(find(statuses=sorted(OPEN), station_id=station_id, kinds=kinds, limit=1)),
            last_published=self.proposals.last_published(station_id).get(station_id),
        )

    # --- scheduler ------------------------------------------------------------------------------
    def start(self) -> ControlLoop:
        rechecks.activate(self)
        scheduler = rechecks.build_scheduler(self.cfg)
        wall_now = utc_now()
        scheduler.add_job(
            self._coldsnap_job, "interval", minutes=self.cfg.control.coldsnap_interval_min, id="coldsnap",
            jobstore="memory", replace_existing=True, next_run_time=wall_now + timedelta(seconds=5),
        )
        scheduler.add_job(
            self.dispatcher.deliver_due, "interval", seconds=self.cfg.alerts.redeliver_interval_s, id="alerts-redeliver",
            jobstore="memory", replace_existing=True,
        )
        scheduler.add_job(
            self._watch_store_job, "interval", minutes=self.cfg.analytics.interval_min, id="store-watch",
            jobstore="memory", replace_existing=True,
        )
        self.jobs.scheduler = scheduler
        scheduler.start()
        return self

    def _watch_store_job(self) -> None:
        try:
            self.watch_store()
        except Exception:  # a job must not die silently; the next run tries again
            log.exception("store watch failed")

    def _coldsnap_job(self) -> None:
        try:
            self.run_coldsnap()
        except Exception:  # a job must not die silently; the next run tries again
            log.exception("cold-snap job failed")

    def shutdown(self) -> None:
        scheduler = self.jobs.scheduler
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)
        rechecks.activate(None)
        self.engine.dispose()


def _held(p: Proposal, jump_c: float, at: datetime, cfg: Config) -> Proposal:
    """A step planned from a forecast that jumped since its previous issue: flagged, for an operator to confirm."""
    note = (f" The forecast changed by {jump_c:.1f} °C at {rfc3339(at, cfg.general.tz)} since its previous issue: held "
            "for an operator to confirm (not auto-applied).")
    return replace(p, reason=p.reason + note,
                   evidence={**p.evidence, "forecast_jump_c": round(jump_c, 1), "hold_for_operator": True})
