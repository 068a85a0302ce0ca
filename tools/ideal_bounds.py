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

heatwatch does not have a valve per home: it sets one supply per station, and until a crew sets the home valves every
home of a station gets that supply at its as-found flow (valves fully open, ``flow_factor`` of design flow). The rows
"one supply per station, valves as found" are the least heat any strategy that only chooses each station's supply,
with perfect foresight and no step limit, could deliver with every home at or above its standard at the end of every
step, from the same start state (``least_heat_one_supply``): the homes stepped by the simulator's own ``step_homes``,
the heat counted as the simulator counts it. The supply that holds the home needing most overheats its neighbours, so
these rows are above the per-home ones; the gap is what balancing the valves could save, the rest what no supply
strategy can beat while the valves are as found. Each note adds how many station-steps were at the least supply.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np

from heatwatch.app.score import DEFAULT_START, ideal_heat_kwh, on_the_curve, score_config, standards, stored_heat_kwh
from simulators.physics import OUTAGE_SUPPLY_C, HomeParams, HomeState, radiator_eps, station_target, step_homes
from simulators.scenario import load_scenario
from simulators.simulation import Simulation

J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class Floors:
    """``home_floors``'s answer, steps × homes, with the single-node step at Qmax the forward passes need."""

    floor_c: np.ndarray  # L: the lowest temperature at the end of each step from which every later standard holds
    need_c: np.ndarray  # the standard, lowered to the warmest Qmax allows where Qmax cannot hold it whatever the start
    held_at_best: int  # home-steps so lowered
    t_eq_max: np.ndarray  # where Qmax would take each home in each step's weather …
    a_max: np.ndarray  # … and how fast (homes): the step at Qmax is T1 = t_eq_max + (T0 − t_eq_max) a_max


def home_floors(ua: np.ndarray, cap: np.ndarray, q_int: np.ndarray, g_max: np.ndarray, ts_max: np.ndarray,
                start_c: np.ndarray, outdoor_c: np.ndarray, standard_c: np.ndarray, dt_s: float) -> Floors:
    """The backward pass: each home's floor L, the lowest temperature at the end of each step from which Qmax can
    still meet every later standard — shared by the per-home bound and the one-supply bound, which differ in Qmax.

    Per home (arrays over homes: ``ua`` W/K, ``cap`` J/K, ``q_int`` W, ``g_max`` W/K, ``start_c``; steps × homes,
    or anything that broadcasts to it: ``ts_max``, ``outdoor_c``, ``standard_c``): C dT/dt = Q − UA (T − To) + Qint,
    Q constant over a step, Qmax = g_max (ts_max − T), each step solved exactly (its exponential).
    L[end] = std[end]; L[k] = max(std[k], the lowest T from which Qmax over step k + 1 reaches L[k + 1]).

    Where even a home that started at its highest standard (or warmer, as it is) and ran at Qmax throughout would be
    under the standard — a radiator too small for the weather — the standard is lowered to that warmest temperature
    (``held_at_best`` counts those home-steps): a relaxation, so the bounds stay lower bounds. Without it, days of a
    standard just out of Qmax's reach would ask the home to start them tens of degrees warmer; with it, no floor is
    above that best, so the start is never lifted above the home's highest standard.
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
    a_max = np.exp(-gu * dt_s / cap)
    b = np.exp(-ua * dt_s / cap)  # the step at Q = 0: T1 = To + Qint/UA + (T0 − that) b
    t_eq_max = (g_max * ts + ua * to + q_int) / gu

    best = np.empty(shape)
    prev = np.maximum(start, std.max(axis=0))
    for k in range(steps):
        free = to[k] + q_int / ua
        prev = best[k] = np.maximum(t_eq_max[k] + (prev - t_eq_max[k]) * a_max, free + (prev - free) * b)
    need = np.minimum(std, best)

    floor = np.empty(shape)
    floor[-1] = need[-1]
    for k in range(steps - 2, -1, -1):
        eq = t_eq_max[k + 1]
        floor[k] = np.minimum(np.maximum(need[k], eq + (floor[k + 1] - eq) / a_max), best[k])
    return Floors(floor, need, int(np.count_nonzero(need < std - 1e-9)), t_eq_max, a_max)


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

    The model and the arguments are ``home_floors``'s, each home with its own Q in [0, Qmax] (a valve per home).

    1. Backward: the floors L (``home_floors``), the standard relaxed where Qmax cannot hold it whatever the start.
    2. Forward from ``start_c``: coast (Q = 0); when that ends under the floor, the constant Q that lands exactly on
       it. A home that even Qmax cannot lift onto its floor (it starts too far under) gets that Q all the same,
       counted in ``forced_kwh``.

    Exact for this model with Q constant over a step (as the simulator freezes G over a step; heat given only at the
    very end of each step would save about dt/2τ more, under 0.4 % at 15 min and τ ≥ 22 h): heat is increasing in
    every later temperature (Σ Q ∝ T_N − b·T_0 + (1 − b)·Σ T_k), and the trajectory is the lowest a feasible one can
    be at every step. All that is ever forced is the start deficit.
    """
    ua, cap, q_int, start = (np.asarray(a, float) for a in (ua, cap, q_int, start_c))
    f = home_floors(ua, cap, q_int, g_max, ts_max, start, outdoor_c, standard_c, dt_s)
    shape = f.floor_c.shape
    to = np.broadcast_to(np.asarray(outdoor_c, float), shape)
    ts = np.broadcast_to(np.asarray(ts_max, float), shape)
    b = np.exp(-ua * dt_s / cap)  # the step at a constant Q: T1 = To + (Qint + Q)/UA + (T0 − that) b
    one_b = -np.expm1(-ua * dt_s / cap)

    temp = np.empty((shape[0] + 1, len(ua)))
    temp[0] = start
    heat = np.empty(shape)
    forced_j = np.zeros(len(ua))
    beyond_j = np.zeros(len(ua))
    for k in range(shape[0]):
        free = to[k] + q_int / ua
        free_k = free + (temp[k] - free) * b
        lift = np.maximum(f.floor_c[k] - free_k, 0.0)
        heat[k] = ua * lift / one_b
        temp[k + 1] = free_k + lift
        eq = f.t_eq_max[k]
        reach = eq + (np.minimum(temp[k], ts[k]) - eq) * f.a_max
        short = np.maximum(temp[k + 1] - np.maximum(reach, free_k), 0.0)
        forced = short > 1e-9
        forced_j += np.where(forced, heat[k] * dt_s, 0.0)
        beyond_j += np.where(forced, ua * short / one_b * dt_s, 0.0)
    return MassBound(
        heat_kwh=float(heat.sum() * dt_s / J_PER_KWH),
        stored_kwh=stored_heat_kwh(cap, temp[0], temp[-1]),
        forced_kwh=float(forced_j.sum() / J_PER_KWH),
        beyond_max_kwh=float(beyond_j.sum() / J_PER_KWH),
        forced_homes=int(np.count_nonzero(forced_j)),
        held_at_best=f.held_at_best,
        floor_c=f.floor_c, temp_c=temp, heat_w=heat,
    )


@dataclass(frozen=True)
class SupplyBound(MassBound):
    """``least_heat_one_supply``'s answer: ``MassBound``'s fields (``heat_w`` is the radiator heat as the simulator
    counts it, plus any lift beyond the maximum supply) and the supplies that give it."""

    supply_c: np.ndarray  # steps × stations: the least supply of each step
    excess_c: np.ndarray  # (steps + 1) × homes: the radiator state ``step_homes`` carries (it sets next step's G)
    at_least: int  # station-steps at the least supply (20 °C): every home on or above its floor with it
    late_lifts: int  # home-steps after the first lifted onto the floor beyond the maximum supply …
    late_lift_kwh: float  # … and the heat of those lifts (the start deficit is the first step's: ``forced_kwh``)


LEAST_SUPPLY_C = OUTAGE_SUPPLY_C  # the least supply the bound lets a station send: the pipes at room temperature
_TOL_C = 1e-9


def least_heat_one_supply(p: HomeParams, station_idx: np.ndarray, mc: np.ndarray, start: HomeState,
                          ts_max: np.ndarray, outdoor_c: np.ndarray, standard_c: np.ndarray, dt_s: float,
                          iterations: int = 32) -> SupplyBound:
    """The least heat any strategy that only chooses each station's supply, with perfect foresight and no step limit,
    can deliver while every home stays at or above ``standard_c`` at the end of every step, from ``start``.

    Why: heatwatch sets one supply per station; until a crew sets the valves every home of the station gets it at its
    as-found flow ``mc`` (homes). A supply hot enough for the home that needs most overheats the others — the heat
    the per-home bound (a valve per home) does not count. ``station_idx`` maps homes to stations; ``ts_max`` is each
    station's maximum supply (steps × stations); ``outdoor_c`` and ``standard_c`` are steps × homes.

    1. Floors L per home (``home_floors``) with Qmax the station's maximum supply at the home's flow: G_max =
       eps(design excess, mc) · mc, as the per-home bound takes it.
    2. Forward with the simulator's own ``step_homes``, all stations at once: each station's supply is the least in
       [20 °C, ts_max] that ends every home on or above its floor, by bisection (each home's next temperature rises
       with the supply). 20 °C, the pipes at room temperature, is below any station's ``supply_min_c`` (a relaxation)
       but still warms a home under 20 °C a little. There is no "off" (no flow, no heat): a setpoint cannot stop
       the flow, and ``step_homes`` leaves a radiator without flow at no excess, the next step's radiator at its
       weakest — chosen whenever the homes could coast, off cost more after it than it saved. Where even
       ts_max leaves a home under its floor (the start deficit) the station runs at ts_max and that home is lifted
       onto the floor by a constant extra heat beyond it, counted in ``forced_kwh`` (``beyond_max_kwh`` the extra).
    3. Heat as the simulator counts it (``mix_returns``): mc · (supply − return) over each step.

    Exact for these floors, greedy step by step, given that monotonicity — with two caveats from the radiator's
    exponent, both small: ``step_homes`` freezes G at the previous step's radiator excess, so a low supply now makes
    the next step's radiator weaker — a pre-heat step right after a low one can fall short of a floor that
    assumes the design excess, and is lifted onto it and counted apart (``late_lifts``, a relaxation); and steps at
    the maximum supply run above the design excess, so where the floors bind they are a little high, as in the
    per-home bound.
    """
    idx = np.asarray(station_idx, np.intp)
    mc = np.asarray(mc, float)
    ts_max = np.asarray(ts_max, float)
    steps, n_st = ts_max.shape
    shape = (steps, len(p.ua))
    to = np.broadcast_to(np.asarray(outdoor_c, float), shape)
    g_max = radiator_eps(np.full(len(p.ua), p.excess_design), mc, p) * mc
    f = home_floors(p.ua, p.cap, p.q_int, g_max, ts_max[:, idx], start.temp_c, to, standard_c, dt_s)

    temp = np.empty((steps + 1, len(p.ua)))
    excess = np.empty((steps + 1, len(p.ua)))
    temp[0], excess[0] = start.temp_c, start.excess
    heat = np.empty(shape)
    supply = np.empty((steps, n_st))
    forced_j = np.zeros(len(p.ua))
    beyond_j = np.zeros(len(p.ua))
    at_least = late_lifts = 0
    late_j = 0.0

    def trial(state: HomeState, k: int, ts: np.ndarray) -> HomeState:
        """Step k from ``state`` with each station at ``ts``: the simulator's own step."""
        return step_homes(p, state, ts[idx], mc, to[k], dt_s)

    def under(k: int, s: HomeState) -> np.ndarray:
        """Stations with a home under its floor at the end of step k."""
        return np.bincount(idx, weights=s.temp_c < f.floor_c[k] - _TOL_C, minlength=n_st) > 0

    state = start
    for k in range(steps):
        floor, top = f.floor_c[k], ts_max[k]
        lo = np.minimum(LEAST_SUPPLY_C, top)
        forced = under(k, trial(state, k, top))
        search = ~forced & under(k, trial(state, k, lo))
        hi = np.where(forced | search, top, lo)  # the least supply found so far that holds every floor
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            bad = under(k, trial(state, k, mid))
            lo = np.where(search & bad, mid, lo)
            hi = np.where(search & ~bad, mid, hi)
        nxt = trial(state, k, hi)
        heat[k] = mc * (hi[idx] - nxt.return_c)
        short = np.maximum(floor - nxt.temp_c, 0.0) * forced[idx]
        lifted = short > _TOL_C
        g = radiator_eps(state.excess, mc, p) * mc
        gu = g + p.ua
        extra = short * gu / -np.expm1(-gu * dt_s / p.cap)  # a constant Q over the step that adds ``short``
        heat[k] += extra
        if k == 0:
            forced_j += np.where(lifted, heat[k] * dt_s, 0.0)
            beyond_j += np.where(lifted, extra * dt_s, 0.0)
        else:
            late_lifts += int(np.count_nonzero(lifted))
            late_j += float(extra.sum()) * dt_s
        at_least += int(np.count_nonzero(~forced & ~search))
        supply[k] = hi
        state = HomeState(nxt.temp_c + short, nxt.excess, nxt.return_c)
        temp[k + 1], excess[k + 1] = state.temp_c, state.excess
    return SupplyBound(
        heat_kwh=float(heat.sum() * dt_s / J_PER_KWH),
        stored_kwh=stored_heat_kwh(p.cap, temp[0], temp[-1]),
        forced_kwh=float(forced_j.sum() / J_PER_KWH),
        beyond_max_kwh=float(beyond_j.sum() / J_PER_KWH),
        forced_homes=int(np.count_nonzero(forced_j)),
        held_at_best=f.held_at_best,
        floor_c=f.floor_c, temp_c=temp, heat_w=heat,
        supply_c=supply, excess_c=excess, at_least=at_least, late_lifts=late_lifts, late_lift_kwh=late_j / J_PER_KWH,
    )


MASS = "thermal mass, from the start state"
ONE_SUPPLY = "one supply per station, valves as found"


def _mass_note(m: MassBound, qmax: str = "Qmax") -> str:
    note = (f"stored at the end {m.stored_kwh:,.0f} kWh (heat − stored {m.heat_kwh - m.stored_kwh:,.0f} kWh); "
            f"start deficit {m.forced_kwh:,.0f} kWh in {m.forced_homes} homes {qmax} could not bring onto the standard"
            f" in time ({m.beyond_max_kwh:,.0f} kWh of it beyond {qmax})")
    return note + (f"; {m.held_at_best} home-steps with the standard beyond Qmax whatever the start (held at the"
                   " warmest Qmax allows)" if m.held_at_best else "")


@dataclass(frozen=True)
class Setup:
    """A scenario as the bounds see it: the simulation at its start (on heatwatch's curve, settled) and, per step,
    the weather each home and station sees as the simulation steps it, the standards and the maximum supply."""

    sim: Simulation
    step_s: float
    outdoor_c: np.ndarray  # steps × homes; step k ends at start + (k + 1) · step_s
    ts_max: np.ndarray  # steps × stations: the scenario's supply_max_c, capped by the primary less the approach
    std_c: np.ndarray  # steps × homes: the standard as applied
    day_c: np.ndarray  # homes: the day standard
    flats: np.ndarray  # homes: residential (where the margins apply)


def setup(scenario: str) -> Setup:
    """The scenario on heatwatch's curve from ``DEFAULT_START``, as ``heatwatch score`` runs it."""
    with tempfile.TemporaryDirectory(prefix="heatwatch-bounds-") as tmp:  # score_config writes its defaults file there
        cfg = score_config(Path(tmp))
    sc = on_the_curve(load_scenario(scenario), cfg)
    sim = Simulation(sc, DEFAULT_START)
    steps = int(sc.duration_h * 3600 / sc.step_s)
    times = [DEFAULT_START + timedelta(seconds=(k + 1) * sc.step_s) for k in range(steps)]
    at_station = np.vstack([sim.weather.at(t)[sim.net.station_site_idx] for t in times])  # steps × stations
    std, day = standards(cfg, [h.kind for h in sim.net.homes], [h.min_temp_c for h in sim.net.homes], times)
    return Setup(
        sim=sim, step_s=float(sc.step_s), outdoor_c=at_station[:, sim.net.station_idx],
        ts_max=np.vstack([station_target(sim.sp, sim.sp.supply_max_c, o) for o in at_station]),
        std_c=std, day_c=day, flats=np.array([h.kind == "residential" for h in sim.net.homes]),
    )


def one_supply_bound(s: Setup, margin_c: float = 0.0) -> SupplyBound:
    """``least_heat_one_supply`` on the scenario, the flats at standard + ``margin_c``: the valves as found (fully
    open, each home at its building's ``flow_factor`` of design flow), the stations healthy."""
    sim = s.sim
    mc = sim.params.mc_design * sim.net.flow_factor * sim.valve
    return least_heat_one_supply(sim.params, sim.net.station_idx, mc, sim.home_state, s.ts_max, s.outdoor_c,
                                 s.std_c + margin_c * s.flats, s.step_s)


def _supply_note(b: SupplyBound) -> str:
    late = (f"; {b.late_lift_kwh:,.0f} kWh lifted beyond the maximum supply in {b.late_lifts} later home-steps"
            " (a radiator weak after a low-supply step short of a floor that assumes the design excess)")
    return (_mass_note(b, "the maximum supply")
            + f"; at the least supply (20 °C) in {b.at_least} of {b.supply_c.size} station-steps"
            + (late if b.late_lifts else ""))


def bounds_and_notes(scenario: str) -> tuple[dict[str, float], dict[str, str]]:
    """The bounds (name → kWh) and, for the thermal-mass rows, a note (stored heat, start deficit)."""
    s = setup(scenario)
    sim, std, flats = s.sim, s.std_c, s.flats
    dt_h = s.step_s / 3600.0
    p = sim.params

    def at(temp: np.ndarray) -> float:
        return ideal_heat_kwh(p.ua, p.q_int, np.broadcast_to(temp, std.shape), s.outdoor_c, dt_h)

    rows = {"standard as applied (18 °C day, 16 °C night)": at(std), "day standard at every hour": at(s.day_c),
            **{f"day standard + {m:g} °C on the flats at every hour": at(s.day_c + m * flats) for m in (0.5, 1.0)}}

    g_max = radiator_eps(np.full(sim.net.n, p.excess_design), p.mc_design, p) * p.mc_design
    ts_max = s.ts_max[:, sim.net.station_idx]
    start = sim.home_state.temp_c.copy()
    notes = {}
    for m in (0.0, 0.5, 1.0):
        name = f"standard as applied{f' + {m:g} °C on the flats' if m else ''}, {MASS}"
        b = least_heat_with_mass(p.ua, p.cap, p.q_int, g_max, ts_max, start, s.outdoor_c, std + m * flats,
                                 s.step_s)
        rows[name] = b.heat_kwh
        notes[name] = _mass_note(b)
    for m in (0.0, 0.5, 1.0):
        name = f"standard as applied{f' + {m:g} °C on the flats' if m else ''}, {ONE_SUPPLY}, {MASS}"
        one = one_supply_bound(s, m)
        rows[name] = one.heat_kwh
        notes[name] = _supply_note(one)
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
