"""Community generator, weather and forecasts, and the ``heatwatch simulate`` command line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from heatwatch.app.cli import main
from heatwatch.core.registry import load_registry
from simulators.generator import generate
from simulators.load import expected_readings, plan_messages, synthetic_spec
from simulators.scenario import load_scenario, shipped_scenarios
from simulators.spec import SpecError, load_network, parse_network
from simulators.weather import ColdSnap, Forecaster, ForecastSpec, Weather, WeatherSpec, snap_profile

SPEC = """
seed = 9
[[stations]]
id = "S9"
name = "北区换热站"
[[communities]]
name = "北苑小区"
code = "BY"
station = "S9"
street = "北京路"
buildings = 5
floors = 6
entrances = 2
homes_per_floor = 2
bungalows = 6
non_residential = 2
non_residential_temp_c = 14.0
coverage = 0.8
edge_coverage = 0.5
"""


def test_shipped_scenarios_load() -> None:
    names = shipped_scenarios()
    assert {"normal", "cold_snap", "station_fault", "imbalanced", "bad_sensors"} <= set(names)
    for n in names:
        sc = load_scenario(n)
        assert generate(sc.network).has_sensor.sum() > 10


def test_generated_registry_round_trips_with_chinese_names_kinds_and_positions(tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(SPEC, encoding="utf-8")
    net = generate(load_network(spec_file))
    assert net.n == 5 * 6 * 2 * 2 + 6 + 2
    homes_csv, stations_csv = net.write_registry(tmp_path / "reg")
    reg = load_registry(homes_csv, stations_csv)
    assert set(reg.homes) == {net.homes[i].home_id for i in net.sensor_idx}
    assert reg.stations["S9"].name == "北区换热站" and reg.stations["S9"].communities == ("北苑小区",)
    kinds = {h.kind for h in reg.homes.values()}
    assert kinds <= {"residential", "bungalow", "non_residential"}
    all_kinds = {h.kind for h in net.homes}
    assert all_kinds == {"residential", "bungalow", "non_residential"}
    for h in net.homes:
        if h.kind == "non_residential":
            assert h.min_temp_c == 14.0
    h = next(h for h in reg.homes.values() if h.kind == "residential")
    assert h.address.startswith("北京路北苑小区") and "号楼" in h.building and h.position is not None
    assert all(h.gable == (h.position in (0, 3)) for h in net.homes if h.kind == "residential")


def test_coverage_is_biased_against_edge_homes() -> None:
    spec = parse_network(
        {"stations": [{"id": "S"}], "communities": [{"name": "大型小区", "station": "S", "buildings": 40, "floors": 10,
                                                    "entrances": 3, "homes_per_floor": 2, "coverage": 0.8,
                                                    "edge_coverage": 0.5}]},
        "test",
    )
    net = generate(spec)
    edge = np.array([h.edge for h in net.homes])
    assert abs(net.has_sensor[~edge].mean() - 0.8) < 0.05
    assert abs(net.has_sensor[edge].mean() - 0.4) < 0.05


def test_generation_is_deterministic_in_the_seed() -> None:
    spec = synthetic_spec(500, seed=1)
    a, b = generate(spec), generate(spec)
    assert a.homes == b.homes and np.array_equal(a.margin_c, b.margin_c)
    c = generate(spec.model_copy(update={"seed": 2}))
    assert not np.array_equal(a.margin_c, c.margin_c)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"stations": [{"id": "S"}], "communities": [{"name": "甲", "station": "X"}]}, "names station 'X'"),
        ({"stations": [{"id": "S"}], "communities": [{"name": "甲", "station": "S", "floors": 0}]}, "communities.0.floors"),
        ({"stations": [{"id": "S"}], "communities": [{"name": "甲", "station": "S", "colour": 1}]}, "unknown key"),
        ({"stations": [{"id": "S"}, {"id": "S"}], "communities": [{"name": "甲", "station": "S"}]}, "duplicate station"),
        ({"design": {"supply_c": 40, "return_c": 45}, "stations": [{"id": "S"}],
          "communities": [{"name": "甲", "station": "S"}]}, "supply_c > return_c"),
    ],
)
def test_bad_specs_name_what_is_wrong(body: dict[str, object], needle: str) -> None:
    with pytest.raises(SpecError, match=r"spec\.toml") as exc:
        parse_network(body, "spec.toml")
    assert needle in str(exc.value)


def test_weather_diurnal_cycle_cold_snap_and_determinism() -> None:
    start = datetime(2026, 1, 10, tzinfo=UTC)  # 08:00 in Shanghai
    spec = WeatherSpec(mean_c=-5, diurnal_amplitude_c=4, front_sd_c=0,
                       cold_snaps=[ColdSnap(start_h=24, duration_h=24, depth_c=8, ramp_h=6)])
    w = Weather(spec, ["default"], start, seed=1)
    at = lambda h: float(w.at(start + timedelta(hours=h))[0])  # noqa: E731
    assert at(6) == pytest.approx(-1.0, abs=0.01)  # 14:00 local: warmest
    assert at(18) == pytest.approx(-9.0, abs=0.01)  # 02:00 local: coldest
    assert at(30) == pytest.approx(at(6) - 8, abs=0.01)  # inside the snap, same local hour (14:00)
    assert at(24) == pytest.approx(-5 + 4 * np.cos(2 * np.pi * (8 - 14) / 24), abs=0.01)
    hours = np.array([0, 24, 27, 30, 48, 51, 54, 60.0])
    assert snap_profile(hours, spec.cold_snaps).tolist() == [0, 0, -4, -8, -8, -4, 0, 0]
    fronts = WeatherSpec(front_sd_c=3.0)
    a = Weather(fronts, ["x"], start, seed=7).base(np.arange(0, 400 * 3600, 3600.0) + start.timestamp())
    b = Weather(fronts, ["x"], start, seed=7).base(np.arange(0, 400 * 3600, 3600.0) + start.timestamp())
    assert np.array_equal(a, b) and 1.0 < np.std(a) < 6.0


def test_forecast_error_grows_with_lead_time() -> None:
    start = datetime(2026, 1, 10, tzinfo=UTC)
    w = Weather(WeatherSpec(front_sd_c=2.0), ["default"], start, seed=3)
    f = Forecaster(ForecastSpec(horizon_h=48), w, seed=3)
    errs = []
    for k in range(60):
        issued = start + timedelta(hours=6 * k)
        pts = f.issue(issued)["default"]
        assert pts[0][0] > issued and len(pts) == 48
        truth = w.base(np.array([t.timestamp() for t, _ in pts]))
        errs.append(np.array([v for _, v in pts]) - truth)
    e = np.abs(np.array(errs))
    assert e[:, :6].mean() < e[:, 36:].mean()
    assert 0.2 < e[:, :6].mean() < 1.5 and e[:, 36:].mean() < 5.0


def test_load_plan_readings_are_unique_and_recomputable() -> None:
    from simulators.load import LoadPlan

    plan = LoadPlan(("a", "b", "c"), total=10, batch=4, t0_s=1_700_000_000, interval_s=60)
    msgs = list(plan_messages(plan))
    assert [len(r) for _, r in msgs] == [4, 4, 2]
    assert [h for h, _ in msgs] == ["a", "b", "c"]
    exp = expected_readings(plan)
    assert len(exp) == 10 and all(15.0 <= v < 25.0 for v in exp.values())


def test_cli_generate_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(SPEC, encoding="utf-8")
    assert main(["simulate", "generate", "--spec", str(spec_file), "--out", str(tmp_path / "out")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["homes"] == 128 and Path(out["homes_csv"]).is_file()
    assert "北苑小区" in (tmp_path / "out" / "homes.csv").read_text(encoding="utf-8")
    assert main(["simulate", "list"]) == 0
    assert "cold_snap" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["simulate", "run", "--scenario", "nope"], "unknown scenario 'nope'"),
        (["simulate", "run", "--scenario", "normal", "--until", "tomorrow"], "--until 'tomorrow'"),
        (["simulate", "run", "--scenario", "normal", "--speed", "-1"], "--speed -1"),
        (["simulate", "load", "--homes", "0", "--rate", "10"], "--homes 0"),
        (["simulate", "load", "--homes", "5", "--rate", "10", "--batch", "0"], "--batch 0"),
        (["simulate", "generate", "--spec", "/nonexistent.toml", "--out", "x"], "/nonexistent.toml: file not found"),
    ],
)
def test_cli_errors_are_one_line_exit_2(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HEATWATCH_CONFIG", raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err


def test_cli_run_without_mqtt_writes_registry_and_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "sim"
    assert main(["simulate", "run", "--scenario", "normal", "--until", "6h", "--speed", "0", "--no-mqtt",
                 "--out", str(out)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["step"] == 24
    reg = load_registry(out / "homes.csv", out / "stations.csv")
    lines = (out / "truth_indoor.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 + 25 * len(reg.homes)
