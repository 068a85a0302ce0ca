"""`heatwatch run` and `heatwatch status` as an operator runs them: a subprocess against real Mosquitto."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from heatwatch.core import schema
from heatwatch.core.timeutil import utc_now
from heatwatch.infra.storage.sqlite import SqliteStore
from tests.helpers import Publisher, make_homes, make_registry_files, wait_subscribed
from tools.servers import Mosquitto, free_port

pytestmark = [pytest.mark.mosquitto]
HOMES = 60


def write_config(tmp: Path, port: int, prefix: str, http_port: int, extra: str = "") -> Path:
    homes_csv, stations_csv = make_registry_files(tmp, HOMES)
    cfg = tmp / "heatwatch.toml"
    cfg.write_text(f"""
[general]
data_dir = "{tmp / 'data'}"
[mqtt]
port = {port}
topic_prefix = "{prefix}"
client_id = "run-{prefix}"
[registry]
homes_csv = "{homes_csv}"
stations_csv = "{stations_csv}"
[collector]
batch_interval_s = 0.1
metrics_interval_s = 1.0
[analytics]
interval_min = 0.05
[alerts]
mqtt = false
[run]
status_interval_s = 0.5
http_port = {http_port}
{extra}
""", encoding="utf-8")
    return cfg


def heatwatch(cfg: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEATWATCH_")}
    return subprocess.run([sys.executable, "-m", "heatwatch", "--config", str(cfg), *args], capture_output=True,
                          text=True, encoding="utf-8", timeout=timeout, env=env)


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    except (urllib.error.URLError, ConnectionError):
        return 0, {}  # not listening (yet)


def wait_for(cond: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def start_healthy(cfg: Path, command: str, http_port: int) -> subprocess.Popen[str]:
    """`heatwatch <command>` as a subprocess, once its /healthz answers 200 and its collector says it is
    subscribed — healthy means connected, and a reading published before the SUBACK would be lost
    (SIGTERM it when done)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEATWATCH_")}
    proc = subprocess.Popen([sys.executable, "-m", "heatwatch", "--config", str(cfg), command], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8")
    try:
        wait_for(lambda: get(f"http://127.0.0.1:{http_port}/healthz")[0] == 200 if proc.poll() is None else True,
                 30, f"`heatwatch {command}` to report healthy")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        wait_subscribed(cfg.parent / "data", timeout=30, proc=proc)
    except AssertionError:
        proc.kill()
        proc.communicate(timeout=30)
        raise
    return proc


def test_run_collects_analyses_reports_status_and_stops_cleanly(tmp_path: Path, mosquitto: Mosquitto) -> None:
    prefix = f"run{uuid.uuid4().hex[:6]}"
    http_port = free_port()
    cfg = write_config(tmp_path, mosquitto.port, prefix, http_port)
    proc = start_healthy(cfg, "run", http_port)
    homes = make_homes(HOMES)
    sent: dict[tuple[str, int], float] = {}
    try:
        pub = Publisher(mosquitto.port, f"pub-{prefix}")
        now_s = int(utc_now().timestamp())
        for k in range(20):  # 20 readings per home over the last ~3 h; some homes cold
            for i, h in enumerate(homes):
                ts = now_s - 3 * 3600 + k * 540
                temp = 15.5 if i % 10 == 0 else 20.0 + (i % 7) / 10
                sent[(h.home_id, ts)] = temp
                pub.publish(f"{prefix}/indoor/{h.home_id}", {"ts": ts, "temp_c": temp})
        pub.wait_all(len(sent))
        pub.close()
        def analysed() -> dict[str, Any] | None:
            s = get(f"http://127.0.0.1:{http_port}/status")[1]
            la = s.get("last_analysis") or {}
            return s if s["ingest"]["stored"] >= len(sent) and la.get("homes_below_standard") else None

        status = wait_for(analysed, 60, "readings stored and analysed")
        assert status["healthy"] and status["broker"]["connected"] and status["store"]["reachable"]
        assert status["parts"] == ["collector", "analytics", "control"] and status["ingest"]["rejected"] == 0
        assert status["last_analysis"]["homes_below_standard"] == HOMES // 10
        assert {j["id"] for j in status["next_jobs"]} >= {"analytics", "coldsnap", "desk"}  # desk: docs/SERVICE_DESK.md
        assert status["desk_escalations_undelivered"] == {}
        # the status command: from the running service, and its own probes of broker and store
        st = heatwatch(cfg, "status", "--json")
        assert st.returncode == 0, st.stderr
        doc = json.loads(st.stdout)
        assert doc["ok"] and doc["running"] and not doc["stale"] and doc["source"].startswith("http://")
        assert doc["probes"]["broker"]["ok"] and doc["probes"]["store"]["ok"]
        assert doc["service"]["ingest"]["stored"] >= len(sent)
        table = heatwatch(cfg, "status")
        assert table.returncode == 0 and "ingest" in table.stdout and "next job" in table.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    final = json.loads((tmp_path / "data" / "status.json").read_text(encoding="utf-8"))
    assert final["state"] == "stopped"
    # nothing lost, values exact; analytics results were written for Grafana
    store = SqliteStore(tmp_path / "data" / "heatwatch.sqlite")
    try:
        df = store.query(schema.INDOOR, utc_now().replace(year=2000), utc_now(), fields=["temp_c"])
        got = {(h, int(t.timestamp())): v for h, t, v in zip(df["home_id"], df["time"], df["temp_c"], strict=True)}
        assert got == sent
        stats = store.query(schema.COMMUNITY_STATS, utc_now().replace(year=2000), utc_now())
        assert set(stats["community"]) == {"幸福小区", "阳光花园", "Riverside"}
        assert store.count(schema.HOME_STATUS, utc_now().replace(year=2000), utc_now()) >= HOMES
    finally:
        store.close()
    # after the stop: status says so and exits 1
    after = heatwatch(cfg, "status", "--json")
    assert after.returncode == 1
    doc = json.loads(after.stdout)
    assert not doc["running"] and doc["service"]["state"] == "stopped" and doc["probes"]["broker"]["ok"]


def test_collect_reports_its_own_status(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """`heatwatch collect` (what collector replicas run) is visible to `heatwatch status` like `run` is."""
    prefix = f"col{uuid.uuid4().hex[:6]}"
    http_port = free_port()
    cfg = write_config(tmp_path, mosquitto.port, prefix, http_port)
    proc = start_healthy(cfg, "collect", http_port)
    try:
        pub = Publisher(mosquitto.port, f"pub-{prefix}")
        now_s = int(utc_now().timestamp())
        for i, h in enumerate(make_homes(HOMES)):
            pub.publish(f"{prefix}/indoor/{h.home_id}", {"ts": now_s - 60 - i, "temp_c": 20.0})
        pub.wait_all(HOMES)
        pub.close()
        wait_for(lambda: get(f"http://127.0.0.1:{http_port}/status")[1].get("ingest", {}).get("stored", 0) >= HOMES,
                 30, "readings stored")
        st = heatwatch(cfg, "status", "--json")
        assert st.returncode == 0, st.stderr
        doc = json.loads(st.stdout)
        assert doc["running"] and doc["service"]["parts"] == ["collector"]
        assert doc["service"]["ingest"]["stored"] >= HOMES and "spool" in doc["service"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err, err[-3000:]
    final = json.loads((tmp_path / "data" / "status.json").read_text(encoding="utf-8"))
    assert final["state"] == "stopped" and final["parts"] == ["collector"]


def test_status_without_a_service_and_with_the_broker_down(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, free_port(), "none", 0)
    r = heatwatch(cfg, "status")
    assert r.returncode == 1
    assert "not running" in r.stdout and "broker       DOWN" in r.stdout and "store        OK" in r.stdout


@pytest.mark.parametrize(
    ("extra", "needle"),
    [('parts = ["collector", "analytic"]', "run.parts"), ("stop_timeout_s = -1", "run.stop_timeout_s"),
     ("analytics_window_h = 0", "run.analytics_window_h")],
)
def test_a_wrong_run_setting_is_one_clear_line(tmp_path: Path, extra: str, needle: str) -> None:
    cfg = write_config(tmp_path, free_port(), "bad", 0, extra)
    r = heatwatch(cfg, "run", timeout=30)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr
