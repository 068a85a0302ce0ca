"""Work orders as the standards write them: every 'not warm' is urgent within 2 h (deeper first), an outage past
8 h escalates its open order to a user notice, silence is lost telemetry (never an outage, never a notice),
an ingestion stop is one order, and stale sensors are grouped per community with their buildings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from analytics.results import AnalysisResult, CommunityStats, HomeBelow, SensorFinding
from control.alerts.repo import AlertRepo
from control.alerts.rules import Observation, StationReading, observe_analysis, observe_stations
from control.alerts.tracker import plan
from control.db import open_engine
from control.service import ControlLoop
from heatwatch.core import schema
from heatwatch.core.config import Config, load_config
from heatwatch.core.model import Point
from heatwatch.core.registry import Home, Registry, Station
from heatwatch.core.timeutil import SettableClock, to_ns
from heatwatch.infra.storage.base import StoreUnavailable
from heatwatch.infra.storage.sqlite import SqliteStore

T0 = datetime(2026, 1, 10, 2, 0, tzinfo=UTC)
H = timedelta(hours=1)
ST = Station("S1", "幸福换热站", ("幸福小区",), 35.0, 75.0, "北京")


def homes(n: int) -> dict[str, Home]:
    return {
        f"H{i}": Home(f"H{i}", "幸福小区", f"{i % 4 + 1}号楼", "1", i % 6 + 1, 6, False, "residential", None, "S1",
                      f"幸福小区{i % 4 + 1}号楼{i % 6 + 1}01", "138-0000-0000")
        for i in range(n)
    }


REG = Registry(homes(20), {"S1": ST})


def cfg(**alerts: object) -> Config:
    return load_config(environ={}, overrides={"alerts": dict(alerts)})


def res(below: list[HomeBelow] = (), means: dict[str, float] | None = None, sensors: list[SensorFinding] = (),  # type: ignore[assignment]
        wm: float = 19.0) -> AnalysisResult:
    cs = CommunityStats("幸福小区", 20, 20, 10, 10, 0.5, 0.5, wm, wm, len(below), "ok")
    return AnalysisResult(T0, T0, "Asia/Shanghai", [cs], list(below), list(sensors), [],
                          means if means is not None else {f"H{i}": 19.0 for i in range(20)})


def hb(hid: str, low: float, threshold: float = 18.0) -> HomeBelow:
    return HomeBelow(hid, "幸福小区", "1号楼", "residential", threshold, 4, 3, low + 0.3, low, T0)


class Loop:
    def __init__(self, tmp: Path, c: Config) -> None:
        self.repo = AlertRepo(open_engine(tmp / "c.sqlite"), ["jsonl"])
        self.cfg = c

    def cycle(self, obs: Observation, now: datetime) -> Any:
        p = plan(self.repo.open_alerts(), obs, REG, self.cfg, now)
        self.repo.record(p.opened, [*p.updated, *p.escalated], p.resolved, p.recovering, at=now)
        return p


def both(a: Observation, b: Observation) -> Observation:
    return Observation(a.candidates + b.candidates, {**a.healthy, **b.healthy})


# --- not warm ------------------------------------------------------------------------------------------
def test_every_not_warm_home_is_urgent_within_2_hours_deepest_first(tmp_path: Path) -> None:
    c = cfg()
    p = Loop(tmp_path, c).cycle(observe_analysis(res([hb("H1", 17.6), hb("H2", 14.5), hb("H3", 16.9)]), REG, c), T0)
    assert [o.home_id for o in p.opened] == ["H2", "H3", "H1"]  # 3.5, 1.1 and 0.4 °C under 18
    assert all(o.severity == "urgent" and o.deadline == T0 + 2 * H for o in p.opened)
    assert [o.evidence["deficit_c"] for o in p.opened] == [3.5, 1.1, 0.4]
    assert "within 24 h" in p.opened[0].content  # the room-by-room measurement keeps its own 24 h


# --- station outages -----------------------------------------------------------------------------------
def reading(last: datetime, supply: float | None = 52.0, ret: float | None = 40.0, flow: float | None = 80.0,
            since: datetime | None = None) -> StationReading:
    return StationReading("S1", last, supply, ret, 450.0, 300.0, flow, -3.0, outage_since=since)


def test_an_outage_past_8_hours_escalates_its_open_order(tmp_path: Path) -> None:
    c = cfg()
    loop = Loop(tmp_path, c)
    start = T0 - timedelta(minutes=40)  # no flow since then
    p = loop.cycle(observe_stations({"S1": reading(T0, flow=0.0, since=start)}, REG, c, T0), T0)
    [o] = p.opened
    assert o.category == "station_fault" and not o.notify_users and o.deadline == T0 + H
    assert loop.cycle(observe_stations({"S1": reading(T0 + 4 * H, flow=0.0, since=start)}, REG, c, T0 + 4 * H),
                      T0 + 4 * H).escalated == []
    later = T0 + 8 * H
    p = loop.cycle(observe_stations({"S1": reading(later, flow=0.0, since=start)}, REG, c, later), later)
    assert p.opened == [] and len(p.escalated) == 1
    [esc] = p.escalated
    assert esc.alert_id == o.alert_id and esc.notify_users and esc.severity == "urgent"
    assert "announce to the affected users" in esc.content and esc.deadline == later + H
    [stored] = loop.repo.open_alerts()
    assert stored.order.notify_users
    events = [r["event"] for r in loop.repo.due()]
    assert events == ["open", "update"]  # dispatch hears the escalation
    # escalated once: the next look changes nothing
    nxt = later + H
    assert loop.cycle(observe_stations({"S1": reading(nxt, flow=0.0, since=start)}, REG, c, nxt), nxt).escalated == []


def test_silence_is_lost_telemetry_never_an_outage_or_a_notice() -> None:
    c = cfg()
    obs = observe_stations({"S1": reading(T0 - 9 * H)}, REG, c, T0)
    [cand] = obs.candidates
    assert cand.category == "telemetry_lost" and not cand.notify_users
    assert "9.0 h" in cand.content and "not evidence of a heat outage" in cand.content
    assert obs.healthy.get("station_fault:S1") is None  # unknown: an open outage order neither resolves nor grows


def test_only_measured_evidence_is_a_heat_outage() -> None:
    c = cfg()
    # supply fallen to the return (no heat transferred) and under the curve, for 45 min
    cold = reading(T0, supply=24.0, ret=23.0, since=T0 - timedelta(minutes=45))
    [cand] = observe_stations({"S1": cold}, REG, c, T0).candidates
    assert cand.category == "station_fault" and "heat outage" in cand.content and "0.8 h" in cand.content
    # the same for 10 minutes: not yet an outage (30 min)
    young = reading(T0, supply=24.0, ret=23.0, since=T0 - timedelta(minutes=10))
    assert [x.category for x in observe_stations({"S1": young}, REG, c, T0).candidates] == ["station_fault"]
    assert "heat outage" not in observe_stations({"S1": young}, REG, c, T0).candidates[0].content
    # a station running normally is healthy
    assert observe_stations({"S1": reading(T0)}, REG, c, T0).healthy == {"station_fault:S1": True, "telemetry_lost:S1": True}


def station_points(t0: datetime, t1: datetime, flow: float, supply: float = 52.0) -> list[Point]:
    out, t = [], t0
    while t <= t1:
        out.append(Point(schema.STATION, {"station_id": "S1"}, {"supply_c": supply, "return_c": min(supply, 40.0),
                                                                "supply_kpa": 450.0, "return_kpa": 300.0, "flow_m3h": flow},
                         to_ns(t)))
        t += timedelta(minutes=15)
    return out


def test_the_loop_measures_how_long_the_evidence_has_held(tmp_path: Path) -> None:
    c = load_config(environ={}, overrides={"general": {"data_dir": str(tmp_path / "data")}, "alerts": {"mqtt": False}})
    store = SqliteStore(tmp_path / "s.sqlite")
    store.write(station_points(T0 - 12 * H, T0 - 9 * H, 80.0) + station_points(T0 - 9 * H + timedelta(minutes=15), T0, 0.0))
    loop = ControlLoop(c, Registry(homes(20), {"S1": ST}), store, SettableClock(T0), None,
                       analyze=lambda *a, **k: res())
    try:
        [o] = [a for a in loop.evaluate(res()).opened if a.category == "station_fault"]
        assert o.notify_users and "no flow" in o.content and o.evidence["outage_h"] == pytest.approx(8.75)
    finally:
        loop.shutdown()
        store.close()
    # a station that went silent 9 h ago: lost telemetry, no user notice
    store = SqliteStore(tmp_path / "s2.sqlite")
    store.write(station_points(T0 - 12 * H, T0 - 9 * H, 80.0))
    loop = ControlLoop(c.model_copy(update={"general": c.general.model_copy(update={"data_dir": tmp_path / "d2"})}),
                       Registry(homes(20), {"S1": ST}), store, SettableClock(T0), None, analyze=lambda *a, **k: res())
    try:
        opened = loop.evaluate(res()).opened
        assert [o.category for o in opened] == ["telemetry_lost"] and not any(o.notify_users for o in opened)
    finally:
        loop.shutdown()
        store.close()


# --- no storms -----------------------------------------------------------------------------------------
def stale(hid: str, h: float = 4.0) -> SensorFinding:
    return SensorFinding(hid, "幸福小区", "stale", f"last reading {h:.1f} h ago", h, T0 - h * H)


def test_an_ingestion_stop_is_one_order_not_one_per_home(tmp_path: Path) -> None:
    c = cfg()
    loop = Loop(tmp_path, c)
    silent = res(sensors=[stale(f"H{i}") for i in range(20)], means={})
    stations = observe_stations({"S1": reading(T0 - 4 * H)}, REG, c, T0)
    p = loop.cycle(both(observe_analysis(silent, REG, c), stations), T0)
    [o] = p.opened
    assert o.category == "telemetry_outage" and not o.notify_users and o.severity == "urgent"
    assert "20 of 20" in o.content and o.evidence["silent_homes"] == 20
    # it stays one order while it lasts; when readings flow again it resolves
    assert loop.cycle(both(observe_analysis(silent, REG, c), stations), T0 + H).opened == []
    back = loop.cycle(both(observe_analysis(res(), REG, c), observe_stations({"S1": reading(T0 + 2 * H)}, REG, c, T0 + 2 * H)),
                      T0 + 2 * H)
    assert [r.category for r in back.resolved] == ["telemetry_outage"]


def test_stale_sensors_are_grouped_per_community_with_their_buildings(tmp_path: Path) -> None:
    c = cfg(storm_min_homes=5)
    loop = Loop(tmp_path, c)
    means = {f"H{i}": 19.0 for i in range(6, 20)}
    p = loop.cycle(observe_analysis(res(sensors=[stale(f"H{i}") for i in range(6)], means=means), REG, c), T0)
    [o] = p.opened
    assert o.category == "sensor_stale" and o.homes == tuple(f"H{i}" for i in range(6)) and o.home_id == ""
    assert o.evidence["buildings"] == {"1号楼": ["H0", "H4"], "2号楼": ["H1", "H5"], "3号楼": ["H2"], "4号楼": ["H3"]}
    assert "6 sensors" in o.content and "1号楼: 2" in o.content
    # another goes quiet: the same order grows
    p = loop.cycle(observe_analysis(res(sensors=[stale(f"H{i}") for i in range(7)], means=means), REG, c), T0 + H)
    assert p.opened == [] and [u.homes[-1] for u in p.updated] == ["H6"]
    # few stay single orders
    (tmp_path / "few").mkdir()
    few = Loop(tmp_path / "few", c)
    p = few.cycle(observe_analysis(res(sensors=[stale("H1"), stale("H2")]), REG, c), T0)
    assert sorted(o.home_id for o in p.opened) == ["H1", "H2"]


class DownStore(SqliteStore):
    def query(self, *a: Any, **k: Any) -> Any:
        raise StoreUnavailable("connection refused")


def test_a_store_that_does_not_answer_is_one_telemetry_outage(tmp_path: Path) -> None:
    c = load_config(environ={}, overrides={"general": {"data_dir": str(tmp_path / "data")}, "alerts": {"mqtt": False}})
    store = DownStore(tmp_path / "s.sqlite")
    clock = SettableClock(T0)
    loop = ControlLoop(c, REG, store, clock, None, analyze=lambda *a, **k: res())
    try:
        [o] = loop.watch_store()
        assert o.category == "telemetry_outage" and "connection refused" in o.content
        clock.advance(minutes=15)
        assert loop.watch_store() == []  # one order while it lasts
    finally:
        loop.shutdown()
        store.close()
