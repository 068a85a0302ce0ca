"""The quality-regulation heating curve for radiator systems: the supply a station's design calls for.

Pure functions, the numbers an operator checks by hand (docs/CONTROL.md works one example). Here and not
in control because three readers share it: control sizes its proposals with it, control's alerts flag a
station whose supply runs far under it, and the report draws it. Quality regulation (质调节) varies the
supply temperature with the outdoor temperature at a constant flow; the relative load is
Q = (t_n − t_out) / (t_n − t_out_design).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from heatwatch.core.config import Config, StationDesign


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """The curve at one outdoor temperature: relative load and the supply and return that hold t_n."""

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


def design_for(cfg: Config, station_id: str) -> StationDesign:
    """The station's design values: its own [control.stations.<id>] keys over [control.design]."""
    base = cfg.control.design
    own = cfg.control.stations.get(station_id)
    if own is None:
        return base
    return base.model_copy(update={k: getattr(own, k) for k in own.model_fields_set})
