"""Configuration: the TOML file, environment overrides, secrets, operator-facing errors, the example file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from heatwatch.app.cli import main
from heatwatch.core.config import Config, ConfigError, load_config
from heatwatch.core.config_example import example_toml

ROOT = Path(__file__).resolve().parents[1]


def test_example_file_is_generated_from_the_model() -> None:
    """heatwatch.example.toml is what `heatwatch config example` prints: regenerate it when config.py changes."""
    assert (ROOT / "heatwatch.example.toml").read_text(encoding="utf-8") == example_toml(), (
        "heatwatch.example.toml is out of date: run `heatwatch config example > heatwatch.example.toml`"
    )


def test_example_loads_to_the_defaults_and_names_every_key() -> None:
    cfg = load_config(ROOT / "heatwatch.example.toml", environ={})
    assert cfg.model_dump() == Config().model_dump()
    text = example_toml()
    for section in Config.model_fields:
        if section == "source":
            continue
        assert f"[{section}]" in text
        for key in type(getattr(cfg, section)).model_fields:
            shown = (f"\n{key} =", f"\n# {key} =", f"[{section}.{key}", f"# [{section}.{key}.")
            assert any(s in text for s in shown), f"{section}.{key} missing"


def test_file_then_environment_then_types(tmp_path: Path) -> None:
    f = tmp_path / "hw.toml"
    f.write_text('[mqtt]\nhost = "broker.example"\nport = 1884\n[general]\ntimezone = "Asia/Urumqi"\n', encoding="utf-8")
    cfg = load_config(f, environ={"HEATWATCH_MQTT_PORT": "1999", "HEATWATCH_INFLUXDB1_URL": "http://db:8086",
                                  "HEATWATCH_ANALYTICS_EDGE_SHARE_MIN": "0.5", "HEATWATCH_RUN_PARTS": "collector, analytics"})
    assert cfg.mqtt.host == "broker.example"
    assert cfg.mqtt.port == 1999  # the environment wins over the file, and text becomes int
    assert cfg.influxdb1.url == "http://db:8086"  # INFLUXDB1 is not read as a section "influxdb"
    assert cfg.analytics.edge_share_min == 0.5
    assert cfg.run.parts == ("collector", "analytics")
    assert cfg.general.tz.key == "Asia/Urumqi"
    assert cfg.source == f"{f} + environment"


@pytest.mark.parametrize(
    ("toml", "env", "expect"),
    [
        ('[mqtt]\nport = "eighty"\n', {}, r"mqtt\.port: .*integer.*'eighty'"),
        ("[mqtt]\nport = 70000\n", {}, r"mqtt\.port: .*65535"),
        ('[general]\ntimezone = "Mars/Olympus"\n', {}, r"general\.timezone: .*unknown time zone 'Mars/Olympus'"),
        ('[analytics]\nedge_share_min = 1.4\n', {}, r"analytics\.edge_share_min"),
        ('[analytics]\nedge_shar_min = 0.4\n', {}, r"analytics\.edge_shar_min: unknown key"),
        ("[analytic]\nx = 1\n", {}, r"unknown section \[analytic\]"),
        ("[mqtt]\nport = \n", {}, r"not valid TOML"),
        ("", {"HEATWATCH_MQTT_PROT": "1"}, r"HEATWATCH_MQTT_PROT: section \[mqtt\] has no key 'prot'"),
        ("", {"HEATWATCH_MQQT_PORT": "1"}, r"HEATWATCH_MQQT_PORT: unknown section"),
        ("", {"HEATWATCH_STANDARD_DAY_MIN_C": "warm"}, r"standard\.day_min_c: .*number"),
        ("", {"HEATWATCH_RUN_PARTS": ""}, r"run\.parts: .*at least one"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, toml: str, env: dict[str, str], expect: str) -> None:
    f = tmp_path / "hw.toml"
    f.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError, match=expect):
        load_config(f, environ=env)


def test_missing_file_is_one_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--config", str(tmp_path / "nope.toml"), "config", "check"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "nope.toml does not exist" in err and "Traceback" not in err


def test_secrets_are_masked_and_read_from_files(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "token"
    secret_file.write_text("tok-from-file-42\n", encoding="utf-8")
    f = tmp_path / "hw.toml"
    f.write_text(f'[general]\ndata_dir = "{tmp_path}"\n[influxdb2]\ntoken_file = "{secret_file}"\n', encoding="utf-8")
    monkeypatch.setenv("HEATWATCH_MQTT_PASSWORD", "hunter2-pw")
    monkeypatch.setenv("HEATWATCH_ALERTS_WEBHOOK_SECRET", "whsec-77")
    cfg = load_config(f)
    assert cfg.secret("influxdb2", "token") == "tok-from-file-42"
    assert cfg.secret("mqtt", "password") == "hunter2-pw"
    assert "hunter2" not in repr(cfg) and "hunter2" not in str(cfg.model_dump())
    for fmt in ([], ["--json"]):
        assert main(["--config", str(f), "config", "check", *fmt]) == 0
        out = capsys.readouterr().out
        assert "hunter2" not in out and "whsec" not in out and "tok-from-file" not in out
        assert "******" in out


def test_bad_secret_value_is_not_echoed(tmp_path: Path) -> None:
    f = tmp_path / "hw.toml"
    f.write_text("[mqtt]\npassword = 12345678\n", encoding="utf-8")  # a number, not a string
    with pytest.raises(ConfigError) as exc:
        load_config(f, environ={})
    assert "mqtt.password" in str(exc.value) and "12345678" not in str(exc.value)


def test_unreadable_secret_file_is_reported_by_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "hw.toml"
    f.write_text(f'[general]\ndata_dir = "{tmp_path}"\n[mqtt]\npassword_file = "{tmp_path / "missing"}"\n', encoding="utf-8")
    assert main(["--config", str(f), "config", "check"]) == 2
    err = capsys.readouterr().err
    assert "mqtt.password_file: cannot read" in err and "Traceback" not in err


def test_check_prints_valid_toml_of_the_effective_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "hw.toml"
    f.write_text(
        f'[general]\ndata_dir = "{tmp_path}"\n[mqtt]\nhost = "热力.example"\n'
        '[control.stations."站1"]\nsupply_design_c = 65.0\n',
        encoding="utf-8",
    )
    assert main(["--config", str(f), "config", "check"]) == 0
    out = capsys.readouterr().out
    parsed = tomllib.loads(out)  # unset keys are commented out, nested tables come after their keys
    assert parsed["mqtt"]["host"] == "热力.example"
    assert parsed["control"]["stations"]["站1"]["supply_design_c"] == 65.0
    assert parsed["control"]["design"]["supply_design_c"] == 60.0
    assert "username" not in parsed["mqtt"]  # None is not a TOML value
    assert load_config(f, environ={}).control.stations["站1"].supply_design_c == 65.0


def test_example_command_prints_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "example"]) == 0
    assert capsys.readouterr().out == example_toml()


def test_environment_numbers_and_tables() -> None:
    """Literal numbers and whole tables (as JSON) come from the environment too; bad JSON names the section."""
    cfg = load_config(environ={"HEATWATCH_MQTT_QOS": "2", "HEATWATCH_CONTROL_STATIONS": '{"站1": {"supply_design_c": 70}}'})
    assert cfg.mqtt.qos == 2
    assert cfg.control.stations["站1"].supply_design_c == 70.0
    assert cfg.control.stations["站1"].outdoor_design_c == cfg.control.design.outdoor_design_c
    with pytest.raises(ConfigError, match=r'field "control".*JSON'):
        load_config(environ={"HEATWATCH_CONTROL_STATIONS": "站1=70"})


def test_defaults_read_neither_file_nor_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Config()`` is the defaults wherever it runs: only load_config reads heatwatch.toml and HEATWATCH_*."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "heatwatch.toml").write_text("[mqtt]\nport = 1999\n", encoding="utf-8")
    monkeypatch.setenv("HEATWATCH_MQTT_HOST", "elsewhere")
    assert Config().mqtt.port == 1883 and Config().mqtt.host == "127.0.0.1"
    cfg = load_config()
    assert (cfg.mqtt.port, cfg.mqtt.host, cfg.source) == (1999, "elsewhere", "heatwatch.toml + environment")
