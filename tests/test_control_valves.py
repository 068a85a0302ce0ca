"""Inter-home balancing (control/valves.py): the home valves of the warm classes of homes are throttled toward the
station's cold ones, never under the standard, bounded and rate-limited; a crew sets them; the recheck asks whether a
throttled home went cold; the model reads the homes' response from the hours after the valves were set."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics.results import AnalysisResult, HomeBelow
from control import valves
from control.outcome import judge
from heatwatch.core.config import Config, ControlSettings, StationDesign, load_config
from heatwatch.core.registry import Home, Registry, Station

NOW = datetime(2026, 1, 10, 4, 0, tzinfo=UTC)
ST = Station("S1", "幸福换热站", ("幸福小区", "和平新村"), 35.0, 80.0, "北京")


def cfg(**control: object) -> Config:
    return load_config(environ={}, overrides={"control": control})


def test_the_radiator_curve_gives_the_flow_back() -> None:
    ntu = valves.design_ntu(StationDesign())
    assert ntu == pytest.approx(-np.log(1 - 15 / 42))  # 60/45 over 18 °C
    now = np.array([1.0, 0.6, 0.35])
    ratio = np.array([0.8, 0.9, 1.2])
    got = valves.flow_for(ratio, now, ntu, 0.05, hi=4.0)
    assert valves.conductance(got, ntu) == pytest.approx(ratio * valves.conductance(now, ntu), rel=1e-6)
    # output falls slower than flow (the radiator cools the water more when it flows slower): 80 % output < 60 % flow
    assert got[0] < 0.65


def advise(means: dict[str, float], flows: dict[str, float] | None = None, **c: float) -> dict[str, valves.ValveClass]:
    classes = [valves.Measured(("幸福小区", "1号楼", loc), (f"h-{loc}-1", f"h-{loc}-2"), m) for loc, m in means.items()]
    ref, out = valves.advise(classes, {("幸福小区", "1号楼", k): v for k, v in (flows or {}).items()}, 55.0, -2.0,
                             18.0, ControlSettings(**c), StationDesign())
    advise.ref = ref  # type: ignore[attr-defined]
    return {v.location: v for v in out}


def test_the_warm_middle_homes_are_throttled_and_the_coldest_class_stays_open() -> None:
    got = advise({"top": 19.2, "gable": 19.9, "middle": 20.8})
    assert advise.ref == 19.2  # type: ignore[attr-defined]  # the coldest class, over the standard + margin (19)
    assert got["top"].flow == 1.0 and not got["top"].changed
    assert got["middle"].flow < got["gable"].flow < 1.0  # the warmer, the more


def test_never_throttled_toward_a_class_under_the_standard() -> None:
    """A class short of flow (a far building: 16.5 °C) is a balancing job; the others go to the standard + margin,
    not down to it."""
    got = advise({"top": 16.5, "middle": 20.8})
    assert advise.ref == 19.0  # type: ignore[attr-defined]
    assert got["top"].flow == 1.0
    lone = advise({"middle": 20.8, "top": 19.0})["middle"].flow
    assert got["middle"].flow == pytest.approx(lone, abs=0.02)  # the cold class did not scale the warm one down


def test_bounded_and_rate_limited() -> None:
    got = advise({"top": 19.0, "middle": 26.0}, {"middle": 0.5}, valve_max_cut=0.3, valve_min_flow=0.2)
    assert got["middle"].flow == pytest.approx(0.35)  # at most 30 % of its flow in one round
    got = advise({"top": 19.0, "middle": 26.0}, {"middle": 0.25}, valve_max_cut=0.9, valve_min_flow=0.2,
                 valve_min_change=0.01)
    assert got["middle"].flow == 0.2  # never under the minimum
    small = advise({"top": 19.0, "middle": 19.6}, valve_min_change=0.5)
    assert not small["middle"].changed  # smaller changes are not advised
    calm = advise({"top": 19.0, "middle": 19.4})
    assert not calm["middle"].changed  # inside the deadband


def test_a_throttled_class_that_ran_cold_is_opened_and_the_station_is_anchored() -> None:
    """Every class was throttled and the coldest now runs at the reference: the most-needing class opens fully (the
    rounds never walk a whole station shut while its supply climbs), and a throttled class under it opens too."""
    got = advise({"top": 19.0, "gable": 19.1, "middle": 18.2}, {"top": 0.6, "gable": 0.6, "middle": 0.4})
    assert got["top"].flow == 1.0  # at the reference and needing most: the anchor
    assert 0.9 < got["gable"].flow < 1.0  # a little warmer: scaled with it, a little less
    assert got["middle"].flow / got["top"].flow > 0.4 / 0.6  # ran cold: more than its share before


def test_the_advice_brings_the_simulated_homes_to_the_reference_and_not_under_it() -> None:
    """The advice's radiator arithmetic against the simulator's physics (radiator exponent, internal gains): every
    class of a building advised from all its homes, the valves set, the homes settled again."""
    from simulators.physics import steady_homes
    from simulators.scenario import load_scenario
    from simulators.simulation import Simulation

    sim = Simulation(load_scenario("normal"), NOW)
    b = sim.net.homes[0]
    idx = [i for i, h in enumerate(sim.net.homes) if h.community == b.community and h.building == b.building
           and h.kind == "residential"]
    supply, outdoor = 58.0, -3.0

    def settle() -> np.ndarray:
        s = steady_homes(sim.params, np.full(sim.net.n, supply), sim._home_flow(), np.full(sim.net.n, outdoor))
        return s.temp_c

    before = settle()
    by_class: dict[str, list[int]] = {}
    for i in idx:
        by_class.setdefault(sim.net.homes[i].location, []).append(i)
    classes = [valves.Measured((b.community, b.building, loc), tuple(sim.net.homes[i].home_id for i in ii),
                               float(before[ii].mean()))
               for loc, ii in sorted(by_class.items())]
    c = ControlSettings(valve_max_cut=0.9)
    ref, advice = valves.advise(classes, {}, supply, outdoor, 18.0, c, StationDesign())
    assert any(v.changed for v in advice)
    for v in advice:
        assert sim.set_valves(v.community, v.building, v.location, v.flow) == len(by_class[v.location])
    after = settle()
    spread = {loc: (before[ii].mean(), after[ii].mean()) for loc, ii in by_class.items()}
    for loc, (was, now) in spread.items():
        assert now >= ref - 0.3, (loc, was, now)  # not under the reference (the safe side, within the spread)
        assert now <= was + 1e-9  # a valve advice never warms a class that was at the reference
    means_before = [w for w, _ in spread.values()]
    means_after = [n for _, n in spread.values()]
    assert max(means_after) - min(means_after) < 0.5 * (max(means_before) - min(means_before))


def test_classes_count_a_home_once_it_reported_enough_hours() -> None:
    homes = {
        "a": Home("a", "幸福小区", "1号楼", "1单元", 6, 6, False, "residential", None, "S1"),
        "b": Home("b", "幸福小区", "1号楼", "1单元", 6, 6, True, "residential", None, "S1"),
        "c": Home("c", "幸福小区", "1号楼", "1单元", 3, 6, False, "residential", None, "S1"),
        "d": Home("d", "幸福小区", "1号楼", "1单元", 3, 6, False, "residential", None, "S1"),
    }
    reg = Registry(homes, {"S1": ST})
    hours = pd.date_range(NOW - timedelta(hours=4), periods=4, freq="h")
    rows = [("a", h, 19.0) for h in hours] + [("b", h, 18.6) for h in hours] + [("c", h, 21.0) for h in hours]
    rows += [("d", hours[0], 10.0)]  # one hour: not enough to speak for its class
    df = pd.DataFrame(rows, columns=["home_id", "hour", "mean"])
    got = valves.classes_from_frame(df, reg, homes, min_hours=2)
    assert [tuple(m)[:3] for m in got] == [
        (("幸福小区", "1号楼", "middle"), ("c",), 21.0), (("幸福小区", "1号楼", "top"), ("a",), 19.0),
        (("幸福小区", "1号楼", "top+gable"), ("b",), 18.6)]
    assert {m.kind for m in got} == {"residential"}


def window(classes: list[tuple[tuple[str, str, str], tuple[str, ...], float]], supply: float = 55.0) -> valves.Window:
    return valves.Window([valves.Measured(*c) for c in classes], supply, -2.0, 18.0)


def test_one_job_per_community_with_the_whole_class_and_its_homes_named() -> None:
    w = window([(("幸福小区", "1号楼", "top"), ("t1",), 19.1), (("幸福小区", "1号楼", "middle"), ("m1", "m2"), 20.9),
                (("和平新村", "2号楼", "top"), ("t2",), 19.3)])
    jobs = valves.proposals(cfg(), ST, w, {}, NOW)
    assert len(jobs) == 1  # 和平新村 has nothing to change
    p = jobs[0]
    assert p.kind == "home_valves" and p.community == "幸福小区" and p.targets == ("幸福小区",)
    assert p.evidence["throttled_homes"] == ["m1", "m2"] and p.before_c == 20.9
    [cls] = p.evidence["classes"]
    assert cls["building"] == "1号楼" and cls["location"] == "middle" and cls["flow_now_pct"] == 100 > cls["flow_pct"]
    assert "幸福小区" in p.reason and "1号楼 middle" in p.reason and "every home of a class" in p.reason
    # the flows a crew set are where the next round starts
    done = replace(p, status="applied", applied_at=NOW)
    assert valves.flows_set([done]) == {("幸福小区", "1号楼", "middle"): cls["flow_pct"] / 100}
    # no supply measured, no advice
    assert valves.proposals(cfg(), ST, window(w.classes, float("nan")), {}, NOW) == []


def analysis(home_means: dict[str, float], below: list[str]) -> AnalysisResult:
    return AnalysisResult(
        window_from=NOW - timedelta(hours=24), window_to=NOW, timezone="Asia/Shanghai", communities=[], imbalance=[],
        homes_below_standard=[HomeBelow(h, "幸福小区", "1号楼", "residential", 18.0, 6, 6, 17.0, 16.5, NOW)
                              for h in below],
        home_means_c=home_means,
    )


def test_the_recheck_asks_whether_a_throttled_home_went_cold() -> None:
    w = window([(("幸福小区", "1号楼", "top"), ("t1",), 19.1), (("幸福小区", "1号楼", "middle"), ("m1", "m2"), 20.9)])
    [p] = valves.proposals(cfg(), ST, w, {}, NOW)
    ok = judge(p, [analysis({"m1": 19.4, "m2": 19.6, "t1": 19.0}, [])], 18.0, 22.0, 0.3)
    assert ok.outcome == "improved" and ok.after_c == pytest.approx(19.5) and "20.9 → 19.5" in ok.why
    cold = judge(p, [analysis({"m1": 17.2, "m2": 19.6}, ["m1"])], 18.0, 22.0, 0.3)
    assert cold.outcome == "not_improved" and cold.still_below == ("m1",)
    silent = judge(p, [analysis({"t1": 19.0}, [])], 18.0, 22.0, 0.3)
    assert silent.outcome == "not_improved"
    # a job that only opens a class that ran cold is judged on the homes it opened
    w = window([(("幸福小区", "1号楼", "top"), ("t1",), 19.1), (("幸福小区", "1号楼", "middle"), ("m1",), 18.0)])
    [o] = valves.proposals(cfg(), ST, w, {("幸福小区", "1号楼", "middle"): 0.4}, NOW)
    assert o.evidence["throttled_homes"] == [] and o.evidence["homes_set"] == ["m1"] and o.before_c == 18.0
    opened = judge(o, [analysis({"m1": 19.0, "t1": 19.0}, [])], 18.0, 22.0, 0.3)
    assert opened.outcome == "improved" and "opened homes' mean 18.0 → 19.0" in opened.why
    assert judge(o, [analysis({"m1": 17.0}, ["m1"])], 18.0, 22.0, 0.3).outcome == "not_improved"


def test_the_models_gap_and_fit_start_when_the_valves_were_set() -> None:
    from control.mpc import series_from_frames

    hours = pd.date_range(NOW - timedelta(hours=10), periods=10, freq="h")
    homes = {"w": "1号楼", "c": "1号楼"}
    rows = []
    for i, h in enumerate(hours):
        spread = 3.0 if i < 7 else 0.5  # the valves were set at hour 7: the spread shrank
        rows += [("w", h, 19.0 + spread), ("c", h, 19.0)]
    indoor = pd.DataFrame(rows, columns=["home_id", "hour", "mean"])
    empty = pd.DataFrame(columns=["hour", "mean"])
    mixed = series_from_frames(indoor, empty, empty, homes, hours, 0.05, 72)
    since = series_from_frames(indoor, empty, empty, homes, hours, 0.05, 72, gap_since=hours[7].to_pydatetime())
    assert since.cold_gap_c == pytest.approx(0.5 / 2 - 0.5 * 0.05, abs=0.02)  # mean − 5 % quantile, after the change
    assert mixed.cold_gap_c > 1.0


def test_the_loop_advises_each_round_from_where_the_crew_left_the_valves(tmp_path: Path) -> None:
    """Stored readings → a home-valve job; while it waits for its crew and recheck nothing more is advised; once done
    and rechecked, the next round starts from the flows the crew set."""
    from control.mpc import margin_for
    from heatwatch.core import schema
    from heatwatch.core.model import Point
    from heatwatch.core.timeutil import to_ns
    from heatwatch.infra.storage.sqlite import SqliteStore
    from tests.test_control_invariants import offline_loop

    st = Station("S1", "幸福换热站", ("幸福小区",), 35.0, 80.0, "北京")
    homes = {f"m{i}": Home(f"m{i}", "幸福小区", "1号楼", "1单元", 3, 6, False, "residential", None, "S1")
             for i in range(3)}
    homes |= {f"t{i}": Home(f"t{i}", "幸福小区", "1号楼", "1单元", 6, 6, False, "residential", None, "S1")
              for i in range(2)}
    c = load_config(environ={}, overrides={"general": {"data_dir": str(tmp_path / "d")}, "alerts": {"mqtt": False},
                                           "control": {"strategy": "feedback"}})
    store = SqliteStore(tmp_path / "s.sqlite")
    loop, clock, _ = offline_loop(c, Registry(homes, {"S1": st}), store, real_analytics=True)

    def day(middle_c: float) -> None:
        pts = []
        for k in range(24 * 4):
            t = to_ns(clock() - timedelta(minutes=15 * k + 1))
            pts += [Point(schema.INDOOR, {"home_id": h, "community": "幸福小区"}, {"temp_c": middle_c if h[0] == "m"
                                                                                     else 19.0}, t) for h in homes]
            pts += [Point(schema.STATION, {"station_id": "S1"}, {"supply_c": 55.0}, t),
                    Point(schema.WEATHER, {"site_id": "北京"}, {"temp_c": -2.0}, t)]
        store.write(pts)

    try:
        day(21.0)
        assert loop.valve_jobs(clock(), {"m0", "m1"}) == []  # two of three flagged by sensor health: one is too few
        [p] = loop.valve_jobs(clock())
        assert p.evidence["throttled_homes"] == ["m0", "m1", "m2"]
        loop.lifecycle.add_many([p])
        assert loop.lifecycle.unseen(loop.valve_jobs(clock())) == []  # one job at a time per community

        def unread(*a: object, **k: object) -> None:
            raise AssertionError("read the store for a community whose job is still open")

        real, valves.read_window = valves.read_window, unread  # type: ignore[assignment]
        try:
            assert loop.valve_jobs(clock()) == []  # nor is the store read for it, every cycle
        finally:
            valves.read_window = real
        loop.approve(p.proposal_id, "crew")
        loop.apply(p.proposal_id, "crew", "set")
        assert loop.valves_set() == {"S1": clock()}
        first = p.evidence["classes"][0]["flow_pct"]
        clock.advance(hours=48)
        day(20.2)  # cooler, still over the reference
        assert loop.valves_settled() == set()  # set, not yet rechecked: the model keeps its full margin
        done = loop.recheck(p.proposal_id)  # rechecked: the key is free again
        assert done is not None and done.outcome == "improved"
        assert loop.valves_settled() == {"S1"}  # held 48 h on: the model may aim closer there
        assert margin_for(c, True) == c.control.valve_margin_c < margin_for(c, False) == c.control.model_margin_c
        [q] = loop.lifecycle.unseen(loop.valve_jobs(clock()))
        assert q.evidence["classes"][0]["flow_now_pct"] == first > q.evidence["classes"][0]["flow_pct"]
    finally:
        loop.shutdown()
        store.close()


def test_bungalows_and_contract_homes_are_held_to_their_own_standard() -> None:
    """A bungalow (16 °C) warmed by the supply the flats need is throttled toward 16 + margin, not toward the flats'
    reference; a contract home toward its contract; neither anchors the station (its flats stay as they are)."""
    c = ControlSettings(valve_max_cut=0.9)
    classes = [valves.Measured(("幸福小区", "1号楼", "top"), ("t",), 19.1),
               valves.Measured(("幸福小区", "平房区", "top+ground+gable"), ("p", "q"), 19.9, "bungalow", 16.0),
               valves.Measured(("幸福小区", "配套用房", "top+ground"), ("n", "o"), 19.9, "non_residential", 12.0)]
    ref, got = valves.advise(classes, {}, 55.0, -2.0, 18.0, c, StationDesign())
    by = {v.building: v for v in got}
    assert ref == 19.1 and by["1号楼"].flow == 1.0
    assert by["平房区"].flow < 1.0 and by["配套用房"].flow < by["平房区"].flow  # 12 °C contract: throttled more
    assert by["平房区"].flow >= c.valve_min_flow
    # from the store's frame: the kinds and standards come from the registry and the settings
    homes = {"p": Home("p", "幸福小区", "平房区", "", 1, 1, True, "bungalow", None, "S1"),
             "n": Home("n", "幸福小区", "配套用房", "", 1, 1, False, "non_residential", 12.0, "S1")}
    df = pd.DataFrame([("p", NOW, 19.9), ("n", NOW, 19.9)], columns=["home_id", "hour", "mean"])
    got_m = valves.classes_from_frame(df, Registry(homes, {"S1": ST}), homes, 1, cfg())
    assert [(m.kind, m.standard_c) for m in got_m] == [("bungalow", 16.0), ("non_residential", 12.0)]


def test_a_crew_sets_every_home_of_the_class_with_or_without_a_sensor() -> None:
    from simulators.scenario import load_scenario
    from simulators.simulation import Simulation

    sim = Simulation(load_scenario("normal"), NOW)
    h = next(h for h in sim.net.homes if h.location == "middle")
    mine = np.array([x.community == h.community and x.building == h.building and x.location == "middle"
                     for x in sim.net.homes])
    assert (~sim.net.has_sensor[mine]).any()  # some of them carry no sensor
    assert sim.set_valves(h.community, h.building, "middle", 0.55) == int(mine.sum())
    assert (sim.valve[mine] == 0.55).all() and (sim.valve[~mine] == 1.0).all()
    with pytest.raises(ValueError, match="valve flow share"):
        sim.set_valves(h.community, h.building, "middle", 0.0)


def test_a_class_held_to_a_lower_standard_still_holds_it_at_the_design_outdoor_temperature() -> None:
    """Once its valve is set a home's excess over outdoors is a fixed share of the flats': a bungalow set to 16.5 °C
    at −2 °C beside flats at 19 °C would be at 15 °C by −15 °C. It is set to the share that holds at −9 °C design."""
    now = valves.own_reference(16.5, 19.0, -2.0, -9.0)
    assert now == pytest.approx(-2.0 + (25.5 / 28.0) * 21.0)  # 17.1 °C
    share = (now - -2.0) / (19.0 - -2.0)
    assert -9.0 + share * (19.0 - -9.0) == pytest.approx(16.5)  # the same share at the design point: the floor
    assert valves.own_reference(16.5, 19.0, -12.0, -9.0) == 16.5  # colder than design: never under the floor
    assert valves.own_reference(19.5, 19.0, -2.0, -9.0) == 19.5  # a contract over the flats: its own floor


def test_one_sensor_home_does_not_throttle_its_class_but_may_open_it() -> None:
    lone = [valves.Measured(("幸福小区", "1号楼", "top"), ("t1", "t2"), 19.0),
            valves.Measured(("幸福小区", "1号楼", "middle"), ("m1",), 21.5)]
    _, got = valves.advise(lone, {}, 55.0, -2.0, 18.0, ControlSettings(), StationDesign())
    assert not got[1].changed  # one sensor (perhaps on a radiator) must not chill a whole class
    _, got = valves.advise(lone, {}, 55.0, -2.0, 18.0, ControlSettings(valve_min_homes=1), StationDesign())
    assert got[1].flow < 1.0
    cold = [lone[0], valves.Measured(("幸福小区", "1号楼", "middle"), ("m1",), 17.8)]
    _, got = valves.advise(cold, {("幸福小区", "1号楼", "middle"): 0.5}, 55.0, -2.0, 18.0, ControlSettings(),
                           StationDesign())
    assert got[1].flow > 0.5  # opening a class that ran cold needs only one home


def test_an_in_home_measurement_confirms_a_class_one_sensor_home_measures_and_a_cold_one_vetoes() -> None:
    """入户测温 counts as a measured home: one sensor + a crew's warm reading in another home throttle the class; a
    reading under the reference keeps any class open, however many sensors say it is warm."""
    top = valves.Measured(("幸福小区", "1号楼", "top"), ("t1", "t2"), 19.0)

    def flow(m: valves.Measured) -> float:
        _, got = valves.advise([top, m], {}, 55.0, -2.0, 18.0, ControlSettings(), StationDesign())
        return got[1].flow

    lone = valves.Measured(("幸福小区", "1号楼", "middle"), ("m1",), 21.5)
    assert flow(lone) == 1.0
    assert flow(lone._replace(spots=(21.2,))) < 1.0  # confirmed: throttled
    assert flow(lone._replace(spots=(19.3,))) == 1.0  # inside the deadband of the reference: confirms nothing
    pair = valves.Measured(("幸福小区", "1号楼", "middle"), ("m1", "m2"), 21.5)
    assert flow(pair) < 1.0
    assert flow(pair._replace(spots=(18.7,))) == 1.0  # a home of the class measured under the reference (19.0): vetoed
    assert flow(pair._replace(spots=(21.0, 18.7))) == 1.0


def test_in_home_measurements_count_for_their_class_only_once_its_valves_settled() -> None:
    homes = {h: Home(h, "幸福小区", "1号楼", "1单元", f, 6, False, "residential", None, "S1")
             for h, f in (("m1", 3), ("m2", 3), ("m3", 4), ("t1", 6))}
    reg = Registry(homes, {"S1": ST})
    key = ("幸福小区", "1号楼", "middle")
    classes = [valves.Measured(key, ("m1",), 21.5), valves.Measured(("幸福小区", "1号楼", "top"), ("t1",), 19.0)]
    spots = [valves.Spot("m1", NOW, 21.3),  # the sensor home itself, by a calibrated thermometer: checks its sensor
             valves.Spot("m2", NOW - timedelta(days=3), 20.0), valves.Spot("m2", NOW - timedelta(days=1), 21.1),
             valves.Spot("m3", NOW - timedelta(days=5), 21.4), valves.Spot("nobody", NOW, 30.0)]
    got = valves.with_spots(classes, spots, reg, {})
    assert got[0].spots == (21.3, 21.1, 21.4) and got[1].spots == ()  # the latest per home, each in its own class
    got = valves.with_spots(classes, spots, reg, {key: NOW - timedelta(days=2)})
    assert got[0].spots == (21.3, 21.1)  # measured before the class's valves settled: the flow was another then
    done = replace(valves.proposals(cfg(), ST, window([(key, ("m1", "m2"), 21.5),
                                                       (("幸福小区", "1号楼", "top"), ("t1", "t2"), 19.0)]),
                                    {}, NOW)[0], status="applied", applied_at=NOW)
    assert valves.settled_times([done], timedelta(hours=24)) == {key: NOW + timedelta(hours=24)}


def test_a_job_asks_its_crew_to_measure_the_warm_classes_one_sensor_home_measures() -> None:
    homes = {h: Home(h, "幸福小区", "1号楼", "1单元", f, 6, g, "residential", None, "S1")
             for h, f, g in (("m1", 3, False), ("m2", 3, False), ("m3", 4, False), ("m4", 4, False), ("t1", 6, False),
                             ("t2", 6, False), ("g1", 3, True), ("g2", 3, True))}
    reg = Registry(homes, {"S1": ST})
    w = window([(("幸福小区", "1号楼", "middle"), ("m1", "m2"), 21.0), (("幸福小区", "1号楼", "top"), ("t1",), 19.0),
                (("幸福小区", "1号楼", "gable"), ("g1",), 20.5)])
    [p] = valves.proposals(cfg(), ST, w, {}, NOW, registry=reg)
    assert [c["location"] for c in p.evidence["classes"]] == ["middle"]
    # the gable class is warm and one sensor home measures it: the crew is asked for a reading in its other home
    assert [(r["home_id"], r["location"]) for r in p.evidence["measure_homes"]] == [("g2", "gable")]
    assert "入户测温" in p.reason and "g2" in p.reason
    # a registry that knows only the sensor homes (as the simulator's does): the crew checks the sensor home itself
    sensor_only = Registry({h: v for h, v in homes.items() if h != "g2"}, {"S1": ST})
    [p] = valves.proposals(cfg(), ST, w, {}, NOW, registry=sensor_only)
    assert [r["home_id"] for r in p.evidence["measure_homes"]] == ["g1"]
    # with the reading in hand (warm), the gable class is throttled next round and nothing more is asked
    w2 = valves.Window([m._replace(spots=(20.6,)) if m.key[2] == "gable" else m for m in w.classes], 55.0, -2.0, 18.0)
    [q] = valves.proposals(cfg(), ST, w2, {}, NOW, registry=reg)
    assert {c["location"] for c in q.evidence["classes"]} == {"middle", "gable"}
    assert q.evidence["measure_homes"] == [] and q.evidence["in_home_readings"] == {"1号楼 gable": 1}
    assert "+ 1 in-home" in q.reason


def test_the_loop_reads_the_in_home_measurements_and_survives_their_failure(tmp_path: Path) -> None:
    from heatwatch.core import schema
    from heatwatch.core.model import Point
    from heatwatch.core.timeutil import to_ns
    from heatwatch.infra.storage.sqlite import SqliteStore
    from tests.test_control_invariants import offline_loop

    st = Station("S1", "幸福换热站", ("幸福小区",), 35.0, 80.0, "北京")
    homes = {f"m{i}": Home(f"m{i}", "幸福小区", "1号楼", "1单元", 3, 6, False, "residential", None, "S1") for i in range(2)}
    homes |= {f"t{i}": Home(f"t{i}", "幸福小区", "1号楼", "1单元", 6, 6, False, "residential", None, "S1") for i in range(2)}
    c = load_config(environ={}, overrides={"general": {"data_dir": str(tmp_path / "d")}, "alerts": {"mqtt": False},
                                           "control": {"strategy": "feedback"}})
    store = SqliteStore(tmp_path / "s.sqlite")
    loop, clock, _ = offline_loop(c, Registry(homes, {"S1": st}), store, real_analytics=True)
    asked: list[tuple[datetime, datetime]] = []
    readings = [valves.Spot("m1", clock() - timedelta(days=1), 21.0)]

    def spots(start: datetime, end: datetime) -> list[valves.Spot]:
        asked.append((start, end))
        return readings

    try:
        pts = []
        for k in range(24 * 4):
            t = to_ns(clock() - timedelta(minutes=15 * k + 1))
            pts += [Point(schema.INDOOR, {"home_id": h, "community": "幸福小区"}, {"temp_c": 21.0 if h == "m0" else 19.0}, t)
                    for h in ("m0", "t0", "t1")]  # m1 carries no sensor
            pts += [Point(schema.STATION, {"station_id": "S1"}, {"supply_c": 55.0}, t),
                    Point(schema.WEATHER, {"site_id": "北京"}, {"temp_c": -2.0}, t)]
        store.write(pts)
        assert loop.valve_jobs(clock()) == []  # one sensor home, no reading handed in
        loop.spots = spots
        [p] = loop.valve_jobs(clock())
        assert asked == [(clock() - timedelta(days=c.control.valve_spot_days), clock())]
        assert p.evidence["classes"][0]["location"] == "middle" and p.evidence["in_home_readings"] == {"1号楼 middle": 1}

        def broken(start: datetime, end: datetime) -> list[valves.Spot]:
            raise OSError("service database locked")

        loop.spots = broken
        assert loop.valve_jobs(clock()) == []  # no readings: the safe side, and the cycle goes on
    finally:
        loop.shutdown()
        store.close()


@settings(max_examples=300, deadline=None)
@given(
    means=st.lists(st.floats(-60.0, 90.0), min_size=1, max_size=8),
    flows=st.lists(st.floats(0.0, 1.0), min_size=8, max_size=8),
    sizes=st.lists(st.integers(1, 4), min_size=8, max_size=8),
    supply=st.floats(-20.0, 120.0), outdoor=st.floats(-45.0, 30.0), standard=st.floats(10.0, 22.0),
    cut=st.floats(0.05, 0.95), lo=st.floats(0.05, 0.9),
)
def test_whatever_the_sensors_say_the_advice_is_bounded(means: list[float], flows: list[float], sizes: list[int],
                                                        supply: float, outdoor: float, standard: float, cut: float,
                                                        lo: float) -> None:
    c = ControlSettings(valve_max_cut=cut, valve_min_flow=lo)
    classes = [valves.Measured(("幸福小区", "1号楼", f"c{i}"), tuple(f"h{i}-{k}" for k in range(sizes[i])), m)
               for i, m in enumerate(means)]
    now = {m.key: flows[i] for i, m in enumerate(classes)}
    _, got = valves.advise(classes, now, supply, outdoor, standard, c, StationDesign())
    for m, v in zip(classes, got, strict=True):
        start = min(max(now[m.key], lo), 1.0)
        assert v.flow_now == start
        assert lo - 1e-9 <= v.flow <= 1.0 + 1e-9  # inside the valve's range, whatever was measured
        if v.flow < start:
            assert len(m.homes) >= c.valve_min_homes  # never cut on one home
            assert v.flow >= start * (1.0 - cut) - 0.005  # one round takes at most valve_max_cut (to 0.01)
            assert m.mean_c > standard + c.model_margin_c  # never cut a class that is not over the standard + margin
