"""Benchmark: collector memory, steady and while a large backlog waits at the broker.

    .venv/bin/python -m bench.bench_memory [--messages 1000000]

RSS of the ``heatwatch collect`` process (psutil): idle with nothing queued (``rss_idle_before_mb``),
then every 0.25 s while it drains a backlog of N QoS-1 messages queued for its persistent session,
and idle again after it. Flow control (Receive
Maximum / max inflight) and the bounded internal queue must keep it flat. Goal: ≤ 150 MB and bounded.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import psutil

from bench._common import (
    collector_env,
    emit,
    influx_count,
    machine,
    publish_backlog,
    servers,
    start_collector,
    stop,
    wait_count,
)

MB = 2**20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    args = ap.parse_args()
    n = args.messages
    with servers() as (tmp, broker, influx):
        assert influx is not None
        env = collector_env(tmp, broker, influx, "bench-mem", HEATWATCH_INFLUXDB1_DATABASE="mem")
        log = tmp / "mem.log"
        # first run: creates the persistent session, and gives the steady RSS with nothing to do
        first = start_collector(env, log)
        time.sleep(4)
        rss_before = psutil.Process(first.pid).memory_info().rss / MB
        stop(first)
        pub_s = publish_backlog(broker.port, n, time.time() - 3 * 3600, client_id="pub-mem")
        proc = start_collector(env, log)
        ps = psutil.Process(proc.pid)
        samples: list[tuple[float, float]] = []
        stop_sampling = threading.Event()

        def sample() -> None:
            t0 = time.perf_counter()
            while not stop_sampling.is_set():
                try:
                    samples.append((time.perf_counter() - t0, ps.memory_info().rss / MB))
                except psutil.NoSuchProcess:
                    return
                time.sleep(0.25)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        try:
            t_first, t_done, n_first = wait_count(lambda: influx_count(influx, "mem"), n, timeout=1800, poll_s=1.0)
            time.sleep(5)  # idle after the drain: the steady state
        finally:
            stop_sampling.set()
            th.join()
            stop(proc)
    rss = [r for _, r in samples]
    idle = [r for t, r in samples if t >= samples[-1][0] - 4]
    quarter = len(rss) // 4 or 1
    emit({
        "bench": "memory", "backlog_messages": n, "backlog_publish_s": round(pub_s, 1),
        "drain_per_s": round((n - n_first) / (t_done - t_first)),
        "rss_idle_before_mb": round(rss_before, 1), "rss_max_mb": round(max(rss), 1),
        "rss_idle_after_mb": round(sum(idle) / len(idle), 1),
        "rss_first_quarter_max_mb": round(max(rss[:quarter]), 1), "rss_last_quarter_max_mb": round(max(rss[-quarter:]), 1),
        "goal_rss<=150mb": max(rss) <= 150, "machine": machine(),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
