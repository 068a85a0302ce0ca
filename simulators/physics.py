"""Vectorised heat balance of homes and stations (numpy arrays over all homes; no per-home loops).

Model (docs/SIMULATOR.md has the derivation and the constants):

- home:      C dT/dt = G (Ts - T) - UA (T - To) + Qint
- radiator:  G = eps * mc,  eps = 1 - exp(-NTU),  NTU = Krad * (dTm / dTm_design)^(n-1) / mc
  (mc = water capacity flow W/K; the exponent n makes the radiator weaker when it is cooler);
  return Tr = Ts - eps (Ts - T); dTm = (Ts + Tr)/2 - T.
- G is frozen over a step, so the step is solved exactly (exponential), stable for any dt.
- station:   supply follows its target with a first-order lag; return is the flow-weighted mix of
  the homes' returns (the heat balance); flow from the pump state and each building's share.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulators.generator import Network

WATER_CP = 4186.0  # J/(kg K)
M3H_PER_KGS = 3.6  # 1 kg/s of water = 3.6 m3/h
PUMP_FAIL_FLOW = 0.15  # circulation left when the pump stops (thermosiphon, bypass)
PUMP_FAIL_SUPPLY_SHARE = 0.3  # share of (target - 25 °C) still reaching the buildings
OUTAGE_SUPPLY_C = 20.0  # pipes cool toward room temperature when the station is down
LEAK_FLOW = 0.9
LEAK_STATIC_SHARE = 0.4  # static pressure falls to this share of normal during a leak
PRESSURE_LAG_S = 3600.0


class CalibrationError(ValueError):
    """The spec asks for a home that cannot be warmer than outdoors at the design point."""


@dataclass(frozen=True)
class HomeParams:
    ua: np.ndarray  # W/K loss to outdoors (roof, slab, gable included)
    cap: np.ndarray  # J/K heat capacity
    q_int: np.ndarray  # W internal gains
    mc_design: np.ndarray  # W/K design water capacity flow through the radiators
    rad_k: float  # W/K radiator conductance at the design mean excess temperature
    excess_design: float  # K, design mean radiator temperature minus design indoor
    exponent: float  # radiator exponent n


def radiator_eps(excess: np.ndarray, mc: np.ndarray, p: HomeParams) -> np.ndarray:
    ntu = p.rad_k * np.power(np.maximum(excess, 1.0) / p.excess_design, p.exponent - 1.0) / mc
    return -np.expm1(-ntu)


def calibrate(net: Network) -> HomeParams:
    """Give each home the UA that puts it at (design indoor - its margin) at the design point.

    Radiators and flows are sized for a middle home; an edge home has the same radiator but
    loses more (roof, ground slab, gable wall), which is why it runs colder.
    """
    d = net.spec.design
    n = net.n
    q_rad_mid = d.heat_loss_w - d.internal_gain_w
    if q_rad_mid <= 0:
        raise CalibrationError("design.heat_loss_w must exceed design.internal_gain_w")
    mc = q_rad_mid / (d.supply_c - d.return_c)
    eps_d = (d.supply_c - d.return_c) / (d.supply_c - d.indoor_c)
    rad_k = float(-np.log1p(-eps_d) * mc)
    excess_d = (d.supply_c + d.return_c) / 2 - d.indoor_c
    ua_mid = d.heat_loss_w / (d.indoor_c - d.outdoor_c)
    target = d.indoor_c - net.margin_c
    if n and float(np.min(target)) <= d.outdoor_c + 1.0:
        raise CalibrationError("a home's design margin puts it at or below the design outdoor temperature")
    base = HomeParams(
        ua=np.zeros(n), cap=np.zeros(n), q_int=np.zeros(n), mc_design=np.full(n, mc),
        rad_k=rad_k, excess_design=excess_d, exponent=d.radiator_exponent,
    )
    excess = np.full(n, excess_d)
    eps = np.zeros(n)
    for _ in range(30):
        eps = radiator_eps(excess, base.mc_design, base)
        ret = d.supply_c - eps * (d.supply_c - target)
        excess = (d.supply_c + ret) / 2 - target
    q_rad = eps * mc * (d.supply_c - target)
    q_int = np.full(n, d.internal_gain_w)
    ua = (q_rad + q_int) / (target - d.outdoor_c)
    cap = np.full(n, d.time_constant_h * 3600.0 * ua_mid)
    return HomeParams(ua, cap, q_int, base.mc_design, rad_k, excess_d, d.radiator_exponent)


@dataclass
class HomeState:
    temp_c: np.ndarray
    excess: np.ndarray
    return_c: np.ndarray


def step_homes(
    p: HomeParams, s: HomeState, supply: np.ndarray, mc: np.ndarray, outdoor: np.ndarray, dt_s: float
) -> HomeState:
    """Advance all homes by ``dt_s`` seconds under per-home supply, water flow and outdoor."""
    mc = np.maximum(mc, 1e-6)
    eps = radiator_eps(s.excess, mc, p)
    g = eps * mc
    gu = g + p.ua
    t_eq = (g * supply + p.ua * outdoor + p.q_int) / gu
    temp = t_eq + (s.temp_c - t_eq) * np.exp(-gu * (dt_s / p.cap))
    ret = supply - eps * (supply - temp)
    return HomeState(temp, (supply + ret) * 0.5 - temp, ret)


def steady_homes(p: HomeParams, supply: np.ndarray, mc: np.ndarray, outdoor: np.ndarray) -> HomeState:
    """The equilibrium under constant conditions (the simulation's starting state)."""
    mc = np.maximum(mc, 1e-6)
    excess = np.full(len(p.ua), p.excess_design)
    temp = np.zeros(len(p.ua))
    ret = supply.copy()
    for _ in range(30):
        eps = radiator_eps(excess, mc, p)
        g = eps * mc
        temp = (g * supply + p.ua * outdoor + p.q_int) / (g + p.ua)
        ret = supply - eps * (supply - temp)
        excess = (supply + ret) * 0.5 - temp
    return HomeState(temp, excess, ret)


@dataclass(frozen=True)
class StationParams:
    supply_min_c: np.ndarray
    supply_max_c: np.ndarray
    lag_s: np.ndarray
    static_kpa: np.ndarray
    pump_kpa: np.ndarray
    approach_c: np.ndarray
    curves: tuple[tuple[np.ndarray, np.ndarray] | None, ...]
    primary_curves: tuple[tuple[np.ndarray, np.ndarray], ...]


def station_params(net: Network) -> StationParams:
    specs = {s.id: s for s in net.spec.stations}
    ss = [specs[s.station_id] for s in net.stations]

    def curve(c: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
        pts = sorted(c)
        return np.array([x for x, _ in pts]), np.array([y for _, y in pts])

    return StationParams(
        supply_min_c=np.array([s.supply_min_c for s in ss]),
        supply_max_c=np.array([s.supply_max_c for s in ss]),
        lag_s=np.array([s.lag_h * 3600.0 for s in ss]),
        static_kpa=np.array([s.static_kpa for s in ss]),
        pump_kpa=np.array([s.pump_kpa for s in ss]),
        approach_c=np.array([s.approach_c for s in ss]),
        curves=tuple(curve(s.curve) if s.curve else None for s in ss),
        primary_curves=tuple(curve(s.primary_curve) for s in ss),
    )


@dataclass
class StationState:
    setpoint_c: np.ndarray  # NaN = follow the outdoor-reset curve
    supply_c: np.ndarray
    return_c: np.ndarray
    flow_share: np.ndarray
    static_kpa: np.ndarray
    flow_m3h: np.ndarray = field(default_factory=lambda: np.zeros(0))
    supply_kpa: np.ndarray = field(default_factory=lambda: np.zeros(0))
    primary_supply_c: np.ndarray = field(default_factory=lambda: np.zeros(0))
    primary_return_c: np.ndarray = field(default_factory=lambda: np.zeros(0))
    heat_kw: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass
class StationFaults:
    pump: np.ndarray
    leak: np.ndarray
    outage: np.ndarray

    @classmethod
    def none(cls, k: int) -> StationFaults:
        return cls(np.zeros(k, bool), np.zeros(k, bool), np.zeros(k, bool))


def station_target(p: StationParams, setpoint: np.ndarray, outdoor: np.ndarray,
                   curve_offset: np.ndarray | None = None) -> np.ndarray:
    """What the station's controller aims for: the setpoint, else its curve (shifted by ``curve_offset``);
    within limits and primary."""
    target = setpoint.copy()
    primary = np.empty_like(outdoor)
    for j, (curve, prim) in enumerate(zip(p.curves, p.primary_curves, strict=True)):
        if np.isnan(target[j]):
            shift = 0.0 if curve_offset is None else float(curve_offset[j])
            target[j] = np.interp(outdoor[j], *curve) + shift if curve is not None else p.supply_max_c[j]
        primary[j] = np.interp(outdoor[j], *prim)
    target = np.clip(target, p.supply_min_c, p.supply_max_c)
    return np.minimum(target, primary - p.approach_c)


def step_stations(
    p: StationParams, s: StationState, f: StationFaults, outdoor: np.ndarray, dt_s: float,
    curve_offset: np.ndarray | None = None,
) -> StationState:
    """Supply toward target (lagged), pumps and pressures. Return is filled in by ``mix_returns``."""
    target = station_target(p, s.setpoint_c, outdoor, curve_offset)
    target = np.where(f.pump, 25.0 + PUMP_FAIL_SUPPLY_SHARE * (target - 25.0), target)
    target = np.where(f.outage, OUTAGE_SUPPLY_C, target)
    lag = np.where(f.outage, p.lag_s * 4.0, p.lag_s)
    supply = s.supply_c + (target - s.supply_c) * -np.expm1(-dt_s / lag)
    flow = np.where(f.outage, 0.0, np.where(f.pump, PUMP_FAIL_FLOW, np.where(f.leak, LEAK_FLOW, 1.0)))
    static_target = np.where(f.leak, p.static_kpa * LEAK_STATIC_SHARE, p.static_kpa)
    static = s.static_kpa + (static_target - s.static_kpa) * -np.expm1(-dt_s / PRESSURE_LAG_S)
    primary = np.array([np.interp(o, *c) for o, c in zip(outdoor, p.primary_curves, strict=True)])
    return StationState(
        setpoint_c=s.setpoint_c,
        supply_c=supply,
        return_c=s.return_c,
        flow_share=flow,
        static_kpa=static,
        flow_m3h=s.flow_m3h,
        supply_kpa=static + p.pump_kpa * flow**2,
        primary_supply_c=np.where(f.outage, supply, primary),
        primary_return_c=s.primary_return_c,
        heat_kw=s.heat_kw,
    )


def mix_returns(
    s: StationState, p: StationParams, station_idx: np.ndarray, mc: np.ndarray, home_return: np.ndarray
) -> None:
    """Station return = flow-weighted mix of the homes' returns; heat and flow from the same sums."""
    k = len(s.supply_c)
    m_sum = np.bincount(station_idx, weights=mc, minlength=k)
    mt_sum = np.bincount(station_idx, weights=mc * home_return, minlength=k)
    has = m_sum > 1e-3
    s.return_c = np.where(has, mt_sum / np.where(has, m_sum, 1.0), s.supply_c)
    s.flow_m3h = m_sum / WATER_CP * M3H_PER_KGS
    s.heat_kw = (m_sum * s.supply_c - mt_sum) / 1000.0
    s.primary_return_c = s.return_c + p.approach_c
