"""The compiled inner loops of ``core``: one fused pass where numpy needs one pass per operation.

Why compiled: per hourly mean the analysis sums, counts, compares with the home's threshold, carries
a run counter and tracks the minimum. As numpy ufuncs each of those is a pass of its own over a
block of homes (5.6× the cost of just reading the matrix, docs/PERFORMANCE.md); compiled by numba
(LLVM, SIMD) the loop reads each value once and keeps the per-home state in cache. The definitions
live in ``core``'s docstring; tests hold these loops to per-home Python loops.

Conventions: ``flat`` is the homes × hours matrix in Fortran order, raveled, so hour j of home i is
``flat[j * n + i]`` and each hour is one contiguous column. A NaN hourly mean is "no reading": it is
never under a threshold (every comparison with NaN is false), so it ends a run of cold hours.
Counters are small unsigned ints whose width the caller picks so the window cannot overflow them
(less memory traffic); ``first`` holds the type's maximum for "no qualifying run". Compiled once per
machine and cached on disk (``_jit``). One thread: analytics shares the machine with
the collector, broker and database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba as nb
import numpy as np
import numpy.typing as npt

F = npt.NDArray[np.float64]
U = npt.NDArray[np.unsignedinteger[Any]]  # counters
B = npt.NDArray[np.bool_]


def _jit(fn: Callable[..., None]) -> Callable[..., None]:
    """Compile with an on-disk cache when numba finds a writable place for one (``NUMBA_CACHE_DIR``,
    ``__pycache__`` beside this file, or the user's cache directory); else compile at each start
    (a few seconds) rather than fail to start."""
    try:
        return nb.njit(fn, cache=True, nogil=True, boundscheck=False, error_model="numpy")
    except RuntimeError:  # "cannot cache function …: no locator available"
        return nb.njit(fn, cache=False, nogil=True, boundscheck=False, error_model="numpy")


@_jit
def _two_hours(c0: F, c1: F, t0: F, t1: F, d0: bool, d1: bool, total: F, n_hours: U, run: U, longest: U, hours: U,
               day_under: B, night_under: B, first: U, min_c: F, k: Any, j0: Any, none: Any) -> None:
    # Hours j0 and j0+1 for one block of homes. Two hours per call halve the loads and stores of the
    # per-home state; plain contiguous 1-D arrays and no branches, so that LLVM vectorises the loop.
    # c0/c1: the hours' columns, t0/t1: their thresholds, d0/d1: day hours? k: min_hours_below.
    one = run.dtype.type(1)
    zero = run.dtype.type(0)
    j1 = j0 + one
    for i in range(c0.shape[0]):
        v0 = c0[i]
        v1 = c1[i]
        ok0 = v0 == v0
        ok1 = v1 == v1
        total[i] += (v0 if ok0 else 0.0) + (v1 if ok1 else 0.0)
        n_hours[i] += (one if ok0 else zero) + (one if ok1 else zero)
        u0 = v0 < t0[i]  # NaN: False
        u1 = v1 < t1[i]
        r0 = run[i] + one if u0 else zero
        r1 = r0 + one if u1 else zero
        run[i] = r1
        longest[i] = max(longest[i], max(r0, r1))
        hours[i] += (one if u0 else zero) + (one if u1 else zero)
        day_under[i] |= (u0 & d0) | (u1 & d1)
        night_under[i] |= (u0 & (not d0)) | (u1 & (not d1))
        f = first[i]  # the run that first reaches k hours started k-1 hours ago
        f = j0 if (r0 == k) & (f == none) else f
        first[i] = j1 if (r1 == k) & (f == none) else f
        m = min_c[i]  # like fmin: a reading replaces the NaN start
        m = v0 if (v0 < m) | (m != m) else m
        min_c[i] = v1 if (v1 < m) | (m != m) else m


@_jit
def scan(flat: F, n: int, h: int, thr_day: F, thr_night: F, day: B, k: int, block: int,
         total: F, n_hours: U, longest: U, hours: U, first: U, min_c: F, day_under: B, night_under: B) -> None:
    """Everything ``core`` reports per home, in one pass: two hours at a time within blocks of ``block`` homes.

    An odd window gets a NaN hour after its last: no reading changes none of the results.
    """
    ct = longest.dtype.type
    none = ct(-1)
    kc = ct(k)
    run = np.empty(min(block, max(n, 1)), dtype=longest.dtype)
    pad = np.full(run.shape[0], np.nan)
    for a in range(0, n, block):
        b = min(n, a + block)
        m = b - a
        total[a:b] = 0.0
        n_hours[a:b] = 0
        longest[a:b] = 0
        hours[a:b] = 0
        first[a:b] = none
        min_c[a:b] = np.nan
        day_under[a:b] = False
        night_under[a:b] = False
        run[:m] = 0
        for j in range(0, h, 2):
            t0 = thr_day[a:b] if day[j] else thr_night[a:b]
            if j + 1 < h:
                c1, t1, d1 = flat[(j + 1) * n + a:(j + 1) * n + b], thr_day[a:b] if day[j + 1] else thr_night[a:b], day[j + 1]
            else:
                c1, t1, d1 = pad[:m], t0, day[j]
            _two_hours(flat[j * n + a:j * n + b], c1, t0, t1, day[j], d1, total[a:b], n_hours[a:b], run[:m],
                       longest[a:b], hours[a:b], day_under[a:b], night_under[a:b], first[a:b], min_c[a:b],
                       kc, ct(j - k + 1), none)


# columns of community_figures' outputs
I_MIDDLE, I_EDGE, I_REGISTERED, I_REGISTERED_RES, I_EXCLUDED, I_REPORTING, I_BELOW = 0, 1, 2, 3, 4, 5, 6
I_BUNG_N, I_BUNG_BELOW, I_CONTRACT_N, I_CONTRACT_BELOW = 7, 8, 9, 10
N_ICOLS = 11
F_SUM_MIDDLE, F_SUM_EDGE, F_NS_MIDDLE, F_NS_EDGE, F_BUNG_SUM, F_CONTRACT_SUM, F_NS_ALL = 0, 1, 2, 3, 4, 5, 6
N_FCOLS = 7


@_jit
def community_figures(codes: npt.NDArray[np.int64], is_edge: B, mean_c: F, below: B, kind: npt.NDArray[np.int8],
                      excluded: B, night: F, icnt: npt.NDArray[np.int64], fsum: F) -> None:
    """Everything ``core.community_stats`` needs per community, in one pass over the homes.

    ``kind``, ``excluded``, ``night`` may be empty (all residential, none excluded, no night share).
    Kind codes: 0 residential, 1 bungalow, 2 contract (``core.KIND_*``). Only reporting homes with a trusted
    sensor are counted beyond ``registered``/``excluded``; only residential ones enter e, m and their sums.
    """
    has_kind = kind.shape[0] > 0
    has_excl = excluded.shape[0] > 0
    has_night = night.shape[0] > 0
    for i in range(codes.shape[0]):
        c = codes[i]
        k = kind[i] if has_kind else 0
        icnt[c, 2] += 1
        if k == 0:
            icnt[c, 3] += 1
        if has_excl and excluded[i]:
            icnt[c, 4] += 1
            continue
        x = mean_c[i]
        if x != x:
            continue
        b = 1 if below[i] else 0
        icnt[c, 5] += 1
        icnt[c, 6] += b
        ns = night[i] if has_night else 0.0
        fsum[c, 6] += ns
        if k == 0:
            e = 1 if is_edge[i] else 0
            icnt[c, e] += 1
            fsum[c, e] += x
            fsum[c, 2 + e] += ns
        elif k == 1:
            icnt[c, 7] += 1
            icnt[c, 8] += b
            fsum[c, 4] += x
        else:
            icnt[c, 9] += 1
            icnt[c, 10] += b
            fsum[c, 5] += x
