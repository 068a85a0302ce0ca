"""What analytics hands to control, alerts, reports and the CLI.

Field names follow the ``heatwatch analyze --json`` contract (docs/ANALYTICS.md); temperatures in °C,
times aware UTC datetimes (rendered RFC 3339 with the local offset at the edge).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import pandas as pd

CommunityStatus = Literal["ok", "cold", "insufficient_sample"]
Rule = Literal["residential_day", "residential_night", "residential", "bungalow", "contract"]
Finding = Literal["stale", "stuck", "jump", "warm", "no_sensor", "implausible"]


@dataclass(frozen=True, slots=True)
class OtherHomes:
    """Bungalows, or non-residential (contract) homes, of one community: held to their own standard and
    reported apart from the residential mean."""

    homes_reporting: int
    mean_c: float | None
    homes_below_standard: int  # below their own standard


@dataclass(frozen=True, slots=True)
class CommunityStats:
    community: str
    homes_registered: int  # every kind
    homes_reporting: int  # every kind, sensors trusted (excluded ones not counted)
    edge_homes: int  # residential
    middle_homes: int  # residential
    edge_share: float | None  # e / (e + m) among reporting residential homes
    edge_weight: float | None  # total weight carried by edge homes in the weighted mean
    weighted_mean_c: float | None  # residential homes only (the 40 % rule)
    plain_mean_c: float | None  # residential homes only
    homes_below_standard: int  # every kind, each against its own standard
    status: CommunityStatus
    target_c: float | None = None  # the window's target for the weighted mean (None: [standard] target_c)
    homes_excluded: int = 0  # sensors flagged stuck / jump / warm / implausible: left out of everything above
    bungalows: OtherHomes | None = None
    non_residential: OtherHomes | None = None


@dataclass(frozen=True, slots=True)
class HomeBelow:
    home_id: str
    community: str
    building: str
    rule: str  # which threshold rule applied, e.g. "residential" / "bungalow" / "contract"
    threshold_c: float  # the (lowest) threshold that applied in the window
    hours_below: int
    longest_run_h: int
    mean_c: float
    min_hourly_c: float
    first_below: datetime


@dataclass(frozen=True, slots=True)
class SensorFinding:
    home_id: str
    community: str
    finding: Finding
    detail: str
    value: float | None = None
    since: datetime | None = None


@dataclass(frozen=True, slots=True)
class Imbalance:
    """Spread inside a community, to tell hydraulic imbalance from a community-wide shortfall."""

    community: str
    building_means_c: dict[str, float]
    entrance_means_c: dict[str, float]  # key "building/entrance"
    building_spread_c: float | None  # max - min of building means
    entrance_spread_c: float | None
    edge_mean_c: float | None
    middle_mean_c: float | None
    edge_middle_gap_c: float | None  # middle - edge
    cold_buildings: tuple[str, ...] = ()  # building mean under target
    warm_buildings: tuple[str, ...] = ()  # building mean over target + margin


@dataclass(frozen=True)
class AnalysisResult:
    window_from: datetime
    window_to: datetime
    timezone: str
    communities: list[CommunityStats] = field(default_factory=list)
    homes_below_standard: list[HomeBelow] = field(default_factory=list)
    sensors: list[SensorFinding] = field(default_factory=list)
    imbalance: list[Imbalance] = field(default_factory=list)
    # per-home window temperature (mean of hourly means) for homes that reported; used by control/reports
    home_means_c: dict[str, float] = field(default_factory=dict)
    # one row per reporting home (home_status columns: home_id, community, building, mean_c, min_hourly_c,
    # hours_below, longest_run_h, threshold_c, below, rule); None when not computed
    homes: pd.DataFrame | None = field(default=None, repr=False, compare=False)
