"""The analytics definitions (docs/ANALYTICS.md), pinned with hand-computed cases on the pure functions (analytics.core)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numba
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics import core

NAN = np.nan
SH = ZoneInfo("Asia/Shanghai")


def stats(means: list[float], edge: list[bool], below: list[bool] | None = None, **kw: Any) -> core.CommunityArrays:
    n = len(means)
    return core.community_stats(
        np.zeros(n, dtype=np.int64), 1, np.array(edge, dtype=bool), np.array(means, dtype=float),
        np.array(below or [False] * n, dtype=bool), **kw,  # type: ignore[arg-type]
    )


def test_edge_share_below_40_percent_weights_edge_homes_to_40() -> None:
    # e = 1 (14.0), m = 4 (20.0 each): s = 0.2 < 0.4 → 0.40 × 14 + 0.60 × 20 = 5.6 + 12 = 17.6
    # (with edge_min_homes = 1; the default of 2 does not let one edge home carry 40 % alone, below)
    c = stats([14.0, 20.0, 20.0, 20.0, 20.0], [True, False, False, False, False], edge_min_homes=1)
    assert c.edge[0] == 1 and c.middle[0] == 4 and c.edge_share[0] == pytest.approx(0.2)
    assert c.weighted_mean_c[0] == pytest.approx(17.6)
    assert c.plain_mean_c[0] == pytest.approx(18.8)  # (14 + 80) / 5
    assert c.edge_weight[0] == pytest.approx(0.40)
    assert core.STATUSES[c.status[0]] == "cold"  # 17.6 < 18 although the plain mean says 18.8


def test_edge_share_exactly_40_percent_is_the_plain_mean() -> None:
    # e = 2 (14, 16), m = 3 (20 each): s = 2/5 = 0.40 ≥ 0.40 → plain mean (30 + 60) / 5 = 18.0
    c = stats([14.0, 16.0, 20.0, 20.0, 20.0], [True, True, False, False, False])
    assert c.edge_share[0] == 0.4
    assert c.weighted_mean_c[0] == pytest.approx(18.0) == c.plain_mean_c[0]
    assert c.edge_weight[0] == pytest.approx(0.4)
    assert core.STATUSES[c.status[0]] == "ok"  # 18.0 is not under 18.0


def test_edge_share_above_40_percent_is_the_plain_mean() -> None:
    # e = 4 (15 each), m = 2 (21 each): s = 0.667 → plain (60 + 42) / 6 = 17.0; weighting would give 18.6
    c = stats([15.0, 15.0, 15.0, 15.0, 21.0, 21.0], [True] * 4 + [False] * 2)
    assert c.weighted_mean_c[0] == pytest.approx(17.0) == c.plain_mean_c[0]
    assert c.edge_weight[0] == pytest.approx(4 / 6)


def test_no_edge_home_is_insufficient_sample_with_plain_mean_still_reported() -> None:
    c = stats([19.0, 20.0, 21.0, 22.0, 23.0], [False] * 5)
    assert core.STATUSES[c.status[0]] == "insufficient_sample"
    assert np.isnan(c.weighted_mean_c[0]) and c.plain_mean_c[0] == pytest.approx(21.0)
    assert c.edge_weight[0] == 0.0


def test_no_middle_home_is_the_plain_mean() -> None:
    c = stats([17.0, 18.0, 19.0, 20.0, 21.0], [True] * 5)
    assert c.weighted_mean_c[0] == pytest.approx(19.0) and c.edge_weight[0] == 1.0
    assert core.STATUSES[c.status[0]] == "ok"


def test_fewer_homes_than_min_sample_is_insufficient_but_weighted_mean_is_computed() -> None:
    # e = 1 (16), m = 3 (20): s = 0.25 → 0.4 × 16 + 0.6 × 20 = 18.4; only 4 < 5 homes
    c = stats([16.0, 20.0, 20.0, 20.0], [True, False, False, False], edge_min_homes=1)
    assert c.weighted_mean_c[0] == pytest.approx(18.4)
    assert core.STATUSES[c.status[0]] == "insufficient_sample"
    c3 = stats([16.0, 20.0, 20.0, 20.0], [True, False, False, False], min_sample=4, edge_min_homes=1)
    assert core.STATUSES[c3.status[0]] == "ok"


def test_only_reporting_homes_count_and_share_of_cold_homes_makes_a_community_cold() -> None:
    # 7 registered, 2 silent (NaN). Reporting: e = 2 (18, 18), m = 3 (19, 19, 19) → plain 18.6 (ok by mean)
    means = [18.0, 18.0, 19.0, 19.0, 19.0, NAN, NAN]
    edge = [True, True, False, False, False, True, False]
    ok = stats(means, edge, [True, False, False, False, False, True, True])
    assert ok.registered[0] == 7 and ok.reporting[0] == 5 and ok.below[0] == 1  # silent homes are never below
    assert ok.weighted_mean_c[0] == pytest.approx(18.6) and core.STATUSES[ok.status[0]] == "ok"  # 1/5 = 0.2 ≤ 0.25
    cold = stats(means, edge, [True, True, False, False, False, False, False])
    assert core.STATUSES[cold.status[0]] == "cold"  # 2/5 = 0.4 > 0.25


def test_several_communities_in_one_pass() -> None:
    codes = np.array([0, 0, 1, 1, 1])
    c = core.community_stats(codes, 2, np.array([True, False, True, False, False]), np.array([10.0, 20.0, 16.0, 22.0, 22.0]),
                             np.zeros(5, bool), min_sample=1, edge_min_homes=1)
    # community 0: s = 0.5 → plain 15; community 1: s = 1/3 → 0.4 × 16 + 0.6 × 22 = 19.6
    assert c.weighted_mean_c.tolist() == pytest.approx([15.0, 19.6])


def test_one_edge_home_does_not_carry_40_percent_alone() -> None:
    """Fewer than edge_min_homes (2) reporting edge homes: no weighted mean, insufficient sample; the plain
    mean is still reported. One sensor reading 14 °C would otherwise pull nine homes at 20 °C to 17.6."""
    c = stats([14.0] + [20.0] * 9, [True] + [False] * 9)
    assert np.isnan(c.weighted_mean_c[0]) and core.STATUSES[c.status[0]] == "insufficient_sample"
    assert c.plain_mean_c[0] == pytest.approx(19.4) and c.edge_weight[0] == 0.0
    two = stats([14.0, 15.0] + [20.0] * 8, [True, True] + [False] * 8)
    assert two.weighted_mean_c[0] == pytest.approx(0.4 * 14.5 + 0.6 * 20.0) and core.STATUSES[two.status[0]] == "cold"


def test_excluded_sensors_count_nowhere_but_in_their_own_count() -> None:
    means = [-30.0, 18.0, 19.0] + [20.0] * 7
    edge = [True, True, True] + [False] * 7
    below = [True] + [False] * 9
    c = stats(means, edge, below, excluded=np.array([True] + [False] * 9))
    assert c.excluded[0] == 1 and c.edge[0] == 2 and c.reporting[0] == 9 and c.below[0] == 0
    assert c.weighted_mean_c[0] == pytest.approx(0.4 * 18.5 + 0.6 * 20.0)


def test_bungalows_and_contract_homes_are_reported_apart_from_the_residential_mean() -> None:
    k = [core.KIND_RESIDENTIAL] * 5 + [core.KIND_BUNGALOW] * 3 + [core.KIND_CONTRACT]
    means = [18.0, 18.0, 19.0, 19.0, 19.0, 16.5, 16.5, 15.5, 14.0]
    edge = [True, True, False, False, False, True, True, True, True]  # one-storey homes are top and ground
    below = [False] * 7 + [True, False]
    c = stats(means, edge, below, kind_code=np.array(k, dtype=np.int8))
    assert (c.edge[0], c.middle[0]) == (2, 3) and c.weighted_mean_c[0] == pytest.approx(18.6)
    assert c.plain_mean_c[0] == pytest.approx(18.6) and c.reporting[0] == 9 and c.below[0] == 1
    assert c.bungalow_reporting[0] == 3 and c.bungalow_mean_c[0] == pytest.approx(16.1667, abs=1e-4)
    assert c.bungalow_below[0] == 1 and c.contract_reporting[0] == 1 and c.contract_mean_c[0] == 14.0
    assert core.STATUSES[c.status[0]] == "ok"


def test_the_target_follows_the_hours_each_home_reported() -> None:
    """Night hours hold 16 °C: the community target is 18 − 2 × the weighted night share of its homes."""
    c = stats([17.0] * 5, [True] * 2 + [False] * 3, night_share=np.ones(5), night_drop_c=2.0)
    assert c.target_c[0] == pytest.approx(16.0) and core.STATUSES[c.status[0]] == "ok"
    half = stats([17.0] * 5, [True] * 2 + [False] * 3, night_share=np.full(5, 0.5), night_drop_c=2.0)
    assert half.target_c[0] == pytest.approx(17.0) and core.STATUSES[half.status[0]] == "ok"
    day = stats([17.0] * 5, [True] * 2 + [False] * 3, night_share=np.zeros(5), night_drop_c=2.0)
    assert day.target_c[0] == pytest.approx(18.0) and core.STATUSES[day.status[0]] == "cold"


def scan_one(
    row: list[float], day: list[bool], thr_day: float = 18.0, thr_night: float = 16.0, k: int = 2
) -> tuple[core.Scan, core.Details]:
    v = np.asfortranarray(np.array([row], dtype=float))
    d = np.array(day, dtype=bool)
    td, tn = np.array([thr_day]), np.array([thr_night])
    s = core.scan(v, td, tn, d, k)
    return s, core.details(s, td, tn, d)


def test_below_needs_consecutive_hours_and_a_missing_hour_ends_the_run() -> None:
    day = [True] * 6
    s, d = scan_one([17.0, 19.0, 17.5, NAN, 17.9, 19.0], day)
    assert not s.below[0] and s.longest_run_h[0] == 1 and d.hours_below[0] == 3 and d.first_below[0] == -1
    s, d = scan_one([19.0, 17.0, 17.5, NAN, 17.9, 17.0], day)
    assert s.below[0] and s.longest_run_h[0] == 2 and d.hours_below[0] == 4
    assert d.first_below[0] == 1 and d.min_hourly_c[0] == 17.0 and d.threshold_c[0] == 18.0
    # window temperature = mean of the 5 hourly means present
    assert s.mean_c[0] == pytest.approx((19 + 17 + 17.5 + 17.9 + 17) / 5) and s.n_hours[0] == 5


def test_day_and_night_thresholds_and_rule_names() -> None:
    # hours: night, night, day, day; 17 °C is fine at night (16) and under by day (18)
    s, d = scan_one([17.0, 17.0, 17.0, 17.0], [False, False, True, True])
    assert s.below[0] and d.hours_below[0] == 2 and d.first_below[0] == 2
    assert core.rule_names(np.array([0]), d.day_under, d.night_under) == ["residential_day"]
    s, d = scan_one([15.0, 15.0, 19.0, 19.0], [False, False, True, True])
    assert core.rule_names(np.array([0]), d.day_under, d.night_under) == ["residential_night"]
    assert d.threshold_c[0] == 16.0
    s, d = scan_one([15.0, 15.0, 17.0, 19.0], [False, False, True, True])
    assert s.longest_run_h[0] == 3 and core.rule_names(np.array([0]), d.day_under, d.night_under) == ["residential"]
    assert d.threshold_c[0] == 16.0  # the qualifying run started at night
    # one night hour under 16 (no run), then two day hours under 18: the day rule made it below standard
    s, d = scan_one([15.0, 17.0, 17.0, 17.0], [False, False, True, True])
    assert s.below[0] and d.first_below[0] == 2 and d.threshold_c[0] == 18.0
    # never under: the residential rule as a whole (day and night), not "residential_day"
    s, d = scan_one([19.0, 19.0, 19.0, 19.0], [False, False, True, True])
    assert core.rule_names(np.array([0]), d.day_under, d.night_under) == ["residential"]


def test_thresholds_per_kind() -> None:
    kinds = np.array([core.KIND_RESIDENTIAL, core.KIND_BUNGALOW, core.KIND_CONTRACT], dtype=np.int8)
    day, night = core.thresholds(kinds, np.array([NAN, NAN, 20.5]), 18.0, 16.0, 16.0)
    assert day.tolist() == [18.0, 16.0, 20.5] and night.tolist() == [16.0, 16.0, 20.5]
    assert core.rule_names(kinds, np.ones(3, bool), np.zeros(3, bool)) == ["residential_day", "bungalow", "contract"]


def test_hour_grid_and_day_hours_are_local() -> None:
    # 2026-01-10 04:00 .. 08:00 Asia/Shanghai = 2026-01-09 20:00 .. 2026-01-10 00:00 UTC
    start, end = datetime(2026, 1, 9, 20, 0, tzinfo=UTC), datetime(2026, 1, 10, 0, 0, tzinfo=UTC)
    g = core.hour_grid(start, end, SH)
    assert len(g) == 4
    assert core.day_hours(g, SH, 6, 21).tolist() == [False, False, True, True]
    # India (+05:30): hours start at :30 UTC; a window starting 00:10 UTC begins with the 23:30 UTC hour
    kolkata = ZoneInfo("Asia/Kolkata")
    g2 = core.hour_grid(datetime(2026, 1, 10, 0, 10, tzinfo=UTC), datetime(2026, 1, 10, 2, 0, tzinfo=UTC), kolkata)
    assert [int(x // 1_000_000_000) % 3600 for x in g2] == [1800, 1800, 1800]
    assert len(g2) == 3


def test_hourly_matrix_scatters_and_drops_unknown_homes() -> None:
    import pandas as pd

    grid = np.array([0, core.H_NS, 2 * core.H_NS])
    hours = [core.H_NS, 0, 0, 5 * core.H_NS]
    m = core.hourly_matrix(["b", "a", "zz", "a"], hours, [1.0, 2.0, 3.0, 4.0], pd.Index(["a", "b"]), grid)
    assert m.flags.f_contiguous
    np.testing.assert_array_equal(m, [[2.0, NAN, NAN], [NAN, 1.0, NAN]])


def reference_longest(row: list[float], thr: list[float]) -> int:
    best = run = 0
    for v, t in zip(row, thr, strict=True):
        run = run + 1 if v == v and v < t else 0
        best = max(best, run)
    return best


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.one_of(st.none(), st.floats(10, 25)), min_size=5, max_size=5), min_size=1, max_size=8),
       st.lists(st.booleans(), min_size=5, max_size=5), st.integers(1, 4))
def test_scan_matches_a_plain_loop(rows: list[list[float | None]], day: list[bool], k: int) -> None:
    v = np.asfortranarray(np.array([[NAN if x is None else x for x in r] for r in rows], dtype=float))
    n = len(rows)
    td, tn = np.full(n, 18.0), np.full(n, 16.0)
    s = core.scan(v, td, tn, np.array(day), k)
    for i, r in enumerate(v.tolist()):
        thr = [18.0 if d else 16.0 for d in day]
        lr = reference_longest(r, thr)
        assert s.longest_run_h[i] == lr and s.below[i] == (lr >= k)
        present = [x for x in r if x == x]
        assert s.n_hours[i] == len(present)
        if present:
            assert s.mean_c[i] == pytest.approx(sum(present) / len(present))
        else:
            assert np.isnan(s.mean_c[i])


def test_scan_blocks_give_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    v = np.asfortranarray(rng.normal(17.5, 1.5, (50, 12)))
    v[rng.random(v.shape) < 0.1] = NAN
    day = np.arange(12) >= 4
    td, tn = np.full(50, 18.0), np.full(50, 16.0)
    for hours in (12, 11):  # even, and odd (the last pair padded)
        part = np.asfortranarray(v[:, :hours])
        whole = core.scan(part, td, tn, day[:hours], 2)
        with monkeypatch.context() as mp:
            mp.setattr(core, "BLOCK", 7)
            blocked = core.scan(part, td, tn, day[:hours], 2)
        for name in ("longest_run_h", "n_hours", "hours_below", "first_run", "day_under", "night_under"):
            np.testing.assert_array_equal(getattr(whole, name), getattr(blocked, name))
        np.testing.assert_allclose(whole.mean_c, blocked.mean_c)
        np.testing.assert_array_equal(whole.min_hourly_c, blocked.min_hourly_c)


def test_a_long_window_counts_past_255_hours() -> None:
    """A 300-hour window (12.5 days) needs 16-bit counters: runs, hours and the first hour past 255 are exact."""
    h = 300
    v = np.full((3, h), 19.0)
    v[0, 10:280] = 17.0  # one run of 270 hours starting at hour 10
    v[1, 270:273] = 17.0  # the first qualifying run starts at hour 270
    v[2, ::2] = NAN  # every other hour silent: 150 hours with a reading, never a run
    v = np.asfortranarray(v)
    td, tn, day = np.full(3, 18.0), np.full(3, 16.0), np.ones(h, dtype=bool)
    s = core.scan(v, td, tn, day, 2)
    d = core.details(s, td, tn, day)
    assert s.longest_run_h.tolist() == [270, 3, 0] and d.hours_below.tolist() == [270, 3, 0]
    assert d.first_below.tolist() == [10, 270, -1] and s.below.tolist() == [True, True, False]
    assert s.n_hours.tolist() == [300, 300, 150]
    assert s.mean_c[0] == pytest.approx((270 * 17.0 + 30 * 19.0) / 300)


@settings(max_examples=120, deadline=None)
@given(st.integers(1, 9), st.integers(1, 8), st.integers(1, 4), st.data())
def test_details_match_a_plain_loop(h: int, n: int, k: int, data: st.DataObject) -> None:
    """hours_below, longest run, first qualifying hour, min hourly, threshold and rule against a per-home loop.

    Odd and even windows: the kernel takes hours in pairs and pads an odd window with a NaN hour.
    """
    rows = data.draw(st.lists(st.lists(st.one_of(st.none(), st.floats(12, 22)), min_size=h, max_size=h),
                              min_size=n, max_size=n))
    day = data.draw(st.lists(st.booleans(), min_size=h, max_size=h))
    v = np.asfortranarray(np.array([[NAN if x is None else x for x in r] for r in rows], dtype=float))
    kind = np.array(data.draw(st.lists(st.sampled_from([core.KIND_RESIDENTIAL, core.KIND_BUNGALOW, core.KIND_CONTRACT]),
                                       min_size=n, max_size=n)), dtype=np.int8)
    td, tn = core.thresholds(kind, np.full(n, 19.5), 18.0, 16.0, 16.0)
    subset = np.array(sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=1))), dtype=np.int64)
    det = core.details(core.scan(v, td, tn, np.array(day), k), td, tn, np.array(day), rows=subset)
    rules = core.rule_names(kind[subset], det.day_under, det.night_under)
    for out_i, i in enumerate(subset.tolist()):
        thr = [float(td[i]) if d else float(tn[i]) for d in day]
        under = [x == x and x < t for x, t in zip(v[i].tolist(), thr, strict=True)]
        run = best = 0
        first = -1
        for j, u in enumerate(under):
            run = run + 1 if u else 0
            best = max(best, run)
            if run == k and first < 0:
                first = j - k + 1
        present = [x for x in v[i].tolist() if x == x]
        assert det.hours_below[out_i] == sum(under)
        assert det.longest_run_h[out_i] == best
        assert det.first_below[out_i] == first
        assert (np.isnan(det.min_hourly_c[out_i]) and not present) or det.min_hourly_c[out_i] == min(present)
        lowest_under = min((t for t, u in zip(thr, under, strict=True) if u), default=min(thr))
        expect_thr = thr[first] if first >= 0 else lowest_under
        assert det.threshold_c[out_i] == expect_thr
        day_u = any(u and d for u, d in zip(under, day, strict=True))
        night_u = any(u and not d for u, d in zip(under, day, strict=True))
        assert bool(det.day_under[out_i]) == day_u and bool(det.night_under[out_i]) == night_u
        if kind[i] == core.KIND_BUNGALOW:
            assert rules[out_i] == "bungalow"
        elif kind[i] == core.KIND_CONTRACT:
            assert rules[out_i] == "contract"
        else:
            assert rules[out_i] == ("residential_day" if day_u and not night_u else "residential_night" if night_u and not day_u
                                    else "residential")


def test_kernels_still_compile_where_no_cache_directory_is_writable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A locked-down service (no writable __pycache__, NUMBA_CACHE_DIR or home) compiles at start instead of failing."""
    from numba.core import caching

    from analytics import kernels

    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])  # as if no directory were writable

    def add_one(x: npt.NDArray[np.float64]) -> None:
        for i in range(x.shape[0]):
            x[i] += 1.0

    with pytest.raises(RuntimeError, match="no locator"):
        numba.njit(add_one, cache=True)
    compiled = kernels._jit(add_one)
    x = np.zeros(3)
    compiled(x)
    assert x.tolist() == [1.0, 1.0, 1.0]


def test_numba_is_loaded_only_by_an_analysis() -> None:
    """numba and LLVM cost ~100 MB of RSS: the CLI and a collector (memory goal ≤ 150 MB) must not load them."""
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from heatwatch.app.cli import build_parser\n"
        "build_parser()\n"
        "import analytics.engine, collector.service, heatwatch.app.service\n"
        "assert 'numba' not in sys.modules, 'numba loaded at import'\n"
        "from analytics import core\n"
        "core.scan(np.full((2, 3), 17.0, order='F'), np.full(2, 18.0), np.full(2, 16.0), np.ones(3, bool), 2)\n"
        "assert 'numba' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent, timeout=120)
