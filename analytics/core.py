"""The definitions of issue 4 as pure, vectorised functions on a homes × local-hours matrix.

``values[i, j]`` is home i's hourly mean for local clock hour j of the window (NaN: no reading in
that hour). Everything here is numpy on whole columns (no per-home Python loops), so a city of a
million homes is analysed in a few passes over memory (bench/bench_analytics.py).

Definitions (docs/ANALYTICS.md has worked examples):
- window temperature = mean of a home's hourly means (a chatty sensor does not outweigh a quiet one);
- a home is below standard when its hourly mean is under the applicable threshold for at least
  ``min_hours_below`` consecutive clock hours; an hour without readings is not "under" and ends a run;
- community weighted mean: plain mean when edge share s >= 0.40 or there are no middle homes,
  otherwise edge homes weigh 0.40/e and middle homes 0.60/m.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pandas as pd

from heatwatch.storage.base import hour_offset_s
from heatwatch.timeutil import to_ns

H_NS = 3_600 * 1_000_000_000
BLOCK = 131_072  # homes per block: a block's columns stay in cache across the per-hour steps

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


def threshold_matrix(thr_day: FloatArray, thr_night: FloatArray, day: BoolArray) -> FloatArray:
    """The applicable threshold per home-hour (materialised; use on subsets)."""
    return np.where(day[None, :], thr_day[:, None], thr_night[:, None])


# --- the scan: window temperature and below-standard flag for every home -----------------------------
@dataclass(frozen=True)
class Scan:
    mean_c: FloatArray  # window temperature (NaN when the home has no hourly mean in the window)
    n_hours: npt.NDArray[np.int32]  # hours with a mean
    longest_run_h: npt.NDArray[np.unsignedinteger[Any]]  # longest run of consecutive hours under the threshold
    below: BoolArray  # longest_run_h >= min_hours_below

    @property
    def reporting(self) -> BoolArray:
        return np.asarray(self.n_hours > 0)


def scan(values: FloatArray, thr_day: FloatArray, thr_night: FloatArray, day: BoolArray, min_hours_below: int) -> Scan:
    """One pass over ``values`` (column by column, in cache-sized blocks of homes).

    NaN (no reading) is never under a threshold, so it ends a run: a silent sensor never makes a cold home.
    Rows with a missing hour get a NaN sum and are recomputed while their block is still in cache.
    """
    n, h = values.shape
    total = np.zeros(n)
    n_hours = np.full(n, h, dtype=np.int32)
    run_t = np.uint8 if h < 255 else np.uint16 if h < 65_535 else np.uint32
    longest: npt.NDArray[np.unsignedinteger[Any]] = np.zeros(n, dtype=run_t)
    run = np.zeros(min(BLOCK, max(n, 1)), dtype=run_t)
    under = np.zeros(run.shape[0], dtype=bool)
    under_n = under.view(np.uint8)
    for a in range(0, n, BLOCK):
        b = min(n, a + BLOCK)
        m = b - a
        r, u, un, acc, best = run[:m], under[:m], under_n[:m], total[a:b], longest[a:b]
        r[:] = 0
        td, tn = thr_day[a:b], thr_night[a:b]
        block = values[a:b]
        for j in range(h):
            col = block[:, j]
            np.add(acc, col, out=acc)
            np.less(col, td if day[j] else tn, out=u)
            np.add(r, 1, out=r)
            np.multiply(r, un, out=r)
            np.maximum(best, r, out=best)
        gaps = np.flatnonzero(np.isnan(acc))
        if gaps.size:
            g_sum = np.zeros(gaps.size)
            g_cnt = np.zeros(gaps.size, dtype=np.int32)
            for j in range(h):
                col = block[:, j].take(gaps)
                ok = col == col  # not NaN
                g_sum += np.where(ok, col, 0.0)
                g_cnt += ok
            acc[gaps] = np.where(g_cnt > 0, g_sum, np.nan)
            n_hours[a + gaps] = g_cnt
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n_hours
    return Scan(mean, n_hours, longest, longest >= min_hours_below)


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


def details(
    values: FloatArray,
    thr_day: FloatArray,
    thr_night: FloatArray,
    day: BoolArray,
    min_hours_below: int,
    rows: IntArray | None = None,
) -> Details:
    """Per-home details for ``rows`` (default: all); thresholds are per home of ``values``' rows."""
    if rows is not None:
        thr_day, thr_night = thr_day[rows], thr_night[rows]
    n, h = (values.shape[0] if rows is None else len(rows)), values.shape[1]
    cnt_t = np.uint8 if h < 255 else np.uint16 if h < 65_535 else np.uint32  # counters in small ints: less memory traffic
    run = np.zeros(n, dtype=cnt_t)
    longest = np.zeros(n, dtype=cnt_t)
    hours = np.zeros(n, dtype=cnt_t)
    first = np.full(n, -1, dtype=np.int64)
    mn = np.full(n, np.nan)
    under = np.zeros(n, dtype=bool)
    under_n = under.view(np.uint8)
    day_under = np.zeros(n, dtype=bool)
    night_under = np.zeros(n, dtype=bool)
    reached = np.zeros(n, dtype=bool)
    thr_first = np.full(n, np.nan)
    for j in range(h):  # loop over hours (the window length), vectorised over homes
        col = values[:, j] if rows is None else values[:, j].take(rows)
        np.less(col, thr_day if day[j] else thr_night, out=under)  # NaN → False
        np.add(run, 1, out=run)
        np.multiply(run, under_n, out=run)
        np.maximum(longest, run, out=longest)
        np.add(hours, under_n, out=hours)
        np.equal(run, min_hours_below, out=reached)  # a qualifying run reaches the minimum exactly once
        if reached.any():
            hit = np.flatnonzero(reached)
            hit = hit[first[hit] < 0]
            j0 = j - min_hours_below + 1
            first[hit] = j0
            thr_first[hit] = (thr_day if day[j0] else thr_night)[hit]
        np.fmin(mn, col, out=mn)  # fmin skips NaN
        np.logical_or(day_under if day[j] else night_under, under, out=day_under if day[j] else night_under)
    # the lowest threshold among the hours under, or among all hours when none was under
    thr_under = np.minimum(np.where(day_under, thr_day, np.inf), np.where(night_under, thr_night, np.inf))
    thr_all = np.minimum(thr_day if day.any() else np.inf, thr_night if (~day).any() else np.inf) if h else np.full(n, np.nan)
    hours_i = hours.astype(np.int64)
    return Details(
        hours_below=hours_i,
        longest_run_h=longest.astype(np.int64),
        first_below=first,
        min_hourly_c=mn,
        threshold_c=np.where(first >= 0, thr_first, np.where(hours_i > 0, thr_under, thr_all)),
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
    registered: IntArray
    reporting: IntArray
    edge: IntArray  # e
    middle: IntArray  # m
    edge_share: FloatArray  # s = e / (e + m); NaN when nobody reported
    edge_weight: FloatArray  # total weight of edge homes in the weighted mean; NaN when undefined
    weighted_mean_c: FloatArray  # NaN when e == 0 or nobody reported
    plain_mean_c: FloatArray
    below: IntArray
    status: npt.NDArray[np.int8]  # index into STATUSES


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
) -> CommunityArrays:
    """Edge-weighted community means (the 40 % rule) with bincounts: O(homes), no Python loop over homes."""
    rep = mean_c == mean_c  # not NaN
    # one bincount over (community, middle | edge | not reporting) gives m, e and the registered count;
    # one weighted bincount the sums (NaN of silent homes lands in the unused third column)
    key = codes * 3 + np.where(rep, is_edge.astype(np.int8, copy=False), np.int8(2))
    cnt3 = np.bincount(key, minlength=3 * n_groups).reshape(n_groups, 3)
    sum3 = np.bincount(key, weights=mean_c, minlength=3 * n_groups).reshape(n_groups, 3)
    registered = cnt3.sum(axis=1).astype(np.int64)
    m, e = cnt3[:, 0].astype(np.float64), cnt3[:, 1].astype(np.float64)
    sm, se = sum3[:, 0], sum3[:, 1]
    hit = np.flatnonzero(below)
    nb = np.bincount(codes[hit[rep[hit]]], minlength=n_groups).astype(np.float64)
    k = e + m
    with np.errstate(invalid="ignore", divide="ignore"):
        plain = np.where(k > 0, (se + sm) / k, np.nan)
        share = np.where(k > 0, e / k, np.nan)
        plain_ok = (k > 0) & ((share >= edge_share_min) | (m == 0))
        weighted_ok = (e > 0) & (m > 0) & ~plain_ok
        w_mean = edge_share_min * se / e + (1.0 - edge_share_min) * sm / m
        weighted = np.where(plain_ok, plain, np.where(weighted_ok, w_mean, np.nan))
        edge_weight = np.where(plain_ok, share, np.where(weighted_ok, edge_share_min, np.where(k > 0, 0.0, np.nan)))
        cold_share = np.where(k > 0, nb / k, 0.0)
    insufficient = (k < min_sample) | (e == 0)
    cold = (weighted < target_c) | (cold_share > cold_share_max)
    status = np.where(insufficient, INSUFFICIENT, np.where(cold, COLD, OK)).astype(np.int8)
    return CommunityArrays(
        registered=registered,
        reporting=k.astype(np.int64),
        edge=e.astype(np.int64),
        middle=m.astype(np.int64),
        edge_share=share,
        edge_weight=edge_weight,
        weighted_mean_c=weighted,
        plain_mean_c=plain,
        below=nb.astype(np.int64),
        status=status,
    )
