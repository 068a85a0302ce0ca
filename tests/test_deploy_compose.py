"""deploy/docker-compose.yml, .env.example and Dockerfile, checked without Docker (none runs here).

- the file validates against the Compose specification JSON schema shipped by check-jsonschema;
- every HEATWATCH_* variable a container gets is a real config key (``load_config`` accepts it);
- every bind-mounted file exists, every named volume/secret is declared, images are pinned, the
  secrets come from the environment and .env.example carries none.
"""

from __future__ import annotations

import json
import re
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from heatwatch.app.cli import build_parser
from heatwatch.core.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
HEATWATCH_SERVICES = ("collector-a", "collector-b", "controller", "simulator")
SECRET_VARS = ("INFLUXDB_ADMIN_PASSWORD", "INFLUXDB_TOKEN", "GRAFANA_ADMIN_PASSWORD", "MQTT_COLLECTOR_PASSWORD",
               "MQTT_SERVICE_PASSWORD", "MQTT_SIMULATOR_PASSWORD", "ALERTS_WEBHOOK_SECRET")

_VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")


class InterpolationError(Exception):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution: $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, $$."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1) or m.group(4), m.group(2), m.group(3) or ""
        val = env.get(name)
        if op == ":-":
            return val if val else arg
        if op == "-":
            return val if val is not None else arg
        if op in (":?", "?") and not val:
            raise InterpolationError(f"{name}: {arg}")
        return val or ""

    return _VAR.sub(sub, value)


def read_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for ln in path.read_text(encoding="utf-8").splitlines():
        if not ln.strip() or ln.lstrip().startswith("#"):
            continue
        key, sep, val = ln.partition("=")
        assert sep, f"{path}: not KEY=VALUE: {ln!r}"
        assert key == key.strip() and re.fullmatch(r"[A-Z][A-Z0-9_]*", key), f"{path}: bad name {key!r}"
        out[key] = val
    return out


def raw_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def filled_env() -> dict[str, str]:
    """.env.example with the (empty) secrets filled in, as an operator would."""
    env = read_env_file(ENV_EXAMPLE)
    return {**env, **{k: f"test-{k.lower()}" for k in SECRET_VARS}}


def compose() -> dict[str, Any]:
    return interpolate(raw_compose(), filled_env())


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


# --- schema and structure ----------------------------------------------------------------------------
def test_compose_validates_against_the_compose_spec_schema() -> None:
    schema = json.loads((resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    for doc in (raw_compose(), compose()):
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:10])
    broken = compose()
    broken["services"]["collector-a"]["restart"] = ["always"]
    broken["services"]["grafana"]["portz"] = ["3000:3000"]
    assert len(list(validator.iter_errors(broken))) >= 2  # the validator does reject bad files


def test_compose_services_volumes_secrets_are_consistent() -> None:
    c = compose()
    services = c["services"]
    assert {"mosquitto", "influxdb", "grafana", "collector-a", "collector-b", "controller", "simulator"} <= set(services)
    assert services["simulator"]["profiles"] == ["simulator"]
    assert all("profiles" not in s for n, s in services.items() if n != "simulator")
    for name, s in services.items():
        for dep in s.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        for sec in s.get("secrets", []):
            assert sec in c["secrets"], f"{name}: undeclared secret {sec}"
        for vol in s.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith((".", "/")):
                assert (DEPLOY / src).exists(), f"{name}: bind mount source {src} missing in deploy/"
            else:
                assert src in c["volumes"], f"{name}: undeclared volume {src}"
        image = s["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image version ({image})"
    for sec in c["secrets"].values():
        assert set(sec) == {"environment"} and sec["environment"] in SECRET_VARS  # secrets only from deploy/.env


def test_collectors_share_a_subscription_with_distinct_client_ids() -> None:
    services = compose()["services"]
    a, b = (_environment(services[n]) for n in ("collector-a", "collector-b"))
    assert a["HEATWATCH_MQTT_SHARED_GROUP"] == b["HEATWATCH_MQTT_SHARED_GROUP"] != ""
    ids = [_environment(services[n])["HEATWATCH_MQTT_CLIENT_ID"] for n in HEATWATCH_SERVICES]
    assert len(set(ids)) == len(ids)
    assert services["collector-a"]["command"] == services["collector-b"]["command"] == ["collect"]
    assert services["controller"]["command"] == ["run"]
    # the controller must not be a third, unshared collector
    assert load_config(environ=_environment(services["controller"])).run.parts == ("analytics", "control")
    # spools must not be shared between replicas
    data = [v for n in ("collector-a", "collector-b") for v in services[n]["volumes"] if v.endswith(":/var/lib/heatwatch")]
    assert len(set(data)) == 2


def test_required_secrets_stop_compose_when_missing() -> None:
    with pytest.raises(InterpolationError, match="set INFLUXDB_"):
        interpolate(raw_compose(), read_env_file(ENV_EXAMPLE))
    env = filled_env()
    del env["INFLUXDB_TOKEN"]
    with pytest.raises(InterpolationError, match="INFLUXDB_TOKEN"):
        interpolate(raw_compose(), env)


# --- environment variables -> config keys ----------------------------------------------------------------
def test_every_heatwatch_variable_is_a_config_key() -> None:
    services = compose()["services"]
    for name in HEATWATCH_SERVICES:
        s = services[name]
        env = _environment(s)
        assert any(k.startswith("HEATWATCH_") for k in env)
        cfg = load_config(environ=env)  # raises ConfigError on an unknown section or key
        assert cfg.mqtt.host == "mosquitto" and cfg.mqtt.username
        assert cfg.mqtt.password_file is not None and cfg.mqtt.password_file.name in s["secrets"]
        if name != "simulator":
            assert cfg.storage.backend == "influxdb2" and cfg.influxdb2.url == "http://influxdb:8086"
            assert cfg.influxdb2.token_file is not None and cfg.influxdb2.token_file.name in s["secrets"]
    cfg = load_config(environ=_environment(services["collector-a"]))
    assert cfg.mqtt.shared_group == "heatwatch" and cfg.mqtt.client_id == "heatwatch-collector-a"
    assert cfg.general.timezone == "Asia/Shanghai" and cfg.collector.spool_max_mb == 2048

    example = {k: v for k, v in read_env_file(ENV_EXAMPLE).items() if k.startswith("HEATWATCH_")}
    assert example and load_config(environ=example)
    with pytest.raises(ConfigError, match="sharedgroup"):
        load_config(environ={"HEATWATCH_MQTT_SHAREDGROUP": "x"})  # the check can fail


def test_env_example_matches_what_compose_reads() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    referenced = {m.group(1) or m.group(4) for m in _VAR.finditer(text) if m.group(0) != "$$"}
    referenced |= {s["environment"] for s in raw_compose()["secrets"].values()}
    example = read_env_file(ENV_EXAMPLE)
    assert referenced == set(example), (
        f"in compose but not .env.example: {sorted(referenced - set(example))}; "
        f"in .env.example but unused: {sorted(set(example) - referenced)}"
    )
    for k in SECRET_VARS:
        assert example[k] == "", f".env.example must not carry a value for the secret {k}"


def test_nothing_secret_is_committed() -> None:
    for private in ("deploy/.env", "deploy/mosquitto/sensors.txt", "deploy/registry/homes.csv"):
        res = subprocess.run(["git", "check-ignore", "-q", private], cwd=ROOT, capture_output=True, check=False)
        assert res.returncode == 0, f"{private} must be git-ignored"
    secretish = re.compile(r"PASSWORD|TOKEN|SECRET", re.I)
    for name, svc in raw_compose()["services"].items():
        for key, value in _environment(svc).items():
            if secretish.search(key) and not key.endswith(("_FILE", "__FILE")):
                assert re.fullmatch(r"\$\{\w+(:\?[^}]*)?\}", value), f"{name}: {key} must come from deploy/.env, not {value!r}"
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/heatwatch.yml").read_text(encoding="utf-8"))
    for d in ds["datasources"]:
        for key, value in d.get("secureJsonData", {}).items():
            assert "$__file{/run/secrets/" in value, f"datasource {d['uid']}: {key} must be read from a secret file"
    for key, value in read_env_file(DEPLOY / "systemd" / "heatwatch.env.example").items():
        if secretish.search(key):
            assert key.endswith("_FILE") and value.startswith("/etc/heatwatch/secrets/"), key


def test_commands_are_heatwatch_commands() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    known = set(sub.choices or {})
    services = compose()["services"]
    for name in HEATWATCH_SERVICES:
        cmd = services[name]["command"]
        assert cmd[0] in known, f"{name}: {cmd}"
        parser.parse_args(cmd)
        # the health check runs a real heatwatch command too (the binary the image's ENTRYPOINT names)
        hc = services[name]["healthcheck"]
        if name == "simulator":
            assert hc == {"disable": True}  # writes no status.json
            continue
        assert hc["test"][:2] == ["CMD", "heatwatch"], f"{name}: {hc}"
        parser.parse_args(hc["test"][2:])


# --- Grafana and InfluxDB wiring ---------------------------------------------------------------------------
def test_grafana_and_influxdb_mounts_match_their_files() -> None:
    services = compose()["services"]
    g = services["grafana"]
    env = _environment(g)
    mounts = dict(v.split(":")[:2][::-1] for v in g["volumes"])  # container path -> source
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    assert mounts["/var/lib/grafana/dashboards"] == "./grafana/dashboards"
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].replace("/var/lib/grafana/dashboards", "grafana/dashboards")
    assert (DEPLOY / home).is_file()
    ds_text = (DEPLOY / "grafana/provisioning/datasources/heatwatch.yml").read_text(encoding="utf-8")
    for var in set(re.findall(r"\$\{(\w+)\}", ds_text)):
        assert var in env, f"datasource provisioning reads ${{{var}}}, not set for grafana"
    for path in re.findall(r"\$__file\{([^}]+)\}", ds_text):
        assert Path(path).name in g["secrets"]
    providers = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/heatwatch.yml").read_text(encoding="utf-8"))
    for p in providers["providers"]:
        local = DEPLOY / p["options"]["path"].replace("/var/lib/grafana/dashboards", "grafana/dashboards")
        assert sorted(local.glob("*.json")), f"provider {p['name']}: no dashboards in {local}"

    i = services["influxdb"]
    imounts = dict(v.split(":")[:2][::-1] for v in i["volumes"])
    assert imounts["/docker-entrypoint-initdb.d"] == "./influxdb/init"
    script = (DEPLOY / "influxdb/init/10-heatwatch.sh").read_text(encoding="utf-8")
    task_dir = re.search(r"HEATWATCH_TASK_DIR:-([^}]+)\}", script)
    assert task_dir and imounts[task_dir.group(1)] == "./influxdb/tasks"
    ienv = _environment(i)
    assert ienv["DOCKER_INFLUXDB_INIT_MODE"] == "setup" and ienv["DOCKER_INFLUXDB_INIT_RETENTION"] == "400d"


def test_dockerfile() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    base = re.search(r"^FROM (\S+)", text, re.M)
    assert base and base.group(1).startswith("python:3.11")
    assert 'ENTRYPOINT ["heatwatch"]' in text and "USER heatwatch" in text
    assert "fonts-noto-cjk" in text and "tzdata" in text
    # compiled analytics kernels are cached in the volume the image's user may write
    assert re.search(r"NUMBA_CACHE_DIR=/var/lib/heatwatch/\S+", text) and 'VOLUME ["/var/lib/heatwatch"]' in text
    for m in re.finditer(r"cp -r /src/(\S+)", text):
        assert (ROOT / m.group(1)).exists()
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", "deploy/.env"} <= set(ignore)
    build = compose()["services"]["collector-a"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (DEPLOY / "Dockerfile").resolve()
