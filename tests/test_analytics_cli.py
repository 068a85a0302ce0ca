"""The analytics commands through ``heatwatch.app.cli.main``: analyze (--json shape, table, --write),
readings import (row/column errors, source=manual), plan-visits; bad input → one line, exit 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import heatwatch.app.commands.analyze as acli
from heatwatch.app.cli import main
from heatwatch.core import schema
from heatwatch.core.registry import Home, write_homes
from heatwatch.infra.storage.sqlite import SqliteStore
from tests.test_analytics_engine import local, reading

SH = ZoneInfo("Asia/Shanghai")
C = "幸福小区"
NOW = datetime(2026, 1, 10, 13, 0, tzinfo=UTC)  # 21:00 in Shanghai


def homes() -> list[Home]:
    out = []
    for b in ("1号楼", "2号楼"):
        for f in range(1, 5):
            for p in range(2):
                out.append(Home(f"{b[0]}-{f}0{p + 1}", C, b, "1", f, 4, False, "residential", None, "S1", f"{C}{b}{f}0{p + 1}"))
    return out


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    hs = homes()
    write_homes(tmp_path / "homes.csv", hs)
    db = tmp_path / "hw.sqlite"
    conf = tmp_path / "hw.toml"
    conf.write_text(f'[general]\ndata_dir = "{tmp_path}"\n[registry]\nhomes_csv = "{tmp_path / "homes.csv"}"\n'
                    f'[sqlite]\npath = "{db}"\n', encoding="utf-8")
    for k in [k for k in __import__("os").environ if k.startswith("HEATWATCH_")]:
        monkeypatch.delenv(k)
    monkeypatch.setattr(acli, "CLOCK", lambda: NOW)
    store = SqliteStore(db)
    for h in hs:  # everyone warm all day, except 1-101 (cold) and 2-401 (silent)
        if h.home_id == "2-401":
            continue
        temp = 15.0 if h.home_id == "1-101" else 20.0  # ±0.1 at :00/:30: hourly mean exact, not a stuck sensor
        store.write([reading(h, local(10, 6) + timedelta(minutes=30 * i), temp + (0.1 if i % 2 else -0.1)) for i in range(30)])
    yield {"conf": str(conf), "store": store, "tmp": tmp_path, "homes": hs}
    store.close()


def run(env: dict[str, Any], *argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["--config", env["conf"], *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_analyze_json_default_window_is_today_06_to_21(env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(env, "analyze", "--json", capsys=capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["window"] == {"from": "2026-01-10T06:00:00+08:00", "to": "2026-01-10T21:00:00+08:00", "timezone": "Asia/Shanghai"}
    [c] = doc["communities"]
    # 16 registered, 15 reporting; edge = floors 1 and 4 → 8 registered, 7 reporting (2-401 silent); s = 7/15 ≥ 0.4 → plain
    assert (c["community"], c["homes_registered"], c["homes_reporting"], c["edge_homes"], c["middle_homes"]) == (C, 16, 15, 7, 8)
    assert c["weighted_mean_c"] == c["plain_mean_c"] == round((14 * 20 + 15) / 15, 2)
    assert c["status"] == "ok" and c["homes_below_standard"] == 1
    [hb] = doc["homes_below_standard"]
    assert hb["home_id"] == "1-101" and hb["hours_below"] == 15 and hb["first_below"] == "2026-01-10T06:00:00+08:00"
    assert hb["threshold_c"] == 18.0 and hb["rule"] == "residential_day"
    assert [(s["home_id"], s["finding"]) for s in doc["sensors"]] == [("2-401", "no_sensor")]
    assert doc["imbalance"][0]["cold_buildings"] == [] and "1号楼" in doc["imbalance"][0]["building_means_c"]
    assert "幸福小区" in out  # not \\u escaped


def test_analyze_table_and_write(env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(env, "analyze", "--from", "2026-01-10T08:00", "--to", "2026-01-10T12:00+08:00",
                         "--community", C, "--write", capsys=capsys)
    assert code == 0, err
    assert "window 2026-01-10T08:00:00+08:00 … 2026-01-10T12:00:00+08:00" in out
    assert "1-101" in out and "no_sensor" in out and C in out
    got = env["store"].query(schema.COMMUNITY_STATS, local(10, 11), local(10, 13))
    assert got["time"].tolist() == [local(10, 12)] and got["homes_reporting"].tolist() == [15]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["analyze", "--from", "yesterday"], "--from 'yesterday' is not a time"),
        (["analyze", "--to", "2026-01-10T08:00"], "--to needs --from"),
        (["analyze", "--from", "2026-01-10T09:00", "--to", "2026-01-10T08:00"], "is not before"),
        (["analyze", "--community", "不存在小区"], "'不存在小区' is not in the registry"),
        (["plan-visits", "--community", C, "--size", "0"], "at least 1"),
        (["plan-visits", "--community", C, "--size", "99"], "more than the 16 registered homes"),
        (["readings", "import", "/nonexistent/x.csv"], "cannot open"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    env: dict[str, Any], capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _out, err = run(env, *argv, capsys=capsys)
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_plan_visits_prefers_flagged_homes(env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(env, "plan-visits", "--community", C, "--size", "5", "--json", capsys=capsys)
    assert code == 0, err
    plan = json.loads(out)
    visits = {v["home_id"]: v for v in plan["visits"]}
    assert len(visits) == 5 and plan["edge_visits"] >= 2 and plan["buildings"] == 2
    assert visits["1-101"]["reasons"] == ["cold"] and visits["2-401"]["reasons"] == ["no_sensor"]
    code, out, _ = run(env, "plan-visits", "--community", C, "--size", "5", capsys=capsys)
    assert code == 0 and "1-101" in out and "edge (" in out


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_readings_import_stores_manual_points(env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    f = write_csv(env["tmp"] / "ledger.csv", "home_id,ts,temp_c,rh,note\n"
                  "2-401,2026-01-10T10:15:00+08:00,16.5,40,两人测温 用户签字\n"
                  "2-401,2026-01-10T11:15:00+08:00,16.0,,\n"
                  "1-102,1768017600,19.5,,epoch seconds\n")
    code, out, err = run(env, "readings", "import", str(f), "--dry-run", capsys=capsys)
    assert code == 0 and "dry run" in out and env["store"].count(schema.INDOOR, local(10, 0), local(11, 0),
                                                                   where={"source": "manual"}) == 0
    code, out, err = run(env, "readings", "import", str(f), capsys=capsys)
    assert code == 0, err
    assert "imported 3 manual reading(s) for 2 home(s)" in out
    df = env["store"].query(schema.INDOOR, local(10, 0), local(11, 0), where={"source": "manual"})
    assert sorted(df["home_id"]) == ["1-102", "2-401", "2-401"] and set(df["community"]) == {C}
    # the manual readings count: 2-401 now reports, 2 hours under 18 → below standard
    code, out, _ = run(env, "analyze", "--json", capsys=capsys)
    doc = json.loads(out)
    assert {h["home_id"] for h in doc["homes_below_standard"]} == {"1-101", "2-401"}
    assert doc["communities"][0]["homes_reporting"] == 16
    assert ("2-401", "no_sensor") in [(s["home_id"], s["finding"]) for s in doc["sensors"]]  # a visit is not a sensor


def test_readings_import_names_rows_and_columns(env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    f = write_csv(env["tmp"] / "bad.csv", "home_id,ts,temp_c\n"
                  "NOPE,2026-01-10T10:00:00+08:00,18\n"
                  "1-101,2026-01-10T10:00:00,18\n"
                  "1-101,2026-01-10T10:00:00Z,abc\n"
                  "1-101,2026-01-10T10:00:00Z,99\n"
                  "1-101,2027-01-10T10:00:00Z,18\n"
                  "1-101,2026-01-10T09:00:00Z,18\n"
                  "1-101,2026-01-10T09:00:00Z,18.5\n"
                  "1-101,,18\n")
    code, _out, err = run(env, "readings", "import", str(f), capsys=capsys)
    assert code == 2 and "nothing imported" in err
    for part in ("row 2 column home_id: 'NOPE' is not in the registry", "row 3 column ts:", "no UTC offset",
                 "row 4 column temp_c: expected a number", "row 5 column temp_c: 99 is outside the plausible range -30…60",
                 "row 6 column ts: 2027-01-10T10:00:00Z is in the future", "row 8: same home_id and ts as row 7",
                 "row 9 column ts: empty"):
        assert part in err, part
    assert env["store"].count(schema.INDOOR, local(9, 0), local(12, 0), where={"source": "manual"}) == 0
    hdr = write_csv(env["tmp"] / "hdr.csv", "home,ts,temp_c,floor\n1-101,2026-01-10T09:00:00Z,18\n")
    code, _, err = run(env, "readings", "import", str(hdr), capsys=capsys)
    assert code == 2 and "row 1 (header): missing column(s) home_id; unknown column(s) home, floor" in err
    gbk = env["tmp"] / "gbk.csv"
    gbk.write_bytes("home_id,ts,temp_c,note\n1-101,2026-01-10T09:00:00Z,18,两人测温\n".encode("gbk"))
    code, _, err = run(env, "readings", "import", str(gbk), capsys=capsys)
    assert code == 2 and "not UTF-8" in err


def test_now_is_the_injected_clock(
    env: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # move the clock a day on: today's window is empty → every home is stale or without sensor, none is cold
    monkeypatch.setattr(acli, "CLOCK", lambda: NOW + timedelta(days=1))
    code, out, _ = run(env, "analyze", "--json", capsys=capsys)
    doc = json.loads(out)
    assert code == 0 and doc["homes_below_standard"] == [] and doc["communities"][0]["status"] == "insufficient_sample"
    assert doc["window"]["from"] == "2026-01-11T06:00:00+08:00"
    assert sum(s["finding"] == "stale" for s in doc["sensors"]) == 15


def test_readings_import_in_chunks_with_a_live_count(env: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(acli, "IMPORT_CHUNK", 4)
    rows = "".join(f"1-102,2026-01-10T08:{m:02d}:00+08:00,19.{m % 10},,\n" for m in range(10))
    f = write_csv(env["tmp"] / "many.csv", "home_id,ts,temp_c,rh,note\n" + rows)
    code, _out, err = run(env, "readings", "import", str(f), "--progress", capsys=capsys)
    assert code == 0, err
    assert [p.strip() for p in err.split("\r") if p.strip()] == ["stored 4 / 10 readings", "stored 8 / 10 readings",
                                                                 "stored 10 / 10 readings"]
    assert env["store"].count(schema.INDOOR, local(10, 0), local(11, 0), where={"source": "manual"}) == 10
    code, _out, err = run(env, "readings", "import", str(f), "--no-progress", capsys=capsys)
    assert code == 0 and err == ""
    # importing the same file again stores nothing twice
    assert env["store"].count(schema.INDOOR, local(10, 0), local(11, 0), where={"source": "manual"}) == 10
