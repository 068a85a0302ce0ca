"""analyze() on a real influxd through Influxdb1Store: the same readings give the same JSON as on SQLite
(hourly means pushed down in InfluxQL, local hours), and results written back read out again."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from analytics.engine import analyze, result_to_json, write_results
from heatwatch.core import schema
from heatwatch.core.config import load_config
from heatwatch.core.model import Point
from heatwatch.core.registry import Home
from heatwatch.infra.storage.influxdb1 import Influxdb1Store
from heatwatch.infra.storage.sqlite import SqliteStore
from tests.test_analytics_engine import C1, C2, SH, home, local, reading, registry
from tools.servers import Influxd

pytestmark = pytest.mark.influxd


def dataset() -> tuple[list[Point], list[Home]]:
    hs = [home("E1", floor=6), home("E2", floor=1, building="2号楼"), home("G1", gable=True, building="2号楼", entrance="2"),
          *(home(f"M{i}", building="1号楼" if i < 4 else "2号楼", entrance=str(i % 2 + 1)) for i in range(1, 8)),
          home("BG", community=C2, kind="bungalow", floor=1, floors=1), home("SHOP", community=C2, kind="non_residential",
                                                                             min_temp_c=20.0),
          home("SILENT", community=C2, floor=1)]
    pts: list[Point] = []
    temps = {"E1": 15.5, "E2": 16.8, "G1": 17.2, "BG": 16.4, "SHOP": 19.5}
    for h in hs:
        if h.home_id == "SILENT":
            continue
        base = temps.get(h.home_id, 19.0 + 0.3 * (int(h.home_id[1:]) if h.home_id[1:].isdigit() else 0))
        t, i = local(10, 4, 7), 0
        while t < local(10, 22):
            # a wobble so no sensor looks stuck; 05:59 / 06:00 and 20:59 / 21:00 readings included
            pts.append(reading(h, t, base + (0.2 if i % 2 else -0.2)))
            t += timedelta(minutes=13)
            i += 1
        pts += [reading(h, local(10, 5, 59), base), reading(h, local(10, 6, 0), base),
                reading(h, local(10, 20, 59), base), reading(h, local(10, 21, 0), base)]
    pts.append(reading(hs[0], local(10, 9, 30), 17.0, source="manual"))
    return pts, hs


def test_influxdb1_matches_sqlite_and_round_trips_results(influxd: Influxd, tmp_path: Path) -> None:
    pts, hs = dataset()
    reg = registry(hs)
    cfg = load_config(environ={}, overrides={})
    sq = SqliteStore(tmp_path / "hw.sqlite")
    ix = Influxdb1Store(influxd.url, "hw_analytics_" + uuid.uuid4().hex[:8])
    try:
        sq.write(pts)
        ix.write(pts)
        for start, end in ((local(10, 4), local(10, 22)), (local(10, 6), local(10, 21)), (local(10, 5, 30), local(10, 9, 45))):
            r_sq = analyze(sq, reg, cfg, start, end, now=end)
            r_ix = analyze(ix, reg, cfg, start, end, now=end)
            assert result_to_json(r_ix, SH) == result_to_json(r_sq, SH)
        r = analyze(ix, reg, cfg, local(10, 6), local(10, 21), now=local(10, 21))
        doc = result_to_json(r, SH)
        below = {h["home_id"]: h for h in doc["homes_below_standard"]}
        assert set(below) == {"E1", "E2", "G1", "SHOP"}  # bungalow at 16.4 is fine, 18 does not apply
        assert below["SHOP"]["rule"] == "contract" and below["SHOP"]["threshold_c"] == 20.0
        assert below["E1"]["hours_below"] == 15 and below["E1"]["first_below"] == "2026-01-10T06:00:00+08:00"
        c1 = next(c for c in doc["communities"] if c["community"] == C1)
        assert (c1["edge_homes"], c1["middle_homes"]) == (3, 7) and c1["edge_weight"] == 0.4
        assert [(s["home_id"], s["finding"]) for s in doc["sensors"]] == [("SILENT", "no_sensor")]

        write_results(ix, r)
        write_results(ix, r)  # idempotent: same window end → same points
        stats = ix.query(schema.COMMUNITY_STATS, local(10, 20), local(10, 22))
        assert sorted(stats["community"]) == sorted([C1, C2]) and len(stats) == 2
        row = stats[stats["community"] == C1].iloc[0]
        assert row["weighted_mean_c"] == pytest.approx(r.communities[0].weighted_mean_c)
        assert row["status"] == r.communities[0].status and int(row["homes_reporting"]) == 10
        status = ix.query(schema.HOME_STATUS, local(10, 20), local(10, 22))
        assert len(status) == len(hs) - 1 and set(status[status["below"] == 1]["home_id"]) == set(below)
        assert ix.count(schema.SENSOR_HEALTH, local(10, 20), local(10, 22)) == 1
        assert ix.count(schema.IMBALANCE, local(10, 20), local(10, 22)) >= 1
    finally:
        sq.close()
        ix.close()
