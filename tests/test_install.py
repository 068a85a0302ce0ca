"""The wheel, installed the way an operator installs it, runs.

The wheel is built from a copy of the working tree (``pip wheel --no-deps``; a copy, so the shared
checkout gets no ``build/``), then installed — not editable — into a fresh venv together with its
dependencies, pinned by constraints.txt. From a temp directory (the repo is not on ``sys.path``)
that venv's python imports every module of every package in the wheel, ``heatwatch --help`` and
``config check`` run, and ``heatwatch run`` on SQLite against a real Mosquitto reports running and
healthy in its status.json and exits 0 on SIGTERM.

Why a real install with dependencies, not a ``.pth`` onto the project venv's site-packages: it also
proves the wheel's dependency metadata and constraints.txt, and it is affordable: the install took
33 s with no pip cache and 35-40 s with one (unpacking ~570 MB of numpy, pandas, numba/llvmlite,
matplotlib dominates, not downloading), the whole module about 50 s on 2 shared cores. It needs
PyPI or a mirror, as ``make venv`` does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import make_registry_files
from tools.servers import Mosquitto

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parent.parent
TOP_LEVEL = ("heatwatch", "collector", "analytics", "control", "dispatch", "simulators")
NOT_SOURCE = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".mypy_cache",
              ".ruff_cache", "data", "out", "tests", "bench", "docs", "deploy")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    cwd: Path  # an empty directory: nothing of the repo importable from here

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def heatwatch(self) -> Path:
        return self.venv / "bin" / "heatwatch"


def clean_env(**extra: str) -> dict[str, str]:
    """No HEATWATCH_* or PYTHONPATH from the test run, so only the installed code and these settings count."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEATWATCH_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **extra}


def check(cmd: list[str | Path], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env or clean_env(), capture_output=True, text=True,
                       encoding="utf-8", timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} -> {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("install")
    src = root / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    wheelhouse = root / "wheelhouse"
    out = check([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", wheelhouse, src], root, 300)
    # setuptools' own warnings (SetuptoolsDeprecationWarning, BuildBackendWarning, "warning: ..."), not pip's
    # "WARNING: ..." about this machine's index configuration
    warnings = re.findall(r".*(?:[A-Za-z]Warning\b|\bwarning:).*", out)
    assert not warnings, "the build warns:\n" + "\n".join(warnings)
    (wheel,) = wheelhouse.glob("heatwatch-*.whl")
    venv = root / "venv"
    check([sys.executable, "-m", "venv", venv], root, 120)
    t0 = time.monotonic()
    check([venv / "bin" / "python", "-m", "pip", "install", "-q", "-c", REPO / "constraints.txt", wheel], root, 600)
    print(f"fresh venv install with dependencies: {time.monotonic() - t0:.1f} s")
    cwd = root / "elsewhere"
    cwd.mkdir()
    yield Installed(wheel, venv, cwd)


def source_packages() -> set[str]:
    return {
        ".".join(p.parent.relative_to(REPO).parts)
        for top in TOP_LEVEL for p in (REPO / top).rglob("__init__.py")
        if "__pycache__" not in p.parts
    }


def test_wheel_holds_every_package_and_the_data_read_at_runtime(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    missing = sorted(p for p in source_packages() if f"{p.replace('.', '/')}/__init__.py" not in names)
    assert not missing, f"packages missing from the wheel: {missing}"
    assert "control/alerts/__init__.py" in names  # the one a hand-written package list once left out
    scenarios = {p.name for p in (REPO / "simulators" / "scenarios").glob("*.toml")}
    assert scenarios and {f"simulators/scenarios/{n}" for n in scenarios} <= names
    assert "heatwatch/py.typed" in names
    assert not [n for n in names if n.startswith(("tests/", "bench/", "deploy/", "docs/")) or "__pycache__" in n]


IMPORT_ALL = r"""
import importlib, json, pkgutil, sys
from simulators.scenario import shipped_scenarios
tops = sys.argv[1:]
files = {}
for top in tops:
    pkg = importlib.import_module(top)
    files[top] = pkg.__file__
    for info in pkgutil.walk_packages(pkg.__path__, top + "."):
        if info.name.endswith(".__main__"):  # runs the command when imported; the command itself is run below
            continue
        files[info.name] = importlib.import_module(info.name).__file__
print(json.dumps({"files": files, "scenarios": shipped_scenarios(), "path": sys.path}))
"""


def test_every_module_imports_from_the_installed_wheel(installed: Installed) -> None:
    out = check([installed.python, "-c", IMPORT_ALL, *TOP_LEVEL], installed.cwd, 300)
    doc = json.loads(out.strip().splitlines()[-1])
    files: dict[str, str] = doc["files"]
    venv = str(installed.venv.resolve())
    outside = {m: f for m, f in files.items() if not str(Path(f).resolve()).startswith(venv)}
    assert not outside, f"imported from outside the fresh venv: {outside}"
    assert {"heatwatch", "control.alerts", "control.alerts.dispatch", "heatwatch.infra.storage.sqlite"} <= files.keys()
    expected = {m for m in source_packages()} | {
        ".".join(p.with_suffix("").relative_to(REPO).parts) for top in TOP_LEVEL for p in (REPO / top).rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py") and "__pycache__" not in p.parts
    }
    assert not expected - files.keys(), f"modules in the source tree not importable from the install: {expected - files.keys()}"
    assert "cold_snap" in doc["scenarios"]  # simulators/scenarios/*.toml read at runtime
    assert not any(str(REPO) == p or p.startswith(str(REPO) + os.sep) for p in doc["path"])


def test_cli_help_and_config_check(installed: Installed) -> None:
    out = check([installed.heatwatch, "--help"], installed.cwd, 120)
    assert "run" in out and "status" in out and "demo" in out
    out = check([installed.heatwatch, "config", "check"], installed.cwd, 120)
    assert "[run]" in out and "backend" in out


def read_status(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (FileNotFoundError, ValueError):
        return {}


@pytest.mark.mosquitto
def test_installed_service_runs_against_mosquitto_and_stops_cleanly(installed: Installed, tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "mosquitto").start()
    homes_csv, stations_csv = make_registry_files(tmp_path, 30)
    data = tmp_path / "data"
    prefix = f"inst{uuid.uuid4().hex[:6]}"
    env = clean_env(
        HEATWATCH_MQTT_PORT=str(broker.port), HEATWATCH_MQTT_TOPIC_PREFIX=prefix, HEATWATCH_MQTT_CLIENT_ID=f"run-{prefix}",
        HEATWATCH_GENERAL_DATA_DIR=str(data), HEATWATCH_STORAGE_BACKEND="sqlite",
        HEATWATCH_REGISTRY_HOMES_CSV=str(homes_csv), HEATWATCH_REGISTRY_STATIONS_CSV=str(stations_csv),
        HEATWATCH_RUN_STATUS_INTERVAL_S="0.5", HEATWATCH_ALERTS_MQTT="false",
        NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"), MPLCONFIGDIR=str(tmp_path / "mpl"),
    )
    proc = subprocess.Popen([str(installed.heatwatch), "run"], cwd=installed.cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, encoding="utf-8")
    status = data / "status.json"
    snap: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            snap = read_status(status)
            if snap.get("state") == "running" and snap.get("healthy"):
                break
            time.sleep(0.1)
        exited = proc.poll()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=90)
        broker.stop()
    assert exited is None, f"heatwatch run exited {exited} before it was healthy:\n{err[-3000:]}"
    assert snap.get("state") == "running" and snap.get("healthy"), f"status.json never said healthy: {snap}\n{err[-3000:]}"
    assert snap["pid"] == proc.pid and snap["broker"]["connected"] and snap["store"]["backend"] == "sqlite"
    assert proc.returncode == 0 and "Traceback" not in err, err[-3000:]
    assert read_status(status)["state"] == "stopped"
