"""Real servers for tests and benchmarks: Mosquitto and InfluxDB 1.x (influxd), on free ports in temp dirs.

Under CI=true a missing server binary is a failure, never a skip (see ``require_binary``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path:
        return path
    msg = f"{name} not found; install the Debian package '{package}' (apt-get install -y {package})"
    if IN_CI:
        pytest.fail(msg + " — under CI=true a missing server is a failure")
    pytest.skip(msg)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


class Mosquitto:
    """A real Mosquitto broker with persistence on, restartable on the same port and data."""

    def __init__(self, workdir: Path, port: int | None = None, extra_conf: str = "", autosave_interval: int = 5) -> None:
        """``autosave_interval``: seconds between saves of the persistence file (changes, with
        ``autosave_on_changes true`` in ``extra_conf``); a SIGKILL loses what arrived since the last save."""
        self.binary = require_binary("mosquitto", "mosquitto")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    "persistence true",
                    f"persistence_location {workdir}/",
                    f"autosave_interval {autosave_interval}",
                    # never drop messages queued for an offline persistent session
                    "max_queued_messages 0",
                    "max_queued_bytes 0",
                    "max_inflight_messages 1000",
                    # as root, mosquitto would switch to user "mosquitto" and lose access to the temp dir
                    "user root" if os.geteuid() == 0 else "",
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    extra_conf,
                ]
            )
            + "\n"
        )

    def start(self) -> Mosquitto:
        log = (self.workdir / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log, stderr=log)
        wait_port(self.port, proc=self.proc)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class Influxd:
    """A real InfluxDB 1.x server (influxd), HTTP on a free port, data in a temp dir."""

    def __init__(self, workdir: Path, port: int | None = None, data: Mapping[str, str | int | bool] | None = None) -> None:
        """``data`` overrides [data] settings, e.g. ``{"index-version": "inmem", "max-values-per-tag": 3}`` (influxd
        1.6 enforces the series and tag-value limits only with the in-memory index)."""
        self.binary = require_binary("influxd", "influxdb")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.rpc_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = workdir / "influxdb.conf"
        d = workdir
        settings: dict[str, str | int | bool] = {
            "dir": f"{d}/data", "wal-dir": f"{d}/wal", "index-version": "tsi1", "query-log-enabled": False,
            "cache-max-memory-size": "1g", "max-series-per-database": 0, "max-values-per-tag": 0, **(data or {}),
        }
        data_lines = "\n".join(f"  {k} = {json.dumps(v)}" for k, v in settings.items())  # JSON scalars are TOML scalars
        self.conf.write_text(
            f"""
reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{d}/meta"
[data]
{data_lines}
[coordinator]
  max-select-point = 0
  max-select-series = 0
[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
  max-body-size = 0
  max-row-limit = 0
[continuous_queries]
  enabled = false
[monitor]
  store-enabled = false
[logging]
  level = "warn"
"""
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Influxd:
        log = (self.workdir / "influxd.log").open("ab")
        self.proc = subprocess.Popen([self.binary, "-config", str(self.conf)], stdout=log, stderr=log)
        wait_port(self.port, timeout=30, proc=self.proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/ping", timeout=1) as r:
                    if r.status == 204:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError("influxd did not answer /ping")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
