"""The per-home heat bounds of a scenario against its heating curve: what holding every home exactly at a temperature
would take, from the simulator's own homes and weather (no thermal mass, a valve per home).

    python -m tools.ideal_bounds [SCENARIO] [CURVE_KWH]

Why: ``heatwatch score``'s per-home ideal holds every home at its standard as applied — 18 °C by day and 16 °C at
night. Homes with a 22–40 h time constant cannot follow a 16 °C night and be back at 18 °C by 06:00, so this also
prints the bound at the day standard at every hour, and with the model's margins on the flats: how much of the gap
between a strategy and the per-home ideal is the night, and how much the margin (docs/CONTROL.md).
"""

from __future__ import annotations

import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np

from heatwatch.app.score import DEFAULT_START, ideal_heat_kwh, on_the_curve, score_config, standards
from simulators.scenario import load_scenario
from simulators.simulation import Simulation


def bounds(scenario: str) -> dict[str, float]:
    cfg = score_config(Path(tempfile.mkdtemp(prefix="heatwatch-bounds-")))
    sc = on_the_curve(load_scenario(scenario), cfg)
    sim = Simulation(sc, DEFAULT_START)
    steps = int(sc.duration_h * 3600 / sc.step_s)
    times = [DEFAULT_START + timedelta(seconds=(k + 1) * sc.step_s) for k in range(steps)]
    site = sim.net.station_site_idx[sim.net.station_idx]
    outdoor = np.vstack([sim.weather.at(t)[site] for t in times])
    std, day = standards(cfg, [h.kind for h in sim.net.homes], [h.min_temp_c for h in sim.net.homes], times)
    flats = np.array([h.kind == "residential" for h in sim.net.homes])
    dt_h = sc.step_s / 3600.0

    def at(temp: np.ndarray) -> float:
        return ideal_heat_kwh(sim.params.ua, sim.params.q_int, np.broadcast_to(temp, std.shape), outdoor, dt_h)

    return {"standard as applied (18 °C day, 16 °C night)": at(std), "day standard at every hour": at(day),
            **{f"day standard + {m:g} °C on the flats at every hour": at(day + m * flats) for m in (0.5, 1.0)}}


def main(argv: list[str]) -> None:
    scenario = argv[0] if argv else "season"
    curve = float(argv[1]) if len(argv) > 1 else None
    for name, kwh in bounds(scenario).items():
        share = f"  {100 * kwh / curve:.1f} % of the curve" if curve else ""
        print(f"{scenario}: {name}: {kwh:,.0f} kWh{share}")


if __name__ == "__main__":
    main(sys.argv[1:])
