"""tools.ideal_bounds: the least heat with thermal mass, from the start state, against the no-mass bounds; and the
least heat with one supply per station (valves as found) against the per-home bound and the simulator."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from heatwatch.app.score import ideal_heat_kwh
from simulators.physics import HomeParams, HomeState, radiator_eps, step_homes
from tools.ideal_bounds import (
    MASS,
    ONE_SUPPLY,
    MassBound,
    SupplyBound,
    bounds,
    least_heat_one_supply,
    least_heat_with_mass,
    one_supply_bound,
    setup,
)

DT_S = 900.0
PER_DAY = 96
N = 4
UA = np.array([100.0, 120.0, 150.0, 90.0])  # W/K
CAP = np.array([30.0, 25.0, 40.0, 22.0]) * 3600.0 * UA  # J/K: 22–40 h time constants
Q_INT = np.array([300.0, 300.0, 250.0, 350.0])  # W
TS_MAX = 75.0


def schedule(days: int = 2) -> np.ndarray:
    """steps × homes: 16 °C, 18 °C from 06:00 to 21:00; step k ends at (k + 1) · 15 min."""
    hours = ((np.arange(days * PER_DAY) + 1) * DT_S / 3600.0) % 24.0
    day = (hours >= 6.0) & (hours < 21.0)
    return np.repeat(np.where(day, 18.0, 16.0)[:, None], N, axis=1)


def g_for(factor: float) -> np.ndarray:
    """G_max whose Qmax at 18 °C is ``factor`` × the heat that holds 18 °C at −5 °C."""
    return factor * (UA * 23.0 - Q_INT) / (TS_MAX - 18.0)


def run(std: np.ndarray, start: np.ndarray | float, outdoor: float | np.ndarray = -5.0, factor: float = 2.0,
        g_max: np.ndarray | None = None) -> MassBound:
    """The bound at G_max ``g_max``, else at ``factor`` × the heat that holds 18 °C at −5 °C."""
    g = g_for(factor) if g_max is None else g_max
    return least_heat_with_mass(UA, CAP, Q_INT, g, np.full_like(std, TS_MAX),
                                np.broadcast_to(np.asarray(start, float), (N,)),
                                np.broadcast_to(np.asarray(outdoor, float), std.shape), std, DT_S)


def test_mass_bound_between_zero_and_the_day_standard_at_every_hour() -> None:
    std = schedule()
    m = run(std, 18.0)
    day_every_hour = ideal_heat_kwh(UA, Q_INT, np.full_like(std, 18.0), np.full_like(std, -5.0), DT_S / 3600.0)
    assert 0.0 < m.heat_kwh < 0.99 * day_every_hour  # the nights save something, with the mass as it is
    assert m.forced_kwh == 0.0 and m.forced_homes == 0 and m.held_at_best == 0


def test_no_heat_when_gains_cover_the_losses() -> None:
    m = run(schedule(), 18.0, outdoor=17.0)  # free-running, every home settles between 18.6 and 20.9 °C
    assert m.heat_kwh == 0.0
    assert np.all(m.temp_c[1:] >= schedule() - 1e-9)


def test_constant_standard_at_the_start_in_constant_weather_is_the_no_mass_bound() -> None:
    std = np.full((2 * PER_DAY, N), 18.0)
    m = run(std, 18.0)
    flat = ideal_heat_kwh(UA, Q_INT, std, np.full_like(std, -5.0), DT_S / 3600.0)
    assert m.heat_kwh == pytest.approx(flat, rel=0.005)
    assert m.stored_kwh == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(("start", "factor", "forced"), [
    (18.0, 1.3, False),
    (16.5, 3.0, False),
    (16.5, 1.3, True),  # on the night standard, but too far under to make 18 °C by 06:00 with that radiator
    (14.0, 3.0, True),  # under the night standard
])
def test_the_trajectory_never_falls_under_the_standard_after_the_start(start: float, factor: float,
                                                                       forced: bool) -> None:
    std = schedule()
    m = run(std, start, factor=factor)
    assert np.all(m.temp_c[1:] >= std - 1e-9)
    assert np.all(m.floor_c >= std - 1e-12)
    if forced:  # lifted at once onto its floor, beyond what the radiator could do in 15 min; later steps within it
        lifted = m.heat_w[0] > g_for(factor) * (TS_MAX - start)
        assert m.forced_homes == int(lifted.sum()) > 0 and m.beyond_max_kwh > 0.0
        assert m.forced_kwh == pytest.approx(float(np.sum(m.heat_w[0, lifted])) * DT_S / 3.6e6)
        assert np.allclose(m.temp_c[1, lifted], m.floor_c[0, lifted])
    else:
        assert m.forced_kwh == 0.0 and m.forced_homes == 0
    qmax = g_for(factor) * (TS_MAX - m.temp_c[1:-1])
    assert np.all(m.heat_w[1:] <= qmax * (1 + 1e-6))  # the average Q over a step, within Qmax at its start


def test_a_smaller_radiator_starts_the_morning_preheat_earlier() -> None:
    std = schedule()
    six = 6 * 4 - 1  # the step that ends at 06:00
    first: dict[float, np.ndarray] = {}
    for factor in (1.2, 3.0):
        m = run(std, 16.0, factor=factor)
        rises = m.floor_c[: six + 1] > 16.0 + 1e-9  # the floor over the night standard before 06:00
        assert np.all(rises[six - 1])  # every home is warmer than 16 °C just before 06:00
        first[factor] = np.argmax(rises, axis=0)
    assert np.all(first[1.2] < first[3.0])
    assert np.all(first[1.2] < six - 4)  # at least an hour ahead


def test_heating_earlier_than_the_bound_costs_more() -> None:
    """The bound heats as late as it can: any extra heat earlier, then the least from there, is more heat."""
    std = schedule()
    m = run(std, 17.0, factor=1.5)
    for j in (10, 30, 60, 100):
        for extra in (0.1, 0.5):
            after = run(std[j:], m.temp_c[j] + extra, factor=1.5)
            lift = float(np.sum(CAP * extra)) / 3.6e6  # at least the heat of the lift itself
            before = float(m.heat_w[:j].sum()) * DT_S / 3.6e6
            assert before + lift + after.heat_kwh > m.heat_kwh
        # from its own state the rest of the bound is the bound of the rest
        same = run(std[j:], m.temp_c[j], factor=1.5)
        assert same.heat_kwh == pytest.approx(float(m.heat_w[j:].sum()) * DT_S / 3.6e6, rel=1e-9)


def test_the_floor_is_what_the_simulators_radiator_at_full_supply_just_reaches() -> None:
    """Backward pass against ``simulators.physics.step_homes``: from L[k], full supply at design flow (eps at the
    design excess, as the tool takes G_max) lands on L[k + 1] wherever the floor is pre-heating."""
    std = schedule()
    p = HomeParams(UA, CAP, Q_INT, np.array([300.0, 350.0, 420.0, 280.0]), 450.0, 30.0, 1.3)
    g = radiator_eps(np.full(N, p.excess_design), p.mc_design, p) * p.mc_design
    m = run(std, 16.0, g_max=g)
    binding = np.argwhere(m.floor_c[:-1] > std[:-1] + 1e-6)  # the floor above the standard: pre-heating
    assert len(binding) > 10
    for k, j in binding:
        state = HomeState(np.full(N, m.floor_c[k, j]), np.full(N, p.excess_design), np.zeros(N))
        nxt = step_homes(p, state, np.full(N, TS_MAX), p.mc_design, np.full(N, -5.0), DT_S)
        assert nxt.temp_c[j] == pytest.approx(m.floor_c[k + 1, j], abs=1e-9)


def test_a_standard_beyond_the_radiator_is_held_at_the_warmest_it_allows() -> None:
    """A long cold spell the radiators cannot hold 18 °C in whatever the start: held at the warmest Qmax allows, after
    pre-heating as far as it helps — not a floor that asks the home to start tens of degrees warmer."""
    std = np.full((3 * PER_DAY, N), 18.0)
    outdoor = np.full_like(std, -5.0)
    outdoor[PER_DAY:2 * PER_DAY] = -25.0  # Qmax at 1.3 × the −5 °C heat holds no home at 18 °C here
    m = run(std, 18.0, outdoor=outdoor, factor=1.3)
    assert m.held_at_best > 0
    assert m.forced_kwh == 0.0
    assert float(m.temp_c.max()) < 30.0
    assert np.all(m.floor_c[PER_DAY - 1] > 18.5)  # pre-heated for it
    assert np.all(m.temp_c[1:PER_DAY] >= 18.0 - 1e-9)
    assert np.all(m.temp_c[PER_DAY + 1:2 * PER_DAY].min(axis=0) < 18.0)  # under it in the cold …
    assert np.all(m.temp_c[-8:] >= 18.0 - 1e-9)  # … and back on it a day later


def test_the_scenario_rows() -> None:
    rows = bounds("normal")
    margins = ("", " + 0.5 °C on the flats", " + 1 °C on the flats")
    mass = [rows[f"standard as applied{m}, {MASS}"] for m in margins]
    one = [rows[f"standard as applied{m}, {ONE_SUPPLY}, {MASS}"] for m in margins]
    assert 0.0 < mass[0] < mass[1] < mass[2]
    assert one[0] < one[1] < one[2]
    assert all(o > m for o, m in zip(one, mass, strict=True))  # a valve per home can do all one supply can
    assert "day standard at every hour" in rows and "standard as applied (18 °C day, 16 °C night)" in rows


# --- one supply per station ------------------------------------------------------------------------------------------
MC = 2600.0 / 15.0  # W/K: a middle home's design flow (2.6 kW of radiator heat at 60/45 °C)


def station_homes(ua: list[float], exponent: float = 1.3) -> HomeParams:
    """Homes with the same radiator and flow (eps 0.375 at the design excess of 60/45/20 °C), 40 h for UA 100."""
    n = len(ua)
    return HomeParams(np.asarray(ua, float), np.full(n, 40.0 * 3600.0 * 100.0), np.full(n, 300.0), np.full(n, MC),
                      float(-np.log1p(-0.375) * MC), 32.5, exponent)


def both(ua: list[float], stations: list[int], exponent: float = 1.3,
         start: float = 18.5) -> tuple[HomeParams, np.ndarray, SupplyBound, MassBound]:
    """(params, standard, one-supply bound, per-home bound at the same G_max and maximum supply), 2 days at −5 °C."""
    p = station_homes(ua, exponent)
    n, idx = len(ua), np.asarray(stations, np.intp)
    std = schedule()[:, :1].repeat(n, axis=1)
    to = np.full_like(std, -5.0)
    first = HomeState(np.full(n, start), np.full(n, p.excess_design), np.zeros(n))
    one = least_heat_one_supply(p, idx, p.mc_design, first, np.full((len(std), idx.max() + 1), TS_MAX), to, std, DT_S)
    g = radiator_eps(np.full(n, p.excess_design), p.mc_design, p) * p.mc_design
    return p, std, one, least_heat_with_mass(p.ua, p.cap, p.q_int, g, TS_MAX, first.temp_c, to, std, DT_S)


def binding(one: SupplyBound, j: int) -> np.ndarray:
    """The steps where station j's supply was bisected: neither at 20 °C nor at its maximum."""
    s = one.supply_c[:, j]
    return np.flatnonzero((s > 20.0 + 1e-6) & (s < TS_MAX - 1e-6))


def test_one_supply_overheats_the_middle_homes_to_hold_the_edge_home() -> None:
    """An edge home (more UA, the same radiator and flow) needs the hotter supply; its neighbours get it too."""
    _, std, one, per_home = both([100.0, 100.0, 115.0, 100.0, 120.0], [0, 0, 0, 1, 1])
    assert one.heat_kwh > 1.03 * per_home.heat_kwh
    assert one.forced_kwh == 0.0 and one.late_lift_kwh < 0.01 * one.heat_kwh
    assert np.all(one.temp_c[1:] >= std - 1e-8)
    above = one.temp_c[1:] - one.floor_c
    for j, edge, middle in ((0, 2, 0), (1, 4, 3)):
        k = binding(one, j)
        assert len(k) > 50
        assert np.allclose(above[k, edge], 0.0, atol=1e-6)  # the edge home sets the supply …
        assert np.all(above[k, middle] > 0.2)  # … and the middle home runs warmer than it needs
    assert one.stored_kwh > per_home.stored_kwh


def test_the_bisected_supply_is_the_least_and_is_the_simulators_step() -> None:
    p, _, one, _ = both([100.0, 100.0, 115.0, 100.0, 120.0], [0, 0, 0, 1, 1])
    idx = np.array([0, 0, 0, 1, 1])
    checked = 0
    for j in (0, 1):
        for k in binding(one, j)[::5]:
            state = HomeState(one.temp_c[k].copy(), one.excess_c[k].copy(), np.zeros(5))
            supply = one.supply_c[k].copy()
            nxt = step_homes(p, state, supply[idx], p.mc_design, np.full(5, -5.0), DT_S)
            mine = idx == j  # (a home of the other station may have been lifted beyond its maximum supply)
            assert np.allclose(nxt.temp_c[mine], one.temp_c[k + 1, mine], rtol=0.0, atol=1e-12)
            supply[j] -= 0.05
            less = step_homes(p, state, supply[idx], p.mc_design, np.full(5, -5.0), DT_S)
            assert np.any((less.temp_c < one.floor_c[k] - 1e-6)[mine])
            checked += 1
    assert checked > 20


def test_identical_homes_one_supply_is_the_per_home_bound() -> None:
    """With the radiator exponent at 1 the simulator's step at the maximum supply is exactly the per-home bound's
    Qmax step, so one supply for identical homes can do what a valve per home does — all but coast at no heat: its
    least supply, 20 °C, still warms homes a little on the nights (about 0.5 % here)."""
    _, _, one, per_home = both([100.0, 100.0, 100.0, 130.0, 130.0], [0, 0, 0, 1, 1], exponent=1.0)
    assert per_home.heat_kwh * 0.999 < one.heat_kwh < per_home.heat_kwh * 1.01
    assert one.stored_kwh == pytest.approx(per_home.stored_kwh, abs=0.01 * per_home.heat_kwh)
    assert one.at_least > 0 and len(binding(one, 0)) > 50 and len(binding(one, 1)) > 50
    assert one.late_lifts == 0


@pytest.mark.parametrize("scenario", ["normal", "imbalanced"])
def test_the_one_supply_bound_is_what_the_simulator_does_with_those_supplies(scenario: str) -> None:
    """``Simulation.step`` from the bound's state, the stations at the bound's supply (lag 0): the same homes, the
    same station heat — the flows as found (imbalanced: buildings short of flow), the weather of the same step."""
    s = setup(scenario)
    one = one_supply_bound(s)
    sim = s.sim
    sim.sp = replace(sim.sp, lag_s=np.full(len(sim.station_ids), 1e-6))
    eligible = [k for k in range(1, len(one.supply_c))
                if np.all(one.supply_c[k] >= sim.sp.supply_min_c) and np.all(one.supply_c[k] < s.ts_max[k] - 1e-6)]
    assert len(eligible) > 50
    for k in eligible[:: len(eligible) // 8]:
        sim.step_no = k
        sim.home_state = HomeState(one.temp_c[k].copy(), one.excess_c[k].copy(), np.zeros(sim.net.n))
        for j, sid in enumerate(sim.station_ids):
            sim.set_setpoint(sid, float(one.supply_c[k, j]))
        truth = sim.step()
        assert np.allclose(truth.home_temp, one.temp_c[k + 1], rtol=0.0, atol=1e-9)
        heat = np.bincount(sim.net.station_idx, weights=one.heat_w[k], minlength=len(sim.station_ids))
        assert np.allclose(truth.stations.heat_kw * 1000.0, heat, rtol=1e-9)
