"""Heat and energy from station telemetry: water properties, hand-computed energy, gaps, degree-days,
the simulator's ground truth within 2 %, the registry's heated area, and ``heatwatch energy``."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analytics.energy import (
    DEFAULT_MAX_GAP,
    heat_kw,
    intervals,
    station_power,
    summarize,
    water_cp,
    water_density,
)
from heatwatch.app.cli import main
from heatwatch.core import schema
from heatwatch.core.errors import RegistryError
from heatwatch.core.model import Point
from heatwatch.core.registry import Home, load_homes, write_homes
from heatwatch.infra.storage.sqlite import SqliteStore
from simulators.scenario import load_scenario
from simulators.simulation import Simulation

T0 = datetime(2026, 1, 9, 16, 0, tzinfo=UTC)  # 00:00 on 10 Jan in Shanghai


def test_water_properties_match_reference_values() -> None:
    rho = water_density([4.0, 20.0, 50.0, 80.0, 100.0])
    assert rho == pytest.approx([999.97, 998.20, 988.04, 971.80, 958.37], abs=0.05)  # IAPWS-95 at 0.1 MPa
    assert water_cp([20.0, 50.0, 80.0]) == pytest.approx([4182.0, 4181.0, 4197.0], abs=1.0)
    assert water_cp(47.5) == pytest.approx(4180.5)  # interpolated between 45 and 50 °C


def test_heat_power_by_hand() -> None:
    # 10 m³/h, 60/40 °C: Tm 50 °C, ρ 988.04, c 4181 → 10/3600·988.04·4181·20/1000
    assert heat_kw(60.0, 40.0, 10.0)[()] == pytest.approx(10 / 3600 * 988.036 * 4181 * 20 / 1000, rel=1e-5)
    assert np.isnan(heat_kw(60.0, np.nan, 10.0)[()])
    assert heat_kw(40.0, 60.0, 10.0)[()] < 0  # kept, not hidden


def frame(times: list[datetime], kw_like: list[float], sid: str = "S1") -> pd.DataFrame:
    """Readings whose heat is ``kw_like`` × the power of (60/40 °C, 1 m³/h)."""
    return pd.DataFrame({"time": pd.to_datetime(times, utc=True), "station_id": sid, "supply_c": 60.0,
                         "return_c": 40.0, "flow_m3h": kw_like})


def test_trapezoid_over_actual_timestamps_and_gaps_not_bridged() -> None:
    unit = float(heat_kw(60.0, 40.0, 1.0))
    times = [T0, T0 + timedelta(minutes=15), T0 + timedelta(minutes=45), T0 + timedelta(hours=3)]
    iv = intervals(station_power(frame(times, [1.0, 3.0, 3.0, 5.0])), DEFAULT_MAX_GAP)
    assert list(iv["hours"]) == [0.25, 0.5]  # 45 min → 3 h is longer than the 1 h limit: dropped
    assert list(iv["kwh"]) == pytest.approx([unit * 2 * 0.25, unit * 3 * 0.5])


def test_daily_season_degree_days_and_area() -> None:
    unit = float(heat_kw(60.0, 40.0, 1.0))
    times = [T0 + timedelta(hours=h) for h in range(49)]  # two whole local days, hourly
    readings = pd.concat([frame(times, [2.0] * 49, "S1"), frame(times, [1.0] * 49, "幸福站")])
    outdoor = pd.DataFrame({"time": pd.to_datetime(times, utc=True),
                            "temp_c": [-2.0] * 24 + [20.0] * 25})  # day 1: HDD 20; day 2: warm, HDD 0
    s = summarize(readings, outdoor, "Asia/Shanghai", {"S1": 100.0})
    d1 = s.daily[(s.daily.station_id == "S1")].iloc[0]
    assert str(d1["day"]) == "2026-01-10"
    assert d1["hours_covered"] == pytest.approx(24.0)
    assert d1["kwh"] == pytest.approx(2 * unit * 24)
    assert d1["gj"] == pytest.approx(2 * unit * 24 * 0.0036)
    assert d1["hdd"] == pytest.approx(20.0)
    assert d1["gj_per_hdd"] == pytest.approx(float(d1["gj"]) / 20.0)
    assert d1["kwh_per_m2"] == pytest.approx(d1["kwh"] / 100.0)
    d2 = s.daily[(s.daily.station_id == "S1")].iloc[1]
    assert np.isnan(d2["gj_per_hdd"])  # no heating demand: no ratio
    season = s.season.set_index("station_id")
    assert season.loc["S1", "kwh"] == pytest.approx(2 * unit * 48)
    assert season.loc["S1", "mean_kw"] == pytest.approx(2 * unit)
    assert season.loc["S1", "hdd"] == pytest.approx(20.0)
    assert season["kwh_per_m2"].isna()["幸福站"]  # no area in the registry


def simulated(hours: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Telemetry as the simulator publishes it (rounded like the messages), its ground truth, and the weather."""
    sim = Simulation(load_scenario("normal"), T0)
    rows, truth, wx = [], [], []
    for _ in range(int(hours * 3600 / sim.dt_s)):
        st = sim.step()
        s = st.stations
        for j, sid in enumerate(sim.station_ids):
            rows.append({"time": st.t, "station_id": sid, "supply_c": round(float(s.supply_c[j]), 2),
                         "return_c": round(float(s.return_c[j]), 2), "flow_m3h": round(float(s.flow_m3h[j]), 3)})
            truth.append({"time": st.t, "station_id": sid, "heat_kw": float(s.heat_kw[j])})
        wx.append({"time": st.t, "temp_c": float(st.outdoor_site[0])})
    out = [pd.DataFrame(x) for x in (rows, truth, wx)]
    for df in out:
        df["time"] = pd.to_datetime(df["time"], utc=True)
    return out[0], out[1], out[2]


def test_energy_from_telemetry_matches_the_simulators_ground_truth() -> None:
    readings, truth, outdoor = simulated(48)
    got = summarize(readings, outdoor, "Asia/Shanghai").season.set_index("station_id")["kwh"]
    want = intervals(truth).groupby("station_id")["kwh"].sum()
    ratio = got / want
    assert len(ratio) == 2
    assert ((ratio - 1).abs() < 0.02).all(), ratio.to_dict()
    # per reading too: the power, not only the sum
    p = station_power(readings)["heat_kw"].to_numpy()
    assert np.abs(p / truth.sort_values(["station_id", "time"])["heat_kw"].to_numpy() - 1).max() < 0.02


def test_registry_heated_area_is_optional_and_round_trips(tmp_path: Path) -> None:
    h = Home("A-101", "幸福小区", "1号楼", "1", 1, 6, False, "residential", None, "S1")
    write_homes(tmp_path / "old.csv", [h])
    assert "heated_area_m2" not in (tmp_path / "old.csv").read_text(encoding="utf-8")
    assert load_homes(tmp_path / "old.csv")["A-101"].heated_area_m2 is None
    write_homes(tmp_path / "new.csv", [replace(h, heated_area_m2=86.5), replace(h, home_id="A-102")])
    loaded = load_homes(tmp_path / "new.csv")
    assert loaded["A-101"].heated_area_m2 == 86.5
    assert loaded["A-102"].heated_area_m2 is None  # an empty cell: no area for this home
    (tmp_path / "bad.csv").write_text(
        (tmp_path / "new.csv").read_text(encoding="utf-8").replace("86.5", "-3"), encoding="utf-8")
    with pytest.raises(RegistryError, match="heated_area_m2"):
        load_homes(tmp_path / "bad.csv")


def test_energy_command_stores_results_and_prints_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    for k in [k for k in __import__("os").environ if k.startswith("HEATWATCH_")]:
        monkeypatch.delenv(k)
    homes = [Home(f"H{i}", "幸福小区", "1号楼", "1", 1, 6, False, "residential", None, "幸福站", heated_area_m2=50.0)
             for i in range(2)]
    write_homes(tmp_path / "homes.csv", homes)
    db = tmp_path / "hw.sqlite"
    conf = tmp_path / "hw.toml"
    conf.write_text(f'[general]\ndata_dir = "{tmp_path}"\n[registry]\nhomes_csv = "{tmp_path / "homes.csv"}"\n'
                    f'[sqlite]\npath = "{db}"\n', encoding="utf-8")
    store = SqliteStore(db)
    times = [T0 + timedelta(minutes=15 * i) for i in range(97)]
    store.write([Point(schema.STATION, {"station_id": "幸福站"},
                       {"supply_c": 60.0, "return_c": 40.0, "flow_m3h": 1.0}, int(t.timestamp()) * 10**9) for t in times])
    store.write([Point(schema.WEATHER, {"site_id": "default"}, {"temp_c": 0.0}, int(t.timestamp()) * 10**9)
                 for t in times])
    code = main(["--config", str(conf), "energy", "--from", "2026-01-10", "--to", "2026-01-11", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    unit = float(heat_kw(60.0, 40.0, 1.0))
    (season,) = out["season"]
    assert season["station_id"] == "幸福站"
    assert season["kwh"] == pytest.approx(unit * 24, rel=1e-4)
    assert season["hdd"] == pytest.approx(18.0)
    assert season["kwh_per_m2"] == pytest.approx(unit * 24 / 100.0, rel=1e-4)
    stored = store.query(schema.STATION_ENERGY, T0 - timedelta(days=1), T0 + timedelta(days=2))
    assert set(stored["period"]) == {"day", "season"}
    assert stored[stored["period"] == "day"]["gj"].iloc[0] == pytest.approx(unit * 24 * 0.0036, rel=1e-3)
    code = main(["--config", str(conf), "energy", "--from", "2026-01-10", "--to", "2026-01-11", "--no-write"])
    text = capsys.readouterr().out
    assert code == 0
    assert "幸福站" in text and "2026-01-10" in text and f"{unit * 24:.2f}" in text
    code = main(["--config", str(conf), "energy", "--from", "2026-01-11", "--to", "2026-01-10"])
    assert code == 2 and "not before" in capsys.readouterr().err
    store.close()
