"""Heating curve against hand-computed values, the indoor feedback, and the bounds of every proposal."""

from __future__ import annotations

import itertools

import pytest

from control.curve import Bounded, auto_apply_for, bound_supply, design_for, feedback_supply, heating_curve, relative_load
from heatwatch.core.config import StationDesign, load_config

D = StationDesign()  # t_n 18, t_out' -9, 60/45, b 0.3


def test_design_point_gives_design_temperatures() -> None:
    p = heating_curve(D, -9.0)
    assert p.load == pytest.approx(1.0)
    assert p.supply_c == pytest.approx(60.0)
    assert p.return_c == pytest.approx(45.0)


def test_zero_outdoor_hand_computed() -> None:
    # Q = 18/27 = 0.66667; Q^(1/1.3) = 0.73204; 18 + 34.5*0.73204 ± 7.5*0.66667
    p = heating_curve(D, 0.0)
    assert p.load == pytest.approx(2 / 3)
    assert p.supply_c == pytest.approx(48.255, abs=0.01)
    assert p.return_c == pytest.approx(38.255, abs=0.01)


def test_colder_than_design_extrapolates() -> None:
    # Q = 36/27 = 1.33333; Q^(1/1.3) = 1.24769; 18 + 43.045 ± 10.0
    p = heating_curve(D, -18.0)
    assert p.supply_c == pytest.approx(71.045, abs=0.01)
    assert p.return_c == pytest.approx(51.045, abs=0.01)


def test_no_load_when_warm_outside() -> None:
    assert relative_load(D, 20.0) == 0.0
    p = heating_curve(D, 25.0)
    assert p.supply_c == pytest.approx(18.0) and p.return_c == pytest.approx(18.0)


def test_b_zero_is_linear_in_load() -> None:
    d = StationDesign(b=0.0, supply_design_c=95, return_design_c=70)
    # Q = 0.5 at t_out = 4.5: 18 + 0.5*(165-36)/2 ± 12.5*0.5 = 18 + 32.25 ± 6.25
    p = heating_curve(d, 4.5)
    assert p.supply_c == pytest.approx(56.5) and p.return_c == pytest.approx(44.0)


def test_curve_is_monotonic_in_outdoor_temperature() -> None:
    temps = [heating_curve(D, t / 2).supply_c for t in range(-40, 37)]
    assert all(a >= b for a, b in itertools.pairwise(temps))


def test_bad_design_and_outdoor_named() -> None:
    with pytest.raises(ValueError, match="supply_design_c"):
        heating_curve(StationDesign(supply_design_c=40, return_design_c=45), 0)
    with pytest.raises(ValueError, match="outdoor_design_c"):
        heating_curve(StationDesign(indoor_c=-10, outdoor_design_c=-9), 0)
    with pytest.raises(ValueError, match="finite"):
        heating_curve(D, float("nan"))


def test_feedback_shifts_by_gain_times_error() -> None:
    assert feedback_supply(50.0, 18.0, 17.0, 3.0) == pytest.approx(53.0)
    assert feedback_supply(50.0, 18.0, 19.5, 2.0) == pytest.approx(47.0)
    assert feedback_supply(50.0, 18.0, None, 3.0) == 50.0


def bs(*args: float) -> Bounded:
    b = bound_supply(*args)
    assert b is not None
    return b


def test_bounds_max_step_and_station_range() -> None:
    b = bs(50.0, 58.0, 3.0, 35.0, 75.0)
    assert b.proposed_c == 53.0 and b.limited_by == ("max_step",)
    b = bs(50.0, 44.0, 3.0, 35.0, 75.0)
    assert b.proposed_c == 47.0 and b.limited_by == ("max_step",)
    b = bs(74.0, 80.0, 3.0, 35.0, 75.0)
    assert b.proposed_c == 75.0 and b.limited_by == ("max_step", "station_max")
    # no reference, no bounded step: clamping to 35 °C could cut a real 55 °C supply by 20 °C at once
    assert bound_supply(None, 30.0, 3.0, 35.0, 75.0) is None
    b = bs(36.0, 34.0, 3.0, 35.0, 75.0)
    assert b.proposed_c == 35.0 and b.limited_by == ("station_min",)
    b = bs(50.0, 51.26, 3.0, 35.0, 75.0)
    assert b.proposed_c == 51.3 and b.limited_by == ()
    with pytest.raises(ValueError, match="range"):
        bound_supply(50.0, 51.0, 3.0, 75.0, 35.0)


def test_per_station_design_inherits_unset_keys_from_section_default() -> None:
    cfg = load_config(
        environ={},
        overrides={"control": {"design": {"supply_design_c": 70.0}, "stations": {"S2": {"b": 0.0, "auto_apply": True}}}},
    )
    d = design_for(cfg, "S2")
    assert d.b == 0.0 and d.supply_design_c == 70.0
    assert design_for(cfg, "S1").supply_design_c == 70.0 and design_for(cfg, "S1").b == 0.3
    assert auto_apply_for(cfg, "S2") is True and auto_apply_for(cfg, "S1") is False
