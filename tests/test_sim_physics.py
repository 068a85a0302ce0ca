"""The simulated physics behaves like a heating network (design point, slow response, cold snaps, imbalance)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import numpy as np
import pytest

from simulators.scenario import load_scenario
from simulators.sensors import station_messages
from simulators.simulation import Simulation
from tools.fixtures import design_scenario

T0 = datetime(2026, 1, 10, tzinfo=UTC)


def masks(sim: Simulation) -> dict[str, np.ndarray]:
    homes = sim.net.homes
    top = np.array([h.top for h in homes])
    ground = np.array([h.ground for h in homes])
    gable = np.array([h.gable for h in homes])
    return {
        "middle": ~(top | ground | gable),
        "top_only": top & ~gable,
        "ground_only": ground & ~gable,
        "gable_only": gable & ~top & ~ground,
    }


def run_hours(sim: Simulation, hours: float) -> list[float]:
    """Mean over all homes after each step."""
    out = []
    for _ in range(int(hours * 3600 / sim.dt_s)):
        out.append(float(sim.step().home_temp.mean()))
    return out


def test_design_point_middle_homes_at_design_indoor_and_edges_colder_by_margin() -> None:
    sim = Simulation(design_scenario(), T0)
    run_hours(sim, 48)  # the equilibrium must hold, not just the starting state
    m = masks(sim)
    t = sim.home_state.temp_c
    assert m["middle"].sum() > 20
    assert abs(t[m["middle"]].mean() - 20.0) < 0.15
    assert abs(t[m["top_only"]].mean() - 18.0) < 0.15  # margin_top_c = 2.0
    assert abs(t[m["ground_only"]].mean() - 18.5) < 0.15  # margin_ground_c = 1.5
    assert abs(t[m["gable_only"]].mean() - 19.0) < 0.15  # margin_gable_c = 1.0
    # the design return temperature comes out of the heat balance, not a constant
    assert 43.0 < float(sim.station_state.return_c[0]) < 46.0


def test_raising_supply_5c_warms_homes_over_hours_not_instantly() -> None:
    sim = Simulation(design_scenario(), T0)
    before = float(sim.home_state.temp_c.mean())
    sim.set_setpoint("S1", 65.0)
    trace = run_hours(sim, 72)
    steps_per_h = 4
    rise_1h = trace[steps_per_h - 1] - before
    rise_12h = trace[12 * steps_per_h - 1] - before
    rise_72h = trace[-1] - before
    assert rise_72h > 1.0, "5 K more supply must warm homes noticeably"
    assert rise_1h < 0.15 * rise_72h, "building time constant: no jump within the first hour"
    assert rise_1h < rise_12h < rise_72h
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(trace)), "warming is monotonic"
    assert float(sim.station_state.supply_c[0]) == pytest.approx(65.0, abs=0.05)


def test_supply_follows_setpoint_with_a_lag() -> None:
    sim = Simulation(design_scenario(), T0)
    sim.set_setpoint("S1", 50.0)
    sim.step()  # 15 min with lag_h = 0.5: about 40 % of the way
    s = float(sim.station_state.supply_c[0])
    assert 54.0 < s < 57.5


def cold_snap_scenario(curve: bool) -> Simulation:
    station = {"id": "S1", "supply_min_c": 35.0, "supply_max_c": 80.0}
    if curve:
        station["curve"] = [[-19.0, 72.0], [-9.0, 60.0], [5.0, 44.0]]
    else:
        station["setpoint_c"] = 60.0
    base = design_scenario()
    net = base.network.model_dump()
    net["stations"] = [station]
    sc = design_scenario(
        network=net,
        weather={"mean_c": -9.0, "diurnal_amplitude_c": 0.0, "front_sd_c": 0.0,
                 "cold_snaps": [{"start_h": 6, "duration_h": 48, "depth_c": 10.0, "ramp_h": 6}]},
    )
    return Simulation(sc, T0)


def test_cold_snap_cools_homes_unless_supply_rises() -> None:
    fixed = cold_snap_scenario(curve=False)
    reset = cold_snap_scenario(curve=True)
    start = float(fixed.home_state.temp_c.mean())
    drop_fixed = start - min(run_hours(fixed, 60))
    drop_reset = float(reset.home_state.temp_c.mean()) - min(run_hours(reset, 60))
    assert drop_fixed > 2.5, f"a 10 K cold snap at fixed supply must cool homes, got {drop_fixed:.2f} K"
    assert drop_reset < 0.4 * drop_fixed, "raising the supply with the outdoor-reset curve must protect homes"
    assert float(reset.station_state.supply_c[0]) > 60.0


def test_imbalanced_scenario_makes_far_buildings_colder() -> None:
    sim = Simulation(load_scenario("imbalanced"), T0)
    run_hours(sim, 24)
    t = sim.home_state.temp_c
    dist = sim.net.distance
    near, far = t[dist == 0].mean(), t[dist == 1].mean()
    assert near - far > 1.5
    # and it is the flow that does it: the far building's homes return colder water
    assert sim.home_state.return_c[dist == 1].mean() < sim.home_state.return_c[dist == 0].mean() - 3


def test_station_faults_pump_leak_outage() -> None:
    sim = Simulation(load_scenario("station_fault"), T0)
    s1, s2 = sim.station_index("S01"), sim.station_index("S02")
    seen: dict[str, list[float]] = {"normal": [], "pump": [], "leak_kpa": [], "kpa": []}
    outage_topics: list[list[str]] = []
    for _ in range(72 * 4):
        tr = sim.step()
        h = (tr.t - T0).total_seconds() / 3600
        st = tr.stations
        if 20 <= h < 24:
            seen["normal"].append(float(st.supply_c[s1]))
            seen["kpa"].append(float(st.static_kpa[s2]))
        if 28 <= h < 30:
            seen["pump"].append(float(st.supply_c[s1]))
        if 42 <= h < 44:
            seen["leak_kpa"].append(float(st.static_kpa[s2]))
        if 62 <= h < 64:
            outage_topics.append([m.topic for m in station_messages("heat", sim.station_ids, tr.t, st, tr.faults.outage)])
            assert tr.faults.outage[s1] and st.flow_m3h[s1] == 0.0
    assert np.mean(seen["pump"]) < np.mean(seen["normal"]) - 10, "pump failure: supply falls"
    assert np.mean(seen["leak_kpa"]) < np.mean(seen["kpa"]) - 100, "leak: pressure drops"
    assert outage_topics and all(topics == ["heat/station/S02"] for topics in outage_topics), "outage: S01 silent"


def test_homes_cool_slowly_during_an_outage() -> None:
    sim = Simulation(load_scenario("station_fault"), T0)
    s1 = sim.station_index("S01")
    on_s1 = sim.net.station_idx == s1
    temps = {}
    for _ in range(70 * 4):
        tr = sim.step()
        temps[round((tr.t - T0).total_seconds() / 3600, 2)] = float(tr.home_temp[on_s1].mean())
    drop_1h = temps[60.0] - temps[61.0]
    drop_10h = temps[60.0] - temps[70.0]
    assert drop_10h > 2.0
    assert 0 < drop_1h < drop_10h / 4
