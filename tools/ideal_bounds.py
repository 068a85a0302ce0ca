"""The per-home heat bounds of a scenario against its heating curve: what holding every home at a temperature would
take, from the simulator's own homes and weather (a valve per home).

    python -m tools.ideal_bounds [SCENARIO] [CURVE_KWH]

Why: ``heatwatch score``'s per-home ideal holds every home at its standard as applied — 18 °C by day and 16 °C at
night. Homes with a 22–40 h time constant cannot follow a 16 °C night and be back at 18 °C by 06:00, so this also
prints the bound at the day standard at every hour, and with the model's margins on the flats: how much of the gap
between a strategy and the per-home ideal is the night, and how much the margin (docs/CONTROL.md).

Those rows have no thermal mass: a 16 °C night costs nothing to reach, and every home is at its standard from the
first step — but the 3-day runs start from the homes settled on the plain curve, some of them under the standard they
must reach by 06:00, and warming them (the warm-up) is heat every strategy pays. The rows "thermal mass, from the
start state" are the least heat any control with a valve per home and perfect foresight of the weather could
deliver: each home a single node, C dT/dt = Q − UA (T − To) + Qint with 0 ≤ Q ≤ Qmax, from the run's real initial
indoor temperatures, at or above its standard at the end of every step, pre-heating for 06:00 only as much and as
late as it must (``least_heat_with_mass``). A home that even Qmax cannot bring onto the standard in time from where it
starts is lifted anyway, and that heat is printed as the start deficit. Qmax is the home's radiator at the station's
maximum supply (the scenario's ``supply_max_c``, capped by the primary supply less the approach as the station's own
controller caps it: ``simulators.physics.station_target``) at design flow: G_max (Ts_max − T) with G_max =
eps · mc_design and eps from ``radiator_eps`` at the design mean excess — an approximation: with the radiator
exponent above 1 a radiator at a hotter supply transfers a little more, so where Qmax binds this bound is a little
high. A home in a building short of flow (``flow_factor`` under 1, the imbalanced scenario) is still given design
flow: its own valve could open to it. The heat the homes hold at the end beyond the start (Σ C·(T_end − T_start),
negative when the least-heat homes end cooler than the curve's settled start) is printed with these rows, to be set
against the ``stored kWh`` and ``net heat`` of the score table.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np

from heatwatch.app.score import DEFAULT_START, ideal_heat_kwh, on_the_curve, score_config, standards
from simulators.physics import radiator_eps, station_target
from simulators.scenario import load_scenario
from simulators.simulation import Simulation

J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class MassBound:
    """``least_heat_with_mass``'s answer. Arrays are steps × homes; step k runs from T[k] to T[k + 1]."""

    heat_kwh: float  # Σ Q·dt over homes and steps
    stored_kwh: float  # Σ C·(T_end − T_start): heat left in the homes at the end beyond the start
    forced_kwh: float  # heat of the steps where even Qmax could not reach the floor (the start deficit) …
    beyond_max_kwh: float  # … of it, what lies beyond Qmax
    forced_homes: int  # homes with such a step
    held_at_best: int  # home-steps whose standard Qmax could not hold whatever the start: held at its best there
    floor_c: np.ndarray  # L: the lowest temperature at the end of each step from which every later standard holds
    temp_c: np.ndarray  # (steps + 1) × homes: the least-heat trajectory, the start first
    heat_w: np.ndarray  # Q over each step


def least_heat_with_mass(ua: np.ndarray, cap: np.ndarray, q_int: np.ndarray, g_max: np.ndarray,
                         ts_max: np.ndarray, start_c: np.ndarray, outdoor_c: np.ndarray, standard_c: np.ndarray,
                         dt_s: float) -> MassBound:
    """The least heat that holds each home at or above ``standard_c`` at the end of every step, from ``start_c``.

    Per home (arrays over homes: ``ua`` W/K, ``cap`` J/K, ``q_int`` W, ``g_max`` W/K, ``start_c``; steps × homes,
    or anything that broadcasts to it: ``ts_max``, ``outdoor_c``, ``standard_c``): C dT/dt = Q − UA (T − To) + Qint,
    Q constant over a step, 0 ≤ Q ≤ Qmax = g_max (ts_max − T), each step solved exactly (its exponential).

    1. Backward: L[end] = std[end]; L[k] = max(std[k], the lowest T from which Qmax over step k + 1 reaches
       L[k + 1]) — the lowest temperature from which every later standard can still be met (std relaxed as below).
    2. Forward from ``start_c``: coast (Q = 0); when that ends under the floor, the constant Q that lands exactly on
       it. A home that even Qmax cannot lift onto its floor (it starts too far under) gets that Q all the same,
       counted in ``forced_kwh``.

    Exact for this model with Q constant over a step (as the simulator freezes G over a step; heat given only at the
    very end of each step would save about dt/2τ more, under 0.4 % at 15 min and τ ≥ 22 h): heat is increasing in
    every later temperature (Σ Q ∝ T_N − b·T_0 + (1 − b)·Σ T_k), and the trajectory is the lowest a feasible one can
    be at every step. Where even a home that started at its highest
    standard (or warmer, as it is) and ran at Qmax throughout would be under the standard — a radiator too small for
    the weather — the standard is lowered to that warmest temperature (``held_at_best`` counts those home-steps): a
    relaxation, so this stays a lower bound, and all that is ever forced is the start deficit.
    """
    ua, cap, q_int, g_max, start = (np.asarray(a, float) for a in (ua, cap, q_int, g_max, start_c))
    shape = np.broadcast_shapes(np.shape(outdoor_c), np.shape(standard_c), np.shape(ts_max), (1, len(ua)))
    if len(shape) != 2:
        raise ValueError(f"outdoor_c, standard_c and ts_max must broadcast to steps × homes, not {shape}")
    steps = shape[0]
    std = np.broadcast_to(np.asarray(standard_c, float), shape)
    to = np.broadcast_to(np.asarray(outdoor_c, float), shape)
    ts = np.broadcast_to(np.asarray(ts_max, float), shape)
    gu = g_max + ua
    a_max = np.exp(-gu * dt_s / cap)  # the step at Qmax: T1 = t_eq + (T0 − t_eq) a_max
    b = np.exp(-ua * dt_s / cap)  # the step at a constant Q: T1 = To + (Qint + Q)/UA + (T0 − that) b
    one_b = -np.expm1(-ua * dt_s / cap)

    t_eq_max = (g_max * ts + ua * to + q_int) / gu  # where Qmax would take each home in each step's weather

    def coast(k: int, t: np.ndarray) -> np.ndarray:
        free = to[k] + q_int / ua
        return free + (t - free) * b

    # The warmest each home could be at the end of each step had it started at its highest standard (or warmer, as
    # it is) and run at Qmax since. A standard above that is one the radiator cannot hold whatever the start: the home
    # is held at that best there instead. Without it, days of a standard just out of Qmax's reach would ask the home
    # to start them tens of degrees warmer; with it, no floor is above that best, so the start is never lifted above
    # the home's highest standard.
    best = np.empty(shape)
    prev = np.maximum(start, std.max(axis=0))
    for k in range(steps):
        prev = best[k] = np.maximum(t_eq_max[k] + (prev - t_eq_max[k]) * a_max, coast(k, prev))
    need = np.minimum(std, best)

    floor = np.empty(shape)
    floor[-1] = need[-1]
    for k in range(steps - 2, -1, -1):
        eq = t_eq_max[k + 1]
        floor[k] = np.minimum(np.maximum(need[k], eq + (floor[k + 1] - eq) / a_max), best[k])

    temp = np.empty((steps + 1, len(ua)))
    temp[0] = start
    heat = np.empty(shape)
    forced_j = np.zeros(len(ua))
    beyond_j = np.zeros(len(ua))
    for k in range(steps):
        free_k = coast(k, temp[k])
        lift = np.maximum(floor[k] - free_k, 0.0)
        heat[k] = ua * lift / one_b
        temp[k + 1] = free_k + lift
        eq = t_eq_max[k]
        reach = eq + (np.minimum(temp[k], ts[k]) - eq) * a_max
        short = np.maximum(temp[k + 1] - np.maximum(reach, free_k), 0.0)
        forced = short > 1e-9
        forced_j += np.where(forced, heat[k] * dt_s, 0.0)
        beyond_j += np.where(forced, ua * short / one_b * dt_s, 0.0)
    return MassBound(
        heat_kwh=float(heat.sum() * dt_s / J_PER_KWH),
        stored_kwh=float(np.sum(cap * (temp[-1] - temp[0])) / J_PER_KWH),
        forced_kwh=float(forced_j.sum() / J_PER_KWH),
        beyond_max_kwh=float(beyond_j.sum() / J_PER_KWH),
        forced_homes=int(np.count_nonzero(forced_j)),
        held_at_best=int(np.count_nonzero(need < std - 1e-9)),
        floor_c=floor, temp_c=temp, heat_w=heat,
    )


MASS = "thermal mass, from the start state"


def _mass_note(m: MassBound) -> str:
    note = (f"stored at the end {m.stored_kwh:,.0f} kWh (heat − stored {m.heat_kwh - m.stored_kwh:,.0f} kWh); "
            f"start deficit {m.forced_kwh:,.0f} kWh in {m.forced_homes} homes Qmax could not bring onto the standard"
            f" in time ({m.beyond_max_kwh:,.0f} kWh of it beyond Qmax)")
    return note + (f"; {m.held_at_best} home-steps with the standard beyond Qmax whatever the start (held at the"
                   " warmest Qmax allows)" if m.held_at_best else "")


def bounds_and_notes(scenario: str) -> tuple[dict[str, float], dict[str, str]]:
    """The bounds (name → kWh) and, for the thermal-mass rows, a note (stored heat, start deficit)."""
    cfg = score_config(Path(tempfile.mkdtemp(prefix="heatwatch-bounds-")))
    sc = on_the_curve(load_scenario(scenario), cfg)
    sim = Simulation(sc, DEFAULT_START)
    steps = int(sc.duration_h * 3600 / sc.step_s)
    times = [DEFAULT_START + timedelta(seconds=(k + 1) * sc.step_s) for k in range(steps)]
    at_station = np.vstack([sim.weather.at(t)[sim.net.station_site_idx] for t in times])  # steps × stations
    outdoor = at_station[:, sim.net.station_idx]  # what each home saw, as the simulation steps it
    std, day = standards(cfg, [h.kind for h in sim.net.homes], [h.min_temp_c for h in sim.net.homes], times)
    flats = np.array([h.kind == "residential" for h in sim.net.homes])
    dt_h = sc.step_s / 3600.0
    p = sim.params

    def at(temp: np.ndarray) -> float:
        return ideal_heat_kwh(p.ua, p.q_int, np.broadcast_to(temp, std.shape), outdoor, dt_h)

    rows = {"standard as applied (18 °C day, 16 °C night)": at(std), "day standard at every hour": at(day),
            **{f"day standard + {m:g} °C on the flats at every hour": at(day + m * flats) for m in (0.5, 1.0)}}

    g_max = radiator_eps(np.full(sim.net.n, p.excess_design), p.mc_design, p) * p.mc_design
    ts_max = np.vstack([station_target(sim.sp, sim.sp.supply_max_c, o) for o in at_station])[:, sim.net.station_idx]
    start = sim.home_state.temp_c.copy()
    notes = {}
    for m in (0.0, 0.5, 1.0):
        name = f"standard as applied{f' + {m:g} °C on the flats' if m else ''}, {MASS}"
        b = least_heat_with_mass(p.ua, p.cap, p.q_int, g_max, ts_max, start, outdoor, std + m * flats, sc.step_s)
        rows[name] = b.heat_kwh
        notes[name] = _mass_note(b)
    return rows, notes


def bounds(scenario: str) -> dict[str, float]:
    return bounds_and_notes(scenario)[0]


def main(argv: list[str]) -> None:
    scenario = argv[0] if argv else "season"
    curve = float(argv[1]) if len(argv) > 1 else None
    rows, notes = bounds_and_notes(scenario)
    for name, kwh in rows.items():
        share = f"  {100 * kwh / curve:.1f} % of the curve" if curve else ""
        print(f"{scenario}: {name}: {kwh:,.0f} kWh{share}")
        if name in notes:
            print(f"{scenario}:     {notes[name]}")


if __name__ == "__main__":
    main(sys.argv[1:])
