"""Cold-snap pieces: Open-Meteo parsing (local times, gaps, bad input), detection, the bounded ramp, store forecasts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from control.coldsnap import ForecastError, detect, forecast_from_store, load_openmeteo, parse_openmeteo, plan_ramp
from heatwatch import schema
from heatwatch.model import Point
from heatwatch.storage.sqlite import SqliteStore
from heatwatch.timeutil import to_ns

T0 = datetime(2026, 1, 10, 0, 0, tzinfo=UTC)
H = timedelta(hours=1)


def test_openmeteo_local_times_become_utc_and_gaps_are_skipped() -> None:
    data = {"timezone": "Asia/Shanghai", "utc_offset_seconds": 28800,
            "hourly": {"time": ["2026-01-10T08:00", "2026-01-10T09:00", "2026-01-10T10:00"],
                       "temperature_2m": [-3.5, None, -4]}}
    assert parse_openmeteo(data) == [(T0, -3.5), (T0 + 2 * H, -4.0)]


def test_openmeteo_gmt_and_explicit_offsets() -> None:
    data = {"utc_offset_seconds": 0, "hourly": {"time": ["2026-01-10T00:00", "2026-01-10T09:00+08:00"],
                                                "temperature_2m": [1, 2]}}
    assert parse_openmeteo(data) == [(T0, 1.0), (T0 + H, 2.0)]


@pytest.mark.parametrize(
    ("data", "msg"),
    [
        ({"daily": {}}, "'hourly'"),
        ({"hourly": {"time": ["2026-01-10T00:00"], "temperature_2m": []}}, "has 1 entries but temperature_2m has 0"),
        ({"hourly": {"time": ["yesterday"], "temperature_2m": [1]}}, r"hourly.time\[0\]"),
        ({"hourly": {"time": ["2026-01-10T00:00"], "temperature_2m": ["cold"]}}, r"temperature_2m\[0\]"),
        ({"hourly": {"time": "x", "temperature_2m": []}}, "must be lists"),
        ({"utc_offset_seconds": "8h", "hourly": {"time": [], "temperature_2m": []}}, "utc_offset_seconds"),
    ],
)
def test_bad_forecasts_are_named(data: object, msg: str) -> None:
    with pytest.raises(ForecastError, match=msg):
        parse_openmeteo(data, "f.json")


def test_forecast_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ForecastError, match="cannot read"):
        load_openmeteo(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ForecastError, match="not JSON"):
        load_openmeteo(bad)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"hourly": {"time": ["2026-01-10T00:00"], "temperature_2m": [-20.0]}}), encoding="utf-8")
    assert load_openmeteo(good) == [(T0, -20.0)]


def fc(temps: list[float]) -> list[tuple[datetime, float]]:
    return [(T0 + i * H, t) for i, t in enumerate(temps)]


def test_detect_threshold_drop_and_nothing() -> None:
    f = fc([-5, -8, -12, -16, -18, -15])
    snap = detect(f, T0, -5.0, threshold_c=-15, drop_c=20, horizon=72 * H)
    assert snap is not None and snap.trigger == "threshold" and snap.arrival == T0 + 3 * H
    assert snap.min_c == -18 and snap.min_at == T0 + 4 * H
    snap = detect(f, T0, -5.0, threshold_c=-30, drop_c=6, horizon=72 * H)
    assert snap is not None and snap.trigger == "drop" and snap.arrival == T0 + 2 * H and snap.reference_c == -5.0
    assert detect(f, T0, -5.0, threshold_c=-30, drop_c=20, horizon=72 * H) is None
    assert detect(f, T0, None, threshold_c=-15, drop_c=20, horizon=2 * H) is None  # beyond the horizon
    assert detect([], T0, 0.0, -15, 8, 72 * H) is None
    # past hours do not count; without an outdoor reading the first forecast hour is the reference
    snap = detect(fc([-20, -2, -3, -11]), T0 + H, None, threshold_c=-30, drop_c=8, horizon=72 * H)
    assert snap is not None and snap.arrival == T0 + 3 * H and snap.reference_c == -2


def test_ramp_steps_are_bounded_and_end_at_the_lead_time() -> None:
    steps = plan_ramp(50.0, 58.2, 3.0, T0 + 18 * H, 3 * H, T0)
    assert steps == [(T0 + 12 * H, 53.0), (T0 + 15 * H, 56.0), (T0 + 18 * H, 58.2)]
    assert plan_ramp(50.0, 56.0, 3.0, T0 + 18 * H, 3 * H, T0) == [(T0 + 15 * H, 53.0), (T0 + 18 * H, 56.0)]
    # too late for the full ramp: it starts now, compressed to arrive in time ...
    assert plan_ramp(50.0, 56.0, 3.0, T0 + 2 * H, 3 * H, T0) == [(T0, 53.0), (T0 + 2 * H, 56.0)]
    # ... but never two steps at once: at most one per interval / 3 even when it arrives late
    assert plan_ramp(55.0, 63.9, 3.0, T0, 3 * H, T0) == [(T0, 58.0), (T0 + H, 61.0), (T0 + 2 * H, 63.9)]
    assert plan_ramp(55.0, 57.0, 3.0, T0 - H, 3 * H, T0) == [(T0, 57.0)]
    assert plan_ramp(60.0, 58.0, 3.0, T0 + 2 * H, 3 * H, T0) == []


def test_store_forecast_by_site_within_horizon(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite")
    try:
        issued_old, issued_new = to_ns(T0 - 6 * H) // 10**9, to_ns(T0 - H) // 10**9
        store.write([
            Point(schema.FORECAST, {"site_id": "北京"}, {"temp_c": -5.0, "issued_s": issued_old}, to_ns(T0 + 3 * H)),
            Point(schema.FORECAST, {"site_id": "北京"}, {"temp_c": -9.0, "issued_s": issued_new}, to_ns(T0 + 4 * H)),
            Point(schema.FORECAST, {"site_id": "上海"}, {"temp_c": 5.0, "issued_s": issued_new}, to_ns(T0 + 3 * H)),
            Point(schema.FORECAST, {"site_id": "北京"}, {"temp_c": -1.0, "issued_s": issued_new}, to_ns(T0 + 80 * H)),
        ])
        got = forecast_from_store(store, "北京", T0, 72 * H)
        assert got == [(T0 + 3 * H, -5.0), (T0 + 4 * H, -9.0)]
        assert forecast_from_store(store, "广州", T0, 72 * H) == []
    finally:
        store.close()
