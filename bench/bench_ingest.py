"""Benchmark: ingest ceilings and the collector, measured side by side in one run.

    .venv/bin/python -m bench.bench_ingest [--messages N] [--batch-readings N]

1. QoS 0 stream: ``mosquitto_pub -l`` feeds one stream; ``mosquitto_sub -C`` (C) and a counting paho
   subscriber (Python, stock client) receive it at the same time.
2. QoS 1: one backlog of N one-reading messages is queued for every consumer's persistent session,
   then each drains it alone, one after the other: ``mosquitto_sub -c -C`` (C), the counting paho
   subscriber (stock paho, MQTT 5 as the collector speaks, and 3.1.1), the same counter on the
   collector's FastClient, and the collector (→ validated → influxd → acked). Goal: collector ≥ 0.8 ×
   the stock paho counter (MQTT 5).
3. influxd's own ceiling: the collector's line protocol for M readings posted directly in batches.
4. Collector, gateway batches of 100 readings per message → influxd. Goal: ≥ 100,000 readings/s;
   reported as a ratio to (3).
Prints one JSON line (``cores``: CPU cores each process used during a collector drain).
"""

from __future__ import annotations

import argparse
import gzip
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench._common import (
    HOMES,
    CpuMeter,
    collector_env,
    create_session,
    emit,
    influx_count,
    machine,
    mid_rate,
    publish_backlog,
    rate,
    reading_payload,
    servers,
    start_collector,
    stop,
    wait_count,
)


def qos0_ceiling(port: int, n: int, tmp: Path) -> dict[str, Any]:
    lines = tmp / "qos0.txt"
    t0 = time.time() - 3600
    lines.write_bytes(b"\n".join(reading_payload(i, t0)[1] for i in range(n)) + b"\n")
    c_sub = subprocess.Popen(["mosquitto_sub", "-p", str(port), "-t", "bench/q0", "-q", "0", "-C", str(n)],
                             stdout=subprocess.DEVNULL)
    py_sub = subprocess.Popen([sys.executable, "-m", "bench._paho_count", str(port), "bench-q0-paho", "bench/q0", "0", str(n)],
                              stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)  # both subscribed
    t = time.perf_counter()
    with lines.open("rb") as f:
        subprocess.run(["mosquitto_pub", "-p", str(port), "-t", "bench/q0", "-q", "0", "-l"], stdin=f, check=True)
    c_sub.wait(600)
    c_secs = time.perf_counter() - t
    out, _ = py_sub.communicate(timeout=600)
    import json

    py = json.loads(out)
    return {"mosquitto_sub_per_s": round(n / c_secs), "paho_count_qos0_per_s": py["per_s"]}


COUNTERS = {"paho_count_v5": ["--v5"], "paho_count_311": [], "fastclient_count_v5": ["--v5", "--fast"]}


def _counter(port: int, name: str, n: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bench._paho_count", str(port), f"bench-{name}", "heat/indoor/#", "1", str(n), *extra]


def qos1_stream(tmp: Path, broker: Any, influx: Any, n: int) -> dict[str, Any]:
    """Every consumer drains the same backlog of n QoS-1 one-reading messages, alone, one after the other."""
    import json

    port = broker.port
    c_sub = ["mosquitto_sub", "-p", str(port), "-i", "bench-c-q1", "-c", "-q", "1", "-t", "heat/indoor/#"]
    subprocess.run([*c_sub, "-E"], check=True, stdout=subprocess.DEVNULL)
    for name, extra in COUNTERS.items():
        subprocess.run(_counter(port, name, n, "--session-only", *extra), check=True)
    env = collector_env(tmp, broker, influx, "bench-col-1", HEATWATCH_INFLUXDB1_DATABASE="single")
    log = tmp / "bench-col-1.log"
    create_session(env, log)
    res: dict[str, Any] = {"backlog_publish_s": round(publish_backlog(port, n, time.time() - 3600, client_id="pub-q1"), 1)}
    t = time.perf_counter()
    subprocess.run([*c_sub, "-C", str(n)], check=True, stdout=subprocess.DEVNULL)
    res["mosquitto_sub_qos1_per_s"] = round(n / (time.perf_counter() - t))
    for name, extra in COUNTERS.items():
        out = subprocess.run(_counter(port, name, n, *extra), capture_output=True, text=True, check=True).stdout
        res[f"{name}_qos1_per_s"] = int(json.loads(out)["per_s"])
    res.update({f"collector_single_{k}": v for k, v in drain(broker, influx, env, log, n, "single").items()})
    return res


def drain(broker: Any, influx: Any, env: dict[str, str], log: Path, readings: int, db: str) -> dict[str, Any]:
    """Start the collector on its queued backlog; readings/s into influxd and the CPU each process used."""
    t_spawn = time.perf_counter()
    proc = start_collector(env, log)
    meters: list[CpuMeter] = []
    samples: list[tuple[float, int]] = []
    try:
        t_first, t_done, n_first = wait_count(lambda: influx_count(influx, db), readings, poll_s=0.05, samples=samples,
                                              on_first=lambda: meters.append(CpuMeter(collector=proc.pid, mosquitto=broker.proc.pid,
                                                                                      influxd=influx.proc.pid)))
        cores = meters[0].cores()
    finally:
        stop(proc)
    return {"per_s": rate(readings, n_first, t_first, t_done, t_spawn), "steady_per_s": mid_rate(samples, readings), "cores": cores}


def collector_batched(tmp: Path, broker: Any, influx: Any, n_messages: int, batch: int) -> dict[str, Any]:
    env = collector_env(tmp, broker, influx, "bench-col-100", HEATWATCH_INFLUXDB1_DATABASE="batched")
    log = tmp / "bench-col-100.log"
    create_session(env, log)
    publish_backlog(broker.port, n_messages, time.time() - 3600 - batch * 10, batch=batch, client_id="pub-col-100")
    return drain(broker, influx, env, log, n_messages * batch, "batched")


def influx_ceiling(influx: Any, readings: int, db: str = "ceiling", batch_lines: int = 5000, writers: int = 2) -> int:
    """The same line protocol the collector writes, posted straight to /write (gzip, like the collector)."""
    from collector.codec import Codec
    from heatwatch.core.config import load_config
    from heatwatch.infra.storage.lineproto import encode
    from tools.fixtures import registry_for

    codec = Codec(load_config(environ={}), registry_for(HOMES))
    t0 = time.time() - 7200
    now_ns = time.time_ns()
    lines: list[str] = []
    for i in range(readings):
        topic, body = reading_payload(i, t0)
        lines += [encode(p) for p in codec.decode(topic, body, now_ns).points]
    bodies = [gzip.compress("\n".join(lines[k:k + batch_lines]).encode(), compresslevel=1)
              for k in range(0, len(lines), batch_lines)]
    urllib.request.urlopen(urllib.request.Request(f"{influx.url}/query?q=CREATE+DATABASE+{db}", method="POST")).read()

    def post(chunk: list[bytes]) -> None:
        for b in chunk:
            req = urllib.request.Request(f"{influx.url}/write?db={db}&precision=ns", data=b, method="POST",
                                         headers={"Content-Encoding": "gzip"})
            urllib.request.urlopen(req, timeout=60).read()

    t = time.perf_counter()
    threads = [threading.Thread(target=post, args=(bodies[w::writers],)) for w in range(writers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    secs = time.perf_counter() - t
    assert influx_count(influx, db) == readings
    return round(readings / secs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000, help="one-reading messages per backlog")
    ap.add_argument("--batch-readings", type=int, default=500_000, help="readings sent as gateway batches of 100")
    args = ap.parse_args()
    n = args.messages
    with servers() as (tmp, broker, influx):
        assert influx is not None
        res: dict[str, Any] = {"bench": "ingest", "messages": n, "machine": machine()}
        res.update(qos0_ceiling(broker.port, n, tmp))
        res.update(qos1_stream(tmp, broker, influx, n))
        res["collector_single_vs_paho_count_v5"] = round(res["collector_single_per_s"] / res["paho_count_v5_qos1_per_s"], 3)
        res["collector_single_vs_paho_count_311"] = round(res["collector_single_per_s"] / res["paho_count_311_qos1_per_s"], 3)
        res["influxd_ceiling_readings_per_s"] = influx_ceiling(influx, args.batch_readings)
        batched = collector_batched(tmp, broker, influx, args.batch_readings // 100, 100)
        res["collector_batch100_readings_per_s"] = batched["per_s"]
        res["collector_batch100_steady_per_s"] = batched["steady_per_s"]
        res["collector_batch100_cores"] = batched["cores"]
        res["collector_batch100_vs_influxd"] = round(batched["per_s"] / res["influxd_ceiling_readings_per_s"], 3)
        res["goals"] = {"single_vs_paho_v5>=0.8": res["collector_single_vs_paho_count_v5"] >= 0.8,
                        "batch100>=100k/s": batched["per_s"] >= 100_000}
        res["load_1m_after"] = machine()["load_1m"]
    emit(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
