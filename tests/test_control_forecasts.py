"""Forecasts are checked before they drive a ramp (a known weather_site, plausible values, a jump from the
previous issue flagged), planned steps are withdrawn when a newer forecast cancels the snap, and a step is
checked against the newest forecast again just before it is published."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from control.coldsnap import check_forecast
from control.service import ControlLoop
from heatwatch.core import schema
from heatwatch.core.config import Config, load_config
from heatwatch.core.model import Point
from heatwatch.core.registry import Home, Registry, Station
from heatwatch.core.timeutil import SettableClock, to_ns
from heatwatch.infra.storage.sqlite import SqliteStore

T0 = datetime(2026, 1, 10, 2, 0, tzinfo=UTC)
H = timedelta(hours=1)
ST1 = Station("S1", "幸福换热站", ("幸福小区",), 35.0, 75.0, "北京")
ST2 = Station("S2", "阳光换热站", ("阳光花园",), 35.0, 75.0, "天津")
HOMES = {f"H{i}": Home(f"H{i}", "幸福小区", "1号楼", "1", i % 6 + 1, 6, False, "residential", None, "S1")
         for i in range(6)}
SNAP = [0.0] * 30 + [-10.0, -14.0, -16.5, -17.0] + [-17.0] * 20
MILD = [0.0] * 54


def fc(temps: list[float], t0: datetime = T0) -> list[tuple[datetime, float]]:
    return [(t0 + i * H, t) for i, t in enumerate(temps)]


# --- the checks, pure --------------------------------------------------------------------------------
def test_implausible_forecasts_are_not_used() -> None:
    c = load_config(environ={})
    assert check_forecast(fc(SNAP), None, c).usable
    bad = check_forecast(fc([0.0, -3.0, -75.0, -5.0]), None, c)
    assert not bad.usable and "-75.0 °C" in bad.problems[0] and "-60..60" in bad.problems[0]
    steep = check_forecast(fc([0.0, -1.0, -19.0, -20.0]), None, c)
    assert not steep.usable and "18.0 °C in an hour" in steep.problems[0]


def test_a_jump_from_the_previous_issue_is_flagged() -> None:
    c = load_config(environ={})
    prev = fc([0.0] * 40)
    same = check_forecast(fc([0.5] * 40), prev, c)
    assert same.usable and same.jump_c is None
    jumped = check_forecast(fc([0.0] * 20 + [-4.0, -8.0] + [-12.0] * 18), prev, c)
    assert jumped.usable and jumped.jump_c == pytest.approx(12.0) and jumped.jump_at == T0 + 22 * H


# --- through the loop ----------------------------------------------------------------------------------
class Recorder:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, timeout: float = 10.0) -> None:
        self.sent.append(orjson.loads(payload))


def openmeteo(t0: datetime, temps: list[float]) -> dict[str, Any]:
    local0 = (t0 + timedelta(hours=8)).replace(tzinfo=None)
    return {"utc_offset_seconds": 28800,
            "hourly": {"time": [(local0 + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M") for i in range(len(temps))],
                       "temperature_2m": temps}}


def loop_for(tmp: Path, stations: dict[str, Station], **control: Any) -> tuple[Config, SqliteStore, SettableClock, Recorder, ControlLoop]:
    c = load_config(environ={}, overrides={"general": {"data_dir": str(tmp / "data")}, "alerts": {"mqtt": False},
                                           "control": {"auto_apply": True, "strategy": "feedback", **control}})
    store = SqliteStore(tmp / "s.sqlite")
    for sid in stations:
        store.write([Point(schema.STATION, {"station_id": sid}, {"supply_c": 48.0, "flow_m3h": 80.0},
                           to_ns(T0 - timedelta(minutes=5)))])
    clock, rec = SettableClock(T0), Recorder()
    loop = ControlLoop(c, Registry(HOMES, stations), store, clock, rec)
    loop.jobs.schedule = lambda *a, **k: None  # type: ignore[method-assign]  # the sweeps publish
    return c, store, clock, rec, loop


def write_file(tmp: Path, temps: list[float], t0: datetime = T0) -> Path:
    path = tmp / "forecast.json"
    path.write_text(json.dumps(openmeteo(t0, temps)), encoding="utf-8")
    return path


def test_a_forecast_file_drives_only_the_site_it_is_for(tmp_path: Path) -> None:
    path = write_file(tmp_path, SNAP)
    # two sites and a file that does not say which: no ramp anywhere
    _, store, _, _, loop = loop_for(tmp_path / "a", {"S1": ST1, "S2": ST2}, forecast_file=str(path))
    try:
        assert loop.run_coldsnap() == []
    finally:
        loop.shutdown()
        store.close()
    # declared for 北京: S1 ramps, S2 (天津) does not
    _, store, _, _, loop = loop_for(tmp_path / "b", {"S1": ST1, "S2": ST2}, forecast_file=str(path), forecast_site="北京")
    try:
        assert {p.station_id for p in loop.run_coldsnap()} == {"S1"}
    finally:
        loop.shutdown()
        store.close()
    # declared for a site no station names: not used
    _, store, _, _, loop = loop_for(tmp_path / "c", {"S1": ST1}, forecast_file=str(path), forecast_site="上海")
    try:
        assert loop.run_coldsnap() == []
    finally:
        loop.shutdown()
        store.close()


def store_forecast(store: SqliteStore, site: str, issued: datetime, temps: list[float]) -> None:
    store.write([Point(schema.FORECAST, {"site_id": site}, {"temp_c": v, "issued_s": to_ns(issued) // 10**9},
                       to_ns(issued + i * H)) for i, v in enumerate(temps)])


def test_an_implausible_forecast_drives_no_ramp(tmp_path: Path) -> None:
    _, store, _, rec, loop = loop_for(tmp_path, {"S1": ST1})
    try:
        store_forecast(store, "北京", T0, [*SNAP[:40], -99.0, *SNAP[41:]])
        assert loop.run_coldsnap() == [] and rec.sent == []
    finally:
        loop.shutdown()
        store.close()


def test_a_ramp_from_a_forecast_that_jumped_waits_for_an_operator(tmp_path: Path) -> None:
    _, store, clock, rec, loop = loop_for(tmp_path, {"S1": ST1})
    try:
        store_forecast(store, "北京", T0, MILD)
        assert loop.run_coldsnap() == []
        clock.advance(hours=1)
        store_forecast(store, "北京", T0 + H, [0.0] * 27 + [-5.0, -10.0, -15.0, -18.0] + [-19.0] * 23)  # 19 °C colder
        steps = loop.run_coldsnap()
        assert steps and all(loop.proposals.get(s.proposal_id).status == "proposed" for s in steps)
        assert rec.sent == [] and all(s.evidence["hold_for_operator"] for s in steps)
        assert "changed by 19.0 °C" in steps[0].reason and steps[0].evidence["forecast_jump_c"] == pytest.approx(19.0)
    finally:
        loop.shutdown()
        store.close()


def test_planned_steps_are_withdrawn_when_a_newer_forecast_cancels_the_snap(tmp_path: Path) -> None:
    _, store, clock, rec, loop = loop_for(tmp_path, {"S1": ST1})
    try:
        store_forecast(store, "北京", T0, SNAP)
        steps = loop.run_coldsnap()
        assert len(steps) >= 3
        sent_first = [b["proposal_id"] for b in rec.sent]
        assert sent_first == [steps[0].proposal_id]  # effective now: out at once
        clock.advance(hours=2)
        store_forecast(store, "北京", T0 + 2 * H, MILD)  # the cold snap is off
        loop.run_coldsnap()
        later = [loop.proposals.get(s.proposal_id) for s in steps[1:]]
        assert all(p.status == "withdrawn" and p.published_at is None for p in later)
        assert "no longer shows the cold snap" in loop.proposals.history(steps[1].proposal_id)[-1]["note"]
        assert loop.proposals.get(steps[0].proposal_id).status == "applied"  # already sent: it stays
        clock.advance(hours=30)
        loop.publish_due_setpoints()
        assert not {b["proposal_id"] for b in rec.sent} & {s.proposal_id for s in steps[1:]}
    finally:
        loop.shutdown()
        store.close()


def test_a_step_is_checked_against_the_newest_forecast_just_before_it_goes_out(tmp_path: Path) -> None:
    """The snap is cancelled between two cold-snap runs: the step that falls due meanwhile is withdrawn."""
    _, store, clock, rec, loop = loop_for(tmp_path, {"S1": ST1})
    try:
        store_forecast(store, "北京", T0, SNAP)
        steps = loop.run_coldsnap()
        second = steps[1]
        store_forecast(store, "北京", T0 + H, MILD)
        clock.set(second.effective_at)
        loop.publish_due_setpoints()  # no cold-snap run in between
        assert loop.proposals.get(second.proposal_id).status == "withdrawn"
        assert second.proposal_id not in {b["proposal_id"] for b in rec.sent}
    finally:
        loop.shutdown()
        store.close()


def test_a_held_step_nobody_decided_goes_out_of_date_and_the_newest_forecast_plans_again(tmp_path: Path) -> None:
    """Undecided, a held step blocked every later release while new ramps still raised the station (issue 15's
    season: both stations climbed to a 28 °C mean); a ramp interval past its hour it is withdrawn."""
    c, store, clock, rec, loop = loop_for(tmp_path, {"S1": ST1})
    try:
        store_forecast(store, "北京", T0, MILD)
        loop.run_coldsnap()
        clock.advance(hours=1)
        jumped = [0.0] * 27 + [-5.0, -10.0, -15.0, -18.0] + [-19.0] * 23
        store_forecast(store, "北京", T0 + H, jumped)
        held = loop.run_coldsnap()
        assert held and all(s.evidence["hold_for_operator"] for s in held) and rec.sent == []
        first = min(held, key=lambda s: s.effective_at)
        # before its hour + a ramp interval: still waiting for the operator
        clock.set(first.effective_at + timedelta(hours=c.control.ramp_interval_h) - timedelta(minutes=1))
        loop.run_coldsnap()
        assert loop.proposals.get(first.proposal_id).status == "proposed"
        clock.advance(minutes=2)
        loop.run_coldsnap()
        assert loop.proposals.get(first.proposal_id).status == "withdrawn"
        assert rec.sent == [] or all(b["proposal_id"] not in {s.proposal_id for s in held} for b in rec.sent)
    finally:
        loop.shutdown()
        store.close()
