"""No reading lost: 100,000 readings at QoS 1 through real Mosquitto → `heatwatch collect` → real influxd,
while influxd is stopped for 30 s, the collector is SIGKILLed, or Mosquitto is restarted mid-stream."""

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

from heatwatch import schema
from heatwatch.config import load_config
from heatwatch.storage import open_store
from heatwatch.timeutil import utc_now
from tests.helpers import Publisher, make_registry_files
from tests.servers import Influxd, Mosquitto

N = 100_000
HOMES = 1000
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
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "heatwatch.cli", "collect"], env=self.env, stdout=out, stderr=out)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def run_stream(tmp: Path, broker: Mosquitto, influx: Influxd, fault: Callable[[CollectorProcess], None]) -> None:
    homes_csv, _ = make_registry_files(tmp, HOMES)
    env = collector_env(tmp, broker, influx, homes_csv)
    col = CollectorProcess(env, tmp / "collector.log")
    col.start()
    time.sleep(1.5)  # let it create its persistent session before the first publish
    pub = Publisher(broker.port, "lossless-publisher", max_inflight=500)
    t0 = utc_now().timestamp() - 2 * 3600
    expected: dict[tuple[str, int], float] = {}
    fault_at = N * 3 // 10

    def publish_all() -> None:
        for i in range(N):
            hid = f"H{i % HOMES:06d}"
            ts = t0 + (i // HOMES) * 60 + (i % HOMES) * 0.001
            temp = round(12.0 + (i * 7919 % 1300) / 100, 2)
            expected[(hid, round(ts * 1e6) * 1000)] = temp
            pub.publish(f"heat/indoor/{hid}", {"ts": ts, "temp_c": temp})
            if i % 2000 == 1999:
                time.sleep(0.15)  # about 10 s of stream, so the fault lands mid-stream

    th = threading.Thread(target=publish_all)
    th.start()
    while len(expected) < fault_at:
        time.sleep(0.01)
    fault(col)
    th.join()
    pub.wait_all(N, timeout=240)
    pub.close()
    cfg = load_config(environ=env)
    store = open_store(cfg)
    start, end = utc_now() - timedelta(hours=3), utc_now()
    deadline = time.monotonic() + 180
    while store.count(schema.INDOOR, start, end) < N and time.monotonic() < deadline:
        time.sleep(0.5)
    assert col.stop() == 0  # graceful SIGTERM shutdown
    df = store.query(schema.INDOOR, start, end)
    got = {(h, int(t.value)): float(v) for h, t, v in zip(df["home_id"], df["time"], df["temp_c"], strict=True)}
    assert len(df) == N, f"stored {len(df)} of {N} (duplicates or losses); see {col.log}"
    missing = set(expected) - set(got)
    assert not missing, f"{len(missing)} readings lost, e.g. {sorted(missing)[:3]}"
    wrong = [k for k, v in expected.items() if got[k] != v]
    assert not wrong, f"{len(wrong)} readings stored with other values, e.g. {wrong[:3]}"
    store.close()


def test_lossless_while_influxd_is_down_for_30s(tmp_path: Path, own_mosquitto: Mosquitto, own_influxd: Influxd) -> None:
    def fault(_: CollectorProcess) -> None:
        own_influxd.stop()
        time.sleep(30)
        own_influxd.start()

    run_stream(tmp_path, own_mosquitto, own_influxd, fault)
    log = (tmp_path / "collector.log").read_text(encoding="utf-8")
    assert "spooling" in log and "spool drained" in log


def test_lossless_when_collector_is_sigkilled_and_restarted(
    tmp_path: Path, own_mosquitto: Mosquitto, own_influxd: Influxd
) -> None:
    def fault(col: CollectorProcess) -> None:
        col.kill()
        time.sleep(2)
        col.start()

    run_stream(tmp_path, own_mosquitto, own_influxd, fault)


def test_lossless_when_mosquitto_restarts(tmp_path: Path, own_mosquitto: Mosquitto, own_influxd: Influxd) -> None:
    def fault(_: CollectorProcess) -> None:
        own_mosquitto.restart()

    run_stream(tmp_path, own_mosquitto, own_influxd, fault)
