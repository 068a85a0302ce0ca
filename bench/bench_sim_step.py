"""Benchmark: one simulation step (stations + all homes + heat balance) for 100,000 homes.

Goal: <= 20 ms on the project machine. Run:
    .venv/bin/python -m bench.bench_sim_step [--homes N] [--steps K]
Prints one JSON line; record the result in docs/PERFORMANCE.md ("Simulator step").
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import UTC, datetime

from simulators.generator import generate
from simulators.load import synthetic_spec
from simulators.simulation import Simulation
from tools.fixtures import design_scenario

GOAL_MS = 20.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--homes", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    t0 = time.perf_counter()
    spec = synthetic_spec(args.homes, seed=1)
    scenario = design_scenario(network=spec.model_dump(), weather={"mean_c": -5.0})
    net = generate(scenario.network)
    sim = Simulation(scenario, datetime(2026, 1, 10, tzinfo=UTC), network=net)
    setup_s = time.perf_counter() - t0
    for _ in range(5):  # warm caches and the weather chunk
        sim.step()
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        sim.step()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    result = {
        "bench": "sim_step",
        "homes": net.n,
        "stations": len(net.stations),
        "steps": args.steps,
        "median_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
        "min_ms": round(times[0], 2),
        "goal_ms": GOAL_MS,
        "meets_goal": statistics.median(times) <= GOAL_MS,
        "setup_s": round(setup_s, 1),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
