"""Processes sharing one config and its ``[run] http_port``: one clear error, never a restart loop.

systemd units and compose services read one heatwatch.toml; a port set there is every process's port.
The second process must stop at once with one line naming the port, the key and the fix — before it
connects to the broker or writes a status — and exit 2 (the deploy units do not restart on 2).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from heatwatch.app.status import HttpPortUnavailable, StatusServer
from tests.test_service_run import get, start_healthy, write_config
from tools.servers import Mosquitto, free_port

PORT_KEY = "HEATWATCH_RUN_HTTP_PORT"


def spawn(cfg: Path, command: str, name: str, tmp: Path) -> subprocess.Popen[str]:
    """Another process on the same config, with its own identity and data dir (as the deploy units set)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEATWATCH_")}
    env.update(HEATWATCH_GENERAL_DATA_DIR=str(tmp / name), HEATWATCH_MQTT_CLIENT_ID=f"{name}-{uuid.uuid4().hex[:6]}")
    return subprocess.Popen([sys.executable, "-m", "heatwatch", "--config", str(cfg), command], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8")


def read_status(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (FileNotFoundError, ValueError):
        return {}  # not written yet


def wait_running(path: Path, proc: subprocess.Popen[str], timeout: float = 60) -> dict[str, Any]:
    """The service's own signal: its status.json says running and healthy (or the process died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"
        snap = read_status(path)
        if snap.get("state") == "running" and snap.get("healthy"):
            return snap
        time.sleep(0.1)
    raise AssertionError(f"{path} never said running and healthy")


def stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err, err[-3000:]
    return err


def test_port_in_use_is_one_error_naming_key_and_fix() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(HttpPortUnavailable) as ei:
            StatusServer("127.0.0.1", port, dict)
    msg = str(ei.value)
    assert f"[run] http_port {port} ({PORT_KEY}) on 127.0.0.1 is already in use" in msg
    assert "its own port" in msg and "0 to turn HTTP off" in msg and "\n" not in msg


def test_status_server_port_0_binds_an_ephemeral_port() -> None:
    server = StatusServer("127.0.0.1", 0, lambda: {"store": {"reachable": True}}).start()
    try:
        assert server.port > 0
        assert get(f"http://127.0.0.1:{server.port}/healthz") == (200, {"healthy": True})
    finally:
        server.stop()


@pytest.mark.mosquitto
def test_second_process_on_a_shared_http_port_exits_2_with_one_line(tmp_path: Path, mosquitto: Mosquitto) -> None:
    prefix = f"hp{uuid.uuid4().hex[:6]}"
    http_port = free_port()
    cfg = write_config(tmp_path, mosquitto.port, prefix, http_port)
    first = start_healthy(cfg, "run", http_port)
    try:
        second = spawn(cfg, "collect", "second", tmp_path)  # a collector replica on the controller's config
        _out, err = second.communicate(timeout=60)
        assert second.returncode == 2, err
        assert "Traceback" not in err
        mentions = [line for line in err.splitlines() if "http_port" in line]
        assert len(mentions) == 1, err
        assert mentions[0].startswith(f"heatwatch: [run] http_port {http_port} ({PORT_KEY}) on 127.0.0.1 is already in use")
        assert "its own port" in mentions[0]
        assert not (tmp_path / "second" / "status.json").exists()  # stopped before starting anything
        assert get(f"http://127.0.0.1:{http_port}/healthz")[0] == 200  # the first one is untouched
    finally:
        stop(first)


@pytest.mark.mosquitto
def test_http_port_0_lets_processes_share_a_config(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """0 is "HTTP off": every process sharing the config runs and reports in its own status.json."""
    cfg = write_config(tmp_path, mosquitto.port, f"hz{uuid.uuid4().hex[:6]}", 0)
    procs = {name: spawn(cfg, command, name, tmp_path) for name, command in (("controller", "run"), ("collector", "collect"))}
    try:
        for name, proc in procs.items():
            snap = wait_running(tmp_path / name / "status.json", proc)
            assert snap["pid"] == proc.pid
    finally:
        for proc in procs.values():
            stop(proc)
