"""The report's energy section shows the heat each station delivered, the same figures as `heatwatch energy`."""

from __future__ import annotations

from pathlib import Path

from analytics.energy import DEFAULT_MAX_GAP, summarize
from heatwatch.app.report import build_report
from heatwatch.core import schema
from heatwatch.core.config import load_config
from heatwatch.infra.storage.sqlite import SqliteStore
from tests.test_report import END, START, _registry, write_realistic


def test_report_shows_heat_per_station_and_day(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite")
    try:
        reg = _registry()
        write_realistic(store, reg)
        cfg = load_config(environ={})
        page = build_report(store, reg, cfg, START, END, tmp_path / "out").read_text(encoding="utf-8")
        readings = store.query(schema.STATION, START, END + DEFAULT_MAX_GAP, fields=["supply_c", "return_c", "flow_m3h"])
        outdoor = store.query(schema.WEATHER, START, END, fields=["temp_c"])
        want = summarize(readings, outdoor, cfg.general.timezone, until=END)
    finally:
        store.close()
    assert "Heat delivered (供热量)" in page
    for r in want.season.to_dict("records"):
        assert r["gj"] > 0 and f"{r['gj']:,.2f}" in page  # the period's heat, per station
        assert f"{r['gj_per_hdd']:,.3f}" in page
    assert len(want.daily) >= 3 and str(want.daily["day"].iloc[0]) in page  # and per local day
