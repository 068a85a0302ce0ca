"""48 h rechecks judge the homes that caused the proposal: were they at their standard after the change?
improved / not_improved / confounded (another change at the same station took effect inside the window)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from analytics.results import AnalysisResult, CommunityStats, HomeBelow
from control.proposal import Proposal, new_proposal_id
from control.service import ControlLoop
from heatwatch.core import schema
from heatwatch.core.config import Config, load_config
from heatwatch.core.model import Point
from heatwatch.core.registry import Home, Registry, Station
from heatwatch.core.timeutil import SettableClock, to_ns
from heatwatch.infra.storage.sqlite import SqliteStore

T0 = datetime(2026, 1, 10, 2, 0, tzinfo=UTC)
H = timedelta(hours=1)
C = "幸福小区"
ST = Station("S1", "幸福换热站", (C,), 35.0, 75.0, "北京")
HOMES = {f"H{i}": Home(f"H{i}", C, f"{i % 3 + 1}号楼", "1", i % 6 + 1, 6, False, "residential", None, "S1",
                       f"{C}{i % 3 + 1}号楼{i % 6 + 1}01", "138") for i in range(12)}
REG = Registry(HOMES, {"S1": ST})


def hb(hid: str, mean: float = 16.5) -> HomeBelow:
    return HomeBelow(hid, C, "1号楼", "residential", 18.0, 6, 4, mean, mean - 0.3, T0)


def result(t: datetime, wm: float, below: list[HomeBelow] = (), status: str = "ok",  # type: ignore[assignment]
           means: dict[str, float] | None = None) -> AnalysisResult:
    cs = CommunityStats(C, 12, 12, 8, 4, 0.66, 0.5, wm, wm, len(below), status, target_c=18.0)  # type: ignore[arg-type]
    return AnalysisResult(t - 24 * H, t, "Asia/Shanghai", [cs], list(below), [], [],
                          means if means is not None else {h: wm for h in HOMES})


class Analyses:
    def __init__(self) -> None:
        self.now: AnalysisResult | None = None

    def __call__(self, *a: Any, **k: Any) -> AnalysisResult:
        assert self.now is not None
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, timeout: float = 10.0) -> None:
        self.sent.append(orjson.loads(payload))


def rig(tmp: Path) -> tuple[Config, SqliteStore, SettableClock, Analyses, ControlLoop]:
    c = load_config(environ={}, overrides={"general": {"data_dir": str(tmp / "data")}, "alerts": {"mqtt": False},
                                           "control": {"max_step_c": 5.0}})
    store = SqliteStore(tmp / "s.sqlite")
    store.write([Point(schema.STATION, {"station_id": "S1"}, {"supply_c": 48.0, "flow_m3h": 80.0},
                       to_ns(T0 - timedelta(minutes=5))),
                 Point(schema.WEATHER, {"site_id": "北京"}, {"temp_c": 0.0}, to_ns(T0 - timedelta(minutes=5)))])
    clock, an = SettableClock(T0), Analyses()
    loop = ControlLoop(c, REG, store, clock, Recorder(), analyze=an)
    loop.jobs.schedule = lambda *a, **k: None  # type: ignore[method-assign]  # the sweep runs them
    return c, store, clock, an, loop


def apply(loop: ControlLoop, p: Proposal) -> None:
    loop.approve(p.proposal_id)
    loop.apply(p.proposal_id)


def test_a_supply_change_is_judged_on_the_homes_that_caused_it(tmp_path: Path) -> None:
    """The mean rose 1.1 °C (the old verdict: improved), but two of the three cold homes are still cold."""
    _, store, clock, an, loop = rig(tmp_path)
    try:
        [p] = [q for q in loop.evaluate(result(T0, 16.9, [hb("H1"), hb("H2"), hb("H3")], "cold")).proposals
               if q.kind == "supply"]
        assert p.evidence["homes"] == ["H1", "H2", "H3"]
        apply(loop, p)
        clock.advance(hours=48, minutes=1)
        an.now = result(clock(), 18.0, [hb("H2", 17.4), hb("H3", 17.2)])
        [done] = loop.run_due_rechecks()
        assert done.outcome == "not_improved" and done.after_c == 18.0
        run = loop.proposals.recheck_runs()[-1]
        assert orjson.loads(run["detail"])["still_below"] == ["H2", "H3"]
        [order] = loop.alerts.find(category="recheck_not_improved")
        assert "H2" in order.content and "H3" in order.content
    finally:
        loop.shutdown()
        store.close()


def test_improved_when_every_home_that_caused_it_is_at_its_standard(tmp_path: Path) -> None:
    _, store, clock, an, loop = rig(tmp_path)
    try:
        [p] = [q for q in loop.evaluate(result(T0, 16.9, [hb("H1"), hb("H2")], "cold")).proposals if q.kind == "supply"]
        apply(loop, p)
        clock.advance(hours=49)
        an.now = result(clock(), 17.8, [hb("H7", 17.5)])  # someone else is cold now: not what this change was for
        [done] = loop.run_due_rechecks()
        assert done.outcome == "improved"
    finally:
        loop.shutdown()
        store.close()


def test_a_visit_whose_home_warmed_because_of_a_cold_snap_step_is_confounded(tmp_path: Path) -> None:
    """The visit was recorded done; a cold-snap raise at the same station went out 10 h later. The home is warm
    at the recheck, but nobody can say which change did it."""
    _, store, clock, an, loop = rig(tmp_path)
    try:
        [visit] = [q for q in loop.evaluate(result(T0, 19.3, [hb("H4")])).proposals if q.kind == "home_visit"]
        apply(loop, visit)  # a crew says it was done
        step = Proposal(proposal_id=new_proposal_id(), station_id="S1", kind="supply", community=C, current_c=48.0,
                        proposed_c=51.0, delta_c=3.0, evidence={"step": 1}, reason="Cold snap", created_at=T0,
                        effective_at=T0 + 10 * H, origin="cold_snap")
        loop.proposals.add_many([step])
        apply(loop, step)
        clock.set(T0 + 10 * H)
        loop.publish_due_setpoints()
        clock.set(T0 + 48 * H + timedelta(minutes=1))
        an.now = result(clock(), 19.8, means={**{h: 19.8 for h in HOMES}, "H4": 18.9})
        [done] = [d for d in loop.run_due_rechecks() if d.proposal_id == visit.proposal_id]
        assert done.outcome == "confounded"
        detail = orjson.loads(loop.proposals.recheck_runs()[-1]["detail"])
        assert detail["confounded_by"] == [step.proposal_id]
        assert loop.alerts.find(category="recheck_not_improved") == []  # no verdict, no order
    finally:
        loop.shutdown()
        store.close()


def test_home_visits_and_balancing_are_never_auto_applied(tmp_path: Path) -> None:
    """Applying a visit means 'done on site': only the crew can say so. Auto-apply applies setpoints only."""
    c = load_config(environ={}, overrides={"general": {"data_dir": str(tmp_path / "data")}, "alerts": {"mqtt": False},
                                           "control": {"auto_apply": True}})
    store = SqliteStore(tmp_path / "s.sqlite")
    loop = ControlLoop(c, REG, store, SettableClock(T0), Recorder(), analyze=Analyses())
    loop.jobs.schedule = lambda *a, **k: None  # type: ignore[method-assign]
    try:
        [visit] = loop.evaluate(result(T0, 19.3, [hb("H4")])).proposals
        assert visit.kind == "home_visit" and loop.proposals.get(visit.proposal_id).status == "proposed"
    finally:
        loop.shutdown()
        store.close()


@pytest.mark.parametrize("kind", ["supply", "lower_supply"])
def test_a_cold_snap_step_followed_by_the_next_one_is_confounded(tmp_path: Path, kind: str) -> None:
    _, store, clock, an, loop = rig(tmp_path)
    try:
        steps = []
        value = 48.0
        for k in range(2):
            nxt = value + (3.0 if kind == "supply" else -3.0)
            steps.append(Proposal(proposal_id=new_proposal_id(), station_id="S1", kind=kind,  # type: ignore[arg-type]
                                  community=C, current_c=value, proposed_c=nxt, delta_c=nxt - value, evidence={},
                                  reason="Cold snap", created_at=T0, effective_at=T0 + 3 * k * H, origin="cold_snap",
                                  targets=(C,), before_c=18.0))
            value = nxt
        loop.proposals.add_many(steps)
        for s in steps:
            apply(loop, s)
        clock.set(T0 + 3 * H)
        loop.publish_due_setpoints()
        clock.set(T0 + 60 * H)
        an.now = result(clock(), 19.5)
        done = {d.proposal_id: d.outcome for d in loop.run_due_rechecks()}
        assert done[steps[0].proposal_id] == "confounded"  # the second step took effect inside its window
        assert done[steps[1].proposal_id] in ("improved", "not_improved")
    finally:
        loop.shutdown()
        store.close()


def test_a_model_step_is_judged_with_the_models_later_steps_but_not_with_an_operators(tmp_path: Path) -> None:
    """The model re-plans every cycle: its next step is the same plan, so the recheck judges the plan (were the homes
    at their standard 48 h on?); an operator's change inside the window still confounds it."""
    _, store, clock, an, loop = rig(tmp_path)
    try:
        def step(k: int, value: float, origin: str) -> Proposal:
            return Proposal(proposal_id=new_proposal_id(), station_id="S1", kind="supply", community="",
                            current_c=value - 3.0, proposed_c=value, delta_c=3.0, evidence={"curve_offset_c": None},
                            reason=origin, created_at=T0 + 3 * k * H, effective_at=T0 + 3 * k * H, origin=origin,
                            targets=(C,), before_c=17.2)
        first, second = step(0, 51.0, "model"), step(1, 54.0, "model")
        loop.proposals.add_many([first, second])
        for s in (first, second):
            clock.set(s.effective_at)
            apply(loop, s)
        clock.set(T0 + 60 * H)
        an.now = result(clock(), 18.6)
        done = {d.proposal_id: d for d in loop.run_due_rechecks()}
        assert done[first.proposal_id].outcome == "improved"  # not "confounded" by the model's own next step
        assert done[first.proposal_id].after_c == 18.6 and done[first.proposal_id].before_c == 17.2
        # an operator's setpoint inside the next model step's window: that one cannot be credited
        third = step(21, 55.0, "model")
        op = replace(step(22, 56.0, "operator"), reason="operator")
        loop.proposals.add_many([third, op])
        for s in (third, op):
            clock.set(s.effective_at)
            apply(loop, s)
        clock.set(T0 + 130 * H)
        done = {d.proposal_id: d.outcome for d in loop.run_due_rechecks()}
        assert done[third.proposal_id] == "confounded"
    finally:
        loop.shutdown()
        store.close()
