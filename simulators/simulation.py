"""The simulated network in time: physics state, weather, station events and setpoints.

No I/O here: ``step()`` advances one step and returns the truth; the runner publishes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from simulators.generator import Network, generate
from simulators.physics import (
    HomeParams,
    StationFaults,
    StationState,
    calibrate,
    mix_returns,
    station_params,
    station_target,
    steady_homes,
    step_homes,
    step_stations,
)
from simulators.scenario import Scenario
from simulators.weather import Forecaster, Weather


@dataclass(frozen=True)
class StepTruth:
    t: datetime
    step: int
    outdoor_site: np.ndarray  # per weather site
    home_temp: np.ndarray  # per home (all homes)
    stations: StationState
    faults: StationFaults


class Simulation:
    def __init__(
        self, scenario: Scenario, start: datetime, utc_offset_h: float = 8.0, network: Network | None = None
    ) -> None:
        self.scenario = scenario
        self.net = network or generate(scenario.network)
        self.params: HomeParams = calibrate(self.net)
        self.sp = station_params(self.net)
        self.start = start
        self.t = start
        self.step_no = 0
        self.dt_s = scenario.step_s
        self.weather = Weather(scenario.weather, self.net.site_names, start, scenario.seed, utc_offset_h)
        self.forecaster = Forecaster(scenario.forecast, self.weather, scenario.seed)
        self.station_ids = [s.station_id for s in self.net.stations]
        self._st_index = {sid: i for i, sid in enumerate(self.station_ids)}
        specs = {s.id: s for s in scenario.network.stations}
        design = scenario.network.design.supply_c
        setpoint = np.array(
            [
                specs[sid].setpoint_c if specs[sid].setpoint_c is not None
                else (np.nan if specs[sid].curve else design)
                for sid in self.station_ids
            ],
            dtype=float,
        )
        k = len(self.station_ids)
        outdoor = self._station_outdoor(self.weather.at(start))
        supply = station_target(self.sp, setpoint, outdoor)
        self.station_state = StationState(
            setpoint_c=setpoint, supply_c=supply, return_c=supply.copy(), flow_share=np.ones(k),
            static_kpa=self.sp.static_kpa.copy(), supply_kpa=self.sp.static_kpa + self.sp.pump_kpa,
            primary_supply_c=supply + self.sp.approach_c, primary_return_c=supply.copy(),
        )
        self.faults = StationFaults.none(k)
        self.curve_offset = np.zeros(k)  # a setpoint with curve_offset_c: the station's curve shifted
        self.valve = np.ones(self.net.n)  # each home's valve: share of its design flow it lets through (户间平衡)
        mc = self._home_flow()
        home_out = self._station_outdoor_per_home(outdoor)
        self.home_state = steady_homes(self.params, supply[self.net.station_idx], mc, home_out)
        mix_returns(self.station_state, self.sp, self.net.station_idx, mc, self.home_state.return_c)
        self._scripted = sorted(scenario.setpoints, key=lambda s: s.at_h)

    # --- helpers -------------------------------------------------------------
    def _station_outdoor(self, site_temps: np.ndarray) -> np.ndarray:
        return site_temps[self.net.station_site_idx]

    def _station_outdoor_per_home(self, station_outdoor: np.ndarray) -> np.ndarray:
        return station_outdoor[self.net.station_idx]

    def _home_flow(self) -> np.ndarray:
        return (self.params.mc_design * self.net.flow_factor * self.valve
                * self.station_state.flow_share[self.net.station_idx])

    def station_index(self, station_id: str) -> int:
        try:
            return self._st_index[station_id]
        except KeyError:
            raise KeyError(f"unknown station {station_id!r}") from None

    def balance(self, community: str, buildings: Iterable[str] | None = None) -> int:
        """A crew balanced the community (the named buildings, default all): valves opened where flow was short,
        throttled where it was in excess, so each building gets its design flow (a building short of flow —
        ``flow_factor`` under 1 — is what hydraulic imbalance is here). Returns how many homes it reached."""
        want = None if buildings is None else set(buildings)
        idx = np.array([i for i, h in enumerate(self.net.homes)
                        if h.community == community and (want is None or h.building in want)], dtype=np.intp)
        if len(idx):
            self.net.flow_factor[idx] = np.maximum(self.net.flow_factor[idx], 1.0)
        return len(idx)

    def set_valves(self, community: str, building: str, location: str, flow: float) -> int:
        """A crew set the home valves of one class (a building's homes at one position, ``Home.location``) to ``flow``,
        a share of design flow. Returns how many homes it reached (sensor or not: the crew sets them all)."""
        if not 0.0 < flow <= 1.0:
            raise ValueError(f"valve flow share must be in (0, 1], got {flow}")
        idx = np.array([i for i, h in enumerate(self.net.homes) if h.community == community and h.building == building
                        and h.location == location], dtype=np.intp)
        if len(idx):
            self.valve[idx] = flow
        return len(idx)

    # --- control -------------------------------------------------------------
    def set_setpoint(self, station_id: str, supply_c: float | None, curve_offset_c: float | None = None) -> None:
        """Apply a supply setpoint (None = back to the station's outdoor-reset curve). With ``curve_offset_c``
        a station that has a curve follows it shifted by that much (its supply keeps following the outdoor
        temperature); one without a curve holds ``supply_c``."""
        j = self.station_index(station_id)
        if curve_offset_c is not None and self.sp.curves[j] is not None:
            self.station_state.setpoint_c[j] = np.nan
            self.curve_offset[j] = float(curve_offset_c)
            return
        self.curve_offset[j] = 0.0
        self.station_state.setpoint_c[j] = np.nan if supply_c is None else float(supply_c)

    def _apply_events(self, hours: float) -> None:
        k = len(self.station_ids)
        pump, leak, outage = np.zeros(k, bool), np.zeros(k, bool), np.zeros(k, bool)
        for e in self.scenario.events:
            if e.start_h <= hours < e.start_h + e.duration_h:
                arr = {"pump_failure": pump, "leak": leak, "outage": outage}[e.kind]
                arr[self._st_index[e.station]] = True
        self.faults = StationFaults(pump, leak, outage)
        while self._scripted and self._scripted[0].at_h <= hours:
            sc = self._scripted.pop(0)
            self.set_setpoint(sc.station, sc.supply_c)

    # --- time ----------------------------------------------------------------
    def truth(self) -> StepTruth:
        return StepTruth(
            self.t, self.step_no, self.weather.at(self.t), self.home_state.temp_c, self.station_state, self.faults
        )

    def step(self) -> StepTruth:
        """Advance one step of ``scenario.step_min`` and return the state at the new time."""
        self.step_no += 1
        self.t = self.start + timedelta(seconds=self.step_no * self.dt_s)
        self._apply_events((self.t - self.start).total_seconds() / 3600.0)
        site = self.weather.at(self.t)
        outdoor = self._station_outdoor(site)
        self.station_state = step_stations(self.sp, self.station_state, self.faults, outdoor, self.dt_s,
                                           self.curve_offset)
        mc = self._home_flow()
        idx = self.net.station_idx
        self.home_state = step_homes(
            self.params, self.home_state, self.station_state.supply_c[idx], mc, outdoor[idx], self.dt_s
        )
        mix_returns(self.station_state, self.sp, idx, mc, self.home_state.return_c)
        return StepTruth(self.t, self.step_no, site, self.home_state.temp_c, self.station_state, self.faults)
