"""Pure rules of issue 16's home status and season: which status holds on a day, which days are in the season,
the registry's status column; and the ``heatwatch homes status`` / ``outages`` commands on a real config."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from heatwatch.app import cli
from heatwatch.app.commands import homes as homes_cmd
from heatwatch.core.errors import RegistryError
from heatwatch.core.homestatus import StatusChange, heated_only, status_on
from heatwatch.core.registry import Home, Registry, Station, load_homes, write_homes, write_stations
from heatwatch.core.season import SeasonCalendar, parse_month_day


def home(hid: str, status: str = "heated") -> Home:
    return Home(hid, "幸福小区", "1号楼", "1", 2, 6, False, "residential", None, "S1", f"幸福小区{hid}", status=status)  # type: ignore[arg-type]


REG = Registry({h: home(h) for h in ("H1", "H2", "H3")} | {"H4": home("H4", "vacant")}, {})


def ch(hid: str, status: str, day: date, seq: int) -> StatusChange:
    return StatusChange(hid, status, day, "张三", seq=seq)  # type: ignore[arg-type]


def test_the_latest_change_in_effect_on_the_day_wins() -> None:
    changes = [ch("H1", "stopped", date(2026, 12, 1), 1), ch("H1", "heated", date(2027, 1, 10), 2),
               ch("H2", "not_paid", date(2026, 11, 20), 3), ch("H2", "heated", date(2026, 11, 20), 4),  # same day: later row
               ch("H4", "heated", date(2026, 12, 5), 5), ch("H9", "stopped", date(2026, 1, 1), 6)]  # H9 not registered
    assert status_on(REG, changes, date(2026, 11, 30)) == {"H1": "heated", "H2": "heated", "H3": "heated", "H4": "vacant"}
    assert status_on(REG, changes, date(2026, 12, 1))["H1"] == "stopped"
    assert status_on(REG, changes, date(2026, 12, 5)) == {"H1": "stopped", "H2": "heated", "H3": "heated", "H4": "heated"}
    assert status_on(REG, changes, date(2027, 1, 10))["H1"] == "heated"
    assert status_on(REG, list(reversed(changes)), date(2026, 11, 20))["H2"] == "heated"  # order of rows given does not matter
    eff = heated_only(REG, status_on(REG, changes, date(2026, 12, 1)))
    assert sorted(eff.homes) == ["H2", "H3"]
    assert heated_only(REG, dict.fromkeys(REG.homes, "heated")) is REG


@pytest.mark.parametrize(("day", "inside"), [
    (date(2026, 11, 14), False), (date(2026, 11, 15), True), (date(2026, 12, 31), True), (date(2027, 1, 1), True),
    (date(2027, 3, 15), True), (date(2027, 3, 16), False), (date(2027, 7, 1), False), (date(2028, 2, 29), True),
])
def test_the_season_runs_over_the_new_year(day: date, inside: bool) -> None:
    assert SeasonCalendar().in_season(day) is inside


def test_season_labels_and_settings() -> None:
    cal = SeasonCalendar()
    assert cal.season("2026-2027") == (date(2026, 11, 15), date(2027, 3, 15))
    assert cal.label_of(date(2027, 2, 1)) == "2026-2027" and cal.label_of(date(2027, 4, 1)) == "2027-2028"
    with pytest.raises(ValueError, match="two consecutive years"):
        cal.season("2026-2028")
    one_year = SeasonCalendar.from_text("01-10", "03-01")
    assert one_year.in_season(date(2026, 2, 1)) and not one_year.in_season(date(2026, 12, 1))
    assert one_year.season("2026") == (date(2026, 1, 10), date(2026, 3, 1))
    for bad in ("1115", "02-29", "13-01", "11-31"):
        with pytest.raises(ValueError):
            parse_month_day(bad)


def test_the_registry_reads_and_writes_a_status_column(tmp_path: Path) -> None:
    p = tmp_path / "homes.csv"
    write_homes(p, REG.homes.values())
    assert {h: x.status for h, x in load_homes(p).items()} == {"H1": "heated", "H2": "heated", "H3": "heated", "H4": "vacant"}
    write_homes(p, [home("H1")])
    assert "status" not in p.read_text(encoding="utf-8").splitlines()[0]  # older readers see the same file
    text = p.read_text(encoding="utf-8").splitlines()
    p.write_text("\n".join([text[0] + ",status", text[1] + ",报停"]) + "\n", encoding="utf-8")
    with pytest.raises(RegistryError, match=r"row 2 column status: expected one of heated, stopped, vacant, not_paid, got '报停'"):
        load_homes(p)


@pytest.fixture
def conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_homes(tmp_path / "homes.csv", [home("H1"), home("H2")])
    write_stations(tmp_path / "stations.csv", [Station("S1", "幸福换热站", ("幸福小区",), 35.0, 75.0)])
    c = tmp_path / "hw.toml"
    c.write_text(f'[general]\ndata_dir = "{tmp_path / "data"}"\n[alerts]\nmqtt = false\n[desk.operators."王伟"]\n'
                 f'[registry]\nhomes_csv = "{tmp_path / "homes.csv"}"\nstations_csv = "{tmp_path / "stations.csv"}"\n',
                 encoding="utf-8")
    monkeypatch.setattr(homes_cmd, "CLOCK", lambda: datetime(2026, 11, 30, 4, 0, tzinfo=UTC))
    return c


def test_homes_status_commands(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = lambda *a: cli.main(["-c", str(conf), *a])  # noqa: E731
    assert run("homes", "status", "H1", "stopped", "--from", "2026-12-01", "--by", "王伟", "--reason", "报停") == 0
    assert "H1: 报停 stopped from 2026-12-01" in capsys.readouterr().out
    assert run("homes", "status", "--list", "--on", "2026-12-02", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["not_heated"] == {"H1": "stopped"} and out["changes"][0]["reason"] == "报停"
    assert run("homes", "status", "--list", "--on", "2026-11-30", "--json") == 0
    assert json.loads(capsys.readouterr().out)["not_heated"] == {}
    assert run("homes", "status", "H9", "stopped", "--by", "王伟") == 2
    assert run("homes", "status", "H2", "stopped", "--by", "隔壁老王") == 2  # not a configured desk user: never free text
    assert "home 'H9' is not in the registry" in capsys.readouterr().err
    assert run("homes", "status", "H1", "frozen", "--by", "王伟") == 2
    assert "status 'frozen': expected one of" in capsys.readouterr().err
    assert run("homes", "status", "H1", "stopped", "--from", "12/01", "--by", "王伟") == 2
    assert "--from '12/01': expected a local date" in capsys.readouterr().err


def test_outages_announce_refuses_short_notice_and_records(conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = lambda *a: cli.main(["-c", str(conf), *a])  # noqa: E731
    args = ["outages", "announce", "--station", "S1", "--reason", "管网检修", "--by", "王伟", "--no-order"]
    assert run(*args, "--from", "2026-11-30 20:00", "--to", "2026-12-01 06:00") == 2
    assert "a planned outage is announced at least 24 h ahead" in capsys.readouterr().err
    assert run(*args, "--from", "2026-12-02 08:00", "--to", "2026-12-02 18:00", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["homes"] == ["H1", "H2"] and out["planned"] and out["end"] == "2026-12-02T18:00:00+08:00"
    assert run("outages", "list", "--json") == 0
    assert json.loads(capsys.readouterr().out)[0]["outage_id"] == out["outage_id"]


def test_the_report_says_when_its_period_is_outside_the_season(tmp_path: Path) -> None:
    from heatwatch.app.report import build_report
    from heatwatch.app.servicestate import season_note
    from heatwatch.core.config import load_config
    from heatwatch.infra.storage.sqlite import SqliteStore

    cfg = load_config(environ={}, overrides={})
    jan = datetime(2027, 1, 5, tzinfo=UTC)
    assert season_note(cfg, jan, datetime(2027, 1, 6, tzinfo=UTC)) is None
    note = season_note(cfg, datetime(2027, 3, 14, tzinfo=UTC), datetime(2027, 3, 17, 4, tzinfo=UTC))
    assert note is not None and note.startswith("2 of the 4 days of this period (2027-03-16 … 2027-03-17)")
    with SqliteStore(tmp_path / "s.sqlite") as store:
        path = build_report(store, Registry.empty(), cfg, datetime(2027, 5, 1, tzinfo=UTC), datetime(2027, 5, 3, tzinfo=UTC),
                            tmp_path / "r")
    assert "outside the heating season (11-15 – 03-15" in path.read_text(encoding="utf-8")


def test_quiet_hushes_only_the_cold_alerts_it_covers() -> None:
    from control.alerts.model import Candidate
    from control.alerts.rules import Observation, Quiet, community_key, home_key, quieten

    reg = Registry({"H1": home("H1"), "H2": home("H2"), "K1": replace(home("K1"), community="和平小区")}, {})

    def cold(hid: str, comm: str = "幸福小区") -> Candidate:
        return Candidate(home_key(hid), "home_below_standard", "", {}, community=comm, home_id=hid)

    cands = [cold("H1"), cold("H2"), cold("K1", "和平小区"),
             Candidate(community_key("幸福小区"), "community_cold", "", {}, community="幸福小区"),
             Candidate("station_fault:S1", "station_fault", "", {}, station_id="S1")]
    obs = Observation(cands, {c.key: False for c in cands} | {home_key("H3"): True})
    keys = lambda o: sorted(c.key for c in o.candidates)  # noqa: E731
    assert quieten(obs, None, reg) is obs and quieten(obs, Quiet(), reg) is obs
    one = quieten(obs, Quiet(homes={"H1": "outage O1"}), reg)  # one home of two: the community still alerts
    assert keys(one) == sorted(c.key for c in cands if c.key != home_key("H1")) and home_key("H1") not in one.healthy
    both = quieten(obs, Quiet(homes={"H1": "O1", "H2": "O1"}), reg)
    assert keys(both) == [home_key("K1"), "station_fault:S1"] and community_key("幸福小区") not in both.healthy
    off = quieten(obs, Quiet(season_off=True), reg)
    assert keys(off) == ["station_fault:S1"] and set(off.healthy) == {"station_fault:S1"}  # H3's recovery unknown too
