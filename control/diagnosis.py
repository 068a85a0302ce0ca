"""Diagnose before prescribing: shortfall, imbalance, isolated cold homes, or too warm.

Pure: analytics results and station readings in, proposals out. The rules (docs/CONTROL.md):

1. weighted mean above the warm ceiling → ``lower_supply`` (energy);
2. cold buildings beside warm ones (or a building spread ≥ ``imbalance_spread_c``) → ``balancing``
   naming the valves to open and throttle, not hotter water;
3. weighted mean under target − margin → ``supply`` raise from the heating curve + indoor feedback;
4. a community at target with homes below standard → one ``home_visit`` per home.

Supply changes are bounded (max step, station range) and held back while the station's recheck is
pending, unless the weighted mean has fallen ``emergency_drop_c`` under its value when the change
was applied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from analytics.results import AnalysisResult, CommunityStats, HomeBelow, Imbalance
from control.curve import bound_supply, design_for, feedback_supply, heating_curve, plausible_supply
from control.proposal import Proposal, new_proposal_id
from heatwatch.core.config import Config
from heatwatch.core.registry import Registry, Station


@dataclass(frozen=True, slots=True)
class StationState:
    """The station as last measured (None where no reading is available) and the setpoint it was last sent."""

    station: Station
    supply_c: float | None = None
    return_c: float | None = None
    outdoor_c: float | None = None
    published_c: float | None = None  # the last setpoint published to it; None when nothing was
    published_offset_c: float | None = None  # its curve offset, when that setpoint shifted the station's curve

    def reference(self, curve_now_c: float | None = None) -> tuple[float | None, str]:
        """What one step is measured from: the last published setpoint, else a plausible measured supply.

        A published curve offset is where the station aims now: ``curve_now_c`` (its curve at the outdoor
        temperature now) plus the offset, in the station's range; without the curve, the supply it was sent.
        (None, why) when neither exists: a measured supply outside the station's range is implausible and
        anchors nothing.
        """
        st = self.station
        if self.published_offset_c is not None and curve_now_c is not None:
            return shifted_curve(curve_now_c, self.published_offset_c, st), "published"
        if self.published_c is not None:
            if plausible_supply(self.published_c, st.supply_min_c, st.supply_max_c):
                return self.published_c, "published"
            return None, (f"the last published setpoint {self.published_c:.1f} °C is outside the station's range "
                          f"{st.supply_min_c:g}..{st.supply_max_c:g} °C")
        if self.supply_c is None:
            return None, "no supply reading and no published setpoint"
        if plausible_supply(self.supply_c, st.supply_min_c, st.supply_max_c):
            return self.supply_c, "measured"
        return None, (f"measured supply {self.supply_c:.1f} °C is outside the station's range "
                      f"{st.supply_min_c:g}..{st.supply_max_c:g} °C (implausible)")


def shifted_curve(curve_now_c: float, offset_c: float, st: Station) -> float:
    """What a station sent a curve offset aims for now: its curve shifted by the offset, in its range."""
    return min(max(curve_now_c + offset_c, st.supply_min_c), st.supply_max_c)


def _r(x: float | None, nd: int = 1) -> float | None:
    return None if x is None else round(x, nd)


def _is_imbalanced(imb: Imbalance | None, target_c: float, spread_c: float) -> bool:
    if imb is None or not imb.cold_buildings:
        return False
    if imb.warm_buildings:
        return True
    warm_enough = [b for b, m in imb.building_means_c.items() if m >= target_c]
    return bool(warm_enough) and (imb.building_spread_c or 0.0) >= spread_c


def _balancing(
    st: Station, stats: CommunityStats, imb: Imbalance, target_c: float, now: datetime, homes: Sequence[str] = ()
) -> Proposal:
    warm = list(imb.warm_buildings) or sorted(b for b, m in imb.building_means_c.items() if m >= target_c)
    cold = list(imb.cold_buildings)
    means = ", ".join(f"{b} {m:.1f} °C" for b, m in sorted(imb.building_means_c.items()))
    reason = (
        f"{stats.community}: hydraulic imbalance, not a supply shortfall — buildings {', '.join(cold)} are under "
        f"{target_c:.1f} °C while {', '.join(warm) or 'others'} are warm (spread {imb.building_spread_c or 0:.1f} °C; {means}). "
        f"Open the balancing valves of {', '.join(cold)}, throttle {', '.join(warm) or 'the warm buildings'}, "
        f"check filters; keep {st.name or st.station_id}'s supply temperature."
    )
    evidence: dict[str, Any] = {
        "weighted_mean_c": _r(stats.weighted_mean_c, 2),
        "building_means_c": {b: round(m, 2) for b, m in imb.building_means_c.items()},
        "building_spread_c": _r(imb.building_spread_c, 2),
        "entrance_spread_c": _r(imb.entrance_spread_c, 2),
        "open_valves": cold,
        "throttle_valves": warm,
        "homes": list(homes),
    }
    return Proposal(
        proposal_id=new_proposal_id(), station_id=st.station_id, kind="balancing", community=stats.community,
        current_c=_r(imb.building_spread_c, 2), proposed_c=None, delta_c=None, evidence=evidence, reason=reason,
        created_at=now, effective_at=now, targets=(stats.community,), before_c=_r(stats.weighted_mean_c, 2),
    )


def _home_visit(st: Station, hb: HomeBelow, address: str, stats: CommunityStats, now: datetime, cfg: Config) -> Proposal:
    where = address or f"{hb.community} {hb.building}"
    n, k = stats.homes_below_standard, max(stats.homes_reporting, 1)
    if stats.weighted_mean_c is None:
        context = f"{hb.community} has no residential mean; {n} of {k} homes are below their own standard"
    elif n / k > cfg.analytics.cold_share_max:
        context = (f"one of {n} of {k} homes below standard while {hb.community} averages "
                   f"{stats.weighted_mean_c:.1f} °C — many at once: also check the network and the station")
    else:
        context = f"while {hb.community} averages {stats.weighted_mean_c:.1f} °C — an isolated cold home"
    reason = (
        f"{where} (home {hb.home_id}): {hb.hours_below} h under {hb.threshold_c:.1f} °C (mean {hb.mean_c:.1f} °C, "
        f"lowest hour {hb.min_hourly_c:.1f} °C), {context}: visit, clean the filter, check the radiator valves and "
        "air, measure room by room."
    )
    evidence: dict[str, Any] = {
        "home_mean_c": round(hb.mean_c, 2),
        "min_hourly_c": round(hb.min_hourly_c, 2),
        "threshold_c": hb.threshold_c,
        "hours_below": hb.hours_below,
        "longest_run_h": hb.longest_run_h,
        "rule": hb.rule,
        "community_weighted_mean_c": _r(stats.weighted_mean_c, 2),
        "homes": [hb.home_id],
    }
    return Proposal(
        proposal_id=new_proposal_id(), station_id=st.station_id, kind="home_visit", community=hb.community,
        current_c=round(hb.mean_c, 2), proposed_c=None, delta_c=None, evidence=evidence, reason=reason,
        created_at=now, effective_at=now, home_id=hb.home_id, targets=(hb.home_id,), before_c=round(hb.mean_c, 2),
    )


def _supply(
    cfg: Config, state: StationState, needs: list[CommunityStats], kind: str, now: datetime, note: str = "",
    homes: Sequence[str] = (),
) -> Proposal | None:
    st = state.station
    design = design_for(cfg, st.station_id)
    curve = heating_curve(design, state.outdoor_c).supply_c if state.outdoor_c is not None else None
    ref, ref_source = state.reference(curve)
    if ref is None:
        return None  # no reference, no bounded step: the station check raises the implausible reading
    wanted_per: dict[str, float] = {}
    for cs in needs:
        assert cs.weighted_mean_c is not None
        base_opts = [x for x in (curve, ref) if x is not None]
        base = max(base_opts) if kind == "supply" else min(base_opts)
        wanted_per[cs.community] = feedback_supply(base, target_of(cs, cfg), cs.weighted_mean_c, cfg.control.feedback_gain)
    # one setpoint serves every community: enough for the coldest, or the smallest cut that keeps all warm
    wanted = max(wanted_per.values())
    b = bound_supply(ref, wanted, cfg.control.max_step_c, st.supply_min_c, st.supply_max_c)
    if b is None:
        return None
    current = ref
    delta = round(b.proposed_c - current, 1)
    if abs(delta) < max(cfg.control.min_change_c, 0.05) or (kind == "supply") != (delta > 0):
        return None  # too small, or a "raise" that lowers / a "lower" that raises
    worst = min(needs, key=lambda c: c.weighted_mean_c or 0.0) if kind == "supply" else max(
        needs, key=lambda c: c.weighted_mean_c or 0.0
    )
    wm = worst.weighted_mean_c or 0.0
    target = target_of(worst, cfg)
    names = ", ".join(c.community for c in needs)
    curve_txt = (
        f"heating curve {curve:.1f} °C at {state.outdoor_c:.1f} °C outdoors" if curve is not None and state.outdoor_c is not None
        else f"no outdoor temperature, so from the {ref_source} supply"
    )
    limits = f"; limited by {', '.join(b.limited_by)}" if b.limited_by else ""
    now_txt = f"{current:.1f}" + (" (last published)" if ref_source == "published" else " (measured)")
    # a shift of the curve keeps following the outdoor temperature; a fixed supply would freeze against it
    offset = b.proposed_c - curve if curve is not None and cfg.control.feedback_setpoint == "curve_offset" else None
    if offset is not None:
        limits += f"; sent as the heating curve shifted {offset:+.1f} °C, then along the curve"
    if kind == "supply":
        why = (
            f"{names}: weighted mean {wm:.1f} °C is {target - wm:.1f} °C under the {target:.1f} °C target with "
            f"{worst.homes_below_standard} homes below standard spread across the community"
        )
        verb = "raise"
    else:
        why = f"{names}: weighted mean {wm:.1f} °C is above the {cfg.control.warm_ceiling_c:.1f} °C ceiling (energy)"
        verb = "lower"
    reason = (
        f"{why}; {verb} {st.name or st.station_id} supply from {now_txt} to {b.proposed_c:.1f} °C "
        f"({curve_txt}, indoor feedback {cfg.control.feedback_gain:g}×{target - wm:+.1f}{limits}){note}."
    )
    evidence: dict[str, Any] = {
        "weighted_mean_c": {c.community: _r(c.weighted_mean_c, 2) for c in needs},
        "homes_below_standard": {c.community: c.homes_below_standard for c in needs},
        "edge_share": {c.community: _r(c.edge_share, 3) for c in needs},
        "target_c": {c.community: round(target_of(c, cfg), 2) for c in needs},
        "outdoor_c": _r(state.outdoor_c),
        "curve_supply_c": _r(curve, 2),
        "current_supply_c": _r(current),
        "reference": ref_source,  # what the step is measured from: the last published setpoint, or the measured supply
        "measured_supply_c": _r(state.supply_c),
        "current_return_c": _r(state.return_c),
        "wanted_supply_c": round(wanted, 2),
        "limited_by": list(b.limited_by),
        "supply_range_c": [st.supply_min_c, st.supply_max_c],
        "curve_offset_c": offset,  # None: a fixed supply temperature
        "homes": list(homes),  # the homes below standard that asked for it: the recheck judges them
    }
    return Proposal(
        proposal_id=new_proposal_id(), station_id=st.station_id, kind=kind,  # type: ignore[arg-type]
        community=worst.community if len(needs) == 1 else "", current_c=_r(current), proposed_c=b.proposed_c,
        delta_c=delta, evidence=evidence, reason=reason, created_at=now, effective_at=now,
        targets=tuple(c.community for c in needs), before_c=_r(wm, 2),
    )


def diagnose(
    result: AnalysisResult,
    registry: Registry,
    cfg: Config,
    states: Mapping[str, StationState],
    pending: Mapping[str, float | None],
    now: datetime,
) -> list[Proposal]:
    """Proposals for every station in ``states``; ``pending`` maps a station with a pending supply
    recheck to the weighted mean measured before that change (None when unknown)."""
    ceiling = cfg.control.warm_ceiling_c
    stats = {c.community: c for c in result.communities}
    imbs = {i.community: i for i in result.imbalance}
    below: dict[str, list[HomeBelow]] = {}
    for hb in result.homes_below_standard:
        below.setdefault(hb.community, []).append(hb)
    out: list[Proposal] = []
    for sid, state in states.items():
        st = state.station
        short: list[CommunityStats] = []
        warm: list[CommunityStats] = []
        for name in st.communities:
            cs = stats.get(name)
            if cs is None or cs.status == "insufficient_sample":
                continue  # no evidence, no prescription
            target = target_of(cs, cfg)
            wm = cs.weighted_mean_c
            if wm is None:  # no residential homes: bungalows / contract homes, each at its own standard
                for hb in below.get(name, []):
                    home = registry.homes.get(hb.home_id)
                    out.append(_home_visit(st, hb, home.address if home else "", cs, now, cfg))
                continue
            imb = imbs.get(name)
            if wm > ceiling:
                warm.append(cs)
            elif _is_imbalanced(imb, cfg.standard.target_c, cfg.control.imbalance_spread_c):
                assert imb is not None
                cold_homes = [hb.home_id for hb in below.get(name, []) if hb.building in imb.cold_buildings]
                out.append(_balancing(st, cs, imb, cfg.standard.target_c, now, cold_homes))
            elif wm < target - cfg.control.shortfall_margin_c:
                short.append(cs)
            else:
                for hb in below.get(name, []):
                    home = registry.homes.get(hb.home_id)
                    out.append(_home_visit(st, hb, home.address if home else "", cs, now, cfg))
        note = ""
        emergency = False
        if sid in pending:
            baseline = pending[sid]
            worst = min((c.weighted_mean_c or 0.0 for c in short), default=None)
            if worst is None or baseline is None or worst > baseline - cfg.control.emergency_drop_c:
                continue  # wait for the recheck of the last change (None: an emergency change is already pending)
            note = f" — emergency: {baseline - worst:.1f} °C colder than before the pending change"
            emergency = True
        if short:
            cold_homes = [hb.home_id for c in short for hb in below.get(c.community, [])]
            p = _supply(cfg, state, short, "supply", now, note, cold_homes)
        elif warm and len(warm) == len([n for n in st.communities if n in stats]):
            p = _supply(cfg, state, warm, "lower_supply", now)
        else:
            p = None
        if p is not None:
            out.append(replace(p, evidence={**p.evidence, "emergency": True}) if emergency else p)
    return out


def target_of(cs: CommunityStats, cfg: Config) -> float:
    """The community's target for this window: night hours hold the night standard (analytics), else 18 °C."""
    return cs.target_c if cs.target_c is not None else cfg.standard.target_c
