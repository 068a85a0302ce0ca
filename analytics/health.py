"""Sensor health: findings for maintenance, kept apart from the heating verdict.

A stale sensor is a maintenance job, never a cold home: hours without readings are never "under"
in core.scan, and staleness is reported here instead. Rules (docs/ANALYTICS.md):
- stale: the sensor's last reading is older than ``stale_after_h`` at the reference time;
- no_sensor: a registered home with no sensor reading within ``no_sensor_after_days``;
- stuck: hourly min == max at one unchanged value for ``stuck_after_h`` consecutive clock hours;
- jump: a change faster than ``jump_c_per_h`` (°C per hour) inside an hour (max − min) or between
  the means of adjacent hours;
- warm: window temperature above ``warm_above_c`` (near a heat source, or tampered with);
- implausible: an hourly mean under ``implausible_below_c`` — no heated home is that cold; the sensor is
  broken, outdoors or on a window sill.

Sensors found stuck, jump, warm or implausible (``EXCLUDING``) are left out of the community means and the
homes below standard for the window (``excluded_rows``): a bad sensor must not drive the network.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from analytics.core import H_NS, FloatArray, IntArray
from analytics.results import SensorFinding
from heatwatch.core.timeutil import from_ns

FINDING_ORDER = {"no_sensor": 0, "stale": 1, "stuck": 2, "jump": 3, "warm": 4, "implausible": 5}
EXCLUDING = frozenset({"stuck", "jump", "warm", "implausible"})  # readings not trusted for the heating verdict


@dataclass(frozen=True)
class HealthRules:
    stale_after_h: float = 3.0
    stuck_after_h: float = 6.0
    jump_c_per_h: float = 6.0
    warm_above_c: float = 28.0
    no_sensor_after_days: float = 30.0
    implausible_below_c: float = 5.0


def stuck_runs(mn: FloatArray, mx: FloatArray, need: int) -> tuple[IntArray, IntArray]:
    """Longest run of hours flat at one unchanged value, and the first column of the first run >= need (-1)."""
    n, h = mn.shape
    flat = mn == mx  # NaN → False
    run = np.zeros(n, dtype=np.int64)
    longest = np.zeros(n, dtype=np.int64)
    first = np.full(n, -1, dtype=np.int64)
    for j in range(h):
        same = flat[:, j] & (flat[:, j - 1] & (mn[:, j] == mn[:, j - 1]) if j else False)
        run = np.where(flat[:, j], np.where(same, run + 1, 1), 0)
        longest = np.maximum(longest, run)
        hit = (first < 0) & (run >= need)
        first[hit] = j - need + 1
    return longest, first


def jump_rates(mean: FloatArray, mn: FloatArray, mx: FloatArray) -> tuple[FloatArray, IntArray]:
    """Fastest change per home in °C/h (inside an hour or between adjacent hourly means) and its column."""
    n, h = mean.shape
    if h == 0:
        return np.full(n, np.nan), np.full(n, -1, dtype=np.int64)
    inside = mx - mn
    between = np.full((n, h), np.nan)
    between[:, 1:] = np.abs(np.diff(mean, axis=1))
    rate = np.fmax(inside, between)
    all_nan = np.isnan(rate).all(axis=1)
    col = np.where(all_nan, -1, np.argmax(np.where(np.isnan(rate), -np.inf, rate), axis=1))
    return np.where(all_nan, np.nan, np.fmax.reduce(rate, axis=1)), col.astype(np.int64)


def sensor_findings(
    homes: pd.DataFrame,
    mean: FloatArray,
    mn: FloatArray,
    mx: FloatArray,
    window_mean: FloatArray,
    grid_ns: IntArray,
    last_ns: Sequence[int | None] | np.ndarray,
    ref_ns: int,
    rules: HealthRules,
) -> list[SensorFinding]:
    """Findings for the homes in ``homes`` (columns home_id, community; row i ↔ matrix row i).

    ``last_ns``: time of each home's last *sensor* reading (UTC ns), or -1 / None when none in the lookback.
    """
    ids = homes["home_id"].to_numpy()
    comm = homes["community"].to_numpy()
    last = np.array([-1 if v is None else int(v) for v in last_ns], dtype=np.int64) if len(ids) else np.zeros(0, np.int64)
    out: list[SensorFinding] = []

    for i in np.flatnonzero(last < 0):
        out.append(SensorFinding(str(ids[i]), str(comm[i]), "no_sensor",
                                 f"no sensor reading in the last {rules.no_sensor_after_days:g} days"))
    age_h = (ref_ns - last) / H_NS
    for i in np.flatnonzero((last >= 0) & (age_h > rules.stale_after_h)):
        out.append(SensorFinding(str(ids[i]), str(comm[i]), "stale",
                                 f"last reading {age_h[i]:.1f} h ago (stale after {rules.stale_after_h:g} h)",
                                 round(float(age_h[i]), 2), from_ns(int(last[i]))))
    need = max(1, math.ceil(rules.stuck_after_h))
    longest, first = stuck_runs(mn, mx, need)
    for i in np.flatnonzero(first >= 0):
        out.append(SensorFinding(str(ids[i]), str(comm[i]), "stuck",
                                 f"unchanged at {mn[i, first[i]]:.2f} °C for {longest[i]} h (stuck after {need} h)",
                                 float(longest[i]), from_ns(int(grid_ns[first[i]]))))
    rate, col = jump_rates(mean, mn, mx)
    with np.errstate(invalid="ignore"):
        jumpy = rate > rules.jump_c_per_h
    for i in np.flatnonzero(jumpy):
        out.append(SensorFinding(str(ids[i]), str(comm[i]), "jump",
                                 f"changed {rate[i]:.1f} °C within an hour (implausible above {rules.jump_c_per_h:g} °C/h)",
                                 round(float(rate[i]), 2), from_ns(int(grid_ns[col[i]]))))
    with np.errstate(invalid="ignore"):
        warm = window_mean > rules.warm_above_c
    for i in np.flatnonzero(warm):
        out.append(SensorFinding(str(ids[i]), str(comm[i]), "warm",
                                 f"window mean {window_mean[i]:.1f} °C above {rules.warm_above_c:g} °C: "
                                 "near a heat source or tampered with?",
                                 round(float(window_mean[i]), 2)))
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: no reading, no finding
        lowest = np.nanmin(mean, axis=1) if mean.shape[1] else np.full(len(ids), np.nan)
        cold = lowest < rules.implausible_below_c
    for i in np.flatnonzero(cold):
        out.append(SensorFinding(str(ids[i]), str(comm[i]), "implausible",
                                 f"hourly mean {lowest[i]:.1f} °C under {rules.implausible_below_c:g} °C: no heated home "
                                 "is that cold — the sensor is broken, outdoors or on a window sill",
                                 round(float(lowest[i]), 2)))
    out.sort(key=lambda f: (f.community, f.home_id, FINDING_ORDER[f.finding]))
    return out


def excluded_rows(findings: Sequence[SensorFinding], home_ids: Sequence[str] | np.ndarray) -> npt.NDArray[np.bool_]:
    """True for each home of ``home_ids`` whose sensor has a finding in ``EXCLUDING``."""
    bad = sorted({f.home_id for f in findings if f.finding in EXCLUDING})
    if not bad:
        return np.zeros(len(home_ids), dtype=bool)
    return np.asarray(pd.Index(np.asarray(home_ids, dtype=object)).isin(bad), dtype=bool)
