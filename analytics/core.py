"""The analytics definitions (docs/ANALYTICS.md) as pure, vectorised functions on a homes × local-hours matrix.

``values[i, j]`` is home i's hourly mean for local clock hour j of the window (NaN: no reading in
that hour). No per-home Python loops: the one pass over the matrix is a compiled kernel
(``kernels.scan``), the rest is numpy on per-home vectors, so a city of a million homes is analysed
in about the time of reading its matrix twice (bench/bench_analytics.py).

Definitions (docs/ANALYTICS.md has worked examples):
- window temperature = mean of a home's hourly means (a chatty sensor does not outweigh a quiet one);
- a home is below standard when its hourly mean is under the applicable threshold for at least
  ``min_hours_below`` consecutive clock hours; an hour without readings is not "under" and ends a run;
- community weighted mean (residential homes with a trusted sensor): plain mean when edge share s >= 0.40
  or there are no middle homes, otherwise edge homes weigh 0.40/e and middle homes 0.60/m; none with fewer
  than ``edge_min_homes`` edge homes; compared with the window's target (night hours hold 16 °C).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pandas as pd

from heatwatch.core.timeutil import to_ns
from heatwatch.infra.storage.base import hour_offset_s

H_NS = 3_600 * 1_000_000_000
BLOCK = 262_144  # homes per block: scan 17.9 ms vs 22.0 at 8k, 18.5 at 64k and 19.6 unblocked (1M homes × 24 h, one run)
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

# status codes of community_stats (index into STATUSES)
STATUSES = ("ok", "cold", "insufficient_sample")
OK, COLD, INSUFFICIENT = 0, 1, 2


# --- the hour grid ------------------------------------------------------------------------------
def hour_grid(start: datetime, end: datetime, tz: ZoneInfo) -> IntArray:
    """UTC ns of every local clock hour [h, h+1) that overlaps [start, end), aligned like ``Store.hourly``."""
    off = hour_offset_s(tz, start) * 1_000_000_000
    s, e = to_ns(start), to_ns(end)
    g0 = ((s - off) // H_NS) * H_NS + off
    return np.arange(g0, e, H_NS, dtype=np.int64)


def day_hours(grid_ns: IntArray, tz: ZoneInfo, day_start_hour: int, day_end_hour: int) -> BoolArray:
    """True for hours *starting* at day_start_hour…day_end_hour-1 local (06:00…20:00 by default)."""
    local = pd.DatetimeIndex(pd.to_datetime(grid_ns, unit="ns", utc=True)).tz_convert(tz)
    hour = np.asarray(local.hour)
    return np.asarray((hour >= day_start_hour) & (hour < day_end_hour), dtype=bool)


def hourly_matrix(
    home_ids: npt.ArrayLike, hours_ns: npt.ArrayLike, means: npt.ArrayLike, index: pd.Index, grid_ns: IntArray
) -> FloatArray:
    """Scatter long-form hourly means (one row per home and hour) into a homes × hours matrix.

    Rows follow ``index`` (home ids); rows of homes not in ``index`` or hours off the grid are dropped.
    Fortran order, so each hour's column is contiguous for the column-wise scans below.
    """
    n, h = len(index), len(grid_ns)
    out = np.full((n, h), np.nan, order="F")
    if n == 0 or h == 0:
        return out
    rows = index.get_indexer(pd.Index(np.asarray(home_ids, dtype=object)))
    cols = (np.asarray(hours_ns, dtype=np.int64) - grid_ns[0]) // H_NS
    ok = (rows >= 0) & (cols >= 0) & (cols < h)
    out[rows[ok], cols[ok]] = np.asarray(means, dtype=np.float64)[ok]
    return out


# --- thresholds -------------------------------------------------------------------------------------
KIND_RESIDENTIAL, KIND_BUNGALOW, KIND_CONTRACT = 0, 1, 2


def thresholds(
    kind_code: npt.NDArray[Any],
    contract_c: FloatArray,
    day_min_c: float,
    night_min_c: float,
    bungalow_min_c: float,
) -> tuple[FloatArray, FloatArray]:
    """Per-home (day threshold, night threshold): residential 18/16, bungalow 16, contract its min_temp_c."""
    day = np.where(kind_code == KIND_RESIDENTIAL, day_min_c, np.where(kind_code == KIND_BUNGALOW, bungalow_min_c, contract_c))
    night = np.where(kind_code == KIND_RESIDENTIAL, night_min_c, np.where(kind_code == KIND_BUNGALOW, bungalow_min_c, contract_c))
    return day.astype(np.float64), night.astype(np.float64)


# --- the scan: everything per home in one pass ---------------------------------------------------------
@dataclass(frozen=True)
class Scan:
    """Per home of ``values``' rows. Counters are small unsigned ints (see ``_counter_dtype``)."""

    mean_c: FloatArray  # window temperature (NaN when the home has no hourly mean in the window)
    n_hours: npt.NDArray[np.unsignedinteger[Any]]  # hours with a mean
    longest_run_h: npt.NDArray[np.unsignedinteger[Any]]  # longest run of consecutive hours under the threshold
    below: BoolArray  # longest_run_h >= min_hours_below
    hours_below: npt.NDArray[np.unsignedinteger[Any]]  # hours under the threshold, in runs or not
    first_run: npt.NDArray[np.unsignedinteger[Any]]  # column where the first qualifying run starts; dtype max: none
    min_hourly_c: FloatArray  # NaN when no hourly mean
    day_under: BoolArray  # some hour under was a day hour
    night_under: BoolArray  # some hour under was a night hour

    @property
    def reporting(self) -> BoolArray:
        return np.asarray(self.n_hours > 0)


def _counter_dtype(h: int) -> type[np.unsignedinteger[Any]]:
    """The smallest unsigned int that counts h hours and still has a spare value for "none" (a week is uint16)."""
    return np.uint8 if h < 255 else np.uint16 if h < 65_535 else np.uint32


def scan(values: FloatArray, thr_day: FloatArray, thr_night: FloatArray, day: BoolArray, min_hours_below: int) -> Scan:
    """One pass over ``values`` (``kernels.scan``): hour by hour within cache-sized blocks of homes.

    NaN (no reading) is never under a threshold, so it ends a run: a silent sensor never makes a cold home.
    """
    n, h = values.shape
    ct = _counter_dtype(h)
    total, min_c = np.empty(n), np.empty(n)
    n_hours, longest, hours, first = (np.empty(n, dtype=ct) for _ in range(4))
    day_under, night_under = np.empty(n, dtype=bool), np.empty(n, dtype=bool)
    flat = np.asfortranarray(values, dtype=np.float64).ravel(order="F")  # a view when built by hourly_matrix
    from analytics import kernels  # here, not at import: numba and LLVM add ~100 MB to a process (the collector has no use)

    kernels.scan(flat, n, h, _f64(thr_day), _f64(thr_night), np.ascontiguousarray(day, dtype=bool), min_hours_below,
                 BLOCK, total, n_hours, longest, hours, first, min_c, day_under, night_under)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.divide(total, n_hours, out=total)  # in place: each fresh array costs page faults (PERFORMANCE.md)
    return Scan(mean, n_hours, longest, longest >= min_hours_below, hours, first, min_c, day_under, night_under)


def _f64(a: npt.ArrayLike) -> FloatArray:
    return np.ascontiguousarray(a, dtype=np.float64)


# --- details for the homes that matter (below standard, or all when writing home_status) -------------
@dataclass(frozen=True)
class Details:
    hours_below: IntArray
    longest_run_h: IntArray
    first_below: IntArray  # column of the first hour of the first qualifying run; -1 when not below
    min_hourly_c: FloatArray
    threshold_c: FloatArray  # below: the threshold at the start of the first qualifying run; else lowest under (or of all)
    day_under: BoolArray  # some hour under was a day hour
    night_under: BoolArray  # some hour under was a night hour


def details(sc: Scan, thr_day: FloatArray, thr_night: FloatArray, day: BoolArray, rows: IntArray | None = None) -> Details:
    """The scan's per-home findings for ``rows`` (default: all), with the threshold that applied."""
    if rows is None:
        rows = np.arange(sc.mean_c.shape[0])
    td, tn = thr_day[rows], thr_night[rows]
    h = day.shape[0]
    raw_first = sc.first_run[rows]
    found = raw_first != np.iinfo(raw_first.dtype).max
    first = np.where(found, raw_first.astype(np.int64), -1)
    hours = sc.hours_below[rows].astype(np.int64)
    day_under, night_under = sc.day_under[rows], sc.night_under[rows]
    # the threshold at the start of the first qualifying run; else the lowest among the hours under,
    # or among all hours when none was under
    thr_first = np.where(day[np.where(found, first, 0)], td, tn) if h else np.full(rows.shape[0], np.nan)
    thr_under = np.minimum(np.where(day_under, td, np.inf), np.where(night_under, tn, np.inf))
    thr_all = np.minimum(td if day.any() else np.inf, tn if (~day).any() else np.inf) if h else np.full(rows.shape[0], np.nan)
    return Details(
        hours_below=hours,
        longest_run_h=sc.longest_run_h[rows].astype(np.int64),
        first_below=first,
        min_hourly_c=sc.min_hourly_c[rows],
        threshold_c=np.where(found, thr_first, np.where(hours > 0, thr_under, thr_all)),
        day_under=day_under,
        night_under=night_under,
    )


RULES = np.array(["residential_day", "residential_night", "residential", "bungalow", "contract"], dtype=object)


def rule_names(kind_code: npt.NDArray[Any], day_under: BoolArray, night_under: BoolArray) -> list[str]:
    """Which rule applied: residential_day / residential_night / residential (both, or never under) / bungalow / contract."""
    res = np.where(day_under & ~night_under, 0, np.where(night_under & ~day_under, 1, 2))
    code = np.where(kind_code == KIND_BUNGALOW, 3, np.where(kind_code == KIND_CONTRACT, 4, res))
    return list(RULES.take(code))


# --- community statistics ----------------------------------------------------------------------------
@dataclass(frozen=True)
class CommunityArrays:
    registered: IntArray  # every registered home, of every kind
    reporting: IntArray  # reporting homes of every kind whose sensor is trusted (not excluded)
    edge: IntArray  # e: reporting residential edge homes
    middle: IntArray  # m: reporting residential middle homes
    edge_share: FloatArray  # s = e / (e + m); NaN when no residential home reported
    edge_weight: FloatArray  # total weight of edge homes in the weighted mean; NaN when undefined
    weighted_mean_c: FloatArray  # residential; NaN when e < edge_min_homes or nobody reported
    plain_mean_c: FloatArray  # residential
    below: IntArray  # reporting homes of every kind below their own standard
    status: npt.NDArray[np.int8]  # index into STATUSES
    target_c: FloatArray  # the window's target for the weighted mean (night hours hold the night standard)
    excluded: IntArray  # homes whose sensor was flagged (stuck, jump, warm, implausible): counted nowhere else
    bungalow_reporting: IntArray
    bungalow_mean_c: FloatArray
    bungalow_below: IntArray
    contract_reporting: IntArray  # non-residential (contract) homes
    contract_mean_c: FloatArray
    contract_below: IntArray


def night_share(values: FloatArray, day: BoolArray) -> FloatArray:
    """Per home, the share of its hours with a reading that are night hours (NaN: no reading at all)."""
    n = np.zeros(values.shape[0])
    nights = np.zeros(values.shape[0])
    for j in range(values.shape[1]):  # a column at a time: no homes × hours temporaries
        has = ~np.isnan(values[:, j])
        n += has
        if not day[j]:
            nights += has
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, nights / np.maximum(n, 1), np.nan)


def community_stats(
    codes: IntArray,
    n_groups: int,
    is_edge: BoolArray,
    mean_c: FloatArray,
    below: BoolArray,
    *,
    edge_share_min: float = 0.40,
    min_sample: int = 5,
    target_c: float = 18.0,
    cold_share_max: float = 0.25,
    edge_min_homes: int = 2,
    kind_code: npt.NDArray[Any] | None = None,
    excluded: BoolArray | None = None,
    night_share: FloatArray | None = None,
    night_drop_c: float = 0.0,
) -> CommunityArrays:
    """Edge-weighted residential community means (the 40 % rule) and the community's status.

    - Only residential homes enter the weighted mean and the edge share; bungalows and contract homes are
      held to their own standard and reported apart (``kind_code``; None: all residential).
    - ``excluded`` homes (a flagged sensor) count nowhere but in ``excluded``.
    - Fewer than ``edge_min_homes`` reporting edge homes: no weighted mean (one sensor must not carry 40 %).
    - ``target_c`` is the daytime target; a home's night hours hold ``night_drop_c`` less, so the window's
      target is ``target_c − night_drop_c × (night share, weighted as the mean is)``: a community whose homes
      are all at their own standard is never under it.
    """
    from analytics import kernels as kr

    icnt = np.zeros((n_groups, kr.N_ICOLS), dtype=np.int64)
    fsum = np.zeros((n_groups, kr.N_FCOLS))
    empty_b, empty_f = np.zeros(0, dtype=bool), np.zeros(0)
    kr.community_figures(
        np.ascontiguousarray(codes, dtype=np.int64), np.ascontiguousarray(is_edge, dtype=bool), _f64(mean_c),
        np.ascontiguousarray(below, dtype=bool),
        np.zeros(0, dtype=np.int8) if kind_code is None else np.ascontiguousarray(kind_code, dtype=np.int8),
        empty_b if excluded is None else np.ascontiguousarray(excluded, dtype=bool),
        empty_f if night_share is None else np.nan_to_num(_f64(night_share)), icnt, fsum,
    )
    registered = icnt[:, kr.I_REGISTERED]
    registered_res = icnt[:, kr.I_REGISTERED_RES]
    m, e = icnt[:, kr.I_MIDDLE].astype(np.float64), icnt[:, kr.I_EDGE].astype(np.float64)
    sm, se = fsum[:, kr.F_SUM_MIDDLE], fsum[:, kr.F_SUM_EDGE]
    k = e + m
    all_k = icnt[:, kr.I_REPORTING].astype(np.float64)
    enough = e >= max(1, edge_min_homes)
    with np.errstate(invalid="ignore", divide="ignore"):
        plain = np.where(k > 0, (se + sm) / k, np.nan)
        share = np.where(k > 0, e / k, np.nan)
        plain_ok = (k > 0) & enough & ((share >= edge_share_min) | (m == 0))
        weighted_ok = enough & (m > 0) & ~plain_ok
        w_mean = edge_share_min * se / e + (1.0 - edge_share_min) * sm / m
        weighted = np.where(plain_ok, plain, np.where(weighted_ok, w_mean, np.nan))
        edge_weight = np.where(plain_ok, share, np.where(weighted_ok, edge_share_min, np.where(k > 0, 0.0, np.nan)))
        # the window's target, weighted like the mean: each home's own mix of day and night hours
        nm, ne = fsum[:, kr.F_NS_MIDDLE], fsum[:, kr.F_NS_EDGE]
        ns_w = np.where(plain_ok, (nm + ne) / k, edge_share_min * ne / e + (1.0 - edge_share_min) * nm / m)
        ns_plain = np.where(all_k > 0, fsum[:, kr.F_NS_ALL] / all_k, 0.0)
        ns = np.where(plain_ok | weighted_ok, ns_w, ns_plain)
        target = target_c - night_drop_c * ns
        below_all = icnt[:, kr.I_BELOW]
        cold_share = np.where(all_k > 0, below_all / all_k, 0.0)
        b_n, c_n = icnt[:, kr.I_BUNG_N], icnt[:, kr.I_CONTRACT_N]
        b_mean = np.where(b_n > 0, fsum[:, kr.F_BUNG_SUM] / np.maximum(b_n, 1), np.nan)
        c_mean = np.where(c_n > 0, fsum[:, kr.F_CONTRACT_SUM] / np.maximum(c_n, 1), np.nan)
    # a community with residential homes is judged on its residential sample; one without on all its homes
    insufficient = np.where(registered_res > 0, (k < min_sample) | ~enough, all_k < min_sample)
    cold = (weighted < target) | (cold_share > cold_share_max)
    status = np.where(insufficient, INSUFFICIENT, np.where(cold, COLD, OK)).astype(np.int8)
    return CommunityArrays(
        registered=registered,
        reporting=icnt[:, kr.I_REPORTING],
        edge=e.astype(np.int64),
        middle=m.astype(np.int64),
        edge_share=share,
        edge_weight=edge_weight,
        weighted_mean_c=weighted,
        plain_mean_c=plain,
        below=below_all,
        status=status,
        target_c=target,
        excluded=icnt[:, kr.I_EXCLUDED],
        bungalow_reporting=b_n,
        bungalow_mean_c=b_mean,
        bungalow_below=icnt[:, kr.I_BUNG_BELOW],
        contract_reporting=c_n,
        contract_mean_c=c_mean,
        contract_below=icnt[:, kr.I_CONTRACT_BELOW],
    )
