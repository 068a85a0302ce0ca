"""The standards as written, through analyze() on a real SqliteStore and on to diagnosis: bad sensors do not
drive the network, the night standard is 16 °C, bungalows and non-residential homes meet their own standard."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from analytics.engine import analyze, result_to_json
from analytics.results import AnalysisResult
from control.alerts.rules import observe_analysis
from control.diagnosis import StationState, diagnose
from heatwatch.core import schema
from heatwatch.core.config import Config, load_config
from heatwatch.core.model import Point
from heatwatch.core.registry import Home, Registry, Station
from heatwatch.core.timeutil import to_ns
from heatwatch.infra.storage.sqlite import SqliteStore

SH = ZoneInfo("Asia/Shanghai")
C = "幸福小区"
ST = Station("S1", "幸福换热站", (C,), 35.0, 75.0)


def local(day: int, h: int, m: int = 0) -> datetime:
    return datetime(2026, 1, day, h, m, tzinfo=SH).astimezone(UTC)


def home(hid: str, floor: int = 3, floors: int = 6, kind: str = "residential", building: str = "1号楼",
         min_temp_c: float | None = None) -> Home:
    return Home(hid, C, building, "1", floor, floors, False, kind, min_temp_c, "S1", f"{C}{building}{hid}")  # type: ignore[arg-type]


def registry(homes: Iterable[Home]) -> Registry:
    return Registry({h.home_id: h for h in homes}, {"S1": ST})


def series(h: Home, start: datetime, end: datetime, temp: Any, every_min: int = 15) -> list[Point]:
    """Readings every ``every_min``; ``temp`` a number or a function of the minutes since ``start``."""
    out, t = [], start
    while t < end:
        v = temp((t - start).total_seconds() / 60) if callable(temp) else temp
        out.append(Point(schema.INDOOR, {"home_id": h.home_id, "community": h.community, "building": h.building,
                                         "source": "sensor"}, {"temp_c": float(v)}, to_ns(t)))
        t += timedelta(minutes=every_min)
    return out


def wobble(base: float) -> Any:
    """A live sensor: never flat for an hour (a flat one is 'stuck')."""
    return lambda minutes: base + (0.1 if int(minutes // 15) % 2 else 0.0)


def cfg(**sections: dict[str, Any]) -> Config:
    return load_config(environ={}, overrides=dict(sections))


@pytest.fixture
def store(tmp_path: Path) -> Iterable[SqliteStore]:
    s = SqliteStore(tmp_path / "hw.sqlite")
    yield s
    s.close()


def run(store: SqliteStore, reg: Registry, start: datetime, end: datetime, c: Config | None = None) -> AnalysisResult:
    return analyze(store, reg, c or cfg(), start, end, now=end)


def supply_proposals(r: AnalysisResult, reg: Registry, c: Config, pending: dict[str, float | None] | None = None) -> list[Any]:
    state = {"S1": StationState(ST, 50.0, 42.0, -5.0)}
    return [p for p in diagnose(r, reg, c, state, pending or {}, local(10, 12)) if p.kind in ("supply", "lower_supply")]


# --- bad sensors ---------------------------------------------------------------------------------------
def ten_homes(edge: int) -> list[Home]:
    """``edge`` top-floor homes and 10 - edge middle homes."""
    return [home(f"E{i}", floor=6) for i in range(edge)] + [home(f"M{i}", floor=3) for i in range(10 - edge)]


def test_one_edge_sensor_at_minus_30_in_a_community_of_ten_gives_no_supply_proposal(store: SqliteStore) -> None:
    """Its only edge home: an implausible sensor, left out; one edge home would have carried 40 % alone."""
    homes = ten_homes(1)
    pts = []
    for h in homes[1:]:
        pts += series(h, local(10, 6), local(10, 12), wobble(20.0))
    pts += series(homes[0], local(10, 6), local(10, 12), lambda m: -30.0 + (0.1 if int(m // 15) % 2 else 0.0))
    store.write(pts)
    reg = registry(homes)
    c = cfg()
    r = run(store, reg, local(10, 6), local(10, 12))
    [cs] = r.communities
    assert cs.homes_excluded == 1 and cs.edge_homes == 0 and cs.weighted_mean_c is None
    assert cs.status == "insufficient_sample"
    assert [(f.home_id, f.finding) for f in r.sensors] == [("E0", "implausible")]
    assert "E0" not in {h.home_id for h in r.homes_below_standard}  # a bad sensor is not a cold home
    assert supply_proposals(r, reg, c) == []
    doc = result_to_json(r, SH)["communities"][0]
    assert doc["homes_excluded"] == 1


def test_a_bad_edge_sensor_among_four_is_left_out_of_the_weighted_mean(store: SqliteStore) -> None:
    homes = ten_homes(4)
    pts = []
    for h in homes[1:]:
        pts += series(h, local(10, 6), local(10, 12), wobble(19.0 if h.home_id.startswith("E") else 20.0))
    pts += series(homes[0], local(10, 6), local(10, 12), lambda m: -30.0 + m / 1000)
    store.write(pts)
    reg = registry(homes)
    r = run(store, reg, local(10, 6), local(10, 12))
    [cs] = r.communities
    # 3 edge homes at 19.05, 6 middle at 20.05: s = 3/9 < 0.4 → 0.4 × 19.05 + 0.6 × 20.05 = 19.65
    assert cs.homes_excluded == 1 and cs.edge_homes == 3 and cs.middle_homes == 6
    assert cs.weighted_mean_c == pytest.approx(0.4 * 19.05 + 0.6 * 20.05) and cs.status == "ok"
    assert supply_proposals(r, reg, cfg()) == []


def test_the_emergency_path_does_not_follow_a_bad_sensor_down(store: SqliteStore) -> None:
    """A change is awaiting its recheck (mean 18.0 before it). The edge sensor then falls further every cycle:
    it is implausible, excluded, and no emergency proposal follows it down."""
    homes = ten_homes(4)
    pts = []
    for h in homes[1:]:
        pts += series(h, local(10, 0), local(11, 0), wobble(18.3))
    pts += series(homes[0], local(10, 0), local(11, 0), lambda m: 18.0 - m / 30)  # 2 °C an hour, down to −30
    store.write(pts)
    reg = registry(homes)
    c = cfg()
    for end_h in range(12, 24, 3):
        r = analyze(store, reg, c, local(10, end_h - 6), local(10, end_h), now=local(10, end_h))
        assert supply_proposals(r, reg, c, pending={"S1": 18.0}) == [], end_h


@pytest.mark.parametrize(("finding", "temp"), [
    ("stuck", lambda m: 12.0),
    ("jump", lambda m: 19.0 if int(m // 60) % 2 else 11.0),
    ("warm", lambda m: 31.0 + (0.1 if int(m // 15) % 2 else 0.0)),
])
def test_stuck_jumping_and_warm_sensors_are_left_out_and_counted(store: SqliteStore, finding: str, temp: Any) -> None:
    homes = ten_homes(5)
    pts = []
    for h in homes[1:]:
        pts += series(h, local(10, 6), local(10, 14), wobble(19.0))
    pts += series(homes[0], local(10, 6), local(10, 14), temp)
    store.write(pts)
    r = run(store, registry(homes), local(10, 6), local(10, 14))
    [cs] = r.communities
    assert finding in {f.finding for f in r.sensors if f.home_id == "E0"}
    assert cs.homes_excluded == 1 and cs.edge_homes == 4 and cs.homes_reporting == 9
    assert cs.weighted_mean_c == pytest.approx(19.05) and cs.homes_below_standard == 0
    assert r.homes_below_standard == [] and cs.status == "ok"


# --- night ---------------------------------------------------------------------------------------------
def test_a_night_window_at_17_is_not_cold_and_raises_nothing(store: SqliteStore) -> None:
    """21:00–06:00 the standard is 16 °C: a 6-hour night window with a 17 °C weighted mean is fine."""
    homes = ten_homes(4)
    pts = []
    for h in homes:
        pts += series(h, local(10, 21), local(11, 3), wobble(17.0))
    store.write(pts)
    reg = registry(homes)
    c = cfg()
    r = run(store, reg, local(10, 21), local(11, 3))
    [cs] = r.communities
    assert cs.weighted_mean_c == pytest.approx(17.05) and cs.target_c == pytest.approx(16.0)
    assert cs.status == "ok" and cs.homes_below_standard == 0
    assert supply_proposals(r, reg, c) == []
    obs = observe_analysis(r, reg, c)
    assert [x for x in obs.candidates if x.category == "community_cold"] == []
    # the same homes at 17 °C by day are cold: 18 °C applies from 06:00
    store.write([p for h in homes for p in series(h, local(11, 6), local(11, 12), wobble(17.0))])
    r = run(store, reg, local(11, 6), local(11, 12))
    assert r.communities[0].status == "cold" and r.communities[0].target_c == pytest.approx(18.0)
    [p] = supply_proposals(r, reg, c)
    assert p.kind == "supply"


def test_a_window_across_21_00_has_the_target_of_its_hours(store: SqliteStore) -> None:
    """18:00–24:00: three day hours at 18 and three night hours at 16 — a 17.2 °C community mean is fine by
    mean, but its homes were under 18 °C for three day hours, so the community is cold by its share."""
    homes = ten_homes(4)
    store.write([p for h in homes for p in series(h, local(10, 18), local(11, 0), wobble(17.2))])
    r = run(store, registry(homes), local(10, 18), local(11, 0))
    [cs] = r.communities
    assert cs.target_c == pytest.approx(17.0) and cs.weighted_mean_c is not None and cs.weighted_mean_c >= 17.0
    assert cs.homes_below_standard == 10 and cs.status == "cold"


# --- bungalows and non-residential ---------------------------------------------------------------------
def test_bungalows_meet_their_own_standard_and_do_not_fill_the_edge_quota(store: SqliteStore) -> None:
    flats = ten_homes(2)  # 2 edge flats at 17.55, 8 middle at 18.55
    bungalows = [home(f"B{i}", floor=1, floors=1, kind="bungalow", building="平房区") for i in range(6)]
    shop = home("N1", floor=1, floors=1, kind="non_residential", building="配套用房", min_temp_c=14.0)
    pts = []
    for h in flats:
        pts += series(h, local(10, 8), local(10, 14), wobble(17.5 if h.home_id.startswith("E") else 18.5))
    for b in bungalows:
        pts += series(b, local(10, 8), local(10, 14), wobble(16.5))
    pts += series(shop, local(10, 8), local(10, 14), wobble(15.0))
    store.write(pts)
    reg = registry([*flats, *bungalows, shop])
    c = cfg()
    r = run(store, reg, local(10, 8), local(10, 14))
    [cs] = r.communities
    # only the flats: e = 2, m = 8 → 0.4 × 17.55 + 0.6 × 18.55 = 18.15 (with the bungalows and the shop
    # counted as edge homes, the plain mean of all 17 was 17.52: cold)
    assert (cs.edge_homes, cs.middle_homes) == (2, 8)
    assert cs.weighted_mean_c == pytest.approx(0.4 * 17.55 + 0.6 * 18.55) and cs.status == "ok"
    assert cs.bungalows is not None and cs.bungalows.homes_reporting == 6 and cs.bungalows.mean_c == pytest.approx(16.55)
    assert cs.bungalows.homes_below_standard == 0
    assert cs.non_residential is not None and cs.non_residential.homes_reporting == 1
    assert cs.homes_reporting == 17 and cs.homes_below_standard == 2  # the two edge flats under 18 °C
    assert supply_proposals(r, reg, c) == []
    doc = result_to_json(r, SH)["communities"][0]
    assert doc["bungalows"] == {"homes_reporting": 6, "mean_c": 16.55, "homes_below_standard": 0}


def test_a_community_of_bungalows_at_their_standard_is_not_cold(store: SqliteStore) -> None:
    bungalows = [home(f"B{i}", floor=1, floors=1, kind="bungalow", building="平房区") for i in range(8)]
    store.write([p for b in bungalows for p in series(b, local(10, 8), local(10, 14), wobble(16.5))])
    reg = registry(bungalows)
    c = cfg()
    r = run(store, reg, local(10, 8), local(10, 14))
    [cs] = r.communities
    assert cs.status == "ok" and cs.weighted_mean_c is None and cs.edge_homes == 0
    assert cs.bungalows is not None and cs.bungalows.mean_c == pytest.approx(16.55)
    assert supply_proposals(r, reg, c) == []
    assert [x for x in observe_analysis(r, reg, c).candidates if x.category == "community_cold"] == []
    # at 15.5 °C they are under their own 16 °C: cold by their share, each one a cold home
    store.write([p for b in bungalows for p in series(b, local(11, 8), local(11, 14), wobble(15.5))])
    r = run(store, reg, local(11, 8), local(11, 14))
    assert r.communities[0].status == "cold" and len(r.homes_below_standard) == 8
