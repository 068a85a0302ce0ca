"""In-home measurement records (issue 16; seed 001 section 八): the checks (pure), append-only corrections, the CSV
import (bad rows refused by number and reason, good rows kept), and a co-signed reading under the standard opening
a not_warm order on the desk — or noting the home's open one."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dispatch.desk import Desk
from dispatch.measurements import Measurement, MeasurementBook, MeasurementRefused, check, parse_rooms, record, standard_for
from dispatch.model import OrderInput
from heatwatch.app import cli
from heatwatch.app.commands import homes as homes_cmd
from heatwatch.app.commands import measurements as meas_cmd
from heatwatch.core.config import load_config
from heatwatch.core.registry import Home, Registry, Station, write_homes, write_stations
from heatwatch.core.timeutil import SettableClock

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=SH).astimezone(UTC)
C = "幸福小区"
HOMES = {
    "H1": Home("H1", C, "1号楼", "1", 3, 6, False, "residential", None, "S1", "幸福小区1号楼301", "138-0000-0001"),
    "B1": Home("B1", C, "平房", "", 1, 1, False, "bungalow", None, "S1", "幸福小区平房1", ""),
}
REG = Registry(HOMES, {"S1": Station("S1", "幸福换热站", (C,), 35.0, 75.0)})
CFG = load_config(environ={}, overrides={})


def m(**kw: object) -> Measurement:
    base = Measurement("H1", datetime(2026, 12, 3, 10, 0, tzinfo=SH).astimezone(UTC), (("客厅", 17.2), ("主卧", 16.8)),
                       ("张三", "李四"), "TH-0042", date(2026, 6, 1), True, "王女士", "门窗关闭")
    return replace(base, **kw)  # type: ignore[arg-type]


def test_the_checks_name_each_problem() -> None:
    assert check(m(), CFG, REG, NOW) == []
    assert check(m(staff=("张三", "张三")), CFG, REG, NOW) == ["2 distinct staff required, got 1 (张三)"]
    assert check(m(calibrated_on=date(2026, 12, 4)), CFG, REG, NOW) == [
        "calibrated_on 2026-12-04 is after the measurement (2026-12-03)"]
    [p] = check(m(calibrated_on=date(2025, 12, 2)), CFG, REG, NOW)
    assert "expired (366 days" in p and "valid 365 days" in p
    assert check(m(calibrated_on=date(2025, 12, 3)), CFG, REG, NOW) == []  # 365 days: still valid
    assert check(m(rooms=(("客厅", 55.0),)), CFG, REG, NOW) == ["room 客厅: 55.0 °C is outside 0..40 °C"]
    assert check(m(cosigner=" "), CFG, REG, NOW) == ["co-signed without the customer's name (cosigner)"]
    assert check(m(home_id="X9", instrument_id=""), CFG, REG, NOW) == ["home 'X9' is not in the registry", "instrument_id is empty"]
    assert check(m(measured_at=datetime(2026, 12, 4, tzinfo=UTC)), CFG, REG, NOW)[0].endswith("is in the future")
    assert parse_rooms("客厅=17.5；主卧：16.8, 次卧:18") == (("客厅", 17.5), ("主卧", 16.8), ("次卧", 18.0))


def test_the_standard_is_the_homes_at_that_hour() -> None:
    day, night = datetime(2026, 12, 3, 10, 0, tzinfo=SH), datetime(2026, 12, 3, 23, 0, tzinfo=SH)
    assert standard_for(HOMES["H1"], day, CFG) == 18.0 and standard_for(HOMES["H1"], night, CFG) == 16.0
    assert standard_for(HOMES["B1"], day, CFG) == 16.0


@pytest.fixture
def book(tmp_path: Path) -> MeasurementBook:
    return MeasurementBook.open(load_config(environ={}, overrides={"general": {"data_dir": str(tmp_path / "d")}}))


def test_a_cosigned_reading_under_the_standard_opens_then_notes_an_order(book: MeasurementBook, tmp_path: Path) -> None:
    desk = Desk.open_file(tmp_path / "desk.sqlite", SettableClock(NOW))
    first = record(book, m(), cfg=CFG, registry=REG, now=NOW, by="赵六", desk=desk)
    assert first.below and first.threshold_c == 18.0 and first.action == "opened"
    o = desk.get(first.order_id)
    assert o.category == "not_warm" and o.home_id == "H1" and o.source == "measurement" and "17.0 °C under 18.0 °C" in o.content
    again = record(book, m(rooms=(("客厅", 16.0),)), cfg=CFG, registry=REG, now=NOW, by="赵六", desk=desk)
    assert again.action == "noted" and again.order_id == first.order_id  # the open order gets the evidence
    assert len(desk.find_open("H1")) == 1
    unsigned = record(book, m(cosigned=False, cosigner=""), cfg=CFG, registry=REG, now=NOW, by="赵六", desk=desk)
    warm = record(book, m(rooms=(("客厅", 18.5),)), cfg=CFG, registry=REG, now=NOW, by="赵六", desk=desk)
    assert unsigned.below and unsigned.action == "" and not warm.below and warm.action == ""
    bungalow = record(book, m(home_id="B1", rooms=(("堂屋", 16.5),)), cfg=CFG, registry=REG, now=NOW, by="赵六", desk=desk)
    assert not bungalow.below  # 16 °C is the bungalow's standard


def test_an_existing_hotline_order_is_noted_not_duplicated(book: MeasurementBook, tmp_path: Path) -> None:
    desk = Desk.open_file(tmp_path / "desk.sqlite", SettableClock(NOW))
    call = desk.open(OrderInput(source="hotline", reporter="王女士", phone="138", address="幸福小区1号楼301", home_id="H1",
                                category="measurement", content="请来测温", handling_unit="幸福换热站"), "话务员")
    r = record(book, m(), cfg=CFG, registry=REG, now=NOW, by="赵六", desk=desk)
    assert (r.action, r.order_id) == ("noted", call.order_id)


def test_records_are_append_only_corrections_point_at_the_old(book: MeasurementBook) -> None:
    old = record(book, m(), cfg=CFG, registry=REG, now=NOW, by="赵六").record
    fix = record(book, m(rooms=(("客厅", 17.9), ("主卧", 17.1)), supersedes=old.record_id), cfg=CFG, registry=REG, now=NOW,
                 by="赵六").record
    assert [r.record_id for r in book.all("H1")] == [old.record_id, fix.record_id]  # both kept
    assert [r.record_id for r in book.current()] == [fix.record_id]
    with pytest.raises(MeasurementRefused, match=f"already corrected by {fix.record_id}"):
        record(book, m(supersedes=old.record_id), cfg=CFG, registry=REG, now=NOW, by="赵六")
    with pytest.raises(MeasurementRefused, match="no such record"):
        record(book, m(supersedes="M000"), cfg=CFG, registry=REG, now=NOW, by="赵六")
    with pytest.raises(MeasurementRefused, match="is for home 'H1', not 'B1'"):
        record(book, m(home_id="B1", supersedes=fix.record_id), cfg=CFG, registry=REG, now=NOW, by="赵六")


def test_the_records_in_force_reach_control_as_in_home_spots(tmp_path: Path) -> None:
    """Control's home valves read the book through ``in_home_spots``: the records in force (a correction replaces the
    record it corrects), each as its rooms' mean; nothing while no service database exists, and none is created."""
    from control.valves import Spot
    from dispatch.measurements import in_home_spots
    from heatwatch.infra.servicedb import db_path

    cfg = load_config(environ={}, overrides={"general": {"data_dir": str(tmp_path / "d")}})
    read = in_home_spots(cfg)
    assert read(NOW.replace(year=2025), NOW) == [] and not db_path(cfg).exists()
    book = MeasurementBook.open(cfg)
    old = record(book, m(), cfg=CFG, registry=REG, now=NOW, by="赵六").record
    record(book, m(rooms=(("客厅", 19.0), ("主卧", 18.0)), supersedes=old.record_id), cfg=CFG, registry=REG, now=NOW, by="赵六")
    record(book, m(home_id="B1", rooms=(("堂屋", 16.5),)), cfg=CFG, registry=REG, now=NOW, by="赵六")
    at = m().measured_at
    assert sorted(read(at, NOW)) == [Spot("B1", at, 16.5), Spot("H1", at, 18.5)]
    assert read(at + timedelta(hours=1), NOW) == []  # measured before the window


def test_import_keeps_good_rows_and_names_each_bad_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    write_homes(tmp_path / "homes.csv", HOMES.values())
    write_stations(tmp_path / "stations.csv", REG.stations.values())
    conf = tmp_path / "hw.toml"
    conf.write_text(f'[general]\ndata_dir = "{tmp_path / "data"}"\n[desk.operators."赵六"]\n'
                    f'[registry]\nhomes_csv = "{tmp_path / "homes.csv"}"\nstations_csv = "{tmp_path / "stations.csv"}"\n',
                    encoding="utf-8")
    for mod in (meas_cmd, homes_cmd):
        monkeypatch.setattr(mod, "CLOCK", lambda: NOW)
    f = tmp_path / "测温.csv"
    f.write_text(
        "home_id,measured_at,rooms,staff,instrument_id,calibrated_on,cosigned,cosigner,note,supersedes\n"
        "H1,2026-12-03 10:00,客厅=17.2;主卧=16.8,张三;李四,TH-0042,2026-06-01,是,王女士,门窗关闭,\n"
        "H1,2026-12-03 10:30,客厅=19.0,张三,TH-0042,2026-06-01,0,,,\n"
        "B1,2026-12-03 11:00,堂屋=17.0,张三、李四,TH-0042,2026-06-01,否,,,\n"
        "H1,2026-12-03 11:00,客厅=abc,张三;李四,TH-0042,2026-06-01,1,王女士,,\n"
        "H1,yesterday,客厅=18,张三;李四,TH-0042,2026-06-01,1,王女士,,\n",
        encoding="utf-8")
    assert cli.main(["-c", str(conf), "measurements", "import", str(f), "--by", "赵六", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert [k["home_id"] for k in out["kept"]] == ["H1", "B1"]
    assert out["kept"][0]["action"] == "opened" and out["kept"][0]["order_id"]
    assert [r["row"] for r in out["refused"]] == [3, 5, 6]
    assert out["refused"][0]["reason"] == "2 distinct staff required, got 1 (张三)"
    assert "'abc' is not a number" in out["refused"][1]["reason"] and "measured_at" in out["refused"][2]["reason"]
    assert cli.main(["-c", str(conf), "measurements", "import", str(f), "--by", "赵六", "--no-order"]) == 1
    cap = capsys.readouterr()
    assert "kept 2 record(s), refused 3 row(s)" in cap.out and "row 3: refused — 2 distinct staff" in cap.err
    bad = tmp_path / "bad.csv"
    bad.write_bytes("home_id,rooms\nH1,客厅=17\n".encode())
    assert cli.main(["-c", str(conf), "measurements", "import", str(bad), "--by", "赵六"]) == 2
    assert "missing column(s) measured_at, staff, instrument_id, calibrated_on" in capsys.readouterr().err
