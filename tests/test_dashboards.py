"""Grafana dashboards: committed JSON equals the generator, structure is sound, and every InfluxQL
query returns data from a real influxd holding realistic points of every measurement.

Flux cannot run here (no InfluxDB 2.x): its variants are checked for balanced brackets and quotes,
pipeline shape, and that they read the same measurement and fields as their InfluxQL twin.
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from heatwatch.core import schema
from tools import dashboards
from tools.servers import Influxd

ROOT = Path(__file__).resolve().parent.parent
DASH_DIR = ROOT / "deploy" / "grafana" / "dashboards"
DS_FILE = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "heatwatch.yml"
PROVIDERS_FILE = ROOT / "deploy" / "grafana" / "provisioning" / "dashboards" / "heatwatch.yml"

END = datetime(2026, 1, 12, 0, 0, tzinfo=UTC)
START = END - timedelta(hours=24)
COMMUNITIES = ("幸福小区", "Riverside Garden")
STATIONS = {"ST-01": COMMUNITIES[0], "ST-02": COMMUNITIES[1]}
VARIABLE_VALUES = {"community": COMMUNITIES[0], "station": "ST-01"}
KNOWN_MEASUREMENTS = {
    schema.INDOOR, schema.STATION, schema.WEATHER, schema.FORECAST, schema.COLLECTOR, schema.COLLECTOR_REJECTS,
    schema.COMMUNITY_STATS, schema.HOME_STATUS, schema.SENSOR_HEALTH, schema.IMBALANCE, schema.PROPOSALS, schema.ALERTS,
    schema.DESK_FIGURES, schema.DESK_OVERDUE, schema.STATION_ENERGY,
}


# --- every query of every dashboard ---------------------------------------------------------------
def _queries(dialect: dashboards.Dialect) -> Iterator[tuple[str, str]]:
    """(where, query text) for panels, template variables and annotations."""
    for rel, board in dashboards.generate().items():
        if not rel.startswith(dialect + "/"):
            continue
        for p in board["panels"]:
            for t in p["targets"]:
                yield f"{rel} panel {p['id']} {p['title']!r} {t['refId']}", t["query"]
        for v in board["templating"]["list"]:
            yield f"{rel} variable {v['name']}", v["query"]
        for a in board["annotations"]["list"]:
            if "query" in a:
                yield f"{rel} annotation {a['name']}", a["query"]


def test_committed_dashboards_equal_generated() -> None:
    stale = dashboards.check(DASH_DIR)
    assert not stale, f"run `python -m tools.dashboards` and commit: {stale}"


def test_check_detects_drift(tmp_path: Path) -> None:
    dashboards.write(tmp_path)
    assert dashboards.check(tmp_path) == []
    victim = tmp_path / "influxql" / "heatwatch-city.json"
    victim.write_text(victim.read_text(encoding="utf-8").replace("weighted_mean_c", "weighted"), encoding="utf-8")
    (tmp_path / "flux" / "old.json").write_text("{}", encoding="utf-8")
    stale = dashboards.check(tmp_path)
    assert "influxql/heatwatch-city.json" in stale
    assert any(s.startswith("flux/old.json") for s in stale)


def test_dashboard_structure_and_datasources() -> None:
    ds = yaml.safe_load(DS_FILE.read_text(encoding="utf-8"))
    uids = {d["uid"]: d for d in ds["datasources"]}
    assert set(dashboards.DATASOURCE_UID.values()) <= set(uids)
    assert uids["heatwatch-flux"]["jsonData"]["version"] == "Flux"
    assert uids["heatwatch-influxql"]["jsonData"].get("version", "InfluxQL") == "InfluxQL"
    providers = yaml.safe_load(PROVIDERS_FILE.read_text(encoding="utf-8"))["providers"]
    provided = {Path(p["options"]["path"]).name for p in providers}
    assert provided == set(dashboards.DIALECTS)

    boards = dashboards.generate()
    assert len(boards) == 10
    all_uids = [b["uid"] for b in boards.values()]
    assert len(set(all_uids)) == len(all_uids)
    for rel, board in boards.items():
        dialect = rel.split("/")[0]
        assert board["schemaVersion"] >= 36
        assert board["title"] and board["panels"]
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), rel
        cells: set[tuple[int, int]] = set()
        defined_vars = {v["name"] for v in board["templating"]["list"]}
        for p in board["panels"]:
            g = p["gridPos"]
            assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0 and g["x"] + g["w"] <= 24, (rel, p["title"])
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{rel}: panel {p['title']!r} overlaps another"
                    cells.add((x, y))
            assert p["datasource"]["uid"] == dashboards.DATASOURCE_UID[dialect]  # type: ignore[index]
            refs = [t["refId"] for t in p["targets"]]
            assert refs and len(refs) == len(set(refs))
            for t in p["targets"]:
                assert t["datasource"]["uid"] in uids
                used = set(re.findall(r"\$\{?([a-z]\w*)", t["query"])) - {"timeFilter"}
                assert used <= defined_vars, f"{rel} {p['title']}: undefined variables {used - defined_vars}"
        for v in board["templating"]["list"]:
            assert v["datasource"]["uid"] in uids
        for a in board["annotations"]["list"]:
            assert a["datasource"]["uid"] in uids or a["datasource"]["type"] == "grafana"
        json.dumps(board)  # serialisable


def test_dashboards_have_the_panels_operators_use() -> None:
    """City overview, community detail, stations, collector health; the panels the operators asked for."""
    boards = {rel: b for rel, b in dashboards.generate().items() if rel.startswith("influxql/")}
    text = {rel: json.dumps(b, ensure_ascii=False) for rel, b in boards.items()}
    assert "weighted_mean_c" in text["influxql/heatwatch-city.json"]
    assert "homes_below_standard" in text["influxql/heatwatch-city.json"]
    community = boards["influxql/heatwatch-community.json"]
    homes = next(p for p in community["panels"] if p["title"].startswith("Homes by temperature"))
    assert homes["type"] == "table" and homes["options"]["sortBy"] == [{"displayName": "temp_c", "desc": False}]
    community_text = text["influxql/heatwatch-community.json"]
    assert "edge_share" in community_text and "sensor_health" in community_text
    stations = boards["influxql/heatwatch-stations.json"]
    assert any(a.get("name") == "Proposals" and "proposals" in a["query"] for a in stations["annotations"]["list"])
    for f in ("supply_c", "return_c", "flow_m3h", "supply_kpa"):
        assert f in text["influxql/heatwatch-stations.json"]
    for f in ("stored", "collector_rejects", "spool_bytes"):
        assert f in text["influxql/heatwatch-collector.json"]
    desk = boards["influxql/heatwatch-desk.json"]
    assert [p["title"] for p in desk["panels"]][:2] == ["Overdue orders now", "Overdue orders by handling unit"]
    for f in ("desk_overdue", "closure_rate", "satisfaction_rate", "ontime_respond", "desk_figures"):
        assert f in text["influxql/heatwatch-desk.json"]


# --- Flux: syntax-level checks ----------------------------------------------------------------------
def _steps(panel: dict[str, Any]) -> list[float | None]:
    return [st["value"] for st in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]


def test_thresholds_follow_the_configuration(tmp_path: Path) -> None:
    """The colours and lines are the config's numbers: the defaults in the committed JSON, a company's own with --config."""
    city = dashboards.generate()["influxql/heatwatch-city.json"]
    by_title = {p["title"]: p for p in city["panels"]}
    assert _steps(by_title["Communities by weighted mean (latest)"]) == [None, 16.0, 18.0, 22.0]  # night, day, warm ceiling
    assert city["timezone"] == "Asia/Shanghai"

    f = tmp_path / "hw.toml"
    f.write_text('[general]\ntimezone = "Asia/Urumqi"\n[standard]\nday_min_c = 19.0\nnight_min_c = 15.0\ntarget_c = 19.5\n'
                 "[control]\nwarm_ceiling_c = 23.0\n[analytics]\nedge_share_min = 0.45\n", encoding="utf-8")
    assert dashboards.main(["--config", str(f), "--out", str(tmp_path / "out")]) == 0
    own = json.loads((tmp_path / "out" / "influxql" / "heatwatch-city.json").read_text(encoding="utf-8"))
    by_title = {p["title"]: p for p in own["panels"]}
    assert _steps(by_title["Communities by weighted mean (latest)"]) == [None, 15.0, 19.0, 23.0]
    assert _steps(by_title["Weighted community mean vs 19.5 °C"]) == [None, 19.5]
    assert "06-21 h >= 19 °C, else >= 15 °C" in by_title["Share of homes below standard (latest)"]["description"]
    assert own["timezone"] == "Asia/Urumqi"
    community = json.loads((tmp_path / "out" / "flux" / "heatwatch-community.json").read_text(encoding="utf-8"))
    edge = next(p for p in community["panels"] if p["title"].startswith("Edge share"))
    assert edge["title"] == "Edge share and edge weight (>= 45 %)" and _steps(edge) == [None, 45.0]


def test_flux_checker_finds_problems() -> None:
    good = 'from(bucket: v.defaultBucket)\n  |> range(start: -1h)\n  |> filter(fn: (r) => r._value == "(")'
    assert dashboards.flux_syntax_problems(good) == []
    assert dashboards.flux_syntax_problems("from(bucket: x\n  |> range(start: -1h)")
    assert dashboards.flux_syntax_problems('f(a: "(")]')
    assert dashboards.flux_syntax_problems('from(bucket: "x")\n  |> range(start: -1h)\n  filter(fn: (r) => true)')
    assert dashboards.flux_syntax_problems('from(bucket: "x")\n  |> filter(fn: (r) => true)')  # no range
    assert dashboards.flux_syntax_problems('from(bucket: "x)\n  |> range(start: -1h)')
    assert dashboards.flux_syntax_problems('from(bucket: "x")\n  |> range(start: -1h)\n  |> filter(fn: (r) => $timeFilter)')


def _influxql_refs(q: str) -> tuple[set[str], set[str]]:
    meas = set(re.findall(r'FROM "(\w+)"', q))
    fields = set(re.findall(r'(?:last|mean|max|min|count|sum)\("(\w+)"\)', q))
    return meas, fields


def test_flux_variants_are_well_formed_and_match_influxql() -> None:
    checked = 0
    for (where, flux), (_, iql) in zip(_queries("flux"), _queries("influxql"), strict=True):
        assert dashboards.flux_syntax_problems(flux) == [], f"{where}:\n{flux}"
        body = [ln for ln in flux.splitlines() if ln.strip() and not ln.startswith("import ")]
        assert body[0].startswith(("from(bucket: v.defaultBucket)", "schema.")), where
        if body[0].startswith("from("):
            assert "range(start: v.timeRangeStart, stop: v.timeRangeStop)" in flux, where
        meas, fields = _influxql_refs(iql)
        for m in meas:
            assert f'"{m}"' in flux, f"{where}: Flux does not read measurement {m}"
        for f in fields:
            assert f'"{f}"' in flux or "r._field ==" not in flux, f"{where}: Flux does not read field {f}"
        checked += 1
    assert checked == sum(1 for _ in _queries("influxql")) and checked > 30


def test_influxql_queries_name_known_measurements() -> None:
    for where, q in _queries("influxql"):
        meas, _ = _influxql_refs(q)
        assert meas, where
        assert meas <= KNOWN_MEASUREMENTS, f"{where}: unknown measurement {meas - KNOWN_MEASUREMENTS}"


# --- realistic data in a real influxd ---------------------------------------------------------------
def _esc_tag(v: str) -> str:
    return v.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _field(v: float | int | str | bool) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v}i"
    if isinstance(v, float):
        return repr(v)
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _line(meas: str, tags: dict[str, str], fields: dict[str, float | int | str | bool], t: datetime) -> str:
    tag_txt = "".join(f",{k}={_esc_tag(v)}" for k, v in sorted(tags.items()) if v != "")
    field_txt = ",".join(f"{k}={_field(v)}" for k, v in fields.items())
    return f"{meas}{tag_txt} {field_txt} {int(t.timestamp())}"


def realistic_lines() -> list[str]:
    """One cold community (Chinese name, cold top/ground/gable homes), one warm; stations, weather,
    analytics results, proposals, alerts and two collector replicas."""
    lines: list[str] = []
    steps15 = [START + timedelta(minutes=15 * i) for i in range(96)]
    for ci, community in enumerate(COMMUNITIES):
        base = 17.2 if ci == 0 else 20.5
        for b in (1, 2):
            building = f"{b}号楼"
            for floor in range(1, 7):
                for pos in (1, 2):
                    home = f"C{ci}-B{b}-{floor}0{pos}"
                    edge = floor in (1, 6) or pos == 1
                    for k, t in enumerate(steps15):
                        temp = base - (1.4 if edge else 0) + 0.6 * math.sin(k / 12 + floor)
                        fields: dict[str, float | int | str | bool] = {"temp_c": round(temp, 2), "rh": 38.0 + floor,
                                                                       "battery_v": round(3.0 - 0.002 * k - 0.05 * pos, 3)}
                        lines.append(_line(schema.INDOOR, {"home_id": home, "community": community, "building": building,
                                                           "source": "sensor"}, fields, t))
                    if floor == 6 and pos == 1:
                        lines.append(_line(schema.SENSOR_HEALTH, {"home_id": home, "community": community, "finding": "stale"},
                                           {"value": 4.5, "detail": "无数据 4.5 h"}, END - timedelta(hours=1)))
                    for h in range(0, 24, 6):
                        t = START + timedelta(hours=h + 1)
                        mean = base - (1.4 if edge else 0)
                        below = int(mean < 18)
                        lines.append(_line(schema.HOME_STATUS, {"home_id": home, "community": community, "building": building},
                                           {"mean_c": mean, "min_hourly_c": mean - 0.6, "hours_below": 6 * below,
                                            "longest_run_h": 5 * below, "threshold_c": 18.0, "below": below,
                                            "rule": "residential_day"}, t))
    for h in range(24):
        t = START + timedelta(hours=h + 1)
        for ci, community in enumerate(COMMUNITIES):
            w = (16.9 if ci == 0 else 20.1) + 0.2 * math.sin(h / 4)
            lines.append(_line(schema.COMMUNITY_STATS, {"community": community}, {
                "weighted_mean_c": round(w, 2), "plain_mean_c": round(w + 0.4, 2), "homes_registered": 24,
                "homes_reporting": 24 - (h % 2), "edge_homes": 16, "middle_homes": 8, "edge_share": 0.667,
                "edge_weight": 0.667, "homes_below_standard": 16 if ci == 0 else 0, "status": "cold" if ci == 0 else "ok"}, t))
            lines.append(_line(schema.IMBALANCE, {"community": community}, {
                "building_spread_c": 0.3, "entrance_spread_c": 0.5, "edge_middle_gap_c": 1.4}, t))
    for k in range(24 * 12):
        t = START + timedelta(minutes=5 * k)
        out = -8.0 - 4 * math.sin(k / 288 * 2 * math.pi)
        for si, sid in enumerate(STATIONS):
            supply = 55.0 + 0.9 * -out + si
            lines.append(_line(schema.STATION, {"station_id": sid}, {
                "supply_c": round(supply, 2), "return_c": round(supply - 12, 2), "supply_kpa": 520.0, "return_kpa": 380.0,
                "flow_m3h": 42.0 + si, "primary_supply_c": 105.0, "primary_return_c": 55.0}, t))
        if k % 2 == 0:
            lines.append(_line(schema.WEATHER, {"site_id": "default"}, {"temp_c": round(out, 2)}, t))
    for h in range(24):
        lines.append(_line(schema.FORECAST, {"site_id": "default"}, {"temp_c": -15.0 + 0.1 * h,
                                                                      "issued_s": int(START.timestamp())},
                           START + timedelta(hours=h)))
    for i, (sid, community) in enumerate(STATIONS.items()):
        t = START + timedelta(hours=8 + i)
        lines.append(_line(schema.PROPOSALS, {"station_id": sid, "kind": "supply"}, {
            "proposal_id": f"P-{sid}-1", "status": "applied", "current_c": 62.0, "proposed_c": 64.5, "delta_c": 2.5,
            "reason": f"{community} 加权平均 16.9 °C 低于 18 °C"}, t))
        lines.append(_line(schema.STATION_ENERGY, {"station_id": sid, "period": "day"}, {
            "kwh": 9800.0 + 100 * i, "gj": 35.28, "mean_kw": 408.3, "hours_covered": 24.0, "hdd": 26.0, "gj_per_hdd": 1.357},
            START + timedelta(hours=1)))
        lines.append(_line(schema.ALERTS, {"category": "community_cold", "community": community, "station_id": sid}, {
            "alert_id": f"A-{i}", "home_id": "", "status": "open", "content": f"{community} 室温不达标"},
            t + timedelta(minutes=5)))
    for unit in ("阳光站班组", "ALL"):  # the desk: the month's figures (at the window's start) and overdue orders per tick
        lines.append(_line(schema.DESK_FIGURES, {"handling_unit": unit}, {
            "received": 12, "received_not_warm": 7, "ontime_respond": 0.75, "ontime_respond_n": 8, "ontime_dispatch": 0.5,
            "ontime_dispatch_n": 10, "median_contact_min": 25.0, "median_repair_h": 5.5, "closed": 9, "closure_rate": 0.75,
            "callbacks": 8, "satisfied": 7, "satisfaction_rate": 0.875}, START + timedelta(minutes=30)))
        for h in range(24):
            lines.append(_line(schema.DESK_OVERDUE, {"handling_unit": unit}, {"count": h % 3}, START + timedelta(hours=h)))
    for k in range(24 * 60 // 2):
        t = START + timedelta(minutes=2 * k)
        for cid in ("collector-a", "collector-b"):
            n = k * 120 + (7 if cid == "collector-b" else 0)
            lines.append(_line(schema.COLLECTOR, {"collector_id": cid}, {
                "received": n, "readings": n, "stored": n - k, "rejected": k, "spooled": 0 if k < 300 else 50,
                "replayed": 0 if k < 400 else 50, "spool_bytes": 0 if k < 300 or k >= 400 else 8192, "queue_depth": k % 7,
                "batch_latency_ms": 12.5 + k % 5}, t))
            for reason in ("range", "unknown_id"):
                lines.append(_line(schema.COLLECTOR_REJECTS, {"collector_id": cid, "reason": reason},
                                   {"count": k // (1 if reason == "range" else 3)}, t))
    return lines


def _http(url: str, data: bytes | None = None) -> Any:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=30) as r:
        body = r.read()
    return json.loads(body) if body else None


def _influxql(server: Influxd, db: str, q: str) -> Any:
    return _http(f"{server.url}/query?" + urllib.parse.urlencode({"db": db, "q": q, "epoch": "ms"}))


@pytest.fixture(scope="module")
def loaded(influxd: Influxd) -> tuple[Influxd, str]:
    db = "dashboards_test"
    _http(f"{influxd.url}/query?" + urllib.parse.urlencode({"q": f'CREATE DATABASE "{db}"'}), b"")
    lines = realistic_lines()
    for i in range(0, len(lines), 5000):
        _http(f"{influxd.url}/write?db={db}&precision=s", "\n".join(lines[i : i + 5000]).encode())
    return influxd, db


def grafana_substitute(q: str, values: dict[str, str]) -> str:
    """What Grafana sends for $timeFilter, $__interval and single-value variables in a regex."""
    ms0, ms1 = int(START.timestamp() * 1000), int(END.timestamp() * 1000)
    q = q.replace("$timeFilter", f"time >= {ms0}ms and time <= {ms1}ms").replace("$__interval", "10m")
    for name, value in values.items():
        q = q.replace(f"${name}", re.sub(r"([\\/^$.|?*+()\[\]{}])", r"\\\1", value))
    assert not re.search(r"\$(?!/)", q), f"unsubstituted macro in {q}"
    return q


@pytest.mark.influxd
def test_every_influxql_query_returns_data(loaded: tuple[Influxd, str]) -> None:
    server, db = loaded
    n = 0
    for where, q in _queries("influxql"):
        res = _influxql(server, db, grafana_substitute(q, VARIABLE_VALUES))["results"][0]
        assert "error" not in res, f"{where}: {res['error']}\n{q}"
        series = res.get("series") or []
        assert series, f"{where}: no data\n{q}"
        values = [v for s in series for row in s["values"] for v in row[1:] if v is not None]
        assert values, f"{where}: only nulls\n{q}"
        n += 1
    assert n > 30


@pytest.mark.influxd
def test_queries_show_the_cold_community(loaded: tuple[Influxd, str]) -> None:
    """Not just 'some data': the panels rank the cold community first and read the right numbers."""
    server, db = loaded
    boards = dashboards.generate()
    city = boards["influxql/heatwatch-city.json"]

    def run(title: str) -> list[dict[str, Any]]:
        p = next(p for p in city["panels"] if p["title"] == title)
        return _influxql(server, db, grafana_substitute(p["targets"][0]["query"], VARIABLE_VALUES))["results"][0]["series"]

    latest = {s["tags"]["community"]: s["values"][0][1] for s in run("Communities by weighted mean (latest)")}
    assert latest[COMMUNITIES[0]] < 18 < latest[COMMUNITIES[1]]
    share = {s["tags"]["community"]: s["values"][0][1] for s in run("Share of homes below standard (latest)")}
    assert share[COMMUNITIES[0]] == pytest.approx(16 / 23 * 100) and share[COMMUNITIES[1]] == 0
    assert run("Cold communities now")[0]["values"][0][1] == 1

    community = boards["influxql/heatwatch-community.json"]
    homes = next(p for p in community["panels"] if p["title"].startswith("Homes by temperature"))
    rows = _influxql(server, db, grafana_substitute(homes["targets"][0]["query"], VARIABLE_VALUES))["results"][0]["series"]
    assert len(rows) == 24 and all(s["tags"]["home_id"].startswith("C0-") for s in rows)

    collector = boards["influxql/heatwatch-collector.json"]
    rate = next(p for p in collector["panels"] if p["title"].startswith("Ingest rate"))
    series = _influxql(server, db, grafana_substitute(rate["targets"][0]["query"], {}))["results"][0]["series"]
    assert {s["tags"]["collector_id"] for s in series} == {"collector-a", "collector-b"}
    rates = [v for s in series for _, v in s["values"] if v is not None]
    assert rates and all(0.9 < r < 1.0 for r in rates)  # (120 - 1) stored per 2 minutes ≈ 0.99/s
