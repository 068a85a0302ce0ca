"""heatwatch.app.lockstep without a broker: cycle times, setpoint delivery and the waits' failure messages.

The runner publishes to a sink here (no MQTT), so these run in milliseconds; the closed-loop, demo and
end-to-end tests drive the same code through real Mosquitto.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from heatwatch.app.lockstep import CountingPublisher, Lockstep, LockstepTimeout
from simulators.runner import ScenarioRunner
from simulators.sensors import Message
from tools.fixtures import design_scenario

UNTIL = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


def runner(tmp: Path, hours: float = 3.0) -> tuple[ScenarioRunner, list[Message]]:
    sent: list[Message] = []
    r = ScenarioRunner(design_scenario(duration_h=hours), None, out_dir=tmp, speed=0, until=UNTIL, sink=sent.append)
    return r, sent


def offsets(r: ScenarioRunner, times: list[datetime]) -> list[float]:
    return [(t - r.start_time) / timedelta(minutes=1) for t in times]


@pytest.mark.parametrize(
    ("every", "first", "want_min"),
    [
        (H, None, [60, 120, 180]),
        (timedelta(minutes=50), None, [60, 120, 180]),  # not a whole number of 15 min steps: the next step after
        (2 * H, None, [120, 180]),  # the last one falls at the end of the run
        (H, 2 * H, [120, 180]),
    ],
)
def test_cycles_at_their_simulated_times(tmp_path: Path, every: timedelta, first: timedelta | None,
                                         want_min: list[float]) -> None:
    r, sent = runner(tmp_path)
    ls = Lockstep(r)
    seen: list[datetime] = []
    published: list[int] = []
    try:
        for t in ls.cycles(every, first=first):
            assert ls.clock() == t == r.sim_time  # the clock reads the cycle's time; nothing beyond it is published
            seen.append(t)
            published.append(len(sent))
    finally:
        ls.close()
    assert offsets(r, seen) == want_min
    assert r.sim_time == UNTIL and r.at_end
    assert published == sorted(published) and len(sent) == r.published


def test_setpoints_sent_in_a_cycle_take_effect_at_the_next_step(tmp_path: Path) -> None:
    r, _ = runner(tmp_path)

    class ToSimulator:
        """Stands in for the broker: setpoints go straight into the simulator's inbox (it subscribes to no more)."""

        def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, timeout: float = 10.0) -> None:
            if topic.startswith("heat/control/setpoint/"):
                r.submit_setpoint(topic, payload)

    counting = CountingPublisher(ToSimulator(), "heat")
    ls = Lockstep(r, setpoints=counting)
    try:
        for t in ls.cycles(H):
            if t == r.start_time + H:
                body = (f'{{"proposal_id": "p1", "supply_c": 65.0, "effective_at": "{t.isoformat()}"}}').encode()
                counting.publish("heat/control/setpoint/S1", body)
                counting.publish("heat/alerts/community_cold", b"{}")  # not a setpoint: not counted
    finally:
        ls.close()
    assert counting.setpoints == 1 and r.setpoints_received == 1 and r.setpoints_applied == 1
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    [applied] = [e for e in events if e["kind"] == "setpoint_applied"]
    assert datetime.fromisoformat(applied["ts"]) == r.start_time + H + timedelta(minutes=15)  # the very next step


class StuckCollector:
    """Subscribed, but never takes anything."""

    def wait_ready(self, timeout: float = 10.0) -> bool:
        return True

    def snapshot(self) -> dict[str, Any]:
        return {"received": 0, "spool_points": 0}


def test_a_collector_that_does_not_keep_up_is_a_named_timeout(tmp_path: Path) -> None:
    r, _ = runner(tmp_path)
    ls = Lockstep(r, [StuckCollector()], timeout_s=0.2)
    try:
        with pytest.raises(LockstepTimeout, match=r"the collectors took 0 of \d+ published messages"):
            ls.begin()
    finally:
        ls.close()


def test_a_setpoint_that_never_arrives_is_a_named_timeout(tmp_path: Path) -> None:
    r, _ = runner(tmp_path)
    ls = Lockstep(r, timeout_s=0.2)
    try:
        ls.begin()
        with pytest.raises(LockstepTimeout, match="the simulator received 0 of 1 setpoints"):
            ls.deliver_setpoints(1)
    finally:
        ls.close()
