"""Shared by the benchmarks: real servers in a temp dir, backlogs, collector processes, counting.

Method: a consumer's rate is measured by *draining a backlog*. Its persistent session is created
first, N messages are published at QoS 1 while it is away (Mosquitto queues them: max_queued 0 = no
limit), then it connects and we time from its first to its last message. So every consumer sees the
same stream at the same pace — as fast as it can take it — and publisher speed does not enter.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from heatwatch.infra.mqtt.topics import indoor_topic
from tools.fixtures import make_registry_files
from tools.servers import Influxd, Mosquitto

ROOT = Path(__file__).resolve().parents[1]  # the benchmarks run from here: python -m bench.<name>

HOMES = 1000
AHEAD = 20_000  # messages queued in the publisher ahead of the broker's PUBACKs


def machine() -> dict[str, Any]:
    import psutil

    return {"python": platform.python_version(), "cpus": os.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "load_1m": round(os.getloadavg()[0], 2)}


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result, ensure_ascii=False), flush=True)


@contextmanager
def servers(influx: bool = True) -> Iterator[tuple[Path, Mosquitto, Influxd | None]]:
    with tempfile.TemporaryDirectory(prefix="heatwatch-bench-") as d:
        tmp = Path(d)
        broker = Mosquitto(tmp / "mosquitto").start()
        db = Influxd(tmp / "influxd").start() if influx else None
        try:
            yield tmp, broker, db
        finally:
            broker.stop()
            if db is not None:
                db.stop()


def reading_payload(i: int, t0: float, batch: int = 1) -> tuple[str, bytes]:
    """Message i: one reading (or ``batch`` readings of one gateway) for home i % HOMES."""
    hid = f"H{i % HOMES:06d}"
    if batch == 1:
        body: Any = {"ts": t0 + i * 0.001, "temp_c": round(15.0 + (i * 7919 % 900) / 100, 2)}
    else:
        body = [{"ts": t0 + (i * batch + k) * 0.001, "temp_c": round(15.0 + ((i * batch + k) * 7919 % 900) / 100, 2)}
                for k in range(batch)]
    return indoor_topic("heat", hid), json.dumps(body).encode()


def publish_backlog(port: int, n_messages: int, t0: float, batch: int = 1, client_id: str = "bench-pub") -> float:
    """Publish at QoS 1 and wait for every PUBACK; returns the seconds it took.

    At most ``AHEAD`` messages are queued in paho at a time: its message ids wrap at 65,535 and a
    second message queued under the same id replaces the first (silently never sent)."""
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    acked, sent = [0], [0]
    cond = threading.Condition()

    def on_publish(client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with cond:
            acked[0] += 1
            cond.notify_all()

    c.on_publish = on_publish
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    t = time.perf_counter()
    for i in range(n_messages):
        if i - acked[0] >= AHEAD:
            sent[0] = i
            with cond:
                if not cond.wait_for(lambda: sent[0] - acked[0] < AHEAD // 2, timeout=120):
                    raise RuntimeError(f"broker stopped acknowledging at {acked[0]} of {n_messages}")
        topic, body = reading_payload(i, t0, batch)
        c.publish(topic, body, qos=1)
    with cond:
        if not cond.wait_for(lambda: acked[0] >= n_messages, timeout=600):
            raise RuntimeError(f"only {acked[0]} of {n_messages} backlog messages acknowledged")
    took = time.perf_counter() - t
    c.disconnect()
    c.loop_stop()
    return took


def collector_env(tmp: Path, broker: Mosquitto, influx: Influxd | None, client_id: str, **extra: str) -> dict[str, str]:
    homes_csv = tmp / "homes.csv"
    if not homes_csv.exists():
        make_registry_files(tmp, HOMES)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEATWATCH_")}
    env.update({
        "HEATWATCH_MQTT_PORT": str(broker.port),
        "HEATWATCH_MQTT_CLIENT_ID": client_id,
        "HEATWATCH_GENERAL_DATA_DIR": str(tmp / f"data-{client_id}"),
        "HEATWATCH_GENERAL_LOG_LEVEL": "WARNING",
        "HEATWATCH_REGISTRY_HOMES_CSV": str(homes_csv),
        "HEATWATCH_COLLECTOR_METRICS_INTERVAL_S": "2",
    })
    if influx is not None:
        env.update({"HEATWATCH_STORAGE_BACKEND": "influxdb1", "HEATWATCH_INFLUXDB1_URL": influx.url,
                    "HEATWATCH_INFLUXDB1_DATABASE": "bench"})
    env.update(extra)
    return env


def start_collector(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", "heatwatch", "collect"], env=env, stdout=out, stderr=out, cwd=ROOT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def create_session(env: dict[str, str], log: Path, settle_s: float = 2.5) -> None:
    """Start and stop the collector once, so its persistent session (and subscription) exists."""
    p = start_collector(env, log)
    time.sleep(settle_s)
    stop(p)


def influx_count(influx: Influxd, db: str = "bench", measurement: str = "indoor") -> int:
    import urllib.parse
    import urllib.request

    q = urllib.parse.urlencode({"db": db, "q": f'SELECT count("temp_c") FROM "{measurement}"'})
    with urllib.request.urlopen(f"{influx.url}/query?{q}", timeout=30) as r:
        doc = json.loads(r.read())
    series = doc["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def wait_count(count: Any, target: int, timeout: float = 900, poll_s: float = 0.25, on_first: Any = None,
               samples: list[tuple[float, int]] | None = None) -> tuple[float, float, int]:
    """Poll ``count()`` until it reaches ``target``; (t_first_seen, t_done, count_at_first) in perf_counter time.
    ``on_first()`` runs when the first reading is seen (start a CpuMeter there: start-up excluded);
    ``samples`` collects every (time, count) polled, for ``mid_rate``."""
    deadline = time.perf_counter() + timeout
    t_first, n_first = 0.0, 0
    while time.perf_counter() < deadline:
        n = count()
        now = time.perf_counter()
        if samples is not None:
            samples.append((now, n))
        if n > 0 and not t_first:
            t_first, n_first = now, n
            if on_first is not None:
                on_first()
        if n >= target:
            return t_first, now, n_first
        time.sleep(poll_s)
    raise TimeoutError(f"count stuck below {target}")


def rate(total: int, n_first: int, t_first: float, t_done: float, t_spawn: float) -> int:
    """Readings/s from the first stored to the last; for a drain shorter than the poll resolution,
    from the process start (start-up included, so an underestimate — use larger backlogs)."""
    if t_done - t_first >= 0.5:
        return round((total - n_first) / (t_done - t_first))
    return round(total / (t_done - t_spawn))


class CpuMeter:
    """CPU seconds used by processes between ``start()`` and ``stop()``: per-reading cost, and whether a
    process was CPU-bound (≈1.0 of a core for one Python process under the GIL) or waiting on others."""

    def __init__(self, **pids: int) -> None:
        import psutil

        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.t0 = time.perf_counter()
        self.c0 = {name: self._cpu(p) for name, p in self.procs.items()}
        self.busy0 = self._busy()

    @staticmethod
    def _busy() -> float:
        """CPU seconds the whole machine spent not idle (every process, other engineers' included)."""
        import psutil

        t = psutil.cpu_times()
        return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))

    @staticmethod
    def _cpu(p: Any) -> float:
        try:
            t = p.cpu_times()
            return float(t.user + t.system)
        except Exception:  # the process ended: count nothing more
            return 0.0

    def cores(self) -> dict[str, float]:
        """Average cores used by each process since construction."""
        wall = time.perf_counter() - self.t0
        out = {name: round((self._cpu(p) - self.c0[name]) / wall, 2) for name, p in self.procs.items()}
        out["machine_busy"] = round((self._busy() - self.busy0) / wall, 2)
        return out


def mid_rate(samples: list[tuple[float, int]], total: int, lo: float = 0.1, hi: float = 0.9) -> int | None:
    """Readings/s between the polls that first saw ``lo`` and ``hi`` of ``total`` stored: the steady drain,
    without the start-up of processes that began a little apart nor the tail. None when too short to tell."""
    a = next(((t, n) for t, n in samples if n >= lo * total), None)
    b = next(((t, n) for t, n in samples if n >= hi * total), None)
    if a is None or b is None or b[0] - a[0] < 0.5:
        return None
    return round((b[1] - a[1]) / (b[0] - a[0]))
