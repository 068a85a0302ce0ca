"""Feedback setpoints shift the heating curve (``[control] feedback_setpoint = "curve_offset"``): the proposal carries
the shift, the next step is measured from where the station aims now, and a release hands the station back to its curve."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from control.alerts.rules import StationReading
from control.coldsnap import SetpointHistory, plan_release
from control.curve import design_for, heating_curve
from control.diagnosis import StationState, diagnose
from control.proposal import Proposal, new_proposal_id
from tests.test_control_diagnosis import NOW, REG, ST, cfg, hb, result, stats


def curve(c: object, outdoor: float) -> float:
    return heating_curve(design_for(c, "S1"), outdoor).supply_c  # type: ignore[arg-type]


def test_a_raise_is_sent_as_a_shift_of_the_curve_and_a_fixed_supply_when_asked() -> None:
    r = result([stats("幸福小区", 16.8, below=12)], [hb("H1")])
    state = {"S1": StationState(ST, supply_c=45.0, return_c=None, outdoor_c=0.0)}
    [p] = diagnose(r, REG, cfg(max_step_c=10.0), state, {}, NOW)
    assert p.proposed_c == pytest.approx(51.9)
    assert p.evidence["curve_offset_c"] == pytest.approx(51.9 - curve(cfg(), 0.0))  # +3.6, the feedback
    [fixed] = diagnose(r, REG, cfg(max_step_c=10.0, feedback_setpoint="supply"), state, {}, NOW)
    assert fixed.proposed_c == pytest.approx(51.9) and fixed.evidence["curve_offset_c"] is None
    no_outdoor = {"S1": StationState(ST, supply_c=45.0, published_c=45.0)}
    [p2] = diagnose(r, REG, cfg(max_step_c=10.0), no_outdoor, {}, NOW)
    assert p2.evidence["curve_offset_c"] is None  # no curve to shift: a fixed supply, as before


def test_after_a_shift_the_step_is_measured_from_where_the_station_aims_now() -> None:
    """Sent +2 °C at 0 °C outdoors; now −9 °C: the station aims at curve(−9) + 2 = 62 °C, not at the 50.3 °C sent."""
    r = result([stats("幸福小区", 16.0, below=12)], [hb("H1")])
    state = {"S1": StationState(ST, supply_c=61.0, outdoor_c=-9.0, published_c=50.3, published_offset_c=2.0)}
    [p] = diagnose(r, REG, cfg(), state, {}, NOW)
    aim = curve(cfg(), -9.0) + 2.0
    assert p.current_c == pytest.approx(round(aim, 1)) and p.evidence["reference"] == "published"
    assert p.proposed_c == pytest.approx(round(aim + 3.0, 1), abs=0.051)  # one max_step_c from there
    assert p.evidence["curve_offset_c"] == pytest.approx(p.proposed_c - curve(cfg(), -9.0))


def _ramp_step(supply: float, feedback: float) -> Proposal:
    t = NOW - timedelta(hours=6)
    return Proposal(proposal_id=new_proposal_id(), station_id="S1", kind="supply", community="幸福小区",
                    current_c=supply - 3.0, proposed_c=supply, delta_c=3.0, evidence={"indoor_feedback_c": feedback},
                    reason="ramp", created_at=t, effective_at=t, origin="cold_snap", status="applied", published_at=t)


@pytest.mark.parametrize(("peak", "outdoor"), [(52.2, -9.0), (60.0, 0.0), (50.0, 0.0)])
def test_a_release_hands_the_station_back_to_its_curve_up_or_down(peak: float, outdoor: float) -> None:
    """A ramp's fixed peak after the snap: colder than it was sized for → raise; milder → lower; as a shift."""
    c = cfg()
    step = _ramp_step(peak, -3.2)
    reading = StationReading("S1", NOW, peak, None, None, None, None, outdoor)
    history = SetpointHistory(changes=[step], last_published=step)
    p = plan_release(c, ST, reading, [(NOW + timedelta(hours=h), outdoor) for h in range(24)], NOW,
                     design_for(c, "S1"), {"幸福小区": 19.0}, history)
    assert p is not None and p.origin == "cold_snap" and p.evidence["release_of"] == step.proposal_id
    target = curve(c, outdoor)  # the negative planned feedback is not carried past the snap
    assert p.kind == ("supply" if target > peak else "lower_supply")
    assert abs(p.proposed_c - peak) <= c.control.max_step_c + 1e-9  # type: ignore[operator]
    expected = 0.0 if abs(target - peak) <= 3.0 else p.proposed_c - target  # type: ignore[operator]
    assert p.evidence["curve_offset_c"] == pytest.approx(expected, abs=0.06)
    # once that shift was sent, the release is done: the analytics take it from there
    if expected == 0.0:
        sent = replace(p, status="applied", published_at=NOW)
        assert plan_release(c, ST, reading, [], NOW + timedelta(hours=4), design_for(c, "S1"), {},
                            SetpointHistory(changes=[sent], last_published=sent)) is None
