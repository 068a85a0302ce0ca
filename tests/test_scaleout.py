"""Scale-out: three `heatwatch collect` processes on one MQTT shared subscription split the stream between
them, and every reading is stored exactly once with its exact value (real Mosquitto, real influxd).

Speed is measured in bench/bench_scaleout.py, not asserted here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from heatwatch.core import schema
from heatwatch.core.config import load_config
from heatwatch.core.timeutil import utc_now
from heatwatch.infra.storage import open_store
from tests.helpers import Publisher, make_registry_files, read_status, wait_subscribed, wait_until
from tools.servers import Influxd, Mosquitto

N = 20_000
HOMES = 500
COLLECTORS = 3
pytestmark = [pytest.mark.mosquitto, pytest.mark.influxd]


def _env(tmp: Path, broker: Mosquitto, influx: Influxd, homes_csv: Path, k: int, prefix: str) -> dict[str, str]:
    env = {key: v for key, v in os.environ.items() if not key.startswith("HEATWATCH_")}
    env.update({
        "HEATWATCH_MQTT_PORT": str(broker.port),
        "HEATWATCH_MQTT_CLIENT_ID": f"{prefix}-collector-{k}",
        "HEATWATCH_MQTT_TOPIC_PREFIX": prefix,
        "HEATWATCH_MQTT_SHARED_GROUP": f"{prefix}-collectors",
        "HEATWATCH_STORAGE_BACKEND": "influxdb1",
        "HEATWATCH_INFLUXDB1_URL": influx.url,
        "HEATWATCH_INFLUXDB1_DATABASE": prefix,
        "HEATWATCH_GENERAL_DATA_DIR": str(tmp / f"data-{k}"),
        "HEATWATCH_GENERAL_LOG_LEVEL": "INFO",
        "HEATWATCH_REGISTRY_HOMES_CSV": str(homes_csv),
        "HEATWATCH_COLLECTOR_METRICS_INTERVAL_S": "1",
    })
    return env


def _final_ingest(data_dir: Path) -> dict[str, int]:
    """The counters a collector leaves in its status.json as it stops (state "stopped")."""
    snap = read_status(data_dir)
    assert snap is not None and snap["state"] == "stopped", f"no final status in {data_dir}: {snap}"
    return {k: int(v) for k, v in snap["ingest"].items() if k in ("received_messages", "readings", "acked")}


def test_three_collectors_share_the_stream_and_store_every_reading_once(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd
) -> None:
    prefix = f"so{os.getpid()}{tmp_path.name[-4:]}".replace("_", "")
    homes_csv, _ = make_registry_files(tmp_path, HOMES)
    envs = [_env(tmp_path, mosquitto, influxd, homes_csv, k, prefix) for k in range(COLLECTORS)]
    logs = [tmp_path / f"collector-{k}.log" for k in range(COLLECTORS)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for env, log in zip(envs, logs, strict=True):
            out = log.open("ab")
            procs.append(subprocess.Popen([sys.executable, "-m", "heatwatch", "collect"], env=env, stdout=out, stderr=out))
        for k, proc in enumerate(procs):  # every SUBSCRIBE to the shared group acknowledged, as each one says
            wait_subscribed(tmp_path / f"data-{k}", timeout=60, proc=proc)

        pub = Publisher(mosquitto.port, f"{prefix}-publisher", max_inflight=500)
        t0 = utc_now().timestamp() - 3600
        expected: dict[tuple[str, int], float] = {}
        for i in range(N):
            hid = f"H{i % HOMES:06d}"
            ts = t0 + (i // HOMES) * 60 + (i % HOMES) * 0.001
            temp = round(12.0 + (i * 7919 % 1300) / 100, 2)
            expected[(hid, round(ts * 1e6) * 1000)] = temp
            pub.publish(f"{prefix}/indoor/{hid}", {"ts": ts, "temp_c": temp})
        pub.wait_all(N, timeout=120)
        pub.close()

        store = open_store(load_config(environ=envs[0]))
        start, end = utc_now() - timedelta(hours=2), utc_now()
        wait_until(lambda: store.count(schema.INDOOR, start, end) >= N, 60, f"{N} readings stored", poll_s=0.2)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(60) for p in procs]
    assert codes == [0] * COLLECTORS

    df = store.query(schema.INDOOR, start, end)
    store.close()
    got = {(h, int(t.value)): float(v) for h, t, v in zip(df["home_id"], df["time"], df["temp_c"], strict=True)}
    assert len(df) == N, f"stored {len(df)} of {N}"
    assert set(got) == set(expected)
    wrong = [k for k, v in expected.items() if got[k] != v]
    assert not wrong, f"{len(wrong)} readings stored with other values, e.g. {wrong[:3]}"

    snaps = [_final_ingest(tmp_path / f"data-{k}") for k in range(COLLECTORS)]
    received = [s["readings"] for s in snaps]
    assert sum(received) == N, f"each message goes to exactly one collector of the group: {received}"
    assert all(s["acked"] == s["received_messages"] for s in snaps), snaps
    assert all(r >= N // (COLLECTORS * 4) for r in received), f"load not split: {received}"
