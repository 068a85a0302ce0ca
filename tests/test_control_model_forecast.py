"""The model strategy (the default) takes the forecast through the cold-snap job's checks: an implausible forecast
is not planned on, a forecast that jumped since its previous issue waits for a later issue that repeats it, and a
plan made ahead of a forecast cold snap says so — the model's pre-adjustment is its stations' cold-snap job."""

from __future__ import annotations

from pathlib import Path

from control.coldsnap import check_forecast
from control.service import ControlLoop
from heatwatch.core import schema
from heatwatch.core.model import Point
from heatwatch.core.timeutil import to_ns
from heatwatch.infra.storage.sqlite import SqliteStore
from tests.test_control_forecasts import HOMES, MILD, SNAP, ST1, T0, H, fc, loop_for, store_forecast

INDOOR_C, SUPPLY_C, OUTDOOR_C = 19.6, 48.3, 0.0  # at rest on the curve, over the standard + margin
JUMPED = [0.0] * 8 + [-5.0, -10.0, -15.0, -18.0] + [-19.0] * 42  # 19 °C colder than MILD's issue, within the look-ahead


SOON = [0.0] * 10 + [-10.0, -14.0, -16.5, -17.0] + [-17.0] * 40  # SNAP, arriving inside the 24 h look-ahead


def _history(store: SqliteStore, hours: int = 12) -> None:
    """Half a day at rest: the model starts from the design prior anchored there (a fit needs a day, and a
    station at rest all day teaches it nothing: that is the fallback to curve + feedback)."""
    pts = []
    for k in range(hours, 0, -1):
        ns = to_ns(T0 - k * H)
        pts += [Point(schema.INDOOR, {"home_id": h.home_id, "community": h.community, "building": h.building,
                                      "source": "sensor"}, {"temp_c": INDOOR_C - 0.1 * (i % 2)}, ns)
                for i, h in enumerate(HOMES.values())]
        pts.append(Point(schema.STATION, {"station_id": "S1"}, {"supply_c": SUPPLY_C, "flow_m3h": 80.0}, ns))
        pts.append(Point(schema.WEATHER, {"site_id": ST1.weather_site}, {"temp_c": OUTDOOR_C}, ns))
    store.write(pts)


def _decision(loop: ControlLoop) -> tuple[str, dict[str, object] | None, str]:
    (d,) = loop.model_decisions(loop.clock())
    p = d.proposal
    return d.why, (None if p is None else {"kind": p.kind, "evidence": p.evidence, "reason": p.reason}), d.basis


def test_the_model_default_is_model_and_a_snap_ahead_is_named(tmp_path: Path) -> None:
    cfg, store, _, _, loop = loop_for(tmp_path, {"S1": ST1}, strategy="model")
    try:
        assert cfg.control.strategy == "model"
        _history(store)
        store_forecast(store, ST1.weather_site, T0, SOON)
        why, p, basis = _decision(loop)
        assert basis == "prior" and p is not None, why
        assert min(p["evidence"]["outdoor_ahead_c"]) == -17.0  # type: ignore[index]  # planned on the forecast
        snap = p["evidence"]["cold_snap"]  # type: ignore[index]
        assert snap["min_c"] == -17.0 and snap["trigger"] in ("threshold", "drop")
        assert str(p["reason"]).startswith("Cold snap forecast from ")
    finally:
        loop.shutdown()
        store.close()


def test_a_mild_forecast_is_no_cold_snap_and_an_implausible_one_is_not_planned_on(tmp_path: Path) -> None:
    _, store, _, _, loop = loop_for(tmp_path, {"S1": ST1}, strategy="model")
    try:
        _history(store)
        store_forecast(store, ST1.weather_site, T0, MILD)
        _, p, _ = _decision(loop)
        assert p is None or "cold_snap" not in p["evidence"]  # type: ignore[operator]
        # −99 °C inside a snap: the forecast is refused, so the plan holds today's 0 °C and raises nothing
        store_forecast(store, ST1.weather_site, T0, [*SNAP[:40], -99.0, *SNAP[41:]])
        why, p, _ = _decision(loop)
        note = why if p is None else str(p["evidence"]["forecast_note"])  # type: ignore[index]
        assert "forecast not used" in note and "-99.0 °C" in note
        assert p is None or set(p["evidence"]["outdoor_ahead_c"]) == {0.0}  # type: ignore[index]
    finally:
        loop.shutdown()
        store.close()


def test_a_jumped_forecast_waits_for_an_issue_that_repeats_it(tmp_path: Path) -> None:
    cfg, store, clock, _, loop = loop_for(tmp_path, {"S1": ST1}, strategy="model")
    try:
        _history(store)
        store_forecast(store, ST1.weather_site, T0, MILD)
        _decision(loop)  # the mild issue is the previous one now
        clock.set(T0 + H)
        store_forecast(store, ST1.weather_site, T0 + H, JUMPED)
        assert check_forecast(fc(JUMPED, T0 + H), fc(MILD), cfg).jump_c is not None  # the case under test
        _, p, _ = _decision(loop)
        assert p is not None and "cold_snap" not in p["evidence"]  # type: ignore[operator]
        assert set(p["evidence"]["outdoor_ahead_c"]) == {0.0}  # type: ignore[index]  # not acted on: 0 °C held
        note = str(p["evidence"]["forecast_note"])  # type: ignore[index]
        assert "since its previous issue" in note and "later issue repeats it" in note
        clock.set(T0 + 2 * H)
        store_forecast(store, ST1.weather_site, T0 + 2 * H, JUMPED[1:])
        _, p, _ = _decision(loop)
        assert p is not None and "forecast_note" not in p["evidence"]  # type: ignore[operator]
        assert min(p["evidence"]["outdoor_ahead_c"]) == -19.0 and p["evidence"]["cold_snap"]["min_c"] == -19.0  # type: ignore[index]
    finally:
        loop.shutdown()
        store.close()


def test_a_snap_past_the_look_ahead_is_not_this_plans(tmp_path: Path) -> None:
    _, store, _, _, loop = loop_for(tmp_path, {"S1": ST1}, strategy="model")
    try:
        _history(store)
        store_forecast(store, ST1.weather_site, T0, SNAP)  # −17 °C from hour 30; the plan looks 24 h ahead
        _, p, _ = _decision(loop)
        assert p is not None and "cold_snap" not in p["evidence"] and "Cold snap" not in str(p["reason"])  # type: ignore[operator]
    finally:
        loop.shutdown()
        store.close()
