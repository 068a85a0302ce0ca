"""Benchmark: collectors on a shared subscription — 2 processes vs 1 draining the same backlog.

    .venv/bin/python -m bench.bench_scaleout [--messages N]

Each set of collectors shares ``$share/<group>/heat/#`` (HEATWATCH_MQTT_SHARED_GROUP); their persistent
sessions exist before the backlog is published, so Mosquitto splits the backlog between them and every
process drains its share into influxd. The rate is the steady drain between 10 % and 90 % stored (processes
that start a little apart do not count against it). Goal: ≥ 1.7×. On 2 cores the broker, influxd and the collectors
share the CPUs, so the ratio also shows how much room the machine leaves: ``cores`` gives each process's
CPU during the drain and ``machine_busy`` the whole machine's (2.0 = saturated), and
``readings_per_collector_cpu_s`` whether a collector's cost per reading stays the same when two share
the load (what scale-out on more cores depends on). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import (
    CpuMeter,
    collector_env,
    create_session,
    emit,
    influx_count,
    machine,
    mid_rate,
    publish_backlog,
    rate,
    servers,
    start_collector,
    stop,
    wait_count,
)


def drain(tmp: Path, broker: Any, influx: Any, n: int, procs: int) -> dict[str, Any]:
    db, group = f"scale{procs}", f"g{procs}"
    envs = [collector_env(tmp, broker, influx, f"bench-share{procs}-{k}", HEATWATCH_MQTT_SHARED_GROUP=group,
                          HEATWATCH_INFLUXDB1_DATABASE=db) for k in range(procs)]
    for k, env in enumerate(envs):
        create_session(env, tmp / f"share{procs}-{k}.log")
    publish_backlog(broker.port, n, time.time() - 3600, client_id=f"pub-share{procs}")
    t_spawn = time.perf_counter()
    running = [start_collector(env, tmp / f"share{procs}-{k}.log") for k, env in enumerate(envs)]
    pids = {f"collector{k}": p.pid for k, p in enumerate(running)}
    meters: list[CpuMeter] = []
    samples: list[tuple[float, int]] = []
    try:
        t_first, t_done, n_first = wait_count(lambda: influx_count(influx, db), n, poll_s=0.05, samples=samples,
                                              on_first=lambda: meters.append(CpuMeter(**pids, mosquitto=broker.proc.pid,
                                                                                      influxd=influx.proc.pid)))
        cores = meters[0].cores()
    finally:
        for p in running:
            stop(p)
    per_s = mid_rate(samples, n) or rate(n, n_first, t_first, t_done, t_spawn)
    collector_cores = sum(v for k, v in cores.items() if k.startswith("collector"))
    return {"per_s": per_s, "stored": influx_count(influx, db), "cores": cores,
            "readings_per_collector_cpu_s": round(per_s / collector_cores) if collector_cores else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200_000)
    args = ap.parse_args()
    with servers() as (tmp, broker, influx):
        one = drain(tmp, broker, influx, args.messages, 1)
        two = drain(tmp, broker, influx, args.messages, 2)
    ratio = round(two["per_s"] / one["per_s"], 3)
    emit({"bench": "scaleout", "messages": args.messages, "one_collector_per_s": one["per_s"], "two_collectors_per_s": two["per_s"],
          "ratio": ratio, "stored": [one["stored"], two["stored"]], "goal_ratio>=1.7": ratio >= 1.7,
          "one_cores": one["cores"], "two_cores": two["cores"],
          # the best ratio this machine allows: all its cores busy at the 1-collector run's cost per reading
          "machine_bound_ratio": round((os.cpu_count() or 1) / one["cores"]["machine_busy"], 2),
          "readings_per_collector_cpu_s": [one["readings_per_collector_cpu_s"], two["readings_per_collector_cpu_s"]],
          "machine": machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
