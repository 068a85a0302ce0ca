"""No reading lost: 100,000 readings at QoS 1 through real Mosquitto → `heatwatch collect` → real influxd,
while influxd is stopped for 30 s, the collector is SIGKILLed, or Mosquitto is restarted mid-stream.

No step hopes that enough time has passed: publishing starts once the collector says it is subscribed
(status.json), the fault is injected once the collector is storing the first 30 % and the broker holds
them, and the rest of the stream is released by the fault itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from heatwatch.core import schema
from heatwatch.core.config import load_config
from heatwatch.core.timeutil import utc_now
from heatwatch.infra.storage import open_store
from tests.helpers import Publisher, make_registry_files, wait_subscribed, wait_until
from tools.servers import Influxd, Mosquitto

N = 100_000
HOMES = 1000
OUTAGE_S = 30.0
pytestmark = pytest.mark.slow


def collector_env(tmp: Path, broker: Mosquitto, influx: Influxd, homes_csv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEATWATCH_")}
    env.update(
        {
            "HEATWATCH_MQTT_PORT": str(broker.port),
            "HEATWATCH_MQTT_CLIENT_ID": "lossless-collector",
            "HEATWATCH_MQTT_RECONNECT_MIN_S": "1",
            "HEATWATCH_MQTT_RECONNECT_MAX_S": "2",
            "HEATWATCH_STORAGE_BACKEND": "influxdb1",
            "HEATWATCH_INFLUXDB1_URL": influx.url,
            "HEATWATCH_INFLUXDB1_DATABASE": "lossless",
            "HEATWATCH_GENERAL_DATA_DIR": str(tmp / "data"),
            "HEATWATCH_REGISTRY_HOMES_CSV": str(homes_csv),
            "HEATWATCH_COLLECTOR_STORE_RETRY_S": "1",
            "HEATWATCH_COLLECTOR_METRICS_INTERVAL_S": "5",
        }
    )
    return env


class CollectorProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.data_dir = Path(env["HEATWATCH_GENERAL_DATA_DIR"])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start ``heatwatch collect``; return once it says it is subscribed (nothing published after is lost)."""
        out = self.log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "heatwatch", "collect"], env=self.env, stdout=out, stderr=out)
        wait_subscribed(self.data_dir, timeout=60, proc=self.proc)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def log_has(self, text: str) -> bool:
        return text in self.log.read_text(encoding="utf-8", errors="replace")


class Stream:
    """The N readings: ``publish_first`` sends the first 30 %, the fault calls ``resume`` to send the rest
    (in a thread) at the moment it chooses. Every reading's exact value is remembered in ``expected``."""

    def __init__(self, port: int) -> None:
        self.pub = Publisher(port, "lossless-publisher", max_inflight=500)
        self.t0 = utc_now().timestamp() - 2 * 3600
        self.expected: dict[tuple[str, int], float] = {}
        self.first = N * 3 // 10
        self._rest = threading.Thread(target=self._publish, args=(self.first, N))

    def _publish(self, lo: int, hi: int) -> None:
        for i in range(lo, hi):
            hid = f"H{i % HOMES:06d}"
            ts = self.t0 + (i // HOMES) * 60 + (i % HOMES) * 0.001
            temp = round(12.0 + (i * 7919 % 1300) / 100, 2)
            self.expected[(hid, round(ts * 1e6) * 1000)] = temp
            self.pub.publish(f"heat/indoor/{hid}", {"ts": ts, "temp_c": temp})

    def publish_first(self) -> None:
        self._publish(0, self.first)

    def resume(self) -> None:
        self._rest.start()

    def wait_acked(self, n: int, timeout: float = 240) -> None:
        """Until the broker has acknowledged ``n`` publishes (it holds them for the collector's session)."""
        self.pub.wait_all(n, timeout=timeout)

    def join(self) -> None:
        assert self._rest.ident is not None, "the fault never resumed the stream"
        self._rest.join()


def run_stream(tmp: Path, broker: Mosquitto, influx: Influxd, fault: Callable[[CollectorProcess, Stream], None]) -> None:
    """Publish 30 %, wait until the collector is storing them, inject the fault (which sends the rest), then
    check that every reading is stored exactly once with its exact value."""
    homes_csv, _ = make_registry_files(tmp, HOMES)
    env = collector_env(tmp, broker, influx, homes_csv)
    col = CollectorProcess(env, tmp / "collector.log")
    col.start()  # subscribed: its persistent session exists before the first publish
    store = open_store(load_config(environ=env))
    start, end = utc_now() - timedelta(hours=3), utc_now()
    stream = Stream(broker.port)
    stream.publish_first()
    stream.wait_acked(stream.first)
    wait_until(lambda: store.count(schema.INDOOR, start, end) > 0, 120, "the collector to store the first readings")
    fault(col, stream)  # mid-stream: the collector has begun storing, 70 % is still to come
    stream.join()
    stream.wait_acked(N)
    stream.pub.close()
    wait_until(lambda: store.count(schema.INDOOR, start, end) >= N, 180, f"{N} readings stored", poll_s=0.5)
    assert col.stop() == 0  # graceful SIGTERM shutdown
    df = store.query(schema.INDOOR, start, end)
    expected = stream.expected
    got = {(h, int(t.value)): float(v) for h, t, v in zip(df["home_id"], df["time"], df["temp_c"], strict=True)}
    assert len(df) == N, f"stored {len(df)} of {N} (duplicates or losses); see {col.log}"
    missing = set(expected) - set(got)
    assert not missing, f"{len(missing)} readings lost, e.g. {sorted(missing)[:3]}"
    wrong = [k for k, v in expected.items() if got[k] != v]
    assert not wrong, f"{len(wrong)} readings stored with other values, e.g. {wrong[:3]}"
    store.close()


def test_lossless_while_influxd_is_down_for_30s(tmp_path: Path, own_mosquitto: Mosquitto, own_influxd: Influxd) -> None:
    def fault(col: CollectorProcess, stream: Stream) -> None:
        own_influxd.stop()
        down_at = time.monotonic()
        stream.resume()  # the rest arrives while the store is down
        wait_until(lambda: col.log_has("spooling"), 60, "the collector to spool")
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))  # the outage under test lasts 30 s
        own_influxd.start()

    run_stream(tmp_path, own_mosquitto, own_influxd, fault)
    log = (tmp_path / "collector.log").read_text(encoding="utf-8")
    assert "spooling" in log and "spool drained" in log


def test_lossless_when_collector_is_sigkilled_and_restarted(
    tmp_path: Path, own_mosquitto: Mosquitto, own_influxd: Influxd
) -> None:
    def fault(col: CollectorProcess, stream: Stream) -> None:
        col.kill()
        stream.resume()
        stream.wait_acked(N * 6 // 10)  # the broker took readings while no collector ran: they wait in its session
        col.start()  # returns once the new process is subscribed

    run_stream(tmp_path, own_mosquitto, own_influxd, fault)


def test_lossless_when_mosquitto_restarts(tmp_path: Path, own_mosquitto: Mosquitto, own_influxd: Influxd) -> None:
    def fault(col: CollectorProcess, stream: Stream) -> None:
        stream.resume()
        stream.wait_acked(N // 2)  # half the stream is at the broker
        own_mosquitto.restart()
        assert col.proc is not None
        wait_subscribed(col.data_dir, timeout=60, proc=col.proc, connects=2)  # reconnected and subscribed again

    run_stream(tmp_path, own_mosquitto, own_influxd, fault)
