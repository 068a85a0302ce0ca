"""Diagnosis: shortfall vs imbalance vs isolated homes vs too warm, and the pending-recheck hold."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from analytics.results import AnalysisResult, CommunityStats, HomeBelow, Imbalance
from control.curve import heating_curve
from control.diagnosis import StationState, diagnose
from heatwatch.core.config import Config, load_config
from heatwatch.core.registry import Home, Registry, Station

NOW = datetime(2026, 1, 10, 4, 0, tzinfo=UTC)
ST = Station("S1", "幸福换热站", ("幸福小区",), 35.0, 75.0)
ST2 = Station("S2", "阳光换热站", ("阳光花园", "Riverside"), 35.0, 75.0)


def cfg(**control: object) -> Config:
    return load_config(environ={}, overrides={"control": dict(control)})


def home(hid: str, community: str, building: str) -> Home:
    return Home(hid, community, building, "1", 3, 6, False, "residential", None, "S1", f"{community}{building}302", "139")


REG = Registry({h.home_id: h for h in [home("H1", "幸福小区", "3号楼"), home("H2", "幸福小区", "1号楼")]}, {"S1": ST, "S2": ST2})


def stats(name: str, wm: float | None, below: int = 0, status: str = "ok") -> CommunityStats:
    return CommunityStats(name, 40, 36, 16, 20, 0.44, 0.45, wm, wm, below, status)  # type: ignore[arg-type]


def hb(hid: str, community: str = "幸福小区", mean: float = 16.2) -> HomeBelow:
    return HomeBelow(hid, community, "3号楼", "residential", 18.0, 9, 6, mean, 15.8, NOW)


def imb(community: str, means: dict[str, float], cold: tuple[str, ...] = (), warm: tuple[str, ...] = ()) -> Imbalance:
    spread = max(means.values()) - min(means.values())
    return Imbalance(community, means, {}, spread, None, None, None, None, cold, warm)


def result(communities: list[CommunityStats], below: list[HomeBelow] = (), imbalance: list[Imbalance] = ()) -> AnalysisResult:  # type: ignore[assignment]
    return AnalysisResult(NOW, NOW, "Asia/Shanghai", communities, list(below), [], list(imbalance))


def test_community_wide_shortfall_raises_supply_from_curve_plus_feedback() -> None:
    c = cfg(max_step_c=10.0)
    r = result([stats("幸福小区", 16.8, below=12)], [hb("H1"), hb("H2")],
               [imb("幸福小区", {"1号楼": 16.7, "3号楼": 16.9})])
    state = StationState(ST, supply_c=45.0, return_c=38.0, outdoor_c=0.0)
    [p] = diagnose(r, REG, c, {"S1": state}, {}, NOW)
    # curve at 0 °C: 48.255; feedback 3 × (18 − 16.8) = 3.6 → 51.855 → 51.9
    assert p.kind == "supply" and p.station_id == "S1" and p.community == "幸福小区"
    assert p.proposed_c == pytest.approx(51.9) and p.current_c == 45.0 and p.delta_c == pytest.approx(6.9)
    assert p.evidence["curve_supply_c"] == pytest.approx(48.25, abs=0.01)
    assert "幸福小区" in p.reason and "幸福换热站" in p.reason and p.status == "proposed"
    assert p.before_c == pytest.approx(16.8) and p.targets == ("幸福小区",)


def test_shortfall_is_bounded_by_max_step_and_station_max() -> None:
    r = result([stats("幸福小区", 15.0, below=30)])
    [p] = diagnose(r, REG, cfg(), {"S1": StationState(ST, 45.0, None, -9.0)}, {}, NOW)
    assert p.proposed_c == 48.0 and p.evidence["limited_by"] == ["max_step"]
    [p] = diagnose(r, REG, cfg(max_step_c=50.0), {"S1": StationState(ST, 70.0, None, -9.0)}, {}, NOW)
    assert p.proposed_c == 75.0 and "station_max" in p.evidence["limited_by"]


def test_imbalance_gives_balancing_not_hotter_water() -> None:
    r = result(
        [stats("幸福小区", 17.6, below=8)], [hb("H1")],
        [imb("幸福小区", {"1号楼": 20.5, "2号楼": 18.4, "3号楼": 15.9}, cold=("3号楼",), warm=("1号楼",))],
    )
    [p] = diagnose(r, REG, cfg(), {"S1": StationState(ST, 50.0, None, 0.0)}, {}, NOW)
    assert p.kind == "balancing" and p.proposed_c is None
    assert p.evidence["open_valves"] == ["3号楼"] and p.evidence["throttle_valves"] == ["1号楼"]
    assert "3号楼" in p.reason and "1号楼" in p.reason


def test_isolated_cold_homes_in_warm_community_get_home_visits() -> None:
    r = result([stats("幸福小区", 19.4, below=2)], [hb("H1"), hb("H2", mean=15.0)],
               [imb("幸福小区", {"1号楼": 19.5, "3号楼": 19.3})])
    ps = diagnose(r, REG, cfg(), {"S1": StationState(ST, 50.0, None, 0.0)}, {}, NOW)
    assert sorted(p.kind for p in ps) == ["home_visit", "home_visit"]
    by_home = {p.home_id: p for p in ps}
    assert by_home["H2"].current_c == 15.0 and "幸福小区3号楼302" in by_home["H1"].reason


def test_too_warm_lowers_supply() -> None:
    r = result([stats("幸福小区", 23.0)])
    [p] = diagnose(r, REG, cfg(), {"S1": StationState(ST, 55.0, None, 0.0)}, {}, NOW)
    # base = min(curve 48.26, current 55) = 48.26; feedback 3 × (18 − 23) = −15 → bounded to 55 − 3
    assert p.kind == "lower_supply" and p.proposed_c == 52.0 and p.delta_c == -3.0


def test_lower_only_when_every_community_of_the_station_is_warm() -> None:
    r = result([stats("阳光花园", 23.0), stats("Riverside", 20.0)])
    assert diagnose(r, REG, cfg(), {"S2": StationState(ST2, 55.0, None, 0.0)}, {}, NOW) == []


def test_one_setpoint_for_a_station_serving_two_cold_communities_follows_the_coldest() -> None:
    r = result([stats("阳光花园", 17.5), stats("Riverside", 16.5)])
    [p] = diagnose(r, REG, cfg(max_step_c=20.0), {"S2": StationState(ST2, 45.0, None, 0.0)}, {}, NOW)
    assert p.proposed_c == pytest.approx(round(heating_curve(cfg().control.design, 0.0).supply_c + 4.5, 1))
    assert p.targets == ("阳光花园", "Riverside") and p.community == ""


def test_no_evidence_no_prescription() -> None:
    r = result([stats("幸福小区", 15.0, status="insufficient_sample"), stats("阳光花园", None)])
    states = {"S1": StationState(ST, 45.0, None, 0.0), "S2": StationState(ST2, 45.0, None, 0.0)}
    assert diagnose(r, REG, cfg(), states, {}, NOW) == []


def test_pending_recheck_holds_supply_unless_emergency() -> None:
    r = result([stats("幸福小区", 16.8, below=12)])
    state = {"S1": StationState(ST, 45.0, None, 0.0)}
    assert diagnose(r, REG, cfg(), state, {"S1": 17.0}, NOW) == []  # only 0.2 °C worse: wait
    [p] = diagnose(r, REG, cfg(), state, {"S1": 18.0}, NOW)  # 1.2 °C worse than before: emergency
    assert p.kind == "supply" and "emergency" in p.reason


def test_small_changes_are_not_proposed() -> None:
    r = result([stats("幸福小区", 17.9)])
    curve = heating_curve(cfg().control.design, 0.0).supply_c
    assert diagnose(r, REG, cfg(), {"S1": StationState(ST, round(curve, 1), None, 0.0)}, {}, NOW) == []
