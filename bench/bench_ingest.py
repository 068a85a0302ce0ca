"""Benchmark: ingest ceilings and the collector, measured side by side in one run (issue 7).

    .venv/bin/python bench/bench_ingest.py [--messages N] [--batch-readings N]

1. QoS 0 ceiling: ``mosquitto_pub -l`` feeds one stream; ``mosquitto_sub -C`` (C) and a counting paho
   subscriber (Python) receive it at the same time.
2. QoS 1 ceiling: the counting paho subscriber drains a backlog of N one-reading messages.
3. Collector, one reading per message, QoS 1 → validated → influxd → acked: drains the same backlog.
   Goal: ≥ 0.8 × (2).
4. influxd's own ceiling: the collector's line protocol for N readings posted directly in batches.
5. Collector, gateway batches of 100 readings per message → influxd. Goal: ≥ 100,000 readings/s;
   reported as a ratio to (4).
Prints one JSON line. Record it in docs/PERFORMANCE.md.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    HOMES,
    collector_env,
    create_session,
    emit,
    influx_count,
    machine,
    publish_backlog,
    rate,
    reading_payload,
    servers,
    start_collector,
    stop,
    wait_count,
)

HERE = Path(__file__).resolve().parent


def qos0_ceiling(port: int, n: int, tmp: Path) -> dict[str, Any]:
    lines = tmp / "qos0.txt"
    t0 = time.time() - 3600
    lines.write_bytes(b"\n".join(reading_payload(i, t0)[1] for i in range(n)) + b"\n")
    c_sub = subprocess.Popen(["mosquitto_sub", "-p", str(port), "-t", "bench/q0", "-q", "0", "-C", str(n)],
                             stdout=subprocess.DEVNULL)
    py_sub = subprocess.Popen([sys.executable, str(HERE / "_paho_count.py"), str(port), "bench-q0-paho", "bench/q0", "0", str(n)],
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


def paho_qos1(port: int, n: int) -> int:
    import json

    args = [sys.executable, str(HERE / "_paho_count.py"), str(port), "bench-q1-paho", "heat/indoor/#", "1", str(n)]
    subprocess.run([*args, "--session-only"], check=True)
    publish_backlog(port, n, time.time() - 3600, client_id="bench-pub-paho")
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return int(json.loads(out)["per_s"])


def collector_drain(tmp: Path, broker: Any, influx: Any, n_messages: int, batch: int, cid: str, db: str) -> dict[str, Any]:
    env = collector_env(tmp, broker, influx, cid, HEATWATCH_INFLUXDB1_DATABASE=db)
    log = tmp / f"{cid}.log"
    create_session(env, log)
    publish_backlog(broker.port, n_messages, time.time() - 3600 - batch * 10, batch=batch, client_id=f"pub-{cid}")
    readings = n_messages * batch
    t_spawn = time.perf_counter()
    proc = start_collector(env, log)
    try:
        t_first, t_done, n_first = wait_count(lambda: influx_count(influx, db), readings, poll_s=0.05)
    finally:
        stop(proc)
    return {"readings": readings, "per_s": rate(readings, n_first, t_first, t_done, t_spawn)}


def influx_ceiling(influx: Any, readings: int, db: str = "ceiling", batch_lines: int = 5000, writers: int = 2) -> int:
    """The same line protocol the collector writes, posted straight to /write (gzip, like the collector)."""
    from collector.codec import Codec
    from heatwatch.config import load_config
    from heatwatch.storage.lineproto import encode
    from tests.helpers import registry_for

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
        res["paho_count_qos1_per_s"] = paho_qos1(broker.port, n)
        single = collector_drain(tmp, broker, influx, n, 1, "bench-col-1", "single")
        res["collector_single_per_s"] = single["per_s"]
        res["collector_single_vs_paho_qos1"] = round(single["per_s"] / res["paho_count_qos1_per_s"], 3)
        res["influxd_ceiling_readings_per_s"] = influx_ceiling(influx, args.batch_readings)
        batched = collector_drain(tmp, broker, influx, args.batch_readings // 100, 100, "bench-col-100", "batched")
        res["collector_batch100_readings_per_s"] = batched["per_s"]
        res["collector_batch100_vs_influxd"] = round(batched["per_s"] / res["influxd_ceiling_readings_per_s"], 3)
        res["goals"] = {"single_vs_paho>=0.8": res["collector_single_vs_paho_qos1"] >= 0.8,
                        "batch100>=100k/s": batched["per_s"] >= 100_000}
        res["load_1m_after"] = machine()["load_1m"]
    emit(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
