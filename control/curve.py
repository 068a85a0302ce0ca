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


def auto_apply_for(cfg: Config, station_id: str) -> bool:
    own = cfg.control.stations.get(station_id)
    if own is not None and own.auto_apply is not None:
        return own.auto_apply
    return cfg.control.auto_apply
