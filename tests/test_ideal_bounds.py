"""tools.ideal_bounds: the least heat with thermal mass, from the start state, against the no-mass bounds."""

from __future__ import annotations

import numpy as np
import pytest

from heatwatch.app.score import ideal_heat_kwh
from simulators.physics import HomeParams, HomeState, radiator_eps, step_homes
from tools.ideal_bounds import MASS, MassBound, bounds, least_heat_with_mass

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
    mass = [rows[f"standard as applied{m}, {MASS}"] for m in ("", " + 0.5 °C on the flats", " + 1 °C on the flats")]
    assert 0.0 < mass[0] < mass[1] < mass[2]
    assert "day standard at every hour" in rows and "standard as applied (18 °C day, 16 °C night)" in rows
