"""The season's visit plan (访民问暖): every residential community, edge homes ≥ 40 % of each, written as a UTF-8 CSV
with Chinese names; the visit ledger's community average beside the sensors' (issue 16)."""

from __future__ import annotations

import csv
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from analytics.visits import ledger_averages, plan_season
from dispatch.measurements import Measurement, MeasurementBook, record
from heatwatch.app import cli
from heatwatch.app.commands import analyze as analyze_cmd
from heatwatch.core.config import load_config
from heatwatch.core.homestatus import StatusChange
from heatwatch.core.registry import Home, Registry, Station, write_homes, write_stations
from heatwatch.infra.servicedb import ServiceDb


def building(comm: str, name: str, floors: int = 6, per_floor: int = 4, kind: str = "residential") -> list[Home]:
    return [Home(f"{comm[:2]}{name}-{f}0{p + 1}", comm, name, "1", f, floors, p in (0, per_floor - 1), kind, None, "S1",  # type: ignore[arg-type]
                 f"{comm}{name}{f}0{p + 1}") for f in range(1, floors + 1) for p in range(per_floor)]


HOMES = [*building("幸福小区", "1号楼"), *building("幸福小区", "2号楼"), *building("和平小区", "1号楼", 3, 2),
         *building("平房区", "平房", 1, 3, kind="bungalow")]
REG = Registry({h.home_id: h for h in HOMES}, {"S1": Station("S1", "幸福换热站", ("幸福小区", "和平小区", "平房区"), 35, 75)})


@pytest.mark.parametrize("share", [0.4, 0.6])
def test_every_residential_community_is_planned_with_its_edge_share(share: float) -> None:
    plans = plan_season(REG, 10, None, share)
    assert [p.community for p in plans] == ["和平小区", "幸福小区"]  # the bungalow area has no flats to plan
    for p in plans:
        assert p.size == min(10, len(REG.homes_in(p.community))) and len(p.visits) == p.size
        assert p.edge_visits / p.size >= share - 1e-9 or p.notes  # the rule, or a note saying why not


def test_the_ledger_average_is_the_mean_of_the_visited_homes() -> None:
    a, b, c = (h.home_id for h in REG.homes_in("幸福小区")[:3])
    [row] = ledger_averages(REG, [(a, 17.0), (a, 19.0), (b, 16.0), (c, 20.0), ("ghost", 5.0)])
    assert row.community == "幸福小区" and row.homes == 3 and row.mean_c == pytest.approx((18.0 + 16.0 + 20.0) / 3)
    assert row.edge_homes == sum(REG.homes[h].edge for h in (a, b, c))


def test_plan_visits_season_writes_a_csv_and_the_ledger_sits_beside_the_sensors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                              capsys: pytest.CaptureFixture[str]) -> None:
    write_homes(tmp_path / "homes.csv", HOMES)
    write_stations(tmp_path / "stations.csv", REG.stations.values())
    conf = tmp_path / "hw.toml"
    conf.write_text(f'[general]\ndata_dir = "{tmp_path / "data"}"\n[visits]\nper_community = 8\n'
                    f'[registry]\nhomes_csv = "{tmp_path / "homes.csv"}"\nstations_csv = "{tmp_path / "stations.csv"}"\n',
                    encoding="utf-8")
    now = datetime(2026, 12, 10, 4, 0, tzinfo=UTC)
    monkeypatch.setattr(analyze_cmd, "CLOCK", lambda: now)
    cfg = load_config(str(conf), environ={})
    stopped = REG.homes_in("和平小区")[0].home_id
    ServiceDb.open(cfg).add_status(StatusChange(stopped, "stopped", date(2026, 11, 1), "王伟", "报停"), now)
    out = tmp_path / "计划.csv"
    assert cli.main(["-c", str(conf), "plan-visits", "--season", "2026-2027", "--out", str(out)]) == 0
    assert "13 visits in 2 communities" in capsys.readouterr().out  # 8 + the 5 heated homes of 和平小区
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert {r["community"] for r in rows} == {"幸福小区", "和平小区"} and rows[0]["season_start"] == "2026-11-15"
    assert stopped not in {r["home_id"] for r in rows}  # not heated on the season's first day: not visited
    for comm in ("幸福小区", "和平小区"):
        mine = [r for r in rows if r["community"] == comm]
        assert sum(r["edge"] == "1" for r in mine) / len(mine) >= 0.4
    assert cli.main(["-c", str(conf), "plan-visits", "--season", "2026"]) == 2
    assert "--season: season '2026': expected two consecutive years" in capsys.readouterr().err
    # the ledger: two visits recorded this season, one last season (not counted)
    book = MeasurementBook.open(cfg)
    visited = [r["home_id"] for r in rows if r["community"] == "幸福小区"][:2]
    for hid, t, at in ((visited[0], 17.0, now), (visited[1], 19.0, now), (visited[1], 10.0, datetime(2026, 1, 5, tzinfo=UTC))):
        record(book, Measurement(hid, at, (("客厅", t),), ("张三", "李四"), "TH-1", date(2026, 1, 1)), cfg=cfg, registry=REG,
               now=now, by="王伟")
    assert cli.main(["-c", str(conf), "plan-visits", "--season", "2026-2027", "--ledger", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["community"] == "幸福小区" and row["visited_homes"] == 2 and row["ledger_mean_c"] == 18.0
    assert "sensor_weighted_mean_c" in row  # no sensor readings in this store: None beside the ledger


def test_the_report_shows_the_ledger_beside_the_sensors(tmp_path: Path) -> None:
    from heatwatch.app.report import build_report
    from heatwatch.infra.storage.sqlite import SqliteStore

    cfg = load_config(environ={}, overrides={"general": {"data_dir": str(tmp_path / "data")}})
    at = datetime(2026, 12, 10, 4, 0, tzinfo=UTC)
    a, b = (h.home_id for h in REG.homes_in("和平小区")[:2])
    book = MeasurementBook.open(cfg)
    for hid, t in ((a, 16.5), (b, 17.5)):
        record(book, Measurement(hid, at, (("客厅", t),), ("张三", "李四"), "TH-1", date(2026, 10, 1)), cfg=cfg, registry=REG,
               now=at, by="王伟")
    with SqliteStore(tmp_path / "s.sqlite") as store:
        page = build_report(store, REG, cfg, datetime(2026, 12, 9, tzinfo=UTC), datetime(2026, 12, 11, tzinfo=UTC),
                            tmp_path / "r").read_text(encoding="utf-8")
    section = page[page.index("回访台账"):]
    assert "<td>和平小区</td><td class=\"num\">2</td>" in section and ">17.0<" in section
