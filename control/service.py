"""The control loop: what ``heatwatch run`` calls each analytics cycle, and the operator actions.

``ControlLoop.evaluate(result)`` turns an analytics result into proposals (diagnosis) and work
orders (alerts), sweeps overdue rechecks and setpoints, and delivers queued alert messages.
``start()`` runs the scheduler (persistent rechecks, cold-snap job, outbox redelivery).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from analytics.results import AnalysisResult
from control import rechecks
from control.alerts.dispatch import Dispatcher
from control.alerts.model import Candidate, WorkOrder
from control.alerts.repo import AlertRepo
from control.alerts.rules import (
    Observation,
    StationReading,
    observe_analysis,
    observe_collector_alarms,
    observe_stations,
    unit_of,
)
from control.alerts.sinks import JsonlSink, MqttSink, Sink, WebhookSink
from control.alerts.tracker import plan
from control.coldsnap import (
    Forecast,
    ForecastError,
    coldest_ahead,
    detect,
    forecast_from_store,
    load_openmeteo,
    plan_following,
    step_down,
)
from control.curve import auto_apply_for, design_for, heating_curve, indoor_feedback
from control.db import db_path, open_engine
from control.diagnosis import StationState, diagnose
from control.outcome import judge, measured
from control.proposal import OPEN, SETPOINT_KINDS, STATUSES, Proposal, new_proposal_id
from control.repo import ProposalRepo
from heatwatch.core import schema
from heatwatch.core.config import Config, StationDesign
from heatwatch.core.model import FieldValue, Point
from heatwatch.core.registry import Registry, Station
from heatwatch.core.timeutil import Clock, rfc3339, to_ns, utc_now
from heatwatch.infra.mqtt.client import Publisher, PublishError
from heatwatch.infra.mqtt.setpoint import setpoint_payload
from heatwatch.infra.mqtt.topics import setpoint_topic
from heatwatch.infra.storage.base import Store, StoreError, StoreUnavailable

log = logging.getLogger("heatwatch.control")
AnalyzeFn = Callable[..., AnalysisResult]
STATION_FIELDS = ("supply_c", "return_c", "supply_kpa", "return_kpa", "flow_m3h")
PUBLISH_NOW = timedelta(minutes=1)  # setpoints effective sooner than this go out at once


class ApplyError(Exception):
    """The change could not be applied (e.g. the broker did not acknowledge the setpoint)."""


def configured_sinks(cfg: Config) -> list[str]:
    names = ["jsonl"]
    if cfg.alerts.mqtt:
        names.append("mqtt")
    if cfg.alerts.webhook_url:
        names.append("webhook")
    return names


def jsonl_path(cfg: Config) -> Path:
    return cfg.alerts.jsonl_path or cfg.general.data_dir / "alerts.jsonl"


def build_sinks(cfg: Config, publisher: Publisher | None) -> dict[str, Sink]:
    sinks: dict[str, Sink] = {"jsonl": JsonlSink(jsonl_path(cfg))}
    if cfg.alerts.mqtt and publisher is not None:
        sinks["mqtt"] = MqttSink(publisher, cfg.mqtt.topic_prefix)
    if cfg.alerts.webhook_url:
        a = cfg.alerts
        sinks["webhook"] = WebhookSink(
            a.webhook_url, cfg.secret("alerts", "webhook_secret"), a.webhook_retries, a.webhook_backoff_s, a.webhook_timeout_s
        )
    return sinks


@dataclass
class CycleReport:
    proposals: list[Proposal] = field(default_factory=list)
    opened: list[WorkOrder] = field(default_factory=list)
    resolved: list[WorkOrder] = field(default_factory=list)
    rechecked: list[Proposal] = field(default_factory=list)


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
    ) -> None:
        self.cfg = cfg
        self.registry = registry
        self.store = store
        self.clock = clock
        self.publisher = publisher
        self._analyze = analyze
        self.time_scale = time_scale  # simulated seconds per wall second (accelerated runs)
        self.engine = open_engine(db_path(cfg))
        self.proposals = ProposalRepo(self.engine)
        self.alerts = AlertRepo(self.engine, configured_sinks(cfg))
        self.dispatcher = Dispatcher(
            self.alerts, sinks if sinks is not None else build_sinks(cfg, publisher), clock, cfg.alerts.redeliver_interval_s
        )
        self.scheduler: Any = None
        self._lock = threading.RLock()
        self._last_means: dict[str, float] = {}

    # --- the analytics cycle --------------------------------------------------------------------
    def evaluate(self, result: AnalysisResult) -> CycleReport:
        report = CycleReport()
        with self._lock:
            now = self.clock()
            readings = self.read_stations(now)
            self._last_means.update({c.community: c.weighted_mean_c for c in result.communities if c.weighted_mean_c is not None})
            states = {
                sid: StationState(st, *(self._reading_values(readings.get(sid))))
                for sid, st in self.registry.stations.items()
            }
            pending = {p.station_id: p.before_c for p in self.proposals.pending_rechecks() if p.is_setpoint}
            window_h = round((result.window_to - result.window_from).total_seconds() / 3600, 3)
            live = self._live_keys()
            for p in diagnose(result, self.registry, self.cfg, states, pending, now):
                if self._key(p) in live:
                    continue
                live.add(self._key(p))
                report.proposals.append(replace(p, evidence={**p.evidence, "window_h": window_h}))
            self._add_many(report.proposals)
            obs = observe_analysis(result, self.registry, self.cfg)
            st_obs = observe_stations(readings, self.registry, self.cfg, now)
            merged = Observation(obs.candidates + st_obs.candidates, {**obs.healthy, **st_obs.healthy})
            pl = plan(self.alerts.open_alerts(), merged, self.registry, self.cfg, now)
            pl.opened += self._collector_alarm_orders(now)
            self.alerts.record(pl.opened, pl.updated, pl.resolved, pl.recovering, at=now)
            self._write_alert_points([*pl.opened, *pl.updated, *pl.resolved], now)
            report.opened, report.resolved = pl.opened, pl.resolved
        for p in report.proposals:
            if auto_apply_for(self.cfg, p.station_id):
                self._auto_apply(p.proposal_id)
        self.publish_due_setpoints()
        report.rechecked = self.run_due_rechecks(by="sweep")
        self.dispatcher.deliver_due()
        return report

    def _collector_alarm_orders(self, now: datetime) -> list[WorkOrder]:
        """Collectors' alarms in the store (a broker that lost their session) become urgent orders, once each."""
        try:
            df = self.store.query(schema.COLLECTOR_ALARMS, now - timedelta(days=2), now + timedelta(seconds=1))
        except (StoreUnavailable, StoreError) as exc:
            log.warning("collector alarms unavailable: %s", exc)
            return []
        return [WorkOrder.from_candidate(c, now) for c in observe_collector_alarms(df, self.cfg) if not self.alerts.has_key(c.key)]

    def _reading_values(self, r: StationReading | None) -> tuple[float | None, float | None, float | None]:
        return (None, None, None) if r is None else (r.supply_c, r.return_c, r.outdoor_c)

    @staticmethod
    def _key(p: Proposal) -> tuple[str, ...]:
        """What makes two proposals the same: one setpoint per station, one balancing per community,
        one visit per home."""
        if p.kind in SETPOINT_KINDS:
            return ("setpoint", p.station_id)
        if p.kind == "home_visit":
            return ("home_visit", p.home_id)
        return (p.kind, p.station_id, p.community)

    def _live_keys(self) -> set[tuple[str, ...]]:
        """Keys of proposals still open (setpoints: undecided; on-site work: until rechecked)."""
        keys = set()
        for p in self.proposals.find(statuses=[*OPEN, "applied"], limit=1_000_000):
            if p.kind in SETPOINT_KINDS and p.status == "applied":
                continue  # an applied setpoint is held back by the pending recheck rule, not here
            keys.add(self._key(p))
        return keys

    def _add_many(self, ps: list[Proposal], actor: str = "heatwatch") -> None:
        self.proposals.add_many(ps, actor)
        self._write([self._proposal_point(p, p.created_at) for p in ps])
        for p in ps:
            log.info("proposal %s (%s, %s): %s", p.proposal_id, p.kind, p.station_id, p.reason)

    def _auto_apply(self, proposal_id: str) -> None:
        try:
            self.approve(proposal_id, actor="auto_apply", note="auto-apply is on for this station")
            self.apply(proposal_id, actor="auto_apply")
        except ApplyError as exc:
            log.error("auto-apply of %s failed: %s (it stays approved)", proposal_id, exc)

    # --- station readings -----------------------------------------------------------------------
    def read_stations(self, now: datetime) -> dict[str, StationReading]:
        sids = list(self.registry.stations)
        if not sids:
            return {}
        before = now + timedelta(seconds=1)
        vals: dict[str, dict[str, tuple[datetime, float]]] = {}
        outdoor: dict[str, float] = {}
        try:
            for f in STATION_FIELDS:
                df = self.store.last(schema.STATION, f, "station_id", where={"station_id": sids}, before=before,
                                     lookback=timedelta(days=7))
                for sid, t, v in df.itertuples(index=False):
                    vals.setdefault(str(sid), {})[f] = (t.to_pydatetime(), float(v))
            sites = sorted({st.weather_site for st in self.registry.stations.values()})
            df = self.store.last(schema.WEATHER, "temp_c", "site_id", where={"site_id": sites}, before=before,
                                 lookback=timedelta(hours=6))
            outdoor = {str(s): float(v) for s, _, v in df.itertuples(index=False)}
        except (StoreUnavailable, StoreError) as exc:
            log.warning("station readings unavailable: %s", exc)
        out = {}
        for sid, fs in vals.items():
            st = self.registry.stations.get(sid)
            last = fs.get("supply_c", max(fs.values()))[0]
            v = {f: fs[f][1] for f in STATION_FIELDS if f in fs}
            out[sid] = StationReading(
                sid, last, v.get("supply_c"), v.get("return_c"), v.get("supply_kpa"), v.get("return_kpa"),
                v.get("flow_m3h"), outdoor.get(st.weather_site) if st else None,
            )
        return out

    # --- operator actions -----------------------------------------------------------------------
    def approve(self, proposal_id: str, actor: str = "operator", note: str = "") -> Proposal:
        with self._lock:
            p = self.proposals.move(proposal_id, "approved", self.clock(), actor, note)
            self._write_proposal_point(p, self.clock())
            return p

    def reject(self, proposal_id: str, actor: str = "operator", note: str = "") -> Proposal:
        with self._lock:
            p = self.proposals.move(proposal_id, "rejected", self.clock(), actor, note)
            self._write_proposal_point(p, self.clock())
            return p

    def apply(self, proposal_id: str, actor: str = "operator", note: str = "") -> Proposal:
        """Publish the setpoint (now, or at its effective time) and schedule the recheck."""
        with self._lock:
            p = self.proposals.get(proposal_id)
            p.check_transition("applied")
            now = self.clock()
            publish_now = p.is_setpoint and p.effective_at <= now + PUBLISH_NOW
            if publish_now:
                self._publish(p, now)
            due = max(now, p.effective_at) + timedelta(hours=self.cfg.control.recheck_after_h)
            new = self.proposals.move(
                proposal_id, "applied", now, actor, note, applied_at=now, recheck_due_at=due,
                published_at=now if publish_now else None,
            )
            self._schedule("recheck", new.proposal_id, due)
            if p.is_setpoint and not publish_now:
                self._schedule("setpoint", new.proposal_id, p.effective_at)
            self._write_proposal_point(new, now)
            return new

    def _publish(self, p: Proposal, now: datetime) -> None:
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
                self._publish(p, now)
            except ApplyError as exc:
                log.error("%s; will retry on the next cycle", exc)
                return False
            return self.proposals.mark_published(proposal_id, now)

    def publish_due_setpoints(self) -> None:
        now = self.clock()
        for p in self.proposals.unpublished():
            if p.effective_at <= now + PUBLISH_NOW:
                self.publish_setpoint(p.proposal_id)

    def _wall(self, at: datetime) -> datetime:
        """A clock time as the wall time APScheduler waits for (accelerated clocks run faster)."""
        return utc_now() + (at - self.clock()) / self.time_scale

    def _schedule(self, kind: str, proposal_id: str, at: datetime) -> None:
        wall = self._wall(at)
        if self.scheduler is not None and self.scheduler.running:
            rechecks.add_persistent(self.scheduler, kind, proposal_id, wall)
        else:
            rechecks.schedule_offline(self.cfg, kind, proposal_id, wall)

    # --- rechecks -------------------------------------------------------------------------------
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
            after = measured(p, results)
            c = self.cfg.control
            outcome = judge(p, after, self.cfg.standard.target_c, c.warm_ceiling_c, c.improve_min_c)
            detail = {"by": by, "window_h": round(window_h, 4), "communities": comms}
            new = self.proposals.record_recheck(p, outcome, None if after is None else round(after, 2), (start, now), now, detail)
            if new is None:
                return None
            self._write_proposal_point(new, now)
            log.info("recheck of %s: %s (before %s °C, after %s °C)", proposal_id, outcome, p.before_c, new.after_c)
            if outcome == "not_improved":
                self._alert_not_improved(new, now)
        self.dispatcher.deliver_due()
        return new

    def run_due_rechecks(self, by: str = "sweep") -> list[Proposal]:
        now = self.clock()
        done = []
        for p in self.proposals.pending_rechecks():
            if p.recheck_due_at is not None and p.recheck_due_at <= now:
                r = self.recheck(p.proposal_id, by=by)
                if r is not None:
                    done.append(r)
        return done

    def _alert_not_improved(self, p: Proposal, now: datetime) -> None:
        st = self.registry.stations.get(p.station_id)
        home = self.registry.homes.get(p.home_id) if p.home_id else None
        where = (home.address if home else "") or p.community or (st.name if st else p.station_id)
        a = self.cfg.alerts
        cand = Candidate(
            key=f"recheck_not_improved:{p.proposal_id}", category="recheck_not_improved",
            content=(
                f"{where}: the {p.kind} change {p.proposal_id} applied {rfc3339(p.applied_at or now, self.cfg.general.tz)} "
                f"did not help — before {p.before_c} °C, after {p.after_c} °C. Original reason: {p.reason}"
            ),
            evidence={"proposal_id": p.proposal_id, "kind": p.kind, "before_c": p.before_c, "after_c": p.after_c,
                      "proposed_c": p.proposed_c},
            station_id=p.station_id, community=p.community, home_id=p.home_id, address=where,
            contact=home.contact if home else "", responsible_unit=unit_of(self.cfg, st, p.station_id),
            deadline_h=a.home_check_h if p.kind == "home_visit" else a.station_response_h, severity="urgent",
            source="heatwatch recheck",
        )
        order = WorkOrder.from_candidate(cand, now)
        self.alerts.record(opened=[order], at=now)
        self._write_alert_points([order], now)

    # --- cold snap ------------------------------------------------------------------------------
    def run_coldsnap(self) -> list[Proposal]:
        """Pre-adjust stations before a forecast cold snap: ramped supply proposals from the curve."""
        c = self.cfg.control
        with self._lock:
            now = self.clock()
            horizon = timedelta(hours=c.coldsnap_horizon_h)
            from_file = None
            if c.forecast_file is not None:
                try:
                    from_file = load_openmeteo(c.forecast_file)
                except ForecastError as exc:
                    log.error("cold-snap check skipped: %s", exc)
                    return []
            readings = self.read_stations(now)
            made: list[Proposal] = []
            for sid, st in self.registry.stations.items():
                try:
                    fc = from_file if from_file is not None else forecast_from_store(self.store, st.weather_site, now, horizon)
                except (StoreUnavailable, StoreError) as exc:
                    log.warning("forecast for %s unavailable: %s", st.weather_site, exc)
                    continue
                r = readings.get(sid)
                snap = detect(fc, now, r.outdoor_c if r else None, c.coldsnap_threshold_c, c.coldsnap_drop_c, horizon)
                if self._coldsnap_planned(sid, now):
                    continue
                design = design_for(self.cfg, sid)
                # indoor feedback, as for every supply proposal: homes already warm above the target have margin
                # for the cold (and raising them further only wastes heat); homes under it need more
                if snap is None:
                    release = self._coldsnap_release(sid, st, r, fc, now, design)
                    made.extend([release] if release else [])
                    continue
                # indoor feedback, as for every supply proposal: homes already warm above the target have margin
                # for the cold (and raising them further only wastes heat); homes under it need more
                before = min((self._last_means[n] for n in st.communities if n in self._last_means), default=None)
                feedback = indoor_feedback(self.cfg.standard.target_c, before, c.feedback_gain)
                current = r.supply_c if r and r.supply_c is not None else None
                if current is None:
                    if r is None or r.outdoor_c is None:
                        continue
                    current = round(heating_curve(design, r.outdoor_c).supply_c, 1)
                lead = timedelta(hours=design.lead_time_h)
                steps = plan_following(fc, now, snap.min_at - lead, current,
                                       partial(_station_supply, design, st, feedback_c=feedback), lead,
                                       timedelta(hours=c.ramp_interval_h), c.max_step_c, c.min_change_c)
                prev = current
                tz = self.cfg.general.tz
                why = (
                    f"under the {c.coldsnap_threshold_c:g} °C threshold" if snap.trigger == "threshold"
                    else f"a {snap.reference_c - snap.min_c:.1f} °C drop"
                )
                for k, step in enumerate(steps, start=1):
                    curve = heating_curve(design, step.sized_for_c).supply_c
                    reason = (
                        f"Cold snap: forecast {snap.min_c:.1f} °C at {rfc3339(snap.min_at, tz)} ({why}), "
                        f"arriving {rfc3339(snap.arrival, tz)}; step {k}/{len(steps)}: raise {st.name or sid} supply "
                        f"{prev:.1f} → {step.supply_c:.1f} °C from {rfc3339(step.at, tz)}, sized for "
                        f"{step.sized_for_c:.1f} °C, the coldest forecast within the buildings' {design.lead_time_h:g} h "
                        f"thermal lag (heating curve {curve:.1f} °C{_feedback_note(feedback, before)})."
                    )
                    p = Proposal(
                        new_proposal_id(), sid, "supply", st.communities[0] if len(st.communities) == 1 else "",
                        prev, step.supply_c, round(step.supply_c - prev, 1),
                        {
                            "arrival": rfc3339(snap.arrival), "forecast_min_c": snap.min_c,
                            "forecast_min_at": rfc3339(snap.min_at),
                            "trigger": snap.trigger, "reference_c": snap.reference_c,
                            "sized_for_outdoor_c": step.sized_for_c, "curve_supply_c": round(curve, 2),
                            "indoor_feedback_c": round(feedback, 2), "weighted_mean_c": before,
                            "lead_time_h": design.lead_time_h, "step": k, "steps": len(steps),
                            "window_h": c.recheck_window_h,
                        },
                        reason, now, step.at, origin="cold_snap", targets=tuple(st.communities),
                        before_c=None if before is None else round(before, 2),
                    )
                    made.append(p)
                    prev = step.supply_c
            self._add_many(made)
        for p in made:
            if auto_apply_for(self.cfg, p.station_id):
                self._auto_apply(p.proposal_id)
        return made

    def _coldsnap_release(
        self, sid: str, st: Station, r: StationReading | None, fc: Forecast, now: datetime, design: StationDesign
    ) -> Proposal | None:
        """After a snap, step a pre-adjusted supply back down with the forecast, as it was raised.

        Only while the station's last applied supply change is a cold-snap step (once an operator or the
        analytics feedback changed it, the setpoint is theirs) and no setpoint proposal is undecided.
        Without this the raised supply stays until the 48 h rechecks let the feedback lower it, and the
        homes overheat after the cold has gone. It goes back to the curve for the coming weather with the
        indoor feedback the ramp was planned with — not with today's: homes warmed by the ramp would drive
        it far under the curve every 3 h, faster than the buildings answer (it undershot into cold homes
        in the demo). Correcting the indoor level is the analytics' job, one change per recheck.
        One step of at most ``max_step_c`` per ``ramp_interval_h``.
        """
        c = self.cfg.control
        changes = self.proposals.find(statuses=["applied", "rechecked"], station_id=sid, kinds=sorted(SETPOINT_KINDS))
        last = max(changes, key=lambda p: p.effective_at, default=None)
        if last is None or last.origin != "cold_snap" or last.effective_at > now:
            return None
        if self.proposals.find(statuses=sorted(OPEN), station_id=sid, kinds=sorted(SETPOINT_KINDS), limit=1):
            return None  # an undecided setpoint proposal: let the operator decide first
        current = r.supply_c if r is not None and r.supply_c is not None else last.proposed_c
        lead = timedelta(hours=design.lead_time_h)
        sized = coldest_ahead(fc, now, lead) if fc else (r.outdoor_c if r is not None else None)
        if current is None or sized is None:
            return None
        planned_feedback = float(last.evidence.get("indoor_feedback_c") or 0.0)
        curve = heating_curve(design, sized).supply_c
        wanted = _station_supply(design, st, sized, planned_feedback)
        if current - wanted < max(c.min_change_c, 0.05):
            return None
        value = step_down(current, wanted, c.max_step_c)
        tz = self.cfg.general.tz
        warmest = max((self._last_means[n] for n in st.communities if n in self._last_means), default=None)
        feedback_note = f" {planned_feedback:+.1f} °C indoor feedback as planned" if abs(planned_feedback) >= 0.05 else ""
        reason = (
            f"Cold snap over: the coldest forecast within the buildings' {design.lead_time_h:g} h thermal lag is "
            f"{sized:.1f} °C; lower {st.name or sid} supply {current:.1f} → {value:.1f} °C from {rfc3339(now, tz)}, back "
            f"toward the heating curve ({curve:.1f} °C{feedback_note}) after the pre-adjustment {last.proposal_id}."
        )
        return Proposal(
            new_proposal_id(), sid, "lower_supply", st.communities[0] if len(st.communities) == 1 else "",
            current, value, round(value - current, 1),
            {
                "release_of": last.proposal_id, "sized_for_outdoor_c": sized, "curve_supply_c": round(curve, 2),
                "indoor_feedback_c": planned_feedback, "weighted_mean_c": warmest, "lead_time_h": design.lead_time_h,
                "window_h": c.recheck_window_h,
            },
            reason, now, now, origin="cold_snap", targets=tuple(st.communities),
            before_c=None if warmest is None else round(warmest, 2),  # a lowering is judged on the warmest community
        )

    def _coldsnap_planned(self, station_id: str, now: datetime) -> bool:
        """A ramp already proposed or applied and not yet past: do not plan it again every hour."""
        for p in self.proposals.find(statuses=[*OPEN, "applied"], station_id=station_id, kinds=sorted(SETPOINT_KINDS)):
            if p.origin == "cold_snap" and p.effective_at > now - timedelta(hours=self.cfg.control.ramp_interval_h):
                return True
        return False

    # --- scheduler ------------------------------------------------------------------------------
    def start(self) -> ControlLoop:
        rechecks.activate(self)
        self.scheduler = rechecks.build_scheduler(self.cfg)
        wall_now = utc_now()
        self.scheduler.add_job(
            self._coldsnap_job, "interval", minutes=self.cfg.control.coldsnap_interval_min, id="coldsnap",
            jobstore="memory", replace_existing=True, next_run_time=wall_now + timedelta(seconds=5),
        )
        self.scheduler.add_job(
            self.dispatcher.deliver_due, "interval", seconds=self.cfg.alerts.redeliver_interval_s, id="alerts-redeliver",
            jobstore="memory", replace_existing=True,
        )
        self.scheduler.start()
        return self

    def _coldsnap_job(self) -> None:
        try:
            self.run_coldsnap()
        except Exception:  # a job must not die silently; the next run tries again
            log.exception("cold-snap job failed")

    def shutdown(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        rechecks.activate(None)
        self.engine.dispose()

    # --- store points for Grafana ---------------------------------------------------------------
    def _write(self, points: list[Point]) -> None:
        if not points:
            return
        try:
            self.store.write(points)
        except (StoreUnavailable, StoreError) as exc:
            log.warning("could not write %d control point(s) to the store: %s", len(points), exc)

    def _write_proposal_point(self, p: Proposal, at: datetime) -> None:
        self._write([self._proposal_point(p, at)])

    def _proposal_point(self, p: Proposal, at: datetime) -> Point:
        fields: dict[str, FieldValue] = {"proposal_id": p.proposal_id, "status": p.status, "reason": p.reason}
        for k in ("current_c", "proposed_c", "delta_c", "before_c", "after_c"):
            v = getattr(p, k)
            if v is not None:
                fields[k] = float(v)
        if p.outcome:
            fields["outcome"] = p.outcome
        # the nanosecond offset keeps same-instant events of one series apart (idempotent writes overwrite)
        ns = to_ns(at) + STATUSES.index(p.status) * 1000 + sum(p.proposal_id.encode()) % 997
        return Point(schema.PROPOSALS, {"station_id": p.station_id, "kind": p.kind}, fields, ns)

    def _write_alert_points(self, orders: list[WorkOrder], at: datetime) -> None:
        pts = [
            Point(
                schema.ALERTS,
                {"category": o.category, "community": o.community, "station_id": o.station_id},
                {"alert_id": o.alert_id, "home_id": o.home_id, "status": o.status, "content": o.content},
                to_ns(at) + i,
            )
            for i, o in enumerate(orders)
        ]
        self._write(pts)


def _station_supply(design: StationDesign, st: Station, outdoor_c: float, feedback_c: float) -> float:
    """The heating curve at ``outdoor_c`` shifted by the indoor feedback, in the station's supply range."""
    return max(st.supply_min_c, min(st.supply_max_c, heating_curve(design, outdoor_c).supply_c + feedback_c))


def _feedback_note(feedback: float, mean_c: float | None) -> str:
    if mean_c is None or abs(feedback) < 0.05:
        return ""
    return f" {'+' if feedback > 0 else '−'} {abs(feedback):.1f} °C indoor feedback (weighted mean {mean_c:.1f} °C)"
