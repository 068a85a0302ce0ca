"""deploy/systemd: units pass ``systemd-analyze verify``, run real heatwatch commands, and set only real
config keys."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from heatwatch.app.cli import build_parser
from heatwatch.core.config import load_config
from tools.servers import require_binary

UNITS = Path(__file__).resolve().parent.parent / "deploy" / "systemd"
INSTALLED_BIN = "/opt/heatwatch/venv/bin/heatwatch"


def _unit(path: Path) -> dict[str, list[str]]:
    """key -> values (systemd allows repeated keys such as Environment=)."""
    out: dict[str, list[str]] = {}
    for ln in path.read_text(encoding="utf-8").splitlines():
        ln = ln.strip()
        if not ln or ln.startswith(("#", ";", "[")):
            continue
        key, _, value = ln.partition("=")
        out.setdefault(key, []).append(value)
    return out


def _env_file(path: Path) -> dict[str, str]:
    pairs = (ln.split("=", 1) for ln in path.read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#"))
    return {k: v for k, v in pairs}


ACL = UNITS.parent / "mosquitto" / "acl"
MAKE_PASSWD = UNITS.parent / "mosquitto" / "make-passwd.sh"


def _may_write(user: str, topic: str) -> bool:
    """Whether deploy/mosquitto/acl lets ``user`` publish ``topic`` (user blocks, + and # wildcards)."""
    current = None
    for ln in ACL.read_text(encoding="utf-8").splitlines():
        parts = ln.split()
        if not parts or parts[0].startswith("#"):
            continue
        if parts[0] == "user":
            current = parts[1]
        elif parts[0] == "topic" and current == user and parts[1] in ("write", "readwrite"):
            pat, levels = parts[2].split("/"), topic.split("/")
            if pat[-1] == "#":  # the rest of the topic, including nothing (heat/control/# matches heat/control)
                pat, levels = pat[:-1], levels[: len(pat) - 1]
            if len(pat) == len(levels) and all(p in ("+", lv) for p, lv in zip(pat, levels, strict=True)):
                return True
    return False


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = require_binary("systemd-analyze", "systemd")
    real = Path(sys.executable).with_name("heatwatch")
    assert real.is_file()
    for unit in UNITS.iterdir():
        if unit.suffix in (".service", ".timer"):
            (tmp_path / unit.name).write_text(unit.read_text(encoding="utf-8").replace(INSTALLED_BIN, str(real)),
                                              encoding="utf-8")
    (tmp_path / "heatwatch-collector@a.service").symlink_to(tmp_path / "heatwatch-collector@.service")
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith("@.service"))
    res = subprocess.run([analyze, "verify", "--man=no", *names], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, check=False)
    problems = [ln for ln in (res.stdout + res.stderr).splitlines() if "heatwatch" in ln]
    assert res.returncode == 0 and not problems, res.stdout + res.stderr
    # and it does complain about a broken unit
    (tmp_path / "broken.service").write_text("[Service]\nExecStart=relative/path\n", encoding="utf-8")
    bad = subprocess.run([analyze, "verify", "--man=no", "broken.service"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, check=False)
    assert bad.returncode != 0 or "broken.service" in bad.stdout + bad.stderr


def test_units_run_heatwatch_commands_with_real_config_keys() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    known = set(sub.choices or {})
    base_env = _env_file(UNITS / "heatwatch.env.example")
    assert load_config(environ=base_env).storage.backend == "influxdb2"
    for unit in sorted(UNITS.glob("*.service")):
        u = _unit(unit)
        files = u["EnvironmentFile"]
        assert files[0] == "/etc/heatwatch/heatwatch.env"
        argv = shlex.split(u["ExecStart"][0])
        assert argv[0] == INSTALLED_BIN and argv[1:3] == ["--config", "/etc/heatwatch/heatwatch.toml"]
        env = {}
        for e in u.get("Environment", []):
            k, v = e.split("=", 1)
            env[k] = v.replace("%i", "a")
        env.update(base_env)  # systemd: EnvironmentFile= wins over Environment=, later files over earlier ones
        for extra in files[1:]:
            env.update(_env_file(UNITS / (Path(extra).stem + ".env.example")))
        cfg = load_config(environ={k: v for k, v in env.items() if k.startswith("HEATWATCH_")})
        assert argv[3] in known, f"{unit.name}: unknown command {argv[3:]}"
        if argv[3] == "report" or (argv[3] == "run" and "analytics" in cfg.run.parts):
            # the analytics kernels are compiled once and cached; under ProtectSystem=strict only
            # ReadWritePaths are writable, so the cache must be there or every start compiles again
            cache = env.get("NUMBA_CACHE_DIR", "")
            assert any(cache.startswith(p.rstrip("/") + "/") for p in u["ReadWritePaths"]), f"{unit.name}: NUMBA_CACHE_DIR"
        parser.parse_args(argv[1:])
        if unit.name == "heatwatch-collector@.service":
            assert cfg.mqtt.client_id == "heatwatch-collector-a" and cfg.mqtt.shared_group == "heatwatch"
            assert str(cfg.general.data_dir).endswith("collector-a")  # one spool per instance
            assert cfg.mqtt.username == "heatwatch-collector"
            assert _may_write(cfg.mqtt.username, "heat/deadletter")
            assert not _may_write(cfg.mqtt.username, "heat/control/setpoint/S1")
        if unit.name == "heatwatch.service":
            assert cfg.run.parts == ("analytics", "control") and str(cfg.general.data_dir).endswith("controller")
            # the controller publishes setpoints and alerts: its MQTT user must be allowed to
            assert cfg.mqtt.username is not None
            assert _may_write(cfg.mqtt.username, "heat/control/setpoint/幸福里换热站")
            assert _may_write(cfg.mqtt.username, "heat/alerts/low_temp")
        if cfg.mqtt.username is not None:
            secret = cfg.mqtt.password_file
            assert secret is not None and secret.name in MAKE_PASSWD.read_text(encoding="utf-8"), (
                f"{unit.name}: password file {secret} is not one deploy/mosquitto/make-passwd.sh reads")


def test_units_sharing_heatwatch_toml_do_not_share_its_http_port(tmp_path: Path) -> None:
    """OPERATIONS.md sets [run] http_port in the shared heatwatch.toml: only one long-running process may bind it."""
    toml = tmp_path / "heatwatch.toml"
    toml.write_text("[run]\nhttp_port = 8081\n", encoding="utf-8")
    base_env = _env_file(UNITS / "heatwatch.env.example")
    binders: list[str] = []
    for unit in sorted(UNITS.glob("*.service")):
        u = _unit(unit)
        if shlex.split(u["ExecStart"][0])[3] not in ("run", "collect"):
            continue
        env = dict(e.split("=", 1) for e in u.get("Environment", []))
        env.update(base_env)
        for extra in u["EnvironmentFile"][1:]:
            env.update(_env_file(UNITS / (Path(extra).stem + ".env.example")))
        port = load_config(toml, environ={k: v for k, v in env.items() if k.startswith("HEATWATCH_")}).run.http_port
        if port:  # a template unit (collector@) binds once per instance: two instances already collide
            binders += [unit.name] * (2 if "@" in unit.name else 1)
        assert "2" in u.get("RestartPreventExitStatus", [""])[0].split(), f"{unit.name}: restarts on a config error"
    assert binders == ["heatwatch.service"]
