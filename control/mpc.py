"""Model-predictive supply setpoints: each station's grey-box model (``control.model``), fitted on its own
stored telemetry every cycle over a rolling window, chooses the supply ahead of the forecast.

What it aims at: the standard of each hour ahead (day or night, ``[standard]``) for the station's coldest
homes, plus ``model_margin_c``. The model describes the mean of the station's residential homes; the cold
homes' distance under that mean (``cold_gap_c``) is measured from the same telemetry: per building, how far
the ``model_cold_quantile`` of its homes runs under the station's mean, the median over the buildings. The
median is deliberate: one cold building next to warm ones is imbalance, for balancing advice — it must not
raise the whole station's supply.

The reading of the store is here; the arithmetic is in ``series_from_frames`` and ``plan_station`` (pure).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from control.alerts.rules import StationReading
from control.coldsnap import forecast_from_store
from control.curve import bound_supply, design_for, heating_curve, plausible_supply
from control.model import Fit, FitError, StationModel, fit_station_model, plan_supply
from control.proposal import Proposal, new_proposal_id
from control.telemetry import read_frames
from heatwatch.core.config import Config, StationDesign
from heatwatch.core.registry import Registry, Station
from heatwatch.infra.storage.base import Store, StoreError, StoreUnavailable

ORIGIN = "model"
MODEL_NAME = "grey-box ARX(1): T[k+1]−T[k] = α(Ts−T) + β(To−T) + γ, hourly"


@dataclass(frozen=True)
class StationSeries:
    """Hourly series of one station, oldest first; NaN where an hour has no reading."""

    hours: pd.DatetimeIndex  # UTC start of each hour
    indoor_c: np.ndarray  # mean of the residential homes reporting
    supply_c: np.ndarray
    outdoor_c: np.ndarray
    cold_gap_c: float  # how far the cold homes run under the mean (median building), °C; NaN when unknown
    cold_share: float = float("nan")  # that gap as a share of the indoor-outdoor difference; NaN when unknown


@dataclass(frozen=True)
class ModelDecision:
    """The model's view of one station this cycle (shown by ``heatwatch control model``)."""

    station_id: str
    basis: str  # "fit" | "prior" (too little telemetry yet) | "held" (its last setpoint is recent) | "fallback" (curve + feedback)
    why: str
    fit: Fit | None
    model: StationModel | None
    proposal: Proposal | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"station_id": self.station_id, "basis": self.basis, "why": self.why}
        if self.fit is not None:
            out["fit"] = self.fit.explain()
        elif self.model is not None:
            out["model"] = self.model.explain()
        if self.proposal is not None:
            out["proposal"] = self.proposal.to_json()
        return out


def prior_ratio(design: StationDesign) -> float:
    """β/α the design implies: the radiators' mean water temperature over indoor, against indoor over outdoor,
    at the design point ((60 + 45)/2 − 18 over 18 + 9: 1.28 with the defaults)."""
    mean_water = 0.5 * (design.supply_design_c + design.return_design_c)
    return (mean_water - design.indoor_c) / (design.indoor_c - design.outdoor_design_c)


def prior_model(design: StationDesign, tau_h: float, anchor: tuple[float, float, float] | None = None,
                series: StationSeries | None = None) -> StationModel:
    """Before there is telemetry to fit: the design ratio and an assumed time constant. Its gains: with
    ``series``, the mean of what the consecutive hours measured leave unexplained (each hour's change minus
    the supply's and the outdoor's part) — the homes' own drift, so a station warming after a raise is not
    read as one at rest; without such hours, the ones that make ``anchor`` (the last hour measured) its
    steady state."""
    r = prior_ratio(design)
    alpha = 1.0 / (tau_h * (1.0 + r))
    beta = r * alpha
    gamma = 0.0 if anchor is None else (alpha + beta) * anchor[0] - alpha * anchor[1] - beta * anchor[2]
    if series is not None:
        t, ts, to = series.indoor_c, series.supply_c, series.outdoor_c
        ok = np.isfinite(t[:-1]) & np.isfinite(t[1:]) & np.isfinite(ts[:-1]) & np.isfinite(to[:-1])
        if ok.any():
            rest = (t[1:] - t[:-1]) - alpha * (ts[:-1] - t[:-1]) - beta * (to[:-1] - t[:-1])
            gamma = float(np.mean(rest[ok]))
    return StationModel(alpha, beta, gamma)


def series_from_frames(indoor: pd.DataFrame, supply: pd.DataFrame, outdoor: pd.DataFrame,
                       homes: Mapping[str, str], hours: pd.DatetimeIndex, quantile: float,
                       gap_hours: int, gap_since: datetime | None = None) -> StationSeries:
    """Pure: hourly frames (columns ``hour`` and ``mean``; ``indoor`` also ``home_id``) → the station's series.

    ``homes``: home_id → building of the station's residential homes (others are ignored). The cold homes'
    gap is measured per building over the last ``gap_hours``: hour by hour, the mean minus the building's
    ``quantile``; its median over the buildings. It grows with the cold outside (the cold homes are the
    ones that lose most: top floors, gables), so it is also expressed as a share of the indoor-outdoor
    difference (``cold_share``, least squares through the origin). ``gap_since``: the home valves were set then
    (inter-home balancing), so the spread before it is not the spread now: the gap is measured from that hour
    on (at least the last hour).
    """
    idx = pd.Index(hours)
    if gap_since is not None and len(hours):
        after = int((hours >= pd.Timestamp(gap_since).floor("h")).sum())
        gap_hours = max(1, min(gap_hours, after))

    def hourly(df: pd.DataFrame) -> np.ndarray:
        if df.empty:
            return np.full(len(hours), np.nan)
        return df.groupby("hour")["mean"].mean().reindex(idx).to_numpy(float)

    t_out = hourly(outdoor)
    ind = indoor[indoor["home_id"].isin(list(homes))] if not indoor.empty else indoor
    gap, share = float("nan"), float("nan")
    if ind.empty:
        t_in = np.full(len(hours), np.nan)
    else:
        wide = ind.pivot_table(index="hour", columns="home_id", values="mean").reindex(idx)
        mean = wide.mean(axis=1)
        t_in = mean.to_numpy(float)
        recent = wide.iloc[-gap_hours:]
        per_building = [
            (mean.iloc[-gap_hours:] - recent[list(cols)].quantile(quantile, axis=1)).to_numpy(float)
            for _, cols in pd.Series(list(recent.columns)).groupby([homes[h] for h in recent.columns])
        ]
        if per_building:
            stack = np.vstack(per_building)
            g = np.full(stack.shape[1], np.nan)
            some = np.isfinite(stack).any(axis=0)  # hours no building reported stay NaN (no all-NaN warning)
            g[some] = np.nanmedian(stack[:, some], axis=0)
            ok = np.isfinite(g)
            if ok.any():
                gap = float(np.mean(g[ok]))
                span = (t_in[-gap_hours:] - t_out[-gap_hours:])
                ok &= np.isfinite(span) & (span > 1.0)
                if ok.sum() >= 3:
                    share = float(np.clip(np.sum(g[ok] * span[ok]) / np.sum(span[ok] ** 2), 0.0, 0.5))
    return StationSeries(hours, t_in, hourly(supply), t_out, gap, share)


def read_series(store: Store, registry: Registry, cfg: Config, st: Station, now: datetime,
                gap_since: datetime | None = None) -> StationSeries:
    """The station's last ``model_window_h`` hours from the store (whole hours before ``now``); ``gap_since``: see
    ``series_from_frames``. Setting the home valves changes how the homes' mean answers the supply, so once
    ``model_min_hours`` have passed since, the fit reads only the hours after it (mixing both is what made the
    fit's error cross ``model_max_rmse_c`` and hand a cold snap to the feedback path); until then, the window."""
    c = cfg.control
    end = now.replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=c.model_window_h)
    if gap_since is not None:
        since = gap_since.replace(minute=0, second=0, microsecond=0)
        since += timedelta(hours=1) if since != gap_since else timedelta(0)
        if since > start and end - since >= timedelta(hours=c.model_min_hours + 1):
            start = since
    hours = pd.date_range(start, end - timedelta(hours=1), freq="h")
    homes = {h.home_id: h.building for h in registry.homes.values()
             if h.station_id == st.station_id and h.kind == "residential"}
    indoor, supply, outdoor = read_frames(store, registry, cfg, st, homes, start, end)
    return series_from_frames(indoor, supply, outdoor, homes, hours, c.model_cold_quantile,
                              max(1, int(c.model_gap_h)), gap_since)


def targets_ahead(cfg: Config, now: datetime, hours: int) -> np.ndarray:
    """The residential standard of each hour ahead (hour 1 first), by the local clock."""
    s = cfg.standard
    out = np.empty(hours)
    for i in range(hours):
        h = (now + timedelta(hours=i + 1)).astimezone(cfg.general.tz).hour
        out[i] = s.day_min_c if s.day_start_hour <= h < s.day_end_hour else s.night_min_c
    return out


def outdoor_ahead(forecast: list[tuple[datetime, float]], now: datetime, hours: int, fallback_c: float) -> np.ndarray:
    """The forecast at hours 0..hours−1 from ``now`` (nearest earlier point; before the first, the first;
    no forecast at all: ``fallback_c`` held)."""
    if not forecast:
        return np.full(hours, fallback_c)
    ts = np.array([t.timestamp() for t, _ in forecast])
    vs = np.array([v for _, v in forecast])
    want = np.array([(now + timedelta(hours=i)).timestamp() for i in range(hours)])
    return np.interp(want, ts, vs)


def choose_model(cfg: Config, design: StationDesign, series: StationSeries) -> tuple[str, str, Fit | None, StationModel | None]:
    """Fit, or the design prior while telemetry is short, or fallback (with why)."""
    c = cfg.control
    try:
        fit = fit_station_model(series.indoor_c, series.supply_c, series.outdoor_c, prior_ratio(design),
                                min_hours=int(c.model_min_hours))
    except FitError as exc:
        full = np.isfinite(series.indoor_c) & np.isfinite(series.supply_c) & np.isfinite(series.outdoor_c)
        usable = int(full.sum())
        # counted as the fit counts them: an hour with readings followed by the next hour's indoor (n hours
        # give n − 1), so the hour the prior ends is the hour the fit begins, with no fallback cycle between
        pairs = int((full[:-1] & np.isfinite(series.indoor_c[1:])).sum())
        if pairs < c.model_min_hours:
            if not usable:
                return "fallback", "no hour with indoor, supply and outdoor readings yet", None, None
            i = int(np.flatnonzero(full)[-1])
            anchor = (float(series.indoor_c[i]), float(series.supply_c[i]), float(series.outdoor_c[i]))
            return "prior", f"{pairs} usable hours of telemetry, fit from {c.model_min_hours:g}: design prior", \
                None, prior_model(design, c.model_prior_tau_h, anchor, series)
        return "fallback", f"no usable fit: {exc}", None, None
    if not math.isfinite(fit.rmse_sim_c) or fit.rmse_sim_c > c.model_max_rmse_c:
        return "fallback", f"fit error {fit.rmse_sim_c:.2f} °C over {c.model_max_rmse_c:g} °C", fit, None
    return "fit", f"fitted on {fit.hours} h", fit, fit.model


def margin_for(cfg: Config, settled: bool) -> float:
    """How far over the standard the model aims its cold homes: ``model_margin_c``, or ``valve_margin_c`` at a station
    whose home valves are set and held (its last home-valve job rechecked improved) — the margin covers the homes no
    sensor sees (often the coldest top-floor gable homes); a class's valve is set for all its homes, so once they
    settled they sit with their measured neighbours. Not before the recheck: while the throttled homes are still
    cooling, the spread the sensors measure is not yet the spread that will be."""
    return cfg.control.valve_margin_c if settled else cfg.control.model_margin_c


def plan_station(cfg: Config, st: Station, series: StationSeries, forecast: list[tuple[datetime, float]],
                 reference_c: float | None, now: datetime, reference_offset_c: float | None = None,
                 outdoor_now_c: float | None = None, margin_c: float | None = None) -> ModelDecision:
    """Pure: the model's decision for one station — a proposal, no change, or fallback.

    ``reference_c``: the supply the station was last sent, else its measured supply; ``reference_offset_c``: the
    curve offset it was last sent, if it was. With ``[control] model_setpoint = "curve_offset"`` the decision is a
    shift of the station's heating curve (its supply keeps following the outdoor temperature between cycles),
    else a fixed supply.
    """
    c = cfg.control
    margin = c.model_margin_c if margin_c is None else margin_c
    design = design_for(cfg, st.station_id)
    basis, why, fit, model = choose_model(cfg, design, series)
    if model is None:
        return ModelDecision(st.station_id, basis, why, fit, None)
    last = np.flatnonzero(np.isfinite(series.indoor_c))
    if not len(last):
        return ModelDecision(st.station_id, "fallback", "no indoor reading to start from", fit, None)
    if reference_c is None or not plausible_supply(reference_c, st.supply_min_c, st.supply_max_c):
        return ModelDecision(st.station_id, "fallback", "no plausible supply to step from", fit, None)
    indoor_now = float(series.indoor_c[last[-1]])
    gap = series.cold_gap_c if math.isfinite(series.cold_gap_c) else 0.0
    look = int(c.model_lookahead_h)
    outs = series.outdoor_c[np.isfinite(series.outdoor_c)]
    fallback_out = outdoor_now_c if outdoor_now_c is not None else float(outs[-1]) if len(outs) else design.outdoor_design_c
    to = outdoor_ahead(forecast, now, look, fallback_out)
    standard = targets_ahead(cfg, now, look) + margin
    share = series.cold_share if math.isfinite(series.cold_share) else 0.0
    # the cold homes' gap grows with the cold ahead: T_cold = T − k(T − To) ≥ standard
    target = (standard - share * to) / (1.0 - share) if share > 0.0 else standard + gap
    lo, hi = st.supply_min_c, st.supply_max_c
    shifted = c.model_setpoint == "curve_offset"
    if shifted:
        curve_now = heating_curve(design, outdoor_now_c if outdoor_now_c is not None else float(to[0])).supply_c
        base = np.array([heating_curve(design, float(x)).supply_c for x in to])
        ref = reference_offset_c if reference_offset_c is not None else reference_c - curve_now
        lo, hi = lo - curve_now, hi - curve_now
        ref = min(max(ref, lo), hi)
    else:
        curve_now, base, ref = 0.0, None, reference_c
    plan = plan_supply(model, indoor_now, to, target, ref, lo, hi, c.max_step_c, hold_h=int(c.model_hold_h),
                       base_supply_c=base)
    bounded = bound_supply(ref, plan.supply_c, c.max_step_c, lo, hi)
    if bounded is None or abs(bounded.proposed_c - ref) < c.min_change_c:
        return ModelDecision(st.station_id, basis, why + "; no change needed", fit, model)
    raise_ = bounded.proposed_c > ref
    if shifted:
        offset: float | None = bounded.proposed_c
        proposed = round(min(max(curve_now + bounded.proposed_c, st.supply_min_c), st.supply_max_c), 1)
        current = round(min(max(curve_now + ref, st.supply_min_c), st.supply_max_c), 1)
        what = (f"curve shifted {ref:+.1f} → {bounded.proposed_c:+.1f} °C (supply now {current:.1f} → "
                f"{proposed:.1f} °C, then along the curve)")
    else:
        offset, proposed, current = None, bounded.proposed_c, round(reference_c, 1)
        what = f"supply {current:.1f} → {proposed:.1f} °C"
    # a raise while the homes are under their target now (not one ahead of the forecast)
    shortfall = raise_ and indoor_now < target[0]
    params = fit.explain() if fit is not None else {**model.explain(), "rmse_step_c": None, "rmse_sim_c": None,
                                                      "fit_hours": 0}
    evidence: dict[str, Any] = {
        "model": MODEL_NAME, "basis": basis, **params, "setpoint": c.model_setpoint,
        "curve_offset_c": offset, "curve_now_c": round(curve_now, 2) if shifted else None,
        "indoor_now_c": round(indoor_now, 2), "cold_gap_c": round(gap, 2), "cold_share": round(share, 4), "margin_c": margin,
        "target_now_c": round(float(target[0]), 2), "plan_c": [round(float(v), 1) for v in plan.blocks_c],
        "short_hours": list(plan.short_h), "outdoor_ahead_c": [round(float(v), 1) for v in to],
        "forecast": bool(forecast), "predicted_min_margin_c": round(float(np.min(plan.predicted_c[1:] - target)), 2),
        "limited_by": list(bounded.limited_by), "supply_range_c": [st.supply_min_c, st.supply_max_c],
        "reference_c": round(reference_c, 2), "indoor_shortfall": bool(shortfall),
    }
    reason = (f"Model ({basis}, τ {model.tau_h:.0f} h, {model.supply_gain:.2f} °C indoor per supply °C"
              + (f", fit error {fit.rmse_sim_c:.2f} °C" if fit is not None else "")
              + f"): {what} keeps the coldest homes at the standard + {margin:g} °C over the next "
              f"{look} h of the forecast (they run {gap:.1f} °C under the mean; target for the mean now "
              f"{target[0]:.1f} °C, measured {indoor_now:.1f} °C).")
    p = Proposal(
        proposal_id=new_proposal_id(), station_id=st.station_id, kind="supply" if raise_ else "lower_supply",
        community="", current_c=current, proposed_c=proposed, delta_c=round(proposed - current, 1),
        evidence=evidence, reason=reason, created_at=now, effective_at=now, origin=ORIGIN,
        targets=tuple(st.communities),
    )
    return ModelDecision(st.station_id, basis, why, fit, model, p)


ForecastFn = Callable[[Station, datetime], "list[tuple[datetime, float]] | None"]


def decide_all(store: Store, registry: Registry, cfg: Config, now: datetime, readings: Mapping[str, StationReading],
               published: Mapping[str, Proposal], forecast_for: ForecastFn | None = None,
               hold_recent: bool = True, valves_set: Mapping[str, datetime] | None = None,
               valves_settled: Collection[str] = ()) -> list[ModelDecision]:
    """Every station's decision: its series read from the store, its model refitted, its plan.

    The step is taken from the setpoint the station was last sent (``published``: the last published proposal
    per station), else its measured supply. ``forecast_for``: the forecast the loop uses for a station (a
    forecast file or the store); default the store's. A model setpoint sent less than ``model_hold_h`` ago is
    held: the plan's blocks are that long, so a loop that runs every 15 minutes does not step every 15 minutes
    (``hold_recent`` False: plan anyway, as ``heatwatch model`` shows). ``valves_set``: when each station's home
    valves were last set (the cold homes' gap is measured from then on); ``valves_settled``: the stations whose
    last home-valve job was rechecked improved (``margin_for`` aims closer there).
    """
    look = timedelta(hours=cfg.control.model_lookahead_h + 1)
    hold = timedelta(hours=cfg.control.model_hold_h)
    out = []
    for sid, st in sorted(registry.stations.items()):
        r = readings.get(sid)
        last = published.get(sid)
        if (hold_recent and last is not None and last.origin == ORIGIN and last.published_at is not None
                and now - last.published_at < hold - timedelta(minutes=1)):
            out.append(ModelDecision(sid, "held", f"its last setpoint went out at {last.published_at:%H:%M} UTC, "
                                     f"held for {cfg.control.model_hold_h:g} h", None, None))
            continue
        ref = last.proposed_c if last is not None and last.proposed_c is not None else (r.supply_c if r else None)
        offset = last.evidence.get("curve_offset_c") if last is not None else None
        try:
            series = read_series(store, registry, cfg, st, now, (valves_set or {}).get(sid))
            fc = (forecast_for(st, now) if forecast_for is not None else forecast_from_store(store, st.weather_site, now, look))
        except (StoreUnavailable, StoreError) as exc:
            out.append(ModelDecision(sid, "fallback", f"store: {exc}", None, None))
            continue
        out.append(plan_station(cfg, st, series, fc or [], ref, now, None if offset is None else float(offset),
                                r.outdoor_c if r is not None else None, margin_for(cfg, sid in valves_settled)))
    return out
