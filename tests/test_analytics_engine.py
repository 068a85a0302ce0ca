"""analyze() end to end on a real SqliteStore: hourly means pushed down, local-time boundaries, kinds,
a chatty sensor, sensor health, imbalance, JSON contract and idempotent write-back."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from analytics.engine import analyze, analyze_partition, default_window, merge, partitions, result_to_json, write_results
from analytics.results import AnalysisResult
from heatwatch.core import schema
from heatwatch.core.config import Config, load_config
from heatwatch.core.model import Point
from heatwatch.core.registry import Home, Registry
from heatwatch.core.timeutil import to_ns
from heatwatch.infra.storage.base import Store, StoreUnavailable
from heatwatch.infra.storage.sqlite import SqliteStore

SH = ZoneInfo("Asia/Shanghai")
C1 = "幸福小区"
C2 = "阳光花园"


def local(day: int, h: int, m: int = 0) -> datetime:
    """2026-01-<day> h:m in Asia/Shanghai, as UTC."""
    return datetime(2026, 1, day, h, m, tzinfo=SH).astimezone(UTC)


def home(hid: str, community: str = C1, building: str = "1号楼", floor: int = 3, floors: int = 6, gable: bool = False,
         kind: str = "residential", min_temp_c: float | None = None, entrance: str = "1") -> Home:
    return Home(hid, community, building, entrance, floor, floors, gable, kind, min_temp_c, "S1")  # type: ignore[arg-type]


def registry(homes: Iterable[Home]) -> Registry:
    return Registry({h.home_id: h for h in homes}, {})


def reading(h: Home, t: datetime, temp: float, source: str = "sensor") -> Point:
    return Point(schema.INDOOR, {"home_id": h.home_id, "community": h.community, "building": h.building, "source": source},
                 {"temp_c": temp}, to_ns(t))


def steady(h: Home, start: datetime, end: datetime, temp: float, every_min: int = 15) -> list[Point]:
    out, t = [], start
    while t < end:
        out.append(reading(h, t, temp))
        t += timedelta(minutes=every_min)
    return out


def cfg(**analytics: Any) -> Config:
    return load_config(environ={}, overrides={"analytics": analytics} if analytics else None)


@pytest.fixture
def store(tmp_path: Path) -> Iterable[SqliteStore]:
    s = SqliteStore(tmp_path / "hw.sqlite")
    yield s
    s.close()


def run(store: Store, reg: Registry, start: datetime, end: datetime, c: Config | None = None, **kw: Any) -> AnalysisResult:
    return analyze(store, reg, c or cfg(), start, end, now=kw.pop("now", end), **kw)


def test_05_59_is_night_and_06_00_is_day_in_local_time(store: SqliteStore) -> None:
    a = home("A")
    store.write([reading(a, local(10, 5, 0), 17.0), reading(a, local(10, 5, 59), 17.0),
                 reading(a, local(10, 6, 0), 17.0), reading(a, local(10, 6, 30), 17.0), reading(a, local(10, 7, 10), 17.0)])
    r = run(store, registry([a]), local(10, 4), local(10, 8))
    [hb] = r.homes_below_standard
    # hour 05 (05:00, 05:59) is judged against 16 °C: not under; hours 06 and 07 against 18 °C
    assert hb.hours_below == 2 and hb.longest_run_h == 2 and hb.rule == "residential_day" and hb.threshold_c == 18.0
    assert hb.first_below == local(10, 6)
    assert hb.mean_c == pytest.approx(17.0) and hb.min_hourly_c == pytest.approx(17.0)


def test_20_59_is_day_and_21_00_is_night(store: SqliteStore) -> None:
    b = home("B")
    store.write([reading(b, local(10, 19, 30), 17.0), reading(b, local(10, 20, 59), 17.0),
                 reading(b, local(10, 21, 0), 17.0), reading(b, local(10, 21, 30), 17.0)])
    r = run(store, registry([b]), local(10, 19), local(10, 23))
    [hb] = r.homes_below_standard
    assert hb.hours_below == 2 and hb.first_below == local(10, 19) and hb.rule == "residential_day"
    # one hour under is not below standard: 20:59 alone
    store.write([reading(b, local(11, 20, 59), 17.0), reading(b, local(11, 21, 0), 17.0)])
    r2 = run(store, registry([b]), local(11, 19), local(11, 23))
    assert r2.homes_below_standard == [] and r2.homes is not None and int(r2.homes["hours_below"].iloc[0]) == 1


def test_the_same_readings_in_another_timezone_shift_the_day(store: SqliteStore) -> None:
    a = home("A")
    store.write([reading(a, local(10, 5, 10), 17.0), reading(a, local(10, 5, 40), 17.0)])  # 21:10/21:40 UTC
    utc_cfg = load_config(environ={}, overrides={"general": {"timezone": "UTC"}})
    assert run(store, registry([a]), local(10, 4), local(10, 6), utc_cfg).homes_below_standard == []  # 21:xx UTC is night
    lon = load_config(environ={}, overrides={"general": {"timezone": "America/New_York"}})  # 16:10 local: day
    assert [h.home_id for h in run(store, registry([a]), local(10, 4), local(10, 6), lon).homes_below_standard] == []
    store.write([reading(a, local(10, 6, 10), 17.0)])  # hour 06 Shanghai: day
    assert [h.home_id for h in run(store, registry([a]), local(10, 4), local(10, 7)).homes_below_standard] == []
    store.write([reading(a, local(10, 7, 10), 17.0)])
    assert [h.home_id for h in run(store, registry([a]), local(10, 4), local(10, 8)).homes_below_standard] == ["A"]


def test_bungalow_and_contract_homes(store: SqliteStore) -> None:
    bung = home("BG", kind="bungalow", floor=1, floors=1)
    shop = home("SHOP", kind="non_residential", min_temp_c=20.0)
    store.write(steady(bung, local(10, 8), local(10, 12), 16.5) + steady(shop, local(10, 8), local(10, 12), 19.0))
    r = run(store, registry([bung, shop]), local(10, 8), local(10, 12))
    assert [(h.home_id, h.rule, h.threshold_c, h.hours_below) for h in r.homes_below_standard] == [("SHOP", "contract", 20.0, 4)]
    store.write(steady(bung, local(10, 22), local(11, 2), 15.9))  # bungalow: 16 °C at night too
    r2 = run(store, registry([bung, shop]), local(10, 22), local(11, 2))
    assert [(h.home_id, h.rule, h.threshold_c) for h in r2.homes_below_standard] == [("BG", "bungalow", 16.0)]


def test_a_chatty_sensor_does_not_outweigh_a_quiet_one(store: SqliteStore) -> None:
    chatty = home("CH")
    # hour 08: 60 readings at 10 °C; hour 09: one reading at 20 °C → window temperature 15, not ≈ 10.2
    pts = [reading(chatty, local(10, 8) + timedelta(seconds=59 * i), 10.0) for i in range(60)]
    pts.append(reading(chatty, local(10, 9, 30), 20.0))
    store.write(pts)
    r = run(store, registry([chatty]), local(10, 8), local(10, 10))
    assert r.home_means_c["CH"] == pytest.approx(15.0)


def community_homes() -> list[Home]:
    # 幸福小区: 1 edge (top floor) + 4 middle → s = 0.2, so the edge home weighs 0.40
    return [home("E1", floor=6), *(home(f"M{i}", building="2号楼" if i > 2 else "1号楼") for i in range(1, 5))]


def test_weighted_mean_and_imbalance_through_the_store(store: SqliteStore) -> None:
    hs = community_homes()
    temps = {"E1": 14.0, "M1": 19.0, "M2": 19.0, "M3": 21.0, "M4": 21.0}
    for h in hs:
        store.write(steady(h, local(10, 8), local(10, 12), temps[h.home_id]))
    silent = home("SILENT", floor=1)
    r = run(store, registry([*hs, silent]), local(10, 8), local(10, 12), cfg(edge_min_homes=1))  # one edge home
    [c] = r.communities
    assert (c.homes_registered, c.homes_reporting, c.edge_homes, c.middle_homes) == (6, 5, 1, 4)
    assert c.weighted_mean_c == pytest.approx(0.4 * 14 + 0.6 * 20) and c.plain_mean_c == pytest.approx(94 / 5)
    assert c.edge_weight == pytest.approx(0.4) and c.homes_below_standard == 1 and c.status == "cold"
    [imb] = r.imbalance
    # 1号楼: E1 14, M1 19, M2 19 → 17.33; 2号楼: 21, 21
    assert imb.building_means_c == pytest.approx({"1号楼": 52 / 3, "2号楼": 21.0})
    assert imb.building_spread_c == pytest.approx(21 - 52 / 3)
    assert imb.cold_buildings == ("1号楼",) and imb.warm_buildings == ("2号楼",)  # 21 > 18 + 2
    assert imb.edge_middle_gap_c == pytest.approx(20.0 - 14.0)
    assert [f.home_id for f in r.sensors if f.finding == "no_sensor"] == ["SILENT"]


def test_bungalows_at_their_own_standard_are_not_a_cold_building(store: SqliteStore) -> None:
    """Imbalance judges each home against its own standard: 16.5 °C bungalows (16 °C) are fine."""
    flats = [home(f"F{i}", building="1号楼") for i in range(3)]
    bungalows = [home(f"B{i}", building="平房区", kind="bungalow", floor=1, floors=1) for i in range(3)]
    shop = home("SHOP", building="配套用房", kind="non_residential", min_temp_c=14.0)
    for h in flats:
        store.write(steady(h, local(10, 8), local(10, 12), 19.0))
    for h in bungalows:
        store.write(steady(h, local(10, 8), local(10, 12), 16.5))
    store.write(steady(shop, local(10, 8), local(10, 12), 15.0))
    r = run(store, registry([*flats, *bungalows, shop]), local(10, 8), local(10, 12))
    [imb] = r.imbalance
    assert imb.building_means_c == pytest.approx({"1号楼": 19.0, "平房区": 16.5, "配套用房": 15.0})  # shown as measured
    # relative to their standards: flats +1.0, bungalows +0.5, shop +1.0 → nobody cold, nobody warm
    assert imb.cold_buildings == () and imb.warm_buildings == ()
    assert imb.building_spread_c == pytest.approx(0.5)


def test_community_filter_and_unknown_community(store: SqliteStore) -> None:
    a, b = home("A"), home("B", community=C2)
    store.write(steady(a, local(10, 8), local(10, 10), 19.0) + steady(b, local(10, 8), local(10, 10), 19.0))
    r = run(store, registry([a, b]), local(10, 8), local(10, 10), community=C2)
    assert [c.community for c in r.communities] == [C2] and set(r.home_means_c) == {"B"}
    with pytest.raises(ValueError, match="not in the registry"):
        run(store, registry([a, b]), local(10, 8), local(10, 10), community="不存在")
    with pytest.raises(ValueError, match="not before"):
        run(store, registry([a]), local(10, 10), local(10, 8))


def test_sensor_health_findings(store: SqliteStore) -> None:
    stale, stuck, jumpy, warm, manual_only = home("STALE"), home("STUCK"), home("JUMP"), home("WARM"), home("MANUAL")
    start, end = local(10, 6), local(10, 14)
    pts = steady(stale, start, local(10, 9), 15.0)  # cold, then silent for 5 h before the window end
    pts += steady(stuck, start, end, 19.3)  # 8 flat hours at one value
    pts += [reading(jumpy, local(10, 8, m), 19.0 + (0.1 * m) % 1) for m in range(0, 60, 15)]
    pts += [reading(jumpy, local(10, 9, 0), 19.0), reading(jumpy, local(10, 9, 20), 28.0), reading(jumpy, local(10, 10, 0), 19.5)]
    pts += steady(warm, start, end, 30.5)
    pts += [reading(manual_only, local(10, 10), 17.0, source="manual")]
    store.write(pts)
    r = run(store, registry([stale, stuck, jumpy, warm, manual_only]), start, end)
    found = {(f.home_id, f.finding) for f in r.sensors}
    assert ("STALE", "stale") in found and ("STUCK", "stuck") in found and ("JUMP", "jump") in found
    assert ("WARM", "warm") in found and ("MANUAL", "no_sensor") in found
    assert ("WARM", "stuck") in found  # a constant 30.5 °C is flat too
    assert ("JUMP", "stuck") not in found and ("STUCK", "stale") not in found and ("STUCK", "jump") not in found
    st = next(f for f in r.sensors if f.finding == "stale" and f.home_id == "STALE")
    assert st.value == pytest.approx(5.25) and st.since == local(10, 8, 45)
    sk = next(f for f in r.sensors if f.home_id == "STUCK" and f.finding == "stuck")
    assert sk.value == 8 and sk.since == start
    jp = next(f for f in r.sensors if f.finding == "jump")
    assert jp.value == pytest.approx(9.0) and jp.since == local(10, 9)
    # the stale home's real cold readings (06–09) count; the silent hours do not make it colder or longer
    hb = {h.home_id: h for h in r.homes_below_standard}
    assert hb["STALE"].hours_below == 3 and hb["STALE"].longest_run_h == 3
    # within the stuck threshold: not stuck
    r2 = run(store, registry([stuck]), start, end, cfg(stuck_after_h=9))
    assert not [f for f in r2.sensors if f.finding == "stuck"]


def test_stale_sensor_alone_is_never_a_cold_home(store: SqliteStore) -> None:
    hs = community_homes()
    for h in hs:
        store.write(steady(h, local(10, 0), local(10, 5), 20.0))  # all stop reporting at 05:00
    r = run(store, registry(hs), local(10, 6), local(10, 21), now=local(10, 21))
    assert r.homes_below_standard == [] and r.communities[0].homes_reporting == 0
    assert r.communities[0].status == "insufficient_sample" and r.communities[0].weighted_mean_c is None
    assert sorted(f.home_id for f in r.sensors if f.finding == "stale") == sorted(h.home_id for h in hs)


def test_manual_readings_count_like_sensor_readings(store: SqliteStore) -> None:
    a = home("A")
    store.write([reading(a, local(10, 8, 10), 16.0, source="manual"), reading(a, local(10, 9, 10), 16.0, source="manual")])
    r = run(store, registry([a]), local(10, 8), local(10, 10))
    assert [h.home_id for h in r.homes_below_standard] == ["A"]


def test_json_contract_and_idempotent_write_back(store: SqliteStore) -> None:
    hs = community_homes()
    temps = {"E1": 14.123, "M1": 19.0, "M2": 19.0, "M3": 21.0, "M4": 21.0}
    for h in hs:
        store.write(steady(h, local(10, 8), local(10, 12), temps[h.home_id]))
    r = run(store, registry(hs), local(10, 8), local(10, 12), cfg(edge_min_homes=1))
    doc = result_to_json(r, SH)
    text = json.dumps(doc, ensure_ascii=False)
    assert "幸福小区" in text
    assert set(doc) == {"window", "communities", "homes_below_standard", "sensors", "imbalance"}
    assert doc["window"] == {"from": "2026-01-10T08:00:00+08:00", "to": "2026-01-10T12:00:00+08:00", "timezone": "Asia/Shanghai"}
    assert set(doc["communities"][0]) == {
        "community", "homes_registered", "homes_reporting", "edge_homes", "middle_homes", "edge_share", "edge_weight",
        "weighted_mean_c", "plain_mean_c", "homes_below_standard", "status", "target_c", "homes_excluded", "bungalows",
        "non_residential"}
    assert doc["communities"][0]["weighted_mean_c"] == round(0.4 * 14.123 + 12.0, 2)
    [hb] = doc["homes_below_standard"]
    assert set(hb) == {"home_id", "community", "building", "rule", "threshold_c", "hours_below", "longest_run_h", "mean_c",
                       "min_hourly_c", "first_below"}
    assert hb["mean_c"] == 14.12 and hb["first_below"] == "2026-01-10T08:00:00+08:00"

    n = write_results(store, r)
    write_results(store, r)  # same window end → same timestamps → overwritten, not duplicated
    assert n == len(hs) + 1 + 1 + len(r.sensors)  # home_status × 5, community_stats, imbalance
    got = store.query(schema.COMMUNITY_STATS, local(10, 11), local(10, 13))
    assert len(got) == 1 and got["status"].iloc[0] == "cold" and got["community"].iloc[0] == C1
    assert got["time"].iloc[0] == local(10, 12)
    hs_rows = store.query(schema.HOME_STATUS, local(10, 11), local(10, 13))
    assert len(hs_rows) == 5 and sorted(hs_rows[hs_rows["below"] == 1]["home_id"]) == ["E1"]
    assert store.count(schema.IMBALANCE, local(10, 11), local(10, 13)) == 1


def test_default_window_is_today_06_to_21_local() -> None:
    def clock() -> datetime:
        return datetime(2026, 1, 10, 17, 30, tzinfo=UTC)  # 01:30 on the 11th in Shanghai

    assert default_window(cfg(), clock) == (local(11, 6), local(11, 21))


# --- partitions: a city analysed community by community gives the one-pass result -------------------------
def _city(n_communities: int = 7) -> tuple[list[Home], list[Point]]:
    """Communities of different sizes and troubles: cold edge homes, a manual visit, a sensor silent for
    two days (found only in the long lookback), one never heard of, a stuck one, a jump, bungalows."""
    hs: list[Home] = []
    pts: list[Point] = []
    for c in range(n_communities):
        comm = f"小区{c}" if c % 2 else f"Estate {c}"
        for i in range(3 + 2 * c):
            kind = "bungalow" if (c == 3 and i < 2) else "residential"
            h = home(f"{comm}-{i:02d}", community=comm, building=f"{i % 3 + 1}号楼", floor=i % 6 + 1, gable=i % 5 == 0,
                     kind=kind, entrance=str(i % 2 + 1))
            hs.append(h)
            if i == 2:
                continue  # no sensor reading at all: no_sensor
            if i == 1:
                pts += steady(h, local(8, 6), local(8, 12), 19.0)  # silent since two days: stale, last found late
                continue
            base = 15.5 if i % 4 == 0 else 19.0 + 0.1 * c + 0.05 * i
            pts += [reading(h, local(10, 4) + timedelta(minutes=17 * k), base + (0.3 if k % 2 else -0.3) * (i != 3))
                    for k in range(60)]
            if i == 4:
                pts.append(reading(h, local(10, 9, 5), 28.0))  # a jump inside an hour
            if i == 5:
                pts.append(reading(h, local(10, 10, 30), 16.0, source="manual"))
    return hs, pts


def _whole(r: AnalysisResult) -> tuple[Any, ...]:
    assert r.homes is not None
    return (result_to_json(r, SH), r.home_means_c, r.homes.to_dict("list"))


@pytest.mark.parametrize("workers", [1, 3])
def test_partitions_give_the_one_pass_result(store: SqliteStore, workers: int, monkeypatch: pytest.MonkeyPatch) -> None:
    hs, pts = _city()
    store.write(pts)
    reg = registry(hs)
    start, end = local(10, 5), local(10, 21)
    whole = analyze(store, reg, cfg(), start, end, now=end, partition_cells=10**9, workers=1)
    doc = result_to_json(whole, SH)
    found = {(f["home_id"], f["finding"]) for f in doc["sensors"]}
    assert ("小区1-01", "stale") in found and ("小区1-02", "no_sensor") in found and ("Estate 4-04", "jump") in found
    assert doc["homes_below_standard"] and len(doc["communities"]) == 7
    for cells in (1, 16 * 7, 16 * 12):  # one community per partition; a few; several communities each
        parts = analyze(store, reg, cfg(), start, end, now=end, partition_cells=cells, workers=workers)
        assert _whole(parts) == _whole(whole), cells
    # the homes missing from the recent span looked up without the id list (many of them) find the same readings
    monkeypatch.setattr("analytics.engine.LAST_BY_ID_MAX", 0)
    assert _whole(analyze(store, reg, cfg(), start, end, now=end, partition_cells=1, workers=workers)) == _whole(whole)


def test_partitions_keep_communities_whole() -> None:
    hs, _ = _city(4)
    frame = registry(hs).frame().reset_index().sort_values(["community", "home_id"])
    # sizes 3, 7, 5, 9: 3 + 7 fit in 10, 5 + 9 do not; a community larger than the bound is a partition of its own
    assert partitions(frame, 10) == [["Estate 0", "Estate 2"], ["小区1"], ["小区3"]]
    assert partitions(frame, 4) == [["Estate 0"], ["Estate 2"], ["小区1"], ["小区3"]]
    assert partitions(frame, 100) == [["Estate 0", "Estate 2", "小区1", "小区3"]]
    assert partitions(frame.iloc[:0], 8) == []


def test_a_read_that_fails_fails_the_analysis(store: SqliteStore) -> None:
    hs, pts = _city(4)
    store.write(pts)
    calls: list[object] = []

    class Failing(SqliteStore):
        def _hourly(self, *args: Any, **kw: Any) -> Any:
            calls.append(args)
            if len(calls) == 3:
                raise StoreUnavailable("influxd went away")
            return super()._hourly(*args, **kw)

    failing = Failing(store.path)
    with pytest.raises(StoreUnavailable, match="went away"):
        analyze(failing, registry(hs), cfg(), local(10, 5), local(10, 21), now=local(10, 21), partition_cells=1, workers=2)
    failing.close()


def test_partitions_analysed_apart_and_merged_are_the_analysis(store: SqliteStore) -> None:
    """What a distributed run does (docs/SCALING.md): each worker opens its own store and analyses its partition;
    the client merges the results in partition order."""
    hs, pts = _city()
    store.write(pts)
    reg = registry(hs)
    start, end = local(10, 5), local(10, 21)
    whole = analyze(store, reg, cfg(), start, end, now=end)
    frame = reg.frame().reset_index().sort_values(["community", "home_id"])
    results = []
    for comms in reversed(partitions(frame, 16)):  # in any order, each with a store of its own
        with SqliteStore(store.path) as own:
            results.append((comms, analyze_partition(own, reg, cfg(), start, end, comms, end)))
    merged = merge([r for _, r in sorted(results, key=lambda x: x[0])], cfg(), start, end)
    assert _whole(merged) == _whole(whole)
