"""Benchmark: 1,000,000 homes × 24 hourly means → community stats and below-standard homes.

Goal: at most 3× a numpy single-pass lower bound on the same arrays, measured in the same run.
The lower bound reads every hourly mean once and reduces it per community (row sums, then one
bincount): the least work that yields any community statistic. It is timed two ways (``sum(axis=1)``
and a BLAS ``values @ ones``) and the faster one is used, so the ratio is the strict one.
The analytics side is what a scheduled analysis produces — community stats and below-standard homes — with the
functions ``analytics.engine.analyze`` uses after reading the store: ``core.scan`` (window means,
below-standard flags), ``core.community_stats`` (the 40 % rule) and ``core.details`` + ``rule_names``
for the below-standard homes. The first call (compiling the kernels, or loading them from numba's
cache) is a warm-up and not timed (``warmup_s``). ``analyze`` does more that is not timed here: the
``home_status`` rows of every reporting home (a take from the scan), sensor health and imbalance.

Why each timed round starts by waiting for this process's other threads to go idle: OpenBLAS's
worker thread keeps spinning ~0.1 s after each BLAS call (the lower bound's ``values @ ones``), so
the analytics timed next shared the machine's second core with it — and its only core when anything
else ran (docs/PERFORMANCE.md, "Analytics on a clean machine"). Each call's CPU time (its own thread)
is reported beside its wall time: ``wall_over_cpu`` > 1 says the run was descheduled by other load.
Run:
    .venv/bin/python -m bench.bench_analytics [--homes N] [--hours H] [--repeat R] [--parts]
Prints one JSON line; record it in docs/PERFORMANCE.md ("Analytics and the simulator step").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from analytics import core

GOAL_RATIO = 3.0


def make_arrays(n: int, h: int, communities: int, seed: int = 1) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    # homes differ (mean 20.5 ± 1.3 °C), hours vary less (± 0.5 °C) and nights are 0.6 °C cooler
    local_hour = np.arange(h) % 24
    night = (local_hour < 6) | (local_hour >= 21)
    values = np.empty((n, h), order="F")
    home_c = rng.normal(20.5, 1.3, n)
    for j in range(h):
        values[:, j] = home_c + rng.normal(0.0, 0.5, n) - 0.6 * night[j]
    # missing hours the way sensors lose them: 3 % of homes have one outage of 1–12 hours, 1 % are silent
    out = np.flatnonzero(rng.random(n) < 0.03)
    first = rng.integers(0, h, out.size)
    length = rng.integers(1, 13, out.size)
    for j in range(h):
        values[out[(j >= first) & (j < first + length)], j] = np.nan
    values[rng.random(n) < 0.01, :] = np.nan
    kind = rng.choice(np.array([core.KIND_RESIDENTIAL, core.KIND_BUNGALOW, core.KIND_CONTRACT], dtype=np.int8), n,
                      p=[0.94, 0.05, 0.01])
    contract = np.where(kind == core.KIND_CONTRACT, 20.0, np.nan)
    thr_day, thr_night = core.thresholds(kind, contract, 18.0, 16.0, 16.0)
    return {
        "values": values,
        "codes": np.sort(rng.integers(0, communities, n)).astype(np.int64),
        "edge": rng.random(n) < 0.35,
        "kind": kind,
        "thr_day": thr_day,
        "thr_night": thr_night,
        "day": (local_hour >= 6) & (local_hour < 21),
        "communities": communities,
    }


def analytics(a: dict[str, Any]) -> tuple[core.CommunityArrays, np.ndarray, core.Details, list[str]]:
    sc = core.scan(a["values"], a["thr_day"], a["thr_night"], a["day"], 2)
    cs = core.community_stats(a["codes"], a["communities"], a["edge"], sc.mean_c, sc.below)
    idx = np.flatnonzero(sc.below)
    det = core.details(sc, a["thr_day"], a["thr_night"], a["day"], rows=idx)
    return cs, idx, det, core.rule_names(a["kind"][idx], det.day_under, det.night_under)


def lower_bound_sum(a: dict[str, Any]) -> np.ndarray:
    return np.bincount(a["codes"], weights=a["values"].sum(axis=1), minlength=a["communities"])


def lower_bound_blas(a: dict[str, Any]) -> np.ndarray:
    return np.bincount(a["codes"], weights=a["values"] @ np.ones(a["values"].shape[1]), minlength=a["communities"])


def parts(a: dict[str, Any], repeat: int) -> dict[str, float]:
    """Each step of ``analytics`` timed alone, results kept alive as in the real run (median ms)."""
    steps: dict[str, list[float]] = {"scan": [], "community_stats": [], "flatnonzero": [], "details": [], "rule_names": []}
    others_idle()
    for _ in range(repeat):
        t0 = time.perf_counter()
        sc = core.scan(a["values"], a["thr_day"], a["thr_night"], a["day"], 2)
        t1 = time.perf_counter()
        core.community_stats(a["codes"], a["communities"], a["edge"], sc.mean_c, sc.below)
        t2 = time.perf_counter()
        idx = np.flatnonzero(sc.below)
        t3 = time.perf_counter()
        det = core.details(sc, a["thr_day"], a["thr_night"], a["day"], rows=idx)
        t4 = time.perf_counter()
        core.rule_names(a["kind"][idx], det.day_under, det.night_under)
        t5 = time.perf_counter()
        for name, dt in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            steps[name].append(dt * 1000)
    return {name: round(statistics.median(v), 1) for name, v in steps.items()}


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall ms, this thread's CPU ms): CPU time that other processes cannot inflate, only wall time."""
    t, c = time.perf_counter(), time.thread_time()
    fn()
    return (time.perf_counter() - t) * 1000, (time.thread_time() - c) * 1000


def others_idle(limit_s: float = 1.0) -> float:
    """Wait until no other thread of this process uses CPU for two 10 ms windows running; ms waited.
    OpenBLAS's worker spins for 2^28 cycles (~0.1 s here) after each call before it sleeps."""
    t0 = time.perf_counter()
    quiet = 0
    while quiet < 2 and time.perf_counter() - t0 < limit_s:
        before = time.process_time() - time.thread_time()
        time.sleep(0.01)
        quiet = quiet + 1 if time.process_time() - time.thread_time() - before < 0.0005 else 0
    return (time.perf_counter() - t0) * 1000


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--homes", type=int, default=1_000_000)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--communities", type=int, default=2_000)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--parts", action="store_true", help="also time each step alone (median ms) under \"parts_ms\"")
    args = ap.parse_args()
    a = make_arrays(args.homes, args.hours, args.communities)
    t_warm = time.perf_counter()
    cs, idx, _, _ = analytics(a)  # warm up: compiles the kernels, or loads them from numba's cache
    warmup_s = time.perf_counter() - t_warm
    # a sanity check against a plain computation
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the silent homes' empty rows
        plain = np.nanmean(a["values"], axis=1)
    assert np.allclose(core.scan(a["values"], a["thr_day"], a["thr_night"], a["day"], 2).mean_c, plain, equal_nan=True)
    lower_bound_sum(a), lower_bound_blas(a)
    an, sm, bl, waits = [], [], [], []
    faults = 0
    for _ in range(args.repeat):  # interleaved, so load from other processes hits all three alike
        waits.append(others_idle())  # OpenBLAS's spinning worker must not share the analytics' time
        f0 = minor_faults()
        an.append(timed(lambda: analytics(a)))
        faults += minor_faults() - f0
        sm.append(timed(lambda: lower_bound_sum(a)))
        bl.append(timed(lambda: lower_bound_blas(a)))  # its workers woken from sleep: as fast as hot ones, measured
    med = statistics.median
    t_an, t_sum, t_blas = ([w for w, _ in x] for x in (an, sm, bl))
    lb = min(med(t_sum), med(t_blas))
    result = {
        "bench": "analytics",
        "homes": args.homes,
        "hours": args.hours,
        "communities": args.communities,
        "below_standard_homes": int(idx.size),
        "cold_communities": int((cs.status == core.COLD).sum()),
        "analytics_median_ms": round(med(t_an), 1),
        "analytics_min_ms": round(min(t_an), 1),
        "lower_bound_sum_median_ms": round(med(t_sum), 1),
        "lower_bound_blas_median_ms": round(med(t_blas), 1),
        "ratio": round(med(t_an) / lb, 2),
        "ratio_min": round(min(t_an) / min(min(t_sum), min(t_blas)), 2),
        "ratio_vs_sum": round(med(t_an) / med(t_sum), 2),
        "goal_ratio": GOAL_RATIO,
        "meets_goal": med(t_an) / lb <= GOAL_RATIO,
        "repeat": args.repeat,
        "analytics_cpu_median_ms": round(med(c for _, c in an), 1),
        "lower_bound_sum_cpu_median_ms": round(med(c for _, c in sm), 1),
        "ratio_cpu_vs_sum": round(med(c for _, c in an) / med(c for _, c in sm), 2),
        "wall_over_cpu": round(med(w / c for w, c in an), 2),
        "page_faults_per_call": round(faults / args.repeat, 1),
        "threads": len(os.listdir("/proc/self/task")),
        "idle_wait_median_ms": round(med(waits)),
        "warmup_s": round(warmup_s, 2),
        **({"parts_ms": parts(a, args.repeat)} if args.parts else {}),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "machine": platform.machine(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
