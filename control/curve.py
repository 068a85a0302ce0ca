"""The quality-regulation heating curve for radiator systems, its indoor feedback, and the bounds.

Pure functions: the numbers an operator checks by hand (docs/CONTROL.md works one example).
Quality regulation (质调节) varies the supply temperature with the outdoor temperature at a
constant flow; the relative load is Q = (t_n − t_out) / (t_n − t_out_design).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from heatwatch.core.config import Config, StationDesign


@dataclass(frozen=True, slots=True)
class CurvePoint:
    outdoor_c: float
    load: float  # Q
    supply_c: float
    return_c: float


def relative_load(design: StationDesign, outdoor_c: float) -> float:
    """Q; 0 when it is warmer outside than the design indoor temperature (no heating needed)."""
    span = design.indoor_c - design.outdoor_design_c
    if span <= 0:
        raise ValueError(
            f"heating curve: indoor_c {design.indoor_c} must be above outdoor_design_c {design.outdoor_design_c}"
        )
    return max(0.0, (design.indoor_c - outdoor_c) / span)


def heating_curve(design: StationDesign, outdoor_c: float) -> CurvePoint:
    """Supply and return temperature that keep t_n indoors at ``outdoor_c`` (extrapolated below design)."""
    if not math.isfinite(outdoor_c):
        raise ValueError(f"heating curve: outdoor temperature {outdoor_c!r} is not a finite number")
    if design.supply_design_c <= design.return_design_c:
        raise ValueError(
            f"heating curve: supply_design_c {design.supply_design_c} must be above return_design_c {design.return_design_c}"
        )
    q = relative_load(design, outdoor_c)
    t_n = design.indoor_c
    mean_part = 0.5 * (design.supply_design_c + design.return_design_c - 2 * t_n) * q ** (1.0 / (1.0 + design.b))
    half_diff = 0.5 * (design.supply_design_c - design.return_design_c) * q
    return CurvePoint(outdoor_c, q, t_n + mean_part + half_diff, t_n + mean_part - half_diff)


def indoor_feedback(target_c: float, measured_c: float | None, gain: float) -> float:
    """The curve's shift for the indoor error: homes measured under target need hotter water than the curve says."""
    return 0.0 if measured_c is None else gain * (target_c - measured_c)


def feedback_supply(curve_supply_c: float, target_c: float, measured_c: float | None, gain: float) -> float:
    """The curve's supply shifted by ``indoor_feedback``."""
    return curve_supply_c + indoor_feedback(target_c, measured_c, gain)


@dataclass(frozen=True, slots=True)
class Bounded:
    wanted_c: float  # before the bounds
    proposed_c: float
    limited_by: tuple[str, ...]  # "max_step", "station_max", "station_min"


def bound_supply(
    current_c: float | None, wanted_c: float, max_step_c: float, station_min_c: float, station_max_c: float
) -> Bounded:
    """One adjustment moves at most ``max_step_c`` from the current supply and stays in the station's range."""
    if station_min_c >= station_max_c:
        raise ValueError(f"station supply range {station_min_c}..{station_max_c} is empty")
    limits: list[str] = []
    x = wanted_c
    if current_c is not None and abs(x - current_c) > max_step_c:
        x = current_c + math.copysign(max_step_c, x - current_c)
        limits.append("max_step")
    if x > station_max_c:
        x = station_max_c
        limits.append("station_max")
    elif x < station_min_c:
        x = station_min_c
        limits.append("station_min")
    return Bounded(wanted_c, round(x, 1), tuple(limits))


def design_for(cfg: Config, station_id: str) -> StationDesign:
    """The station's design values: its own [control.stations.<id>] keys over [control.design]."""
    base = cfg.control.design
    own = cfg.control.stations.get(station_id)
    if own is None:
        return base
    return base.model_copy(update={k: getattr(own, k) for k in own.model_fields_set})


def auto_apply_for(cfg: Config, station_id: str) -> bool:
    own = cfg.control.stations.get(station_id)
    if own is not None and own.auto_apply is not None:
        return own.auto_apply
    return cfg.control.auto_apply
