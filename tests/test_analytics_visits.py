"""Visit plan (访民问暖): edge homes ≥ 40 %, spread over buildings and locations, flagged homes first, deterministic."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.visits import flags_from, plan_visits
from heatwatch.core.registry import Home, Registry

C = "幸福小区"


def building(name: str, floors: int = 6, per_floor: int = 4, community: str = C) -> list[Home]:
    """per_floor homes a floor; positions 0 and per_floor-1 are gable ends."""
    out = []
    for f in range(1, floors + 1):
        for p in range(per_floor):
            out.append(Home(f"{name}-{f}0{p + 1}", community, name, str(p // 2 + 1), f, floors, p in (0, per_floor - 1),
                            "residential", None, "S1", f"{community}{name}{f}0{p + 1}"))
    return out


def reg(*hs: list[Home]) -> Registry:
    return Registry({h.home_id: h for group in hs for h in group}, {})


def test_edge_minimum_spread_and_determinism() -> None:
    r = reg(building("1号楼"), building("2号楼"), building("3号楼"))
    plan = plan_visits(r, C, 10)
    assert plan.size == 10 and len(plan.visits) == 10 and len({v.home_id for v in plan.visits}) == 10
    assert plan.edge_visits >= 4 and plan.edge_share == plan.edge_visits / 10
    per_building = Counter(v.building for v in plan.visits)
    assert set(per_building) == {"1号楼", "2号楼", "3号楼"} and max(per_building.values()) - min(per_building.values()) <= 1
    locs = {v.location for v in plan.visits}
    assert "middle" in locs and any("top" in x for x in locs) and any("ground" in x for x in locs)
    assert any("gable" in x for x in locs)
    assert plan_visits(r, C, 10) == plan  # deterministic


def test_edge_minimum_holds_when_middle_homes_dominate() -> None:
    # a 20-floor building, 2 homes a floor, no gables: edge = 4 of 40 homes (10 %)
    hs = [Home(f"T-{f}-{p}", C, "塔楼", "1", f, 20, False, "residential", None, "S1") for f in range(1, 21) for p in range(2)]
    plan = plan_visits(reg(hs), C, 5)
    assert plan.edge_visits == 2  # ceil(0.4 × 5)
    plan = plan_visits(reg(hs), C, 10)
    assert plan.edge_visits == 4 and plan.notes == []
    plan = plan_visits(reg(hs), C, 12)  # needs 5 edge homes, only 4 exist: all taken, and said so
    assert plan.edge_visits == 4 and plan.notes and "only 4 edge homes" in plan.notes[0]


def test_flagged_homes_come_first_and_keep_their_reasons() -> None:
    r = reg(building("1号楼"), building("2号楼"))
    mids = sorted(h.home_id for h in r.homes.values() if not h.edge)
    flags = {mids[-1]: ("cold",), mids[-2]: ("no_sensor",), "2号楼-602": ("stale",)}
    plan = plan_visits(r, C, 5, flags)
    got = {v.home_id: v.reasons for v in plan.visits}
    assert got[mids[-1]] == ("cold",) and got[mids[-2]] == ("no_sensor",) and got["2号楼-602"] == ("stale",)
    assert plan.edge_visits >= 2


def test_flags_from_an_analysis() -> None:
    from datetime import UTC, datetime

    from analytics.results import AnalysisResult, HomeBelow, SensorFinding

    t = datetime(2026, 1, 10, tzinfo=UTC)
    res = AnalysisResult(t, t, "Asia/Shanghai", [], [HomeBelow("A", C, "1号楼", "residential_day", 18.0, 3, 3, 16.0, 15.5, t)],
                         [SensorFinding("A", C, "stale", "x"), SensorFinding("B", C, "warm", "x"),
                          SensorFinding("C", C, "no_sensor", "")])
    assert flags_from(res) == {"A": ("cold", "stale"), "C": ("no_sensor",)}


def test_bad_requests_are_named() -> None:
    r = reg(building("1号楼", floors=2, per_floor=2))
    with pytest.raises(ValueError, match="not in the registry"):
        plan_visits(r, "阳光花园", 2)
    with pytest.raises(ValueError, match="more than the 4 registered homes"):
        plan_visits(r, C, 5)
    with pytest.raises(ValueError, match="at least 1"):
        plan_visits(r, C, 0)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 12), st.integers(1, 5), st.integers(1, 40), st.integers(0, 2**16))
def test_plan_properties(n_buildings: int, floors: int, per_floor: int, size: int, seed: int) -> None:
    r = reg(*(building(f"{b}号楼", floors, per_floor) for b in range(1, n_buildings + 1)))
    n = len(r.homes)
    size = min(size, n)
    ids = sorted(r.homes)
    flags = {ids[(seed + 7 * i) % n]: ("cold",) for i in range(seed % 4)}
    plan = plan_visits(r, C, size, flags)
    assert len({v.home_id for v in plan.visits}) == size
    n_edge = sum(h.edge for h in r.homes.values())
    assert plan.edge_visits >= min(n_edge, math.ceil(0.4 * size))
    if size >= n_buildings and not flags:  # flags come before spread
        assert plan.buildings == n_buildings
    # every flagged home is in the plan when the plan has room for all of them
    if len(flags) <= size - math.ceil(0.4 * size):
        assert set(flags) <= {v.home_id for v in plan.visits}


def test_bungalows_and_contract_homes_do_not_fill_the_edge_quota() -> None:
    """One-storey homes are top and ground at once, but the 40 % are of residential edge homes (楼顶/楼底/山墙)."""
    flats = building("1号楼")  # 24 flats: 16 top, ground or gable, 8 middle
    bungalows = [Home(f"P{i:02d}", C, "平房区", "", 1, 1, False, "bungalow", None, "S1") for i in range(20)]
    shop = [Home("N1", C, "配套用房", "", 1, 1, False, "non_residential", 16.0, "S1")]
    plan = plan_visits(reg(flats, bungalows, shop), C, 10)
    residential_edge = {h.home_id for h in flats if h.edge}
    assert sum(v.home_id in residential_edge for v in plan.visits) >= 4
    assert plan.edge_visits == sum(v.home_id in residential_edge for v in plan.visits)
    assert all(not v.edge for v in plan.visits if not v.home_id.startswith("1号楼"))
    assert {v.location for v in plan.visits if v.home_id.startswith("P")} <= {"bungalow"}
