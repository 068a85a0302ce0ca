"""What control does with the heating curve: the indoor feedback, the bounds of one change, auto-apply.

Pure functions. The curve itself (``heating_curve``, ``design_for``) lives in ``heatwatch.core.curve``,
shared with the alerts' station check and the report; it is re-exported here for control's readers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from heatwatch.core.config import Config
from heatwatch.core.curve import CurvePoint, design_for, heating_curve, relative_load

__all__ = [
    "Bounded",
    "CurvePoint",
    "auto_apply_for",
    "bound_supply",
    "design_for",
    "feedback_supply",
    "heating_curve",
    "indoor_feedback",
    "plausible_supply",
    "relative_load",
]


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


TENTH = 0.1
EPS = 1e-9


def plausible_supply(value_c: float | None, station_min_c: float, station_max_c: float) -> bool:
    """A measured or remembered supply that can anchor a step: a finite number inside the station's range."""
    return value_c is not None and math.isfinite(value_c) and station_min_c - EPS <= value_c <= station_max_c + EPS


def bound_supply(
    reference_c: float | None, wanted_c: float, max_step_c: float, station_min_c: float, station_max_c: float
) -> Bounded | None:
    """One adjustment: inside the station's range and at most ``max_step_c`` from ``reference_c``.

    ``reference_c`` is the last published setpoint, or the measured supply when nothing was published.
    None when it is missing or outside the station's range (an implausible reading): no value is then both
    in range and one step from it, and "35 °C" from a 5 °C reading would cut a real 55 °C supply while
    being reported as a raise. Values go out in 0.1 °C, rounded toward the reference when rounding would
    cross a bound.
    """
    if station_min_c >= station_max_c:
        raise ValueError(f"station supply range {station_min_c}..{station_max_c} is empty")
    if reference_c is None or not plausible_supply(reference_c, station_min_c, station_max_c):
        return None
    ref = min(max(reference_c, station_min_c), station_max_c)
    limits: list[str] = []
    x = wanted_c
    if abs(x - ref) > max_step_c:
        x = ref + math.copysign(max_step_c, x - ref)
        limits.append("max_step")
    if x > station_max_c:
        x = station_max_c
        limits.append("station_max")
    elif x < station_min_c:
        x = station_min_c
        limits.append("station_min")
    lo, hi = max(station_min_c, ref - max_step_c), min(station_max_c, ref + max_step_c)
    r = round(x, 1)
    if r > hi + EPS:
        r = math.floor(hi / TENTH + EPS) * TENTH
    elif r < lo - EPS:
        r = math.ceil(lo / TENTH - EPS) * TENTH
    r = round(r, 1)
    turned = (r - ref) * (x - ref) < 0 or (abs(x - ref) < EPS and abs(r - ref) >= EPS)
    if not lo - EPS <= r <= hi + EPS or turned:
        r = x  # no tenth between the bounds, or rounding would turn a small step around: keep it exact
    return Bounded(wanted_c, r, tuple(limits))


def auto_apply_for(cfg: Config, station_id: str) -> bool:
    own = cfg.control.stations.get(station_id)
    if own is not None and own.auto_apply is not None:
        return own.auto_apply
    return cfg.control.auto_apply
