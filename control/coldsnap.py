"""Cold-snap pre-adjustment: read the forecast, detect the snap, plan a bounded ramp that beats the thermal lag.

Forecast sources: the store's ``forecast`` measurement (tag site_id; timestamp = target time,
field issued_s = when it was issued; the latest issue wins), or a file in Open-Meteo's hourly JSON
shape (``{"utc_offset_seconds": 28800, "hourly": {"time": [...], "temperature_2m": [...]}}``,
times local to the forecast's ``timezone``).

``plan_station`` is the whole decision for one station — a ramp of supply proposals, a release step
after the snap, or nothing — from the forecast, the station's reading, the last weighted means and
its setpoint history. It returns proposals and stores nothing; the control loop persists them.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from control.alerts.rules import StationReading
from control.curve import bound_supply, design_for, heating_curve, indoor_feedback, plausible_supply
from control.outcome import judged_mean
from control.proposal import Proposal, new_proposal_id
from heatwatch.core import schema
from heatwatch.core.config import Config, StationDesign
from heatwatch.core.registry import Station
from heatwatch.core.timeutil import rfc3339
from heatwatch.infra.storage.base import Store

Forecast = list[tuple[datetime, float]]  # (target time UTC, °C), sorted


class ForecastError(ValueError):
    """The forecast file or payload is unusable; the message says where."""


def parse_openmeteo(data: Any, source: str = "forecast") -> Forecast:
    if not isinstance(data, dict) or not isinstance(data.get("hourly"), dict):
        raise ForecastError(f"{source}: expected an object with an 'hourly' object (Open-Meteo shape)")
    hourly = data["hourly"]
    times, temps = hourly.get("time"), hourly.get("temperature_2m")
    if not isinstance(times, list) or not isinstance(temps, list):
        raise ForecastError(f"{source}: hourly.time and hourly.temperature_2m must be lists")
    if len(times) != len(temps):
        raise ForecastError(f"{source}: hourly.time has {len(times)} entries but temperature_2m has {len(temps)}")
    offset = data.get("utc_offset_seconds", 0)
    if isinstance(offset, bool) or not isinstance(offset, int | float):
        raise ForecastError(f"{source}: utc_offset_seconds must be a number of seconds, got {offset!r}")
    out: Forecast = []
    for i, (t, v) in enumerate(zip(times, temps, strict=True)):
        if v is None:
            continue  # Open-Meteo leaves gaps as null
        try:
            dt = datetime.fromisoformat(str(t))
        except ValueError:
            raise ForecastError(f"{source}: hourly.time[{i}] {str(t)[:30]!r} is not an ISO 8601 time") from None
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ForecastError(f"{source}: hourly.temperature_2m[{i}] {v!r} is not a number")
        if dt.tzinfo is None:  # Open-Meteo's local wall time
            dt = dt.replace(tzinfo=UTC) - timedelta(seconds=offset)
        out.append((dt.astimezone(UTC), float(v)))
    return sorted(out)


def load_openmeteo(path: Path) -> Forecast:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ForecastError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ForecastError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    return parse_openmeteo(data, str(path))


def forecast_from_store(store: Store, site_id: str, now: datetime, horizon: timedelta) -> Forecast:
    df = store.query(schema.FORECAST, now, now + horizon, where={"site_id": site_id})
    if df.empty or "temp_c" not in df:
        return []
    df = df.dropna(subset=["temp_c"])
    if "issued_s" in df:
        df = df.sort_values(["time", "issued_s"]).drop_duplicates("time", keep="last")
    return [(t.to_pydatetime(), float(v)) for t, v in zip(df["time"], df["temp_c"], strict=True)]


@dataclass(frozen=True, slots=True)
class ForecastCheck:
    """Is a forecast fit to drive a ramp? Unusable ones drive nothing (and cancel nothing); a jump is flagged."""

    usable: bool
    problems: tuple[str, ...] = ()
    jump_c: float | None = None  # the largest change from the previous issue at a common hour, when over the limit
    jump_at: datetime | None = None


def check_forecast(forecast: Forecast, previous: Forecast | None, cfg: Config) -> ForecastCheck:
    """Values inside the plausible outdoor range (``[limits] outdoor_min_c..outdoor_max_c``), changing no faster
    than ``forecast_max_rate_c_per_h``; a target hour more than ``forecast_jump_c`` off the previous issue is a
    jump — usable, but what it plans waits for an operator."""
    lim, c = cfg.limits, cfg.control
    problems: list[str] = []
    for t, v in forecast:
        if not lim.outdoor_min_c <= v <= lim.outdoor_max_c:
            problems.append(f"{v:.1f} °C at {rfc3339(t)} is outside the plausible {lim.outdoor_min_c:g}..{lim.outdoor_max_c:g} °C")
            break
    for (t0, v0), (t1, v1) in itertools.pairwise(forecast):
        hours = (t1 - t0).total_seconds() / 3600
        if hours > 0 and abs(v1 - v0) / hours > c.forecast_max_rate_c_per_h:
            problems.append(f"it changes {abs(v1 - v0):.1f} °C in {'an hour' if hours == 1 else f'{hours:g} h'} at "
                            f"{rfc3339(t1)} (implausible above {c.forecast_max_rate_c_per_h:g} °C/h)")
            break
    if problems:
        return ForecastCheck(False, tuple(problems))
    if previous:
        before = dict(previous)
        diffs = [(abs(v - before[t]), t) for t, v in forecast if t in before]
        if diffs:
            worst, at = max(diffs, key=lambda d: (d[0], -d[1].timestamp()))
            if worst > c.forecast_jump_c:
                return ForecastCheck(True, (), worst, at)
    return ForecastCheck(True)


@dataclass(frozen=True, slots=True)
class ColdSnap:
    arrival: datetime  # first forecast hour past the threshold / drop
    min_c: float
    min_at: datetime
    trigger: str  # "threshold" | "drop"
    reference_c: float  # outdoor temperature the drop is measured from


def detect(
    forecast: Forecast, now: datetime, outdoor_now_c: float | None, threshold_c: float, drop_c: float, horizon: timedelta
) -> ColdSnap | None:
    """A snap when the forecast goes under ``threshold_c`` or ``drop_c`` below now, within the horizon."""
    ahead = [(t, v) for t, v in forecast if now <= t <= now + horizon]
    if not ahead:
        return None
    ref = outdoor_now_c if outdoor_now_c is not None else ahead[0][1]
    min_at, min_c = min(ahead, key=lambda tv: tv[1])
    for t, v in ahead:
        if v < threshold_c:
            return ColdSnap(t, min_c, min_at, "threshold", ref)
        if v <= ref - drop_c:
            return ColdSnap(t, min_c, min_at, "drop", ref)
    return None


def snap_still_forecast(step: Proposal, forecast: Forecast, cfg: Config, now: datetime) -> bool:
    """Does ``forecast`` still show the cold snap ``step`` was planned for? The same test as planning, from the
    outdoor temperature it was measured against then (so the cold already arriving does not cancel it)."""
    c = cfg.control
    ref = step.evidence.get("reference_c")
    snap = detect(forecast, now, None if ref is None else float(ref), c.coldsnap_threshold_c, c.coldsnap_drop_c,
                  timedelta(hours=c.coldsnap_horizon_h))
    return snap is not None


def _tenth_down(x: float) -> float:
    """Setpoints go out in 0.1 °C; rounding down keeps a step within max_step_c from a measured supply."""
    return math.floor(x * 10 + 1e-6) / 10


def coldest_ahead(forecast: Forecast, t: datetime, lead: timedelta) -> float | None:
    """The coldest forecast hour in [t, t + lead]: what water sent at t must still be warm enough for
    by the time it has warmed the buildings; the next forecast hour when that span has none."""
    within = [v for ft, v in forecast if t <= ft <= t + lead]
    if within:
        return min(within)
    return next((v for ft, v in forecast if ft > t), None)


@dataclass(frozen=True, slots=True)
class RampStep:
    at: datetime
    supply_c: float
    sized_for_c: float  # the outdoor temperature this step's supply is for (coldest_ahead)


def plan_following(
    forecast: Forecast,
    now: datetime,
    until: datetime,
    current_c: float,
    supply_for: Callable[[float], float],
    lead: timedelta,
    interval: timedelta,
    max_step_c: float,
    min_change_c: float,
) -> list[RampStep]:
    """A supply ramp that follows the forecast one thermal lag ahead, up to its peak at ``until``.

    At each ramp time t (``interval`` apart, counted back from ``until`` = the forecast minimum − lead) the
    supply should be ``supply_for(coldest_ahead(t))``: raising it to the minimum's value a day before
    the minimum only overheats homes. Steps are at most ``max_step_c``, so a big rise starts as early as
    the bound requires (a backward pass). A forecast too late for that is compressed to one step per
    ``interval / 3`` (the whole plan, not only its start) and, if still short, finishes after ``until``:
    a late step beats one large jump, which the step bound forbids to protect the network. Only
    raises: lowering after the snap is ``plan_release``'s job. Changes under
    ``min_change_c`` wait for the next step unless waiting would break the step bound; the peak is
    always proposed.
    """
    if not forecast:
        return []
    for gap in (interval, interval / 3):
        times = [until]  # counted back from the peak, so that steps are a whole gap apart
        while times[-1] - gap >= now:
            times.append(times[-1] - gap)
        times = times[::-1] if until >= now else [now]
        sized: list[float] = []
        for t in times:
            x = coldest_ahead(forecast, t, lead)
            sized.append(x if x is not None else (sized[-1] if sized else min(v for _, v in forecast)))
        need = [round(supply_for(x), 1) for x in sized]
        for k in range(len(need) - 2, -1, -1):  # early enough for every later value at max_step_c per step
            need[k] = max(need[k], round(need[k + 1] - max_step_c, 1))
        if need[0] - current_c <= max_step_c + 1e-9:
            break
    peak = max(need)
    if peak - current_c < max(min_change_c, 0.05):
        return []
    values, prev = [], current_c
    for v in need:
        prev = max(prev, min(v, _tenth_down(prev + max_step_c)))
        values.append(prev)
    while values[-1] < peak:  # too late even compressed: keep stepping after ``until``
        nxt = min(peak, _tenth_down(values[-1] + max_step_c))
        if nxt <= values[-1]:  # a max_step_c under 0.1 °C cannot move a setpoint
            break
        times.append(times[-1] + gap)
        sized.append(sized[-1])
        values.append(nxt)
    steps: list[RampStep] = []
    last = current_c
    for k, (t, v) in enumerate(zip(times, values, strict=True)):
        following = values[k + 1] if k + 1 < len(values) else None
        breaks = following is not None and following - last > max_step_c + 1e-9  # skipping this one breaks the bound
        if v <= last or (v - last < 0.05 and not breaks):  # a tiny step waits, unless the next would be too big
            continue
        if v - last >= min_change_c or following is None or breaks:
            steps.append(RampStep(max(t, now), v, sized[k]))
            last = v
    return steps


# --- the planner: proposals for one station ------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class SetpointHistory:
    """The station's setpoint proposals (supply, lower_supply) the planner decides on, newest first."""

    active: Sequence[Proposal] = ()  # proposed, approved or applied (a ramp in progress)
    changes: Sequence[Proposal] = ()  # applied or rechecked (what the station was told last)
    undecided: bool = False  # any proposed or approved: the operator decides first
    last_published: Proposal | None = None  # the setpoint the station was last sent: every step's reference


def reference(st: Station, reading: StationReading | None, history: SetpointHistory,
              design: StationDesign | None = None) -> float | None:
    """What the first step is measured from: the last published setpoint, else a plausible measured supply.

    A published curve offset (with ``design`` and an outdoor reading) is where the station aims now: its
    curve at the outdoor temperature now plus the offset, in its range.
    None when there is neither: a reading outside the station's range (5 °C at a 35..75 °C station) is
    implausible, and a ramp counted from it would propose 8, 11, 14 … °C.
    """
    pub = history.last_published
    offset = pub.evidence.get("curve_offset_c") if pub is not None else None
    if offset is not None and design is not None and reading is not None and reading.outdoor_c is not None:
        aim = heating_curve(design, reading.outdoor_c).supply_c + float(offset)
        return min(max(aim, st.supply_min_c), st.supply_max_c)
    value = pub.proposed_c if pub is not None else (reading.supply_c if reading is not None else None)
    return value if plausible_supply(value, st.supply_min_c, st.supply_max_c) else None


def plan_station(
    cfg: Config,
    st: Station,
    reading: StationReading | None,
    forecast: Forecast,
    now: datetime,
    means: Mapping[str, float],
    history: SetpointHistory,
    outdoor_ref_c: float | None = None,
) -> list[Proposal]:
    """The cold-snap job's decision for one station: a ramp before a snap, a release step after it, or nothing.

    ``means``: the last analytics cycle's weighted mean per community (the indoor feedback). ``outdoor_ref_c``:
    what the drop is measured from — the loop passes the mean outdoor temperature of the last 24 h, so an
    ordinary night after a warm afternoon is not a snap; without it, the station's outdoor reading now.
    """
    c = cfg.control
    horizon = timedelta(hours=c.coldsnap_horizon_h)
    ref = outdoor_ref_c if outdoor_ref_c is not None else (reading.outdoor_c if reading else None)
    snap = detect(forecast, now, ref, c.coldsnap_threshold_c, c.coldsnap_drop_c, horizon)
    if _ramp_in_progress(history, now, c.ramp_interval_h):
        return []
    design = design_for(cfg, st.station_id)
    if snap is None:
        release = plan_release(cfg, st, reading, forecast, now, design, means, history)
        return [release] if release else []
    return plan_ramp(cfg, st, reference(st, reading, history, design), forecast, now, snap, design, means)


def _ramp_in_progress(history: SetpointHistory, now: datetime, ramp_interval_h: float) -> bool:
    """A ramp already proposed or applied and not yet past: do not plan it again every hour."""
    return any(
        p.origin == "cold_snap" and p.effective_at > now - timedelta(hours=ramp_interval_h) for p in history.active
    )


def plan_ramp(
    cfg: Config,
    st: Station,
    current: float | None,
    forecast: Forecast,
    now: datetime,
    snap: ColdSnap,
    design: StationDesign,
    means: Mapping[str, float],
) -> list[Proposal]:
    """Ramped ``supply`` proposals (origin cold_snap) from the curve, one thermal lag ahead of the forecast.

    ``current``: the reference (``reference``); None plans nothing.
    """
    c = cfg.control
    sid = st.station_id
    # indoor feedback, as for every supply proposal: homes already warm above the target have margin
    # for the cold (and raising them further only wastes heat); homes under it need more
    before = min((means[n] for n in st.communities if n in means), default=None)
    feedback = indoor_feedback(cfg.standard.target_c, before, c.feedback_gain)
    if current is None:
        return []
    lead = timedelta(hours=design.lead_time_h)

    def supply_for(outdoor_c: float) -> float:
        return station_supply(design, st, outdoor_c, feedback)

    steps = plan_following(forecast, now, snap.min_at - lead, current, supply_for, lead,
                           timedelta(hours=c.ramp_interval_h), c.max_step_c, c.min_change_c)
    # the planner rounds to 0.1 °C; a station maximum in hundredths must still hold
    steps = [s for s in steps if s.supply_c <= st.supply_max_c + 1e-9]
    prev = current
    tz = cfg.general.tz
    why = (
        f"under the {c.coldsnap_threshold_c:g} °C threshold" if snap.trigger == "threshold"
        else f"a {snap.reference_c - snap.min_c:.1f} °C drop"
    )
    made = []
    for k, step in enumerate(steps, start=1):
        curve = heating_curve(design, step.sized_for_c).supply_c
        reason = (
            f"Cold snap: forecast {snap.min_c:.1f} °C at {rfc3339(snap.min_at, tz)} ({why}), "
            f"arriving {rfc3339(snap.arrival, tz)}; step {k}/{len(steps)}: raise {st.name or sid} supply "
            f"{prev:.1f} → {step.supply_c:.1f} °C from {rfc3339(step.at, tz)}, sized for "
            f"{step.sized_for_c:.1f} °C, the coldest forecast within the buildings' {design.lead_time_h:g} h "
            f"thermal lag (heating curve {curve:.1f} °C{_feedback_note(feedback, before)})."
        )
        made.append(Proposal(
            proposal_id=new_proposal_id(), station_id=sid, kind="supply",
            community=st.communities[0] if len(st.communities) == 1 else "",
            current_c=prev, proposed_c=step.supply_c, delta_c=round(step.supply_c - prev, 1),
            evidence={
                "arrival": rfc3339(snap.arrival), "forecast_min_c": snap.min_c,
                "forecast_min_at": rfc3339(snap.min_at),
                "trigger": snap.trigger, "reference_c": snap.reference_c,
                "sized_for_outdoor_c": step.sized_for_c, "curve_supply_c": round(curve, 2),
                "indoor_feedback_c": round(feedback, 2), "weighted_mean_c": before,
                "lead_time_h": design.lead_time_h, "step": k, "steps": len(steps),
                "window_h": c.recheck_window_h,
            },
            reason=reason, created_at=now, effective_at=step.at, origin="cold_snap", targets=tuple(st.communities),
            before_c=None if before is None else round(before, 2),
        ))
        prev = step.supply_c
    return made


def plan_release(
    cfg: Config,
    st: Station,
    reading: StationReading | None,
    forecast: Forecast,
    now: datetime,
    design: StationDesign,
    means: Mapping[str, float],
    history: SetpointHistory,
) -> Proposal | None:
    """After a snap, step a pre-adjusted supply back down with the forecast, as it was raised.

    Only while the station's last applied supply change is a cold-snap step (once an operator or the
    analytics feedback changed it, the setpoint is theirs) and no setpoint proposal is undecided.
    Without this the raised supply stays until the 48 h rechecks let the feedback lower it, and the
    homes overheat after the cold has gone. It goes back to the curve for the coming weather with the
    indoor feedback the ramp was planned with — not with today's: homes warmed by the ramp would drive
    it far under the curve every 3 h, faster than the buildings answer, and undershoot into cold homes.
    Correcting the indoor level is the analytics' job, one change per recheck.
    One step of at most ``max_step_c`` per ``ramp_interval_h``.
    """
    c = cfg.control
    sid = st.station_id
    last = max(history.changes, key=lambda p: p.effective_at, default=None)
    if last is None or last.origin != "cold_snap" or last.effective_at > now:
        return None
    if history.undecided:
        return None  # an undecided setpoint proposal: let the operator decide first
    current = reference(st, reading, history, design)
    lead = timedelta(hours=design.lead_time_h)
    sized = coldest_ahead(forecast, now, lead) if forecast else (reading.outdoor_c if reading is not None else None)
    if current is None or sized is None:
        return None
    planned_feedback = float(last.evidence.get("indoor_feedback_c") or 0.0)
    if c.feedback_setpoint == "curve_offset" and reading is not None and reading.outdoor_c is not None:
        return _release_to_curve(cfg, st, reading.outdoor_c, current, now, design, means, history, last,
                                 max(planned_feedback, 0.0))
    curve = heating_curve(design, sized).supply_c
    wanted = station_supply(design, st, sized, planned_feedback)
    if current - wanted < max(c.min_change_c, 0.05):
        return None
    b = bound_supply(current, wanted, c.max_step_c, st.supply_min_c, st.supply_max_c)
    if b is None or b.proposed_c >= current:
        return None
    value = b.proposed_c
    tz = cfg.general.tz
    warmest = judged_mean((means[n] for n in st.communities if n in means), lowering=True)
    feedback_note = f" {planned_feedback:+.1f} °C indoor feedback as planned" if abs(planned_feedback) >= 0.05 else ""
    reason = (
        f"No cold snap forecast any more: the coldest forecast within the buildings' {design.lead_time_h:g} h thermal lag is "
        f"{sized:.1f} °C; lower {st.name or sid} supply {current:.1f} → {value:.1f} °C from {rfc3339(now, tz)}, back "
        f"toward the heating curve ({curve:.1f} °C{feedback_note}) after the pre-adjustment {last.proposal_id}."
    )
    return Proposal(
        proposal_id=new_proposal_id(), station_id=sid, kind="lower_supply",
        community=st.communities[0] if len(st.communities) == 1 else "",
        current_c=current, proposed_c=value, delta_c=round(value - current, 1),
        evidence={
            "release_of": last.proposal_id, "sized_for_outdoor_c": sized, "curve_supply_c": round(curve, 2),
            "indoor_feedback_c": planned_feedback, "weighted_mean_c": warmest, "lead_time_h": design.lead_time_h,
            "window_h": c.recheck_window_h,
        },
        reason=reason, created_at=now, effective_at=now, origin="cold_snap", targets=tuple(st.communities),
        before_c=None if warmest is None else round(warmest, 2),  # a lowering is judged on the warmest community
    )


def _release_to_curve(
    cfg: Config, st: Station, outdoor_c: float, current: float, now: datetime, design: StationDesign,
    means: Mapping[str, float], history: SetpointHistory, last: Proposal, feedback: float,
) -> Proposal | None:
    """``plan_release`` with ``feedback_setpoint = "curve_offset"``: hand the station back to its curve.

    The target is the curve at the outdoor temperature now shifted by the feedback the ramp was planned with,
    sent as that shift, so the supply follows the weather again instead of staying at the ramp's fixed peak
    (milder: overheating; colder at night: cold homes). Up or down, one step of at most ``max_step_c`` from
    where the station aims now; a step cut short by the bound is itself a shift, the next one finishes it.
    Nothing once the station was last sent exactly this shift.
    """
    c = cfg.control
    sid = st.station_id
    pub = history.last_published
    sent = pub.evidence.get("curve_offset_c") if pub is not None else None
    if sent is not None and abs(float(sent) - feedback) < 0.05:
        return None  # back on the curve with the planned feedback: the analytics take it from here
    curve_now = heating_curve(design, outdoor_c).supply_c
    target = min(max(curve_now + feedback, st.supply_min_c), st.supply_max_c)
    b = bound_supply(current, target, c.max_step_c, st.supply_min_c, st.supply_max_c)
    if b is None:
        return None
    offset = b.proposed_c - curve_now if "max_step" in b.limited_by else feedback
    aim = min(max(curve_now + offset, st.supply_min_c), st.supply_max_c)
    if sent is not None and abs(aim - current) < max(c.min_change_c, 0.05):
        return None  # already following the curve, nearly there: not worth a change
    value = round(aim, 1)
    raise_ = aim > current
    tz = cfg.general.tz
    judged = judged_mean((means[n] for n in st.communities if n in means), lowering=not raise_)
    feedback_note = f" {feedback:+.1f} °C indoor feedback as planned" if abs(feedback) >= 0.05 else ""
    reason = (
        f"No cold snap forecast any more: {'raise' if raise_ else 'lower'} {st.name or sid} supply {current:.1f} → "
        f"{value:.1f} °C from {rfc3339(now, tz)}, sent as the heating curve shifted {offset:+.1f} °C "
        f"(curve {curve_now:.1f} °C at {outdoor_c:.1f} °C outdoors{feedback_note}), so the supply follows the "
        f"weather again after the pre-adjustment {last.proposal_id}."
    )
    return Proposal(
        proposal_id=new_proposal_id(), station_id=sid, kind="supply" if raise_ else "lower_supply",
        community=st.communities[0] if len(st.communities) == 1 else "",
        current_c=round(current, 1), proposed_c=value, delta_c=round(value - current, 1),
        evidence={
            "release_of": last.proposal_id, "outdoor_c": outdoor_c, "sized_for_outdoor_c": outdoor_c,
            "curve_supply_c": round(curve_now, 2),
            "curve_offset_c": offset, "indoor_feedback_c": feedback, "weighted_mean_c": judged,
            "lead_time_h": design.lead_time_h, "window_h": c.recheck_window_h,
            "supply_range_c": [st.supply_min_c, st.supply_max_c],
        },
        reason=reason, created_at=now, effective_at=now, origin="cold_snap", targets=tuple(st.communities),
        before_c=None if judged is None else round(judged, 2),
    )


def station_supply(design: StationDesign, st: Station, outdoor_c: float, feedback_c: float) -> float:
    """The heating curve at ``outdoor_c`` shifted by the indoor feedback, in the station's supply range."""
    return max(st.supply_min_c, min(st.supply_max_c, heating_curve(design, outdoor_c).supply_c + feedback_c))


def _feedback_note(feedback: float, mean_c: float | None) -> str:
    if mean_c is None or abs(feedback) < 0.05:
        return ""
    return f" {'+' if feedback > 0 else '−'} {abs(feedback):.1f} °C indoor feedback (weighted mean {mean_c:.1f} °C)"
