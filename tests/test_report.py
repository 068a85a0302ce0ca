"""``heatwatch report``: realistic data in a SqliteStore -> HTML page -> rendered in headless Chromium."""

from __future__ import annotations

import base64
import math
import re
import shutil
import subprocess
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from heatwatch.app.cli import main as cli_main
from heatwatch.app.report import build_report, fonts, plots
from heatwatch.app.report.data import load_report_data, weighted_hourly
from heatwatch.core import schema
from heatwatch.core.config import load_config
from heatwatch.core.model import Point
from heatwatch.core.registry import Home, Registry, Station
from heatwatch.core.timeutil import to_ns
from heatwatch.infra.storage.base import Store
from heatwatch.infra.storage.sqlite import SqliteStore
from tools.servers import IN_CI, Influxd, require_binary

END = datetime(2026, 1, 12, 0, 0, tzinfo=UTC)
START = END - timedelta(days=3)
COLD, WARM = "幸福小区", "阳光花园"
FLOORS = 6


def _registry() -> Registry:
    homes: dict[str, Home] = {}
    for community, sid in ((COLD, "ST-01"), (WARM, "ST-02")):
        for b in (1, 2):
            for entrance in ("1", "2"):
                for floor in range(1, FLOORS + 1):
                    for pos in (1, 2):
                        hid = f"{'XF' if community == COLD else 'YG'}-{b}-{entrance}-{floor}0{pos}"
                        gable = (entrance == "1" and pos == 1) or (entrance == "2" and pos == 2)
                        homes[hid] = Home(hid, community, f"{b}号楼", entrance, floor, FLOORS, gable, "residential", None, sid,
                                          address=f"{community}{b}号楼{entrance}单元{floor}0{pos}", position=pos)
    stations = {
        "ST-01": Station("ST-01", "幸福换热站", (COLD,), 45.0, 85.0),
        "ST-02": Station("ST-02", "阳光换热站", (WARM,), 45.0, 85.0),
    }
    return Registry(homes, stations)


def _temp(home: Home, k: int) -> float:
    """Cold community: edge homes ~16 °C, middle ~18.5; warm community ~21 (daily swing)."""
    base = 21.0 if home.community == WARM else (16.0 if home.edge else 18.6)
    return round(base + 0.5 * math.sin(2 * math.pi * k / 96), 2)


def write_realistic(store: Store, registry: Registry, analytics: bool = True) -> None:
    pts: list[Point] = []
    steps = int((END - START) / timedelta(minutes=15))
    for k in range(steps):
        t = to_ns(START + timedelta(minutes=15 * k))
        for h in registry.homes.values():
            if h.home_id == "XF-2-2-602" and k > steps // 2:
                continue  # a sensor that went silent
            pts.append(Point(schema.INDOOR, {"home_id": h.home_id, "community": h.community, "building": h.building,
                                             "source": "sensor"}, {"temp_c": _temp(h, k), "rh": 40.0, "battery_v": 2.9}, t))
        out = -9.0 - 5 * math.sin(2 * math.pi * k / 96)
        pts.append(Point(schema.WEATHER, {"site_id": "default"}, {"temp_c": round(out, 2)}, t))
        for i, sid in enumerate(("ST-01", "ST-02")):
            supply = 50.0 + 0.8 * -out + 3 * i
            pts.append(Point(schema.STATION, {"station_id": sid}, {"supply_c": supply, "return_c": supply - 11,
                                                                  "supply_kpa": 510.0, "return_kpa": 390.0, "flow_m3h": 40.0}, t))
    if analytics:
        for hour in range(int((END - START) / timedelta(hours=1))):
            t = to_ns(START + timedelta(hours=hour + 1))
            for community, w in ((COLD, 17.0), (WARM, 21.0)):
                pts.append(Point(schema.COMMUNITY_STATS, {"community": community}, {
                    "weighted_mean_c": w + 0.3 * math.sin(hour / 4), "plain_mean_c": w + 0.6, "homes_registered": 48,
                    "homes_reporting": 48, "edge_homes": 32, "middle_homes": 16, "edge_share": 0.667, "edge_weight": 0.667,
                    "homes_below_standard": 32 if community == COLD else 0, "status": "cold" if community == COLD else "ok"}, t))
    t0 = START + timedelta(days=1, hours=2)
    pts += [
        Point(schema.ALERTS, {"category": "community_cold", "community": COLD, "station_id": "ST-01"},
              {"alert_id": "A-1", "home_id": "", "status": "open", "content": f"{COLD} 加权平均 17.0 °C 低于 18 °C"}, to_ns(t0)),
        Point(schema.ALERTS, {"category": "community_cold", "community": COLD, "station_id": "ST-01"},
              {"alert_id": "A-1", "home_id": "", "status": "acked", "content": f"{COLD} 加权平均 17.0 °C 低于 18 °C"},
              to_ns(t0 + timedelta(hours=1))),
        Point(schema.ALERTS, {"category": "sensor", "community": COLD, "station_id": ""},
              {"alert_id": "A-2", "home_id": "XF-2-2-602", "status": "open", "content": "传感器无数据"},
              to_ns(t0 + timedelta(hours=30))),
        Point(schema.PROPOSALS, {"station_id": "ST-01", "kind": "supply"},
              {"proposal_id": "P-1", "status": "proposed", "current_c": 58.0, "proposed_c": 61.0, "delta_c": 3.0,
               "reason": f"{COLD} 顶层/底层/山墙住户偏冷，提高供水温度"}, to_ns(t0 + timedelta(minutes=30))),
        Point(schema.PROPOSALS, {"station_id": "ST-01", "kind": "supply"},
              {"proposal_id": "P-1", "status": "applied", "current_c": 58.0, "proposed_c": 61.0, "delta_c": 3.0,
               "reason": f"{COLD} 顶层/底层/山墙住户偏冷，提高供水温度"}, to_ns(t0 + timedelta(hours=2))),
    ]
    store.write(pts)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "hw.sqlite", "NORMAL")
    yield s
    s.close()


def _need_cjk_font() -> tuple[str, str]:
    found = fonts.cjk_font()
    if found is None:
        msg = "no CJK font installed (apt-get install fonts-noto-cjk)"
        if IN_CI:
            pytest.fail(msg + " — under CI=true this is a failure")
        pytest.skip(msg)
    return found


# --- unit-level ----------------------------------------------------------------------------------
def test_chinese_label_renders_with_a_cjk_font() -> None:
    family, path = _need_cjk_font()
    assert fonts.has_glyphs(path, "幸福小区 3号楼 供水温度")
    assert not fonts.has_glyphs(fonts.font_manager.findfont("DejaVu Sans"), "幸福小区")  # the check can fail
    assert fonts.use_cjk_font() == family
    fig = plots.Figure(figsize=(3, 1))
    fig.text(0.1, 0.5, "幸福小区 3号楼 18 °C −2")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        png = plots._png(fig, "probe")
    missing = [str(w.message) for w in caught if "missing" in str(w.message).lower()]
    assert not missing, missing
    assert png.data.startswith(b"\x89PNG") and png.width == 300


def test_weighted_hourly_gives_edge_homes_at_least_40_percent() -> None:
    hour = pd.Timestamp("2026-01-10T00:00Z")
    homes = pd.DataFrame({"home_id": ["e1", "m1", "m2", "m3", "m4"], "community": ["c"] * 5,
                          "edge": [True, False, False, False, False]})
    hourly = pd.DataFrame({"home_id": homes["home_id"], "hour": [hour] * 5, "mean": [16.0, 20.0, 20.0, 20.0, 20.0]})
    v = weighted_hourly(hourly, homes, 0.40)
    assert v["value"].tolist() == [pytest.approx(0.4 * 16 + 0.6 * 20)]  # 1 of 5 is edge -> weighted up to 40 %
    homes["edge"] = [True, True, True, False, False]
    hourly["mean"] = [16.0, 16.0, 16.0, 20.0, 20.0]
    assert weighted_hourly(hourly, homes, 0.40)["value"].tolist() == [pytest.approx(0.6 * 16 + 0.4 * 20)]  # share 60 %


def test_heatmap_grid_puts_top_floor_up_and_gables_at_the_ends() -> None:
    reg = _registry()
    homes = pd.DataFrame([{"home_id": h.home_id, "community": h.community, "building": h.building, "entrance": h.entrance,
                           "floor": h.floor, "floors": h.floors, "position": h.position,
                           "mean_c": 10.0 * h.floor + (h.position or 0), "threshold_c": 18.0}
                          for h in reg.homes_in(COLD) if h.building == "1号楼"])
    temps, below, labels, floors = plots._building_grid(homes)
    assert floors == FLOORS and temps.shape == (FLOORS, 4)
    assert labels == ["1-1", "1-2", "2-1", "2-2"]
    assert temps[0, 0] == 61.0 and temps[-1, -1] == 12.0  # row 0 = top floor 6, last row = ground floor
    assert below[-1].all() and not below[0].any()  # ground floor 11-12 °C below 18, top floor 61-62 °C not


# --- whole report ---------------------------------------------------------------------------------
def test_report_uses_analytics_results_and_lists_cold_homes(store: SqliteStore, tmp_path: Path) -> None:
    reg = _registry()
    write_realistic(store, reg)
    cfg = load_config(environ={})
    d = load_report_data(store, reg, cfg, START, END)
    assert d.community_source.startswith("analytics results")
    assert set(d.community_means["community"]) == {COLD, WARM}
    assert len(d.homes) == 96 and d.homes["mean_c"].notna().all()
    cold = d.homes[d.homes["mean_c"] < d.homes["threshold_c"]]
    assert set(cold["community"]) == {COLD} and cold["edge"].all() and len(cold) == 32  # 16 edge homes per building
    assert [s.station_id for s in d.stations] == ["ST-01", "ST-02"]
    assert d.stations[0].hourly["outdoor_c"].notna().all()
    assert set(d.alerts["alert_id"]) == {"A-1", "A-2"} and set(d.proposals["status"]) == {"proposed", "applied"}

    only = load_report_data(store, reg, cfg, START, END, communities=[WARM])
    assert set(only.homes["community"]) == {WARM} and [s.station_id for s in only.stations] == ["ST-02"]
    assert only.alerts.empty and only.proposals.empty


def test_report_computes_weighted_means_when_analytics_absent(store: SqliteStore, tmp_path: Path) -> None:
    reg = _registry()
    write_realistic(store, reg, analytics=False)
    cfg = load_config(environ={})
    d = load_report_data(store, reg, cfg, START, END)
    assert d.community_source.startswith("computed by the report")
    cold = d.community_means[d.community_means["community"] == COLD]["value"]
    # 2/3 of the cold community are edge homes at ~16 °C, middle ~18.6: edge weight 2/3 (above the 40 % floor)
    assert cold.mean() == pytest.approx(2 / 3 * 16.0 + 1 / 3 * 18.6, abs=0.1)
    html = build_report(store, reg, cfg, START, END, tmp_path / "out").read_text(encoding="utf-8")
    assert "computed by the report from hourly indoor means" in html
    assert "heating curve from control" in html


def test_station_supply_is_compared_with_controls_heating_curve(store: SqliteStore) -> None:
    from control.curve import design_for, heating_curve

    reg = _registry()
    write_realistic(store, reg, analytics=False)
    cfg = load_config(environ={})
    st = load_report_data(store, reg, cfg, START, END).stations[0]
    assert st.curve_note.startswith("heating curve from control")
    row = st.hourly.iloc[5]
    expected = heating_curve(design_for(cfg, st.station_id), float(row["outdoor_c"]))
    assert row["curve_c"] == pytest.approx(expected.supply_c) and row["curve_return_c"] == pytest.approx(expected.return_c)
    assert row["curve_c"] > row["curve_return_c"] > 18


def test_report_warns_on_the_page_without_a_cjk_font(store: SqliteStore, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    reg = _registry()
    write_realistic(store, reg)
    monkeypatch.setattr(fonts, "cjk_font", lambda: None)
    html = build_report(store, reg, load_config(environ={}), START, END, tmp_path).read_text(encoding="utf-8")
    assert 'class="warn"' in html and "fonts-noto-cjk" in html


class _Imgs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[dict[str, str | None]] = []
        self.body: dict[str, str | None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.imgs.append(dict(attrs))
        elif tag == "body":
            self.body = dict(attrs)


def _chromium(args: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    binary = require_binary("chromium", "chromium")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={tmp / 'chrome-profile'}"]
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=120, check=False)


def test_report_renders_in_headless_chromium(store: SqliteStore, tmp_path: Path) -> None:
    _need_cjk_font()
    reg = _registry()
    write_realistic(store, reg)
    path = build_report(store, reg, load_config(environ={}), START, END, tmp_path / "report")
    text = path.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text  # self-contained
    for m in re.finditer(r'src="data:image/png;base64,([^"]+)"', text):
        assert base64.b64decode(m.group(1)).startswith(b"\x89PNG")

    dom = _chromium(["--virtual-time-budget=10000", "--dump-dom", path.as_uri()], tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    parser = _Imgs()
    parser.feed(dom.stdout)
    assert parser.body.get("data-loaded") == "1", "the page's load handler did not run"
    assert len(parser.imgs) == 4, [i.get("alt") for i in parser.imgs]
    for im in parser.imgs:
        decoded = im.get("data-decoded")
        assert decoded and decoded != "failed", im.get("alt")
        assert decoded == f"{im['width']}x{im['height']}", (decoded, im.get("alt"))
        w, h = (int(x) for x in decoded.split("x"))
        assert w >= 500 and h >= 100
    for name in (COLD, WARM, "XF-1-1-101", "加权平均"):
        assert name in dom.stdout

    shot = tmp_path / "report.png"
    res = _chromium(["--window-size=1280,2400", "--hide-scrollbars", f"--screenshot={shot}", path.as_uri()], tmp_path)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    assert shot.stat().st_size > 50_000  # plots, not a blank page
    keep = Path("/tmp/heatwatch-report-screenshot.png")
    if not IN_CI:  # leave a copy to look at by hand
        shutil.copy(shot, keep)


def test_report_command(store: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    reg = _registry()
    write_realistic(store, reg)
    homes_csv = tmp_path / "homes.csv"
    cols = ["home_id", "community", "building", "entrance", "floor", "floors", "gable", "kind", "min_temp_c", "station_id",
            "address", "contact", "position"]
    rows = [",".join([h.home_id, h.community, h.building, h.entrance, str(h.floor), str(h.floors), str(int(h.gable)),
                      h.kind, "", h.station_id, h.address, "", str(h.position)]) for h in reg.homes.values()]
    homes_csv.write_text(",".join(cols) + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    for k in [k for k in __import__("os").environ if k.startswith("HEATWATCH_") and not k.startswith("HEATWATCH_TEST_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("HEATWATCH_SQLITE_PATH", str(store.path))
    monkeypatch.setenv("HEATWATCH_REGISTRY_HOMES_CSV", str(homes_csv))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "cli-out"
    # local times (Asia/Shanghai): 2026-01-09 08:00 +08:00 .. 2026-01-12 08:00 +08:00 = START .. END
    rc = cli_main(["report", "--from", "2026-01-09 08:00", "--to", "2026-01-12T08:00+08:00", "--out", str(out),
                   "--community", COLD])
    printed = capsys.readouterr().out
    assert rc == 0 and str(out / "report.html") in printed
    assert "2026-01-09T08:00:00+08:00" in printed
    html = (out / "report.html").read_text(encoding="utf-8")
    assert COLD in html and "XF-1-1-101" in html and "YG-1-1-101" not in html
    assert html.count("<img ") == 4

    assert cli_main(["report", "--from", "yesterday", "--out", str(out)]) == 2
    assert "expected a time" in capsys.readouterr().err
    assert cli_main(["report", "--from", "2026-01-12", "--to", "2026-01-11", "--out", str(out)]) == 2


@pytest.mark.influxd
def test_report_from_influxdb1(influxd: Influxd, tmp_path: Path) -> None:
    """The same report from a real influxd through Influxdb1Store (hourly means pushed down to InfluxQL)."""
    from heatwatch.infra.storage.influxdb1 import Influxdb1Store

    reg = _registry()
    store = Influxdb1Store(influxd.url, "report_test")
    try:
        write_realistic(store, reg)
        cfg = load_config(environ={})
        d = load_report_data(store, reg, cfg, START, END)
        assert d.community_source.startswith("analytics results") and set(d.community_means["community"]) == {COLD, WARM}
        cold = d.homes[d.homes["mean_c"] < d.homes["threshold_c"]]
        assert len(cold) == 32 and set(cold["community"]) == {COLD} and cold["edge"].all()
        assert [s.station_id for s in d.stations] == ["ST-01", "ST-02"] and d.stations[0].hourly["outdoor_c"].notna().all()
        assert set(d.alerts["alert_id"]) == {"A-1", "A-2"}
        html = build_report(store, reg, cfg, START, END, tmp_path).read_text(encoding="utf-8")
        assert html.count("<img ") == 4 and "influxdb1 store" in html
    finally:
        store.close()


# --- a city: many communities and buildings ------------------------------------------------------------
def _city(n_communities: int = 12) -> tuple[Registry, list[Point]]:
    """``n_communities`` communities of two 6-floor buildings; community k is 0.25·k °C warmer, one is cold."""
    homes: dict[str, Home] = {}
    pts: list[Point] = []
    for k in range(n_communities):
        community = f"小区{k:02d}"
        for b in (1, 2):
            for floor in range(1, FLOORS + 1):
                for pos in (1, 2):
                    hid = f"C{k:02d}-{b}-{floor}0{pos}"
                    homes[hid] = Home(hid, community, f"{b}号楼", "1", floor, FLOORS, pos == 1, "residential", None,
                                      f"ST-{k:02d}", position=pos)
                    base = (15.5 if k == 3 else 18.5 + 0.25 * k) - (0.5 if pos == 1 else 0.0)
                    pts += [Point(schema.INDOOR, {"home_id": hid, "community": community, "building": f"{b}号楼",
                                                  "source": "sensor"}, {"temp_c": base + 0.1 * (h % 3)},
                                  to_ns(END - timedelta(hours=24) + timedelta(minutes=20 * h))) for h in range(72)]
    return Registry(homes, {}), pts


def test_a_city_report_is_summarised_per_community(store: SqliteStore, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    reg, pts = _city()
    store.write(pts)
    cfg = load_config(environ={})
    start = END - timedelta(hours=24)
    whole = load_report_data(store, reg, cfg, start, END)
    monkeypatch.setattr("heatwatch.app.report.data.PARTITION_CELLS", 24 * 30)  # ~one community per read
    parts = load_report_data(store, reg, cfg, start, END)
    pd.testing.assert_frame_equal(parts.homes, whole.homes)
    key = ["community", "time"]
    pd.testing.assert_frame_equal(parts.community_means.sort_values(key).reset_index(drop=True),
                                  whole.community_means.sort_values(key).reset_index(drop=True))
    assert len(whole.homes) == 12 * 24 and whole.homes["mean_c"].notna().all()

    monkeypatch.setattr(plots, "MAX_GRID_ROWS", 10)
    monkeypatch.setattr("heatwatch.app.report.build.MAX_TABLE_ROWS", 5)
    text = build_report(store, reg, cfg, start, END, tmp_path / "city").read_text(encoding="utf-8")
    # 12 communities: a band of all of them with the coldest named, and a community × hour heat map of the 10 coldest
    assert 'id="community-means"' in text and 'id="community-grid"' in text
    assert "12 communities: the band is their spread" in text and "2 warmer communities are not in the heat map" in text
    assert "Per community over the period: the 5 coldest of 12" in text
    first = text.index("Per community over the period")
    assert text.index("小区03", first) < text.index("小区00", first)  # coldest first
    assert "小区11" not in text[first:text.index("</table>", first)]  # the warmest is left out of the capped table
    # 24 buildings, 12 drawn: every building summarised in a table, the cold community's first
    assert "12 more building(s) not drawn" in text and "Buildings by homes below standard: the 5 coldest of 24" in text
    b = text.index("Buildings by homes below standard")
    assert text.index("小区03", b) < text.index("</table>", b)
