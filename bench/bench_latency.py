"""Benchmark: end-to-end latency, publish → queryable in influxd, under a realistic load.

    .venv/bin/python -m bench.bench_latency [--rate 5000] [--seconds 30]

A live collector stores a background stream of ``--rate`` one-reading messages per second (QoS 1,
paced). Meanwhile a probe publishes one marked reading at a time and polls influxd (every 5 ms) until
that exact point is queryable; the time from publish to visible is one sample. Prints p50/p90/p99.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import urllib.parse
import urllib.request
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench._common import HOMES, collector_env, emit, influx_count, machine, reading_payload, servers, start_collector, stop
from heatwatch.infra.mqtt.topics import indoor_topic


def client(port: int, cid: str) -> mqtt.Client:
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv311)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    return c


def visible(url: str, home_id: str, ts_ns: int) -> bool:
    q = urllib.parse.urlencode({"db": "lat", "q": f"SELECT temp_c FROM indoor WHERE home_id = '{home_id}' AND time = {ts_ns}"})
    with urllib.request.urlopen(f"{url}/query?{q}", timeout=10) as r:
        return bool(json.loads(r.read())["results"][0].get("series"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=5000, help="background readings per second")
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    with servers() as (tmp, broker, influx):
        assert influx is not None
        env = collector_env(tmp, broker, influx, "bench-lat", HEATWATCH_INFLUXDB1_DATABASE="lat")
        proc = start_collector(env, tmp / "lat.log")
        time.sleep(3)
        load = client(broker.port, "bench-lat-load")
        probe = client(broker.port, "bench-lat-probe")
        stop_load = threading.Event()
        sent = [0]

        def background() -> None:
            t0, start = time.time() - 3600, time.perf_counter()
            i = 0
            while not stop_load.is_set():
                due = start + i / args.rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                topic, body = reading_payload(i, t0)
                load.publish(topic, body, qos=1)
                i += 1
            sent[0] = i

        th = threading.Thread(target=background, daemon=True)
        th.start()
        time.sleep(2)  # the load is flowing
        lat_ms: list[float] = []
        end = time.perf_counter() + args.seconds
        home = f"H{HOMES - 1:06d}"
        k = 0
        while time.perf_counter() < end:
            ts = time.time() - 1.0 - k * 1e-3
            ts_ns = round(ts * 1e6) * 1000  # the codec keeps microseconds
            t = time.perf_counter()
            probe.publish(indoor_topic("heat", home), json.dumps({"ts": ts, "temp_c": 21.5}), qos=1)
            while not visible(influx.url, home, ts_ns):
                if time.perf_counter() - t > 30:
                    raise TimeoutError("a probe never became queryable")
                time.sleep(0.005)
            lat_ms.append((time.perf_counter() - t) * 1000)
            k += 1
            time.sleep(0.05)
        stop_load.set()
        th.join()
        load_actual = sent[0] / (args.seconds + 2)
        time.sleep(2)
        stored = influx_count(influx, "lat")
        stop(proc)
        load.loop_stop()
        probe.loop_stop()
    q = statistics.quantiles(lat_ms, n=100)
    res: dict[str, Any] = {"bench": "latency", "target_rate_per_s": args.rate, "actual_rate_per_s": round(load_actual),
                           "probes": len(lat_ms), "p50_ms": round(q[49], 1), "p90_ms": round(q[89], 1),
                           "p99_ms": round(q[98], 1), "max_ms": round(max(lat_ms), 1), "stored": stored, "machine": machine()}
    emit(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
