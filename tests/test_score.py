"""The control scorer: metric functions on hand-built truth frames, the standards by hour and kind,
and a tiny lockstep run of both strategies on the same weather."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from control.proposal import Proposal
from heatwatch.app.score import (
    Score,
    comfort,
    heat_delivered_kwh,
    heat_for_indoor_shortfall,
    ideal_heat_kwh,
    on_the_curve,
    run_scores,
    score_config,
    setpoint_changes_per_station_day,
    standards,
    stored_heat_kwh,
    with_curve_share,
)
from simulators.scenario import load_scenario


def test_comfort_by_hand() -> None:
    homes = pd.DataFrame({
        "temp_c": [18.0, 17.5, 21.0, 15.0, 23.0, 16.0],
        "standard_c": [18.0, 18.0, 18.0, 16.0, 16.0, 16.0],  # three day rows, three night rows
        "day_standard_c": [18.0, 18.0, 18.0, 18.0, 18.0, 16.0],  # the last is a bungalow (16 all day)
    })
    got = comfort(homes, dt_h=0.25)
    assert got["pct_at_standard"] == pytest.approx(4 / 6 * 100)  # 18 ≥ 18 counts; 17.5 and 15 do not
    assert got["degree_hours_below"] == pytest.approx((0.5 + 1.0) * 0.25)
    assert got["overheat_degree_hours"] == pytest.approx((1.0 + 3.0) * 0.25)  # 21 − 20 and 23 − 20; 16 is not over 18


def test_heat_changes_and_share_by_hand() -> None:
    stations = pd.DataFrame({"station_id": ["S1", "S2", "S1", "S2"], "heat_kw": [100.0, 50.0, 120.0, 30.0]})
    assert heat_delivered_kwh(stations, 0.25) == pytest.approx(300.0 * 0.25)
    assert setpoint_changes_per_station_day(6, 2, 1.5) == pytest.approx(2.0)
    assert setpoint_changes_per_station_day(3, 0, 1.0) == 0.0

    def s(strategy: str, heat: float, scenario: str = "x") -> Score:
        return Score(scenario, strategy, 1, 1, 1.0, 100.0, 0.0, 0.0, heat, None, 0.0, 0, 18.0)

    out = with_curve_share([s("curve", 200.0), s("feedback", 180.0), s("feedback", 50.0, "no-curve")])
    assert [x.heat_pct_of_curve for x in out] == [100.0, 90.0, None]
    # net of the heat the homes still hold at the end: (230 − 20) / (200 − (−10)) = 100 %
    warm = Score("x", "model", 1, 1, 1.0, 100.0, 0.0, 0.0, 230.0, None, 0.0, 0, 18.0, stored_kwh=20.0)
    cool = Score("x", "curve", 1, 1, 1.0, 100.0, 0.0, 0.0, 200.0, None, 0.0, 0, 18.0, stored_kwh=-10.0)
    by = {x.strategy: x for x in with_curve_share([cool, warm])}
    assert by["model"].heat_pct_of_curve == 115.0 and by["model"].net_heat_pct_of_curve == 100.0


def test_the_per_home_ideal_holds_each_home_exactly_at_its_standard() -> None:
    ua, gains = np.array([100.0, 200.0]), np.array([300.0, 300.0])  # W/K, W
    # 18 °C at 0 °C outdoors for one hour: 100·18 − 300 + 200·18 − 300 = 4,800 W·h; a home its gains keep warm: 0
    assert ideal_heat_kwh(ua, gains, np.array([18.0, 18.0]), np.array([0.0, 0.0]), 1.0) == pytest.approx(4.8)
    assert ideal_heat_kwh(ua, gains, np.array([16.0, 16.0]), np.array([15.0, 15.0]), 0.5) == pytest.approx(0.0)


def test_stored_heat_is_the_homes_capacity_times_their_warming() -> None:
    cap = np.array([3.6e6, 7.2e6])  # J/K: 1 and 2 kWh per kelvin
    assert stored_heat_kwh(cap, np.array([18.0, 18.0]), np.array([20.0, 17.5])) == pytest.approx(2.0 - 1.0)


def test_what_counts_as_heat_for_an_indoor_shortfall() -> None:
    at = datetime(2026, 1, 10, tzinfo=UTC)

    def p(kind: str, cur: float, new: float, origin: str = "analytics", feedback: float | None = None) -> Proposal:
        ev = {} if feedback is None else {"indoor_feedback_c": feedback}
        return Proposal(proposal_id="P1", station_id="S1", kind=kind, community="幸福小区", current_c=cur,  # type: ignore[arg-type]
                        proposed_c=new, delta_c=new - cur, evidence=ev, reason="", created_at=at, effective_at=at,
                        origin=origin)

    assert heat_for_indoor_shortfall(p("supply", 50.0, 53.0))
    assert not heat_for_indoor_shortfall(p("supply", 50.0, 48.0))  # a cut is not heat
    assert not heat_for_indoor_shortfall(p("lower_supply", 50.0, 47.0))
    assert heat_for_indoor_shortfall(p("supply", 50.0, 53.0, "cold_snap", feedback=1.5))
    assert not heat_for_indoor_shortfall(p("supply", 50.0, 53.0, "cold_snap", feedback=0.0))  # weather alone


def test_standards_follow_the_hour_and_the_kind(tmp_path: Path) -> None:
    cfg = score_config(tmp_path)
    # 05:00 and 06:00 in Shanghai
    times = [datetime(2026, 1, 9, 21, tzinfo=UTC), datetime(2026, 1, 9, 22, tzinfo=UTC)]
    std, day = standards(cfg, ["residential", "bungalow", "non_residential"], [None, None, 15.0], times)
    assert std.tolist() == [[16.0, 16.0, 15.0], [18.0, 16.0, 15.0]]
    assert day.tolist() == [18.0, 16.0, 15.0]


def test_the_scenario_is_put_on_heatwatchs_curve(tmp_path: Path) -> None:
    sc = on_the_curve(load_scenario("cold_snap"), score_config(tmp_path))
    for st in sc.network.stations:
        assert st.setpoint_c is None
        table = dict(st.curve)
        assert table[-9.0] == pytest.approx(60.0, abs=0.01)  # the design point of [control.design]
        assert table[0.0] == pytest.approx(48.26, abs=0.01)  # docs/CONTROL.md's worked example


def test_both_strategies_on_the_same_weather(tmp_path: Path) -> None:
    sc = load_scenario("normal")
    scores = run_scores([sc], ("curve", "feedback"), days=1.0, every_h=3.0, work=tmp_path)
    curve, hw = scores
    assert (curve.strategy, hw.strategy) == ("curve", "feedback")
    assert curve.homes == hw.homes > 0 and curve.days == hw.days == 1.0
    assert curve.heat_pct_of_curve == 100.0
    assert curve.ideal_pct_of_curve is not None and 50.0 < curve.ideal_pct_of_curve < 100.0 and hw.ideal_pct_of_curve is None
    assert curve.setpoint_changes_per_station_day == 0.0  # the curve alone sends no setpoint
    assert curve.imbalance_answered_with_heat == 0
    assert 0.0 <= curve.pct_at_standard <= 100.0 and curve.heat_kwh > 0
    # the same run again gives the same numbers: nothing depends on the wall clock
    again = run_scores([sc], ["curve"], days=1.0, every_h=3.0, work=tmp_path / "again")
    assert again[0] == curve
    # control acted: its setpoints reached the simulated stations and changed the heat delivered
    assert hw.setpoint_changes_per_station_day > 0
    assert hw.heat_pct_of_curve is not None and hw.heat_pct_of_curve != 100.0


def test_score_command_json_and_no_leftovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import tempfile

    from heatwatch.app.cli import main

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    code = main(["score", "--scenario", "normal", "--strategy", "curve", "--days", "0.25", "--json"])
    body = json.loads(capsys.readouterr().out)
    assert code == 0
    (only,) = body["scores"]
    assert (only["scenario"], only["strategy"], only["days"], only["heat_pct_of_curve"]) == ("normal", "curve", 0.25, 100.0)
    assert list(scratch.iterdir()) == []  # the run's store and ground truth are gone
    assert main(["score", "--scenario", "no-such-scenario"]) == 2
    assert "no-such-scenario" in capsys.readouterr().err


def test_score_config_never_reaches_a_companys_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    company = tmp_path / "heatwatch.toml"
    company.write_text(f'[sqlite]\npath = "{tmp_path / "company.sqlite"}"\n[control]\nforecast_file = "fc.json"\n'
                       '[control.design]\nsupply_design_c = 65.0\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # a ./heatwatch.toml is not picked up by accident
    plain = score_config(tmp_path / "run")
    assert plain.control.design.supply_design_c == 60.0
    scored = score_config(tmp_path / "run2", company)  # given on purpose: its curve counts, its store does not
    assert scored.control.design.supply_design_c == 65.0
    for cfg, run in ((plain, "run"), (scored, "run2")):
        assert cfg.sqlite.path == tmp_path / run / "heatwatch.sqlite"
        assert cfg.control.forecast_file is None and cfg.control.auto_apply


def test_a_crew_balances_a_community_and_nothing_else() -> None:
    from datetime import timedelta

    from simulators.simulation import Simulation

    sim = Simulation(load_scenario("imbalanced"), datetime(2026, 1, 10, tzinfo=UTC) - timedelta(hours=8))
    homes = sim.net.homes
    community = homes[0].community
    short = sim.net.flow_factor < 1.0
    assert short.any()  # the far buildings are short of flow
    before = sim.net.flow_factor.copy()
    reached = sim.balance(community)
    mine = np.array([h.community == community for h in homes])
    assert reached == int(mine.sum()) > 0
    assert (sim.net.flow_factor[mine] >= 1.0).all()
    assert (sim.net.flow_factor[~mine] == before[~mine]).all()
    assert sim.balance("没有这个小区") == 0


def test_the_crew_takes_the_in_home_measurements_a_home_valve_job_asks_for(tmp_path: Path) -> None:
    """入户测温 on the visit: the home's true temperature, kept in the measurement book (two staff, a calibrated
    thermometer), which the next round's advice reads; the classes' valves set as before."""
    from dataclasses import replace
    from datetime import timedelta
    from types import SimpleNamespace

    from dispatch.measurements import in_home_spots
    from heatwatch.app.score import _crew_visits
    from heatwatch.core.config import load_config
    from heatwatch.core.timeutil import SettableClock
    from simulators.simulation import Simulation

    t = datetime(2026, 1, 10, tzinfo=UTC)
    sim = Simulation(load_scenario("normal"), t - timedelta(hours=30))
    home = sim.net.homes[3]
    cfg = load_config(environ={}, overrides={"general": {"data_dir": str(tmp_path / "d")}})
    applied: list[str] = []
    job = Proposal(proposal_id="P1", station_id=home.station_id, kind="home_valves", community=home.community,
                   current_c=None, proposed_c=None, delta_c=None,
                   evidence={"classes": [{"community": home.community, "building": home.building, "location": home.location,
                                          "flow_pct": 60}],
                             "measure_homes": [{"home_id": home.home_id}]},
                   reason="r", created_at=t - timedelta(hours=24), effective_at=t - timedelta(hours=24))
    loop = SimpleNamespace(cfg=cfg, registry=sim.net.registry,
                           proposals=SimpleNamespace(get=lambda pid: replace(job, status="approved")),
                           approve=lambda *a: None, apply=lambda pid, by, note: applied.append(by))
    clock = SettableClock(t - timedelta(hours=24))
    assert _crew_visits([job], t - timedelta(hours=1), 24.0, sim, loop, clock) == [job]  # not due yet
    assert _crew_visits([job], t, 24.0, sim, loop, clock) == [] and applied == ["crew"]
    [spot] = in_home_spots(cfg)(t - timedelta(days=1), t + timedelta(seconds=1))
    i = sim.net.homes.index(home)
    assert spot.home_id == home.home_id and spot.measured_at == t
    assert spot.temp_c == round(float(sim.home_state.temp_c[i]), 1)
    assert sim.valve[i] == pytest.approx(0.6)


def test_with_a_crew_the_balancing_advice_is_carried_out_and_recorded(tmp_path: Path) -> None:
    import sqlite3

    sc = load_scenario("imbalanced")
    alone, crewed = run_scores([sc], ("model", "model+crew"), days=1.5, every_h=3.0, work=tmp_path, crew_h=6.0)
    assert crewed.strategy == "model+crew"
    with sqlite3.connect(tmp_path / "imbalanced" / "model+crew" / "control.sqlite") as con:
        done = con.execute("SELECT p.status, h.actor FROM proposals p JOIN proposal_history h USING (proposal_id) "
                           "WHERE p.kind = 'balancing' AND h.to_status = 'applied'").fetchall()
    assert done and all(status in ("applied", "rechecked") and actor == "crew" for status, actor in done)
    with sqlite3.connect(tmp_path / "imbalanced" / "model+crew" / "control.sqlite") as con:
        valves = con.execute("SELECT h.actor FROM proposals p JOIN proposal_history h USING (proposal_id) "
                             "WHERE p.kind = 'home_valves' AND h.to_status = 'applied'").fetchall()
    assert valves and {a for (a,) in valves} == {"crew"}  # the home-valve jobs are carried out too
    # the far buildings get their flow: fewer degree-hours under the standard than with nobody acting on advice
    assert crewed.degree_hours_below < alone.degree_hours_below
    with pytest.raises(ValueError, match="unknown strategy"):
        run_scores([sc], ("curve+crew",), days=0.1, work=tmp_path / "x")
