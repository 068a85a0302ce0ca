"""The control loop end to end on a real SQLite store and a real Mosquitto: proposal lifecycle, the retained
setpoint, rechecks (improved / not improved → dispatch alert), auto-apply, cold-snap ramps, Grafana points."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from analytics.results import AnalysisResult, CommunityStats, HomeBelow
from control.curve import heating_curve
from control.proposal import TransitionError, new_proposal_id
from control.publish import MqttPublisher
from control.rechecks import stored_jobs
from control.service import ControlLoop
from heatwatch.core import schema
from heatwatch.core.config import Config, load_config
from heatwatch.core.model import Point
from heatwatch.core.registry import Home, Registry, Station
from heatwatch.core.timeutil import SettableClock, rfc3339, to_ns
from heatwatch.infra.mqtt.client import PublishError
from heatwatch.infra.storage.sqlite import SqliteStore
from tests.helpers import Listener
from tools.servers import Mosquitto

ST = Station("S1", "幸福换热站", ("幸福小区",), 35.0, 75.0, "北京")
HOMES = {
    f"H{i}": Home(f"H{i}", "幸福小区", f"{i % 3 + 1}号楼", "1", i % 6 + 1, 6, False, "residential", None, "S1",
                  f"幸福小区{i % 3 + 1}号楼{i % 6 + 1}01", "138-0000-0000")
    for i in range(12)
}
REG = Registry(HOMES, {"S1": ST})


class Analyses:
    """What analytics would return for the recheck window; records each call."""

    def __init__(self) -> None:
        self.by_community: dict[str, AnalysisResult] = {}
        self.calls: list[tuple[datetime, datetime, str | None]] = []

    def __call__(self, store: Any, registry: Any, cfg: Any, start: datetime, end: datetime,
                 community: str | None = None, now: datetime | None = None) -> AnalysisResult:
        self.calls.append((start, end, community))
        return self.by_community[community or ""]


class Recorder:
    """Publisher double for tests that do not need a broker."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], bool]] = []
        self.down = False

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, timeout: float = 10.0) -> None:
        if self.down:
            raise PublishError("broker down")
        self.sent.append((topic, orjson.loads(payload), retain))


def result(t: datetime, wm: float, status: str = "ok", below: list[HomeBelow] | None = None,
           means: dict[str, float] | None = None) -> AnalysisResult:
    cs = CommunityStats("幸福小区", 12, 12, 8, 4, 0.66, 0.5, wm, wm, len(below or []), status)  # type: ignore[arg-type]
    return AnalysisResult(t - timedelta(hours=24), t, "Asia/Shanghai", [cs], below or [], [], [], means or {})


def cfg_for(tmp: Path, port: int = 1883, **sections: dict[str, Any]) -> Config:
    base: dict[str, dict[str, Any]] = {
        "general": {"data_dir": str(tmp / "data")},
        "mqtt": {"port": port, "client_id": f"ctl-{tmp.name}"[-40:], "topic_prefix": f"c{tmp.name[-8:]}"},
        "alerts": {"mqtt": False},
        "control": {"strategy": "feedback"},  # this file tests the curve + feedback + cold-snap job path
    }
    for k, v in sections.items():
        base.setdefault(k, {}).update(v)
    return load_config(environ={}, overrides=base)


def seed_station(store: SqliteStore, t: datetime, supply: float = 45.0, outdoor: float = 0.0) -> None:
    store.write([
        Point(schema.STATION, {"station_id": "S1"}, {"supply_c": supply, "return_c": supply - 8, "supply_kpa": 450.0,
                                                     "return_kpa": 300.0, "flow_m3h": 80.0}, to_ns(t - timedelta(minutes=5))),
        Point(schema.WEATHER, {"site_id": "北京"}, {"temp_c": outdoor}, to_ns(t - timedelta(minutes=5))),
    ])


T0 = datetime(2026, 1, 10, 2, 0, tzinfo=UTC)


@pytest.mark.mosquitto
def test_lifecycle_setpoint_retained_recheck_improved(tmp_path: Path, mosquitto: Mosquitto) -> None:
    cfg = cfg_for(tmp_path, mosquitto.port, alerts={"mqtt": True})
    prefix = cfg.mqtt.topic_prefix
    alerts_in = Listener(mosquitto.port, f"{prefix}/alerts/#")
    store = SqliteStore(tmp_path / "s.sqlite")
    clock = SettableClock(T0)
    seed_station(store, T0)
    an = Analyses()
    pub = MqttPublisher(cfg)
    loop = ControlLoop(cfg, REG, store, clock, pub, analyze=an)
    try:
        rep = loop.evaluate(result(T0, 16.9, status="cold"))
        [p] = rep.proposals
        assert p.kind == "supply" and p.current_c == 45.0 and p.proposed_c == 48.0  # max step 3 °C
        assert p.evidence["window_h"] == 24.0 and p.evidence["outdoor_c"] == 0.0
        [inc] = rep.opened
        assert inc.category == "community_cold"
        # the alert reached MQTT with Chinese names intact
        [(topic, body)] = alerts_in.wait_for(1)
        msg = json.loads(body)
        assert topic == f"{prefix}/alerts/community_cold" and msg["event"] == "open"
        assert msg["alert"]["community"] == "幸福小区" and msg["alert"]["responsible_unit"] == "幸福换热站"
        # same situation next cycle: no duplicate proposal or alert
        rep2 = loop.evaluate(result(T0 + timedelta(minutes=15), 16.9, status="cold"))
        assert rep2.proposals == [] and rep2.opened == []
        with pytest.raises(TransitionError, match="proposed"):
            loop.apply(p.proposal_id)
        loop.approve(p.proposal_id, actor="王工")
        applied = loop.apply(p.proposal_id, actor="王工", note="按建议执行")
        assert applied.status == "applied" and applied.published_at == T0
        assert applied.recheck_due_at == T0 + timedelta(hours=48)
        # the setpoint is retained: a late subscriber still gets it
        sp = Listener(mosquitto.port, f"{prefix}/control/setpoint/+")
        [(stopic, sbody)] = sp.wait_for(1)
        setpoint = json.loads(sbody)
        assert stopic == f"{prefix}/control/setpoint/S1"
        assert setpoint["proposal_id"] == p.proposal_id and setpoint["supply_c"] == 48.0 and setpoint["station_id"] == "S1"
        assert setpoint["effective_at"] == "2026-01-10T02:00:00+00:00" and "幸福小区" in setpoint["reason"]
        sp.close()
        assert f"recheck:{p.proposal_id}" in {j["job_id"] for j in stored_jobs(cfg)}
        # while the recheck is pending, colder-but-not-emergency does not give a new supply proposal
        assert loop.evaluate(result(T0 + timedelta(hours=1), 16.5, status="cold")).proposals == []
        # 48 h later the recheck runs (sweep) over the last 24 h and finds it warmer
        clock.advance(hours=48, minutes=1)
        an.by_community["幸福小区"] = result(clock(), 18.2)
        seed_station(store, clock(), supply=48.0)
        rep3 = loop.evaluate(result(clock(), 18.2))
        [done] = rep3.rechecked
        assert done.outcome == "improved" and done.after_c == 18.2 and done.before_c == 16.9
        start, end, comm = an.calls[-1]
        assert comm == "幸福小区" and end == clock() and end - start == timedelta(hours=24)
        assert loop.evaluate(result(clock(), 18.2)).rechecked == []
        assert len(loop.proposals.recheck_runs()) == 1
        hist = [h["to_status"] for h in loop.proposals.history(p.proposal_id)]
        assert hist == ["proposed", "approved", "applied", "rechecked"]
        # Grafana annotations: each lifecycle step is a point in the store
        df = store.query(schema.PROPOSALS, T0 - timedelta(hours=1), clock() + timedelta(hours=1))
        assert set(df["status"]) >= {"proposed", "approved", "applied", "rechecked"}
        assert set(df["station_id"]) == {"S1"}
    finally:
        loop.shutdown()
        pub.close()
        alerts_in.close()
        store.close()


def test_not_improved_raises_dispatch_alert_to_jsonl(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path, control={"max_step_c": 5.0})
    store = SqliteStore(tmp_path / "s.sqlite")
    clock = SettableClock(T0)
    seed_station(store, T0)
    an = Analyses()
    rec = Recorder()
    loop = ControlLoop(cfg, REG, store, clock, rec, analyze=an)
    try:
        [p] = loop.evaluate(result(T0, 16.9)).proposals
        loop.approve(p.proposal_id)
        loop.apply(p.proposal_id)
        assert rec.sent[0][0].endswith("/control/setpoint/S1") and rec.sent[0][2] is True
        clock.advance(hours=49)
        an.by_community["幸福小区"] = result(clock(), 17.0)  # +0.1 °C: not enough
        new = loop.recheck(p.proposal_id, by="test")
        assert new is not None and new.outcome == "not_improved"
        assert loop.recheck(p.proposal_id) is None  # once
        [alert] = loop.alerts.find(category="recheck_not_improved")
        assert alert.severity == "urgent" and alert.deadline == clock() + timedelta(hours=1)
        assert p.proposal_id in alert.content and "16.9" in alert.content
        lines = [json.loads(x) for x in (tmp_path / "data" / "alerts.jsonl").read_text(encoding="utf-8").splitlines()]
        assert lines[-1]["alert"]["category"] == "recheck_not_improved" and lines[-1]["event"] == "open"
        assert "幸福换热站" in (tmp_path / "data" / "alerts.jsonl").read_text(encoding="utf-8")
    finally:
        loop.shutdown()
        store.close()


def test_apply_fails_cleanly_when_broker_does_not_ack(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path)
    store = SqliteStore(tmp_path / "s.sqlite")
    seed_station(store, T0)
    rec = Recorder()
    loop = ControlLoop(cfg, REG, store, SettableClock(T0), rec, analyze=Analyses())
    try:
        [p] = loop.evaluate(result(T0, 16.9)).proposals
        loop.approve(p.proposal_id)
        rec.down = True
        from control.service import ApplyError

        with pytest.raises(ApplyError, match="not acknowledged"):
            loop.apply(p.proposal_id)
        assert loop.proposals.get(p.proposal_id).status == "approved"  # nothing half-done
    finally:
        loop.shutdown()
        store.close()


def test_auto_apply_per_station(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path, control={"stations": {"S1": {"auto_apply": True}}})
    store = SqliteStore(tmp_path / "s.sqlite")
    seed_station(store, T0)
    rec = Recorder()
    loop = ControlLoop(cfg, REG, store, SettableClock(T0), rec, analyze=Analyses())
    try:
        [p] = loop.evaluate(result(T0, 16.9)).proposals
        got = loop.proposals.get(p.proposal_id)
        assert got.status == "applied" and [h["actor"] for h in loop.proposals.history(p.proposal_id)][-1] == "auto_apply"
        assert rec.sent and rec.sent[0][1]["supply_c"] == p.proposed_c
    finally:
        loop.shutdown()
        store.close()


def test_home_visit_for_isolated_home_then_recheck_of_that_home(tmp_path: Path) -> None:
    cfg = cfg_for(tmp_path)
    store = SqliteStore(tmp_path / "s.sqlite")
    clock = SettableClock(T0)
    seed_station(store, T0, supply=round(heating_curve(cfg.control.design, 0.0).supply_c, 1))
    an = Analyses()
    loop = ControlLoop(cfg, REG, store, clock, Recorder(), analyze=an)
    hb = HomeBelow("H4", "幸福小区", "2号楼", "residential", 18.0, 8, 5, 16.4, 16.1, T0)
    try:
        rep = loop.evaluate(result(T0, 19.3, below=[hb], means={"H4": 16.4}))
        [p] = rep.proposals
        assert p.kind == "home_visit" and p.home_id == "H4" and "幸福小区2号楼501" in p.reason
        [o] = rep.opened
        assert o.category == "home_below_standard" and o.contact == "138-0000-0000"
        loop.approve(p.proposal_id)
        loop.apply(p.proposal_id, note="清洗过滤器")  # the visit is closed: recheck in 48 h
        clock.advance(hours=48)
        an.by_community["幸福小区"] = result(clock(), 19.4, means={"H4": 18.6})
        [done] = loop.run_due_rechecks()
        assert done.outcome == "improved" and done.after_c == 18.6
    finally:
        loop.shutdown()
        store.close()


def openmeteo(t0: datetime, temps: list[float], offset_s: int = 8 * 3600) -> dict[str, Any]:
    local0 = (t0 + timedelta(seconds=offset_s)).replace(tzinfo=None)
    return {
        "timezone": "Asia/Shanghai", "utc_offset_seconds": offset_s,
        "hourly": {"time": [(local0 + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M") for i in range(len(temps))],
                   "temperature_2m": temps},
    }


SNAP_TEMPS = [0.0] * 30 + [-10.0, -14.0, -16.5, -17.0] + [-17.0] * 20  # cold from +30 h, coldest from +33 h


def snap_rig(tmp: Path, supply: float = 48.0) -> tuple[Path, Config, SqliteStore, SettableClock, Recorder, ControlLoop]:
    """A control loop reading SNAP_TEMPS from a forecast file (lead time 12 h), the station at ``supply``."""
    fc = tmp / "forecast.json"
    fc.write_text(json.dumps(openmeteo(T0, SNAP_TEMPS)), encoding="utf-8")
    cfg = cfg_for(tmp, control={"forecast_file": str(fc), "stations": {"S1": {"lead_time_h": 12.0}}})
    store = SqliteStore(tmp / "s.sqlite")
    seed_station(store, T0, supply=supply)
    clock, rec = SettableClock(T0), Recorder()
    return fc, cfg, store, clock, rec, ControlLoop(cfg, REG, store, clock, rec, analyze=Analyses())


def test_cold_snap_ramp_from_forecast_file_beats_the_lag(tmp_path: Path) -> None:
    _, cfg, store, clock, rec, loop = snap_rig(tmp_path)
    temps = SNAP_TEMPS
    try:
        steps = loop.run_coldsnap()
        # -10 °C at +30 h is a 10 °C drop from 0 °C (≥ 8): the snap arrives; its coldest hour is +33 h
        assert steps[0].evidence["arrival"] == rfc3339(T0 + timedelta(hours=30))
        target = heating_curve(cfg.control.design, -17.0).supply_c
        # the supply for -17 °C is in place one lead time (12 h) before -17 °C, not before the arrival
        assert steps[-1].effective_at == T0 + timedelta(hours=33 - 12)
        assert steps[-1].proposed_c == pytest.approx(round(target, 1))
        for s in steps:  # each step is sized for the coldest forecast hour within the lag after it
            hour = round((s.effective_at - T0) / timedelta(hours=1))
            assert s.evidence["sized_for_outdoor_c"] == min(temps[hour:hour + 13])
        assert all(s.origin == "cold_snap" and s.kind == "supply" for s in steps)
        assert all(0 < (s.delta_c or 0) <= 3.0 for s in steps)
        assert [s.effective_at for s in steps] == sorted(s.effective_at for s in steps)
        assert all(s.effective_at >= T0 for s in steps)
        assert steps[0].current_c == 48.0 and steps[1].current_c == steps[0].proposed_c
        assert "Cold snap" in steps[0].reason and steps[0].evidence["trigger"] == "drop"
        assert loop.run_coldsnap() == []  # planned once
        # applying a future step publishes it only when it becomes effective (each step one max_step from the
        # one before, so the whole ramp is applied, as auto-apply does)
        for s in steps:
            loop.approve(s.proposal_id)
            loop.apply(s.proposal_id)
        last = loop.proposals.get(steps[-1].proposal_id)
        assert last.published_at is None and steps[-1].proposal_id not in {m[1]["proposal_id"] for m in rec.sent}
        assert last.recheck_due_at == last.effective_at + timedelta(hours=48)
        assert f"setpoint:{last.proposal_id}" in {j["job_id"] for j in stored_jobs(cfg)}
        for s in steps[:-1]:
            clock.set(s.effective_at)
            loop.publish_due_setpoints()
        assert last.proposal_id not in {m[1]["proposal_id"] for m in rec.sent}
        clock.set(last.effective_at)
        loop.publish_due_setpoints()
        assert [m[1]["proposal_id"] for m in rec.sent] == [s.proposal_id for s in steps]
        loop.publish_due_setpoints()
        assert len(rec.sent) == len(steps)
    finally:
        loop.shutdown()
        store.close()


@pytest.mark.parametrize(("mean_c", "supply_c"), [(23.5, 48.0), (23.5, 60.0), (17.0, 48.0)])
def test_cold_snap_target_takes_the_indoor_feedback(tmp_path: Path, mean_c: float, supply_c: float) -> None:
    """Homes above the target have margin for the cold (a smaller raise, or none); homes under it get more."""
    _, cfg, store, _, _, loop = snap_rig(tmp_path, supply=supply_c)
    try:
        loop.last_means["幸福小区"] = mean_c  # what the last analytics cycle measured
        steps = loop.run_coldsnap()
        feedback = 3.0 * (18.0 - mean_c)  # feedback_gain × (target − weighted mean)
        target = min(75.0, heating_curve(cfg.control.design, -17.0).supply_c + feedback)
        if target - supply_c < cfg.control.min_change_c:  # 69.8 − 16.5 = 53.3 °C: already above it at 60 °C
            assert steps == []
        else:
            assert steps[-1].proposed_c == pytest.approx(round(target, 1))
            assert steps[-1].evidence["indoor_feedback_c"] == pytest.approx(feedback)
            assert f"indoor feedback (weighted mean {mean_c:.1f} °C)" in steps[-1].reason
    finally:
        loop.shutdown()
        store.close()


def test_after_the_snap_the_supply_steps_back_down_with_the_forecast(tmp_path: Path) -> None:
    """A pre-adjusted supply is released as the cold passes, a bounded step per ramp interval, and only
    while the last change at the station was the cold-snap plan's."""
    fc, cfg, store, clock, _, loop = snap_rig(tmp_path)
    try:
        ramp = loop.run_coldsnap()
        for p in ramp:
            loop.approve(p.proposal_id)
            loop.apply(p.proposal_id)
        for p in ramp:  # each step goes out at its time (the setpoint jobs or the sweep)
            clock.set(p.effective_at)
            loop.publish_due_setpoints()
        peak = ramp[-1].proposed_c
        assert peak is not None
        # two days on, the cold has gone: the forecast is 0 °C again and the station runs at the peak
        clock.set(T0 + timedelta(hours=60))
        fc.write_text(json.dumps(openmeteo(clock.t, [0.0] * 48)), encoding="utf-8")
        seed_station(store, clock.t, supply=peak)
        [down] = loop.run_coldsnap()
        wanted = heating_curve(cfg.control.design, 0.0).supply_c  # no analytics yet: no feedback
        assert down.kind == "lower_supply" and down.origin == "cold_snap" and down.effective_at == clock.t
        assert down.current_c == peak and down.proposed_c == pytest.approx(max(round(wanted, 1), peak - 3.0))
        assert down.evidence["release_of"] == ramp[-1].proposal_id and down.evidence["sized_for_outdoor_c"] == 0.0
        assert "No cold snap forecast any more" in down.reason
        assert loop.run_coldsnap() == []  # undecided
        loop.approve(down.proposal_id)
        loop.apply(down.proposal_id)
        clock.advance(hours=1)
        seed_station(store, clock.t, supply=down.proposed_c or 0.0)
        assert loop.run_coldsnap() == []  # one step per ramp interval (3 h)
        clock.advance(hours=2)
        seed_station(store, clock.t, supply=down.proposed_c or 0.0)
        [second] = loop.run_coldsnap()
        assert second.current_c == down.proposed_c and (second.delta_c or 0) >= -3.0
        # once an operator's (or the feedback's) change is the last one, the setpoint is theirs
        loop.reject(second.proposal_id)
        mine = round((down.proposed_c or 0.0) + 1.0, 1)  # within a step of what the station was last sent
        manual = replace(second, proposal_id=new_proposal_id(), origin="analytics", kind="supply", proposed_c=mine,
                         delta_c=1.0, status="proposed", evidence={})  # a fixed supply (not the release's curve shift)
        loop.proposals.add_many([manual], "operator")
        loop.approve(manual.proposal_id)
        loop.apply(manual.proposal_id)
        clock.advance(hours=4)
        seed_station(store, clock.t, supply=mine)
        assert loop.run_coldsnap() == []
    finally:
        loop.shutdown()
        store.close()


def test_the_release_returns_to_the_curve_with_the_feedback_it_was_planned_with(tmp_path: Path) -> None:
    """Homes the ramp made warm (23.5 °C) do not drive the release under the curve: that is the analytics'
    correction, one change per recheck; a release every 3 h on a lagging mean undershoots into cold homes."""
    fc, cfg, store, clock, _, loop = snap_rig(tmp_path)
    try:
        loop.last_means["幸福小区"] = 18.0  # on target when the ramp is planned: no feedback
        ramp = loop.run_coldsnap()
        for p in ramp:
            loop.approve(p.proposal_id)
            loop.apply(p.proposal_id)
        for p in ramp:
            clock.set(p.effective_at)
            loop.publish_due_setpoints()
        clock.set(T0 + timedelta(hours=60))
        fc.write_text(json.dumps(openmeteo(clock.t, [0.0] * 72)), encoding="utf-8")
        loop.last_means["幸福小区"] = 23.5  # the ramp overheated the homes
        supply = max(loop.proposals.find(statuses=["applied"]), key=lambda p: p.effective_at).proposed_c or 0.0
        releases = []
        for _ in range(20):
            seed_station(store, clock.t, supply=supply)
            made = loop.run_coldsnap()
            if not made:
                break
            [down] = made
            assert down.kind == "lower_supply" and -3.0 <= (down.delta_c or 0) < 0
            loop.approve(down.proposal_id)
            loop.apply(down.proposal_id)
            releases.append(down)
            supply = down.proposed_c or 0.0
            clock.advance(hours=3)
        assert len(releases) >= 3
        curve = heating_curve(cfg.control.design, 0.0).supply_c
        assert supply == pytest.approx(round(curve, 1))  # the curve, not curve + 3 × (18 − 23.5)
        assert all(d.evidence["indoor_feedback_c"] == 0.0 for d in releases)
    finally:
        loop.shutdown()
        store.close()


def test_station_outage_alert_flags_user_notice(tmp_path: Path) -> None:
    """A measured outage (no flow) of more than 8 h asks for a user notice; a station silent for 9 h is lost
    telemetry and asks for none (silence is not an outage)."""
    cfg = cfg_for(tmp_path)
    store = SqliteStore(tmp_path / "s.sqlite")
    t = T0 - timedelta(hours=9)
    while t <= T0:
        store.write([Point(schema.STATION, {"station_id": "S1"}, {"supply_c": 30.0, "return_c": 29.0, "flow_m3h": 0.0},
                           to_ns(t))])
        t += timedelta(minutes=30)
    loop = ControlLoop(cfg, REG, store, SettableClock(T0), Recorder(), analyze=Analyses())
    try:
        rep = loop.evaluate(result(T0, 18.5))
        [o] = [a for a in rep.opened if a.category == "station_fault"]
        assert o.notify_users and o.station_id == "S1" and o.deadline == T0 + timedelta(hours=1)
        df = store.query(schema.ALERTS, T0 - timedelta(minutes=1), T0 + timedelta(minutes=1))
        assert "station_fault" in set(df["category"])
    finally:
        loop.shutdown()
        store.close()
    store = SqliteStore(tmp_path / "silent.sqlite")
    seed_station(store, T0 - timedelta(hours=9))
    loop = ControlLoop(cfg_for(tmp_path / "b"), REG, store, SettableClock(T0), Recorder(), analyze=Analyses())
    try:
        opened = loop.evaluate(result(T0, 18.5)).opened
        assert [a.category for a in opened] == ["telemetry_lost"] and not opened[0].notify_users
    finally:
        loop.shutdown()
        store.close()


def test_replace_keeps_frozen_records() -> None:
    r = result(T0, 18.0)
    with pytest.raises(AttributeError):
        r.communities[0].weighted_mean_c = 1.0  # type: ignore[misc]
    assert replace(r.communities[0], weighted_mean_c=1.0).weighted_mean_c == 1.0
