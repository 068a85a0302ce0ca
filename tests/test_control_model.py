"""The station model (control/model.py) and the model-predictive plan (control/mpc.py): pure, no store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control.model import FitError, StationModel, fit_station_model, plan_supply, simulate
from control.mpc import StationSeries, plan_station, prior_model, series_from_frames, targets_ahead
from heatwatch.core.config import Config, StationDesign
from heatwatch.core.registry import Station

TRUE = StationModel(alpha=0.019, beta=0.026, gamma=-0.06)  # about what the simulator's homes fit to: τ 22 h


def _synthetic(hours: int = 168, seed: int = 1, noise: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A week with a daily swing, a front and a supply that does NOT follow the outdoor alone (as under control)."""
    rng = np.random.default_rng(seed)
    h = np.arange(hours)
    outdoor = -4.0 + 4.0 * np.sin(2 * np.pi * (h - 8) / 24) + 3.0 * np.sin(2 * np.pi * h / 90)
    supply = 50.0 - 0.9 * outdoor + rng.normal(0.0, 3.0, hours)
    indoor = simulate(TRUE, 19.0, supply[:-1], outdoor[:-1]) + rng.normal(0.0, noise, hours)
    return indoor, supply, outdoor


def test_fit_recovers_known_coefficients() -> None:
    indoor, supply, outdoor = _synthetic()
    fit = fit_station_model(indoor, supply, outdoor, prior_ratio=TRUE.beta / TRUE.alpha * 1.3)
    assert fit.model.alpha == pytest.approx(TRUE.alpha, rel=0.02)
    assert fit.model.beta == pytest.approx(TRUE.beta, rel=0.02)
    assert fit.model.gamma == pytest.approx(TRUE.gamma, abs=0.01)
    assert fit.model.tau_h == pytest.approx(TRUE.tau_h, rel=0.02)
    assert fit.rmse_step_c < 1e-3 and fit.rmse_sim_c < 0.01
    assert fit.hours == 167


def test_fit_reports_its_error_on_noisy_data_and_skips_gaps() -> None:
    indoor, supply, outdoor = _synthetic(noise=0.05)
    indoor[50:53] = np.nan  # a sensor outage: those hours break the chain, the rest still fits
    fit = fit_station_model(indoor, supply, outdoor, prior_ratio=1.3)
    assert 0.03 < fit.rmse_step_c < 0.15
    assert fit.hours == 167 - 4
    assert fit.model.tau_h == pytest.approx(TRUE.tau_h, rel=0.25)


def test_fit_refuses_too_little_data() -> None:
    indoor, supply, outdoor = _synthetic(hours=10)
    with pytest.raises(FitError, match="9 usable hours"):
        fit_station_model(indoor, supply, outdoor, prior_ratio=1.3, min_hours=24)


def test_collinear_supply_takes_the_design_ratio() -> None:
    """On a station that follows its curve the supply is a function of the outdoor temperature: the prior decides."""
    h = np.arange(168)
    outdoor = -4.0 + 4.0 * np.sin(2 * np.pi * h / 24)
    supply = 50.0 - 1.1 * outdoor
    indoor = simulate(TRUE, 19.0, supply[:-1], outdoor[:-1])
    fit = fit_station_model(indoor, supply, outdoor, prior_ratio=1.3)
    assert fit.model.beta / fit.model.alpha == pytest.approx(1.3, rel=0.1)
    assert fit.rmse_sim_c < 0.05  # the prediction along the curve stays right


def test_plan_reaches_the_target_with_the_least_supply() -> None:
    m = TRUE
    outdoor = np.full(24, -5.0)
    target = np.full(24, 19.0)
    hold = m.supply_for(19.0, -5.0)
    plan = plan_supply(m, 19.0, outdoor, target, reference_c=hold, supply_min_c=35, supply_max_c=75, max_step_c=3)
    assert plan.supply_c == pytest.approx(hold, abs=0.3)  # at steady state: hold the supply
    assert np.all(plan.predicted_c[1:] >= target - 0.05)
    warm = plan_supply(m, 21.0, outdoor, target, reference_c=hold, supply_min_c=35, supply_max_c=75, max_step_c=3)
    assert warm.supply_c == pytest.approx(hold - 3.0)  # too warm: down one full step
    cold_ahead = np.where(np.arange(24) >= 12, -15.0, -5.0)
    pre = plan_supply(m, 19.0, cold_ahead, target, reference_c=hold, supply_min_c=35, supply_max_c=75, max_step_c=3)
    assert pre.blocks_c[3] > hold + 3.0  # a cold front in 12 h: the ramp starts ahead of it (steps of 3 °C)
    assert pre.supply_c <= hold + 0.3  # … but as late as the steps allow: no heat now that the front does not need
    assert np.all(pre.predicted_c[1:] >= target - 0.05) and not pre.short_h


@settings(max_examples=200, deadline=None)
@given(
    indoor=st.floats(5.0, 30.0), outdoor=st.floats(-35.0, 15.0), ref=st.floats(-10.0, 120.0),
    lo=st.floats(20.0, 50.0), span=st.floats(0.0, 50.0), step=st.floats(0.5, 10.0),
    target=st.floats(10.0, 26.0), hold=st.integers(1, 6),
)
def test_plan_never_leaves_bounds_or_steps(indoor: float, outdoor: float, ref: float, lo: float, span: float,
                                           step: float, target: float, hold: int) -> None:
    hi = lo + span
    plan = plan_supply(TRUE, indoor, np.full(24, outdoor), np.full(24, target), ref, lo, hi, step, hold_h=hold)
    r = min(max(ref, lo), hi)
    assert lo - 1e-9 <= plan.supply_c <= hi + 1e-9
    assert abs(plan.supply_c - r) <= step + 1e-9
    u = plan.blocks_c
    assert np.all(u >= lo - 1e-9) and np.all(u <= hi + 1e-9)
    assert np.all(np.abs(np.diff(np.concatenate([[r], u]))) <= step + 1e-9)


def test_targets_follow_the_local_day_and_night_standard() -> None:
    cfg = Config()
    now = datetime(2025, 12, 1, 12, 0, tzinfo=UTC)  # 20:00 in Shanghai
    t = targets_ahead(cfg, now, 12)
    # hour i+1 ahead: 21:00 … 08:00 local; day from 06:00 to 21:00
    hours = [(20 + i + 1) % 24 for i in range(12)]
    want = [18.0 if 6 <= h < 21 else 16.0 for h in hours]
    assert list(t) == want


def _series(n: int = 48) -> StationSeries:
    indoor, supply, outdoor = _synthetic(hours=n)
    hours = pd.date_range(datetime(2025, 12, 1, tzinfo=UTC), periods=n, freq="h")
    return StationSeries(hours, indoor, supply, outdoor, cold_gap_c=1.5)


def test_plan_station_names_its_model_and_keeps_the_step() -> None:
    cfg = Config()
    st_ = Station("S01", "幸福里换热站", ("幸福里小区",), 35.0, 75.0)
    series = _series()
    now = series.hours[-1].to_pydatetime() + timedelta(hours=1)
    fc = [(now + timedelta(hours=i), -20.0) for i in range(1, 30)]  # a hard frost ahead
    d = plan_station(cfg, st_, series, fc, 50.0, now)
    assert d.basis == "fit" and d.fit is not None
    p = d.proposal
    assert p is not None and p.origin == "model" and p.kind == "supply"
    e = p.evidence
    # the default: a shift of the station's curve, one max step up from the shift it runs at (50 °C on the curve)
    assert e["setpoint"] == "curve_offset"
    assert e["curve_offset_c"] == pytest.approx(50.0 - e["curve_now_c"] + 3.0, abs=0.1)  # in 0.1 °C, never past the step
    assert p.proposed_c == pytest.approx(min(75.0, e["curve_now_c"] + e["curve_offset_c"]), abs=0.051)
    assert e["curve_offset_c"] - (50.0 - e["curve_now_c"]) <= 3.0 + 1e-9
    assert e["model"].startswith("grey-box") and e["rmse_sim_c"] is not None
    assert "Model (fit" in p.reason and "curve shifted" in p.reason
    # a station that takes a fixed supply: one max step up from the reference
    fixed = cfg.model_copy(update={"control": cfg.control.model_copy(update={"model_setpoint": "supply"})})
    q = plan_station(fixed, st_, series, fc, 50.0, now).proposal
    assert q is not None and q.proposed_c == pytest.approx(53.0) and q.evidence["curve_offset_c"] is None


def test_a_settled_valve_station_is_aimed_with_the_smaller_margin() -> None:
    """``margin_c`` (``valve_margin_c`` where the home valves held): the same plan aims its target that much lower."""
    cfg = Config()
    st_ = Station("S01", "幸福里换热站", ("幸福里小区",), 35.0, 75.0)
    series = _series()
    now = series.hours[-1].to_pydatetime() + timedelta(hours=1)
    full = plan_station(cfg, st_, series, [], 50.0, now).proposal
    near = plan_station(cfg, st_, series, [], 50.0, now, margin_c=0.5).proposal
    assert full is not None and near is not None
    assert full.evidence["margin_c"] == 1.0 and near.evidence["margin_c"] == 0.5
    assert near.evidence["target_now_c"] == pytest.approx(full.evidence["target_now_c"] - 0.5, abs=0.02)
    assert "standard + 0.5 °C" in near.reason


def test_plan_station_uses_the_design_prior_before_a_day_of_telemetry() -> None:
    cfg = Config()
    st_ = Station("S01", "幸福里换热站", ("幸福里小区",), 35.0, 75.0)
    series = _series(n=6)
    now = series.hours[-1].to_pydatetime() + timedelta(hours=1)
    d = plan_station(cfg, st_, series, [], 50.0, now)
    assert d.basis == "prior" and d.model is not None
    design = StationDesign()
    m = prior_model(design, 24.0)
    assert m.tau_h == pytest.approx(24.0)


def test_the_design_prior_reads_its_gains_from_the_hours_measured_not_a_steady_state_at_the_last() -> None:
    """After a raise the homes are still warming: the last hour is not a steady state. The prior's gains come
    from what the measured hours leave unexplained, so its model foresees the warming that is under way (the
    old anchor read the warming homes as at rest, under-predicted them and kept raising: the start-up overshoot)."""
    design = StationDesign()
    truth = prior_model(design, 24.0)
    truth = StationModel(truth.alpha, truth.beta, -0.08)
    n = 8
    outdoor = np.full(n, -5.0)
    supply = np.full(n, truth.supply_for(19.0, -5.0) + 12.0)  # 12 °C over what holds 19 °C: warming
    indoor = simulate(truth, 19.0, supply[:-1], outdoor[:-1])
    hours = pd.date_range(datetime(2025, 12, 1, tzinfo=UTC), periods=n, freq="h")
    series = StationSeries(hours, indoor, supply, outdoor, cold_gap_c=1.5)
    last = (float(indoor[-1]), float(supply[-1]), float(outdoor[-1]))
    m = prior_model(design, 24.0, last, series)
    assert m.gamma == pytest.approx(-0.08, abs=1e-9)
    assert m.steady_c(float(supply[-1]), -5.0) == pytest.approx(truth.steady_c(float(supply[-1]), -5.0), abs=1e-6)
    old = prior_model(design, 24.0, last)  # the last hour as a steady state: far under where the homes head
    assert old.steady_c(float(supply[-1]), -5.0) < m.steady_c(float(supply[-1]), -5.0) - 3.0
    # without two consecutive hours there is nothing to read: the anchor decides
    lone = StationSeries(hours[:1], indoor[:1], supply[:1], outdoor[:1], cold_gap_c=1.5)
    assert prior_model(design, 24.0, last, lone).gamma == pytest.approx(old.gamma)
    # plan_station's prior is that model
    cfg = Config()
    st_ = Station("S01", "幸福里换热站", ("幸福里小区",), 35.0, 75.0)
    d = plan_station(cfg, st_, series, [], float(supply[-1]), hours[-1].to_pydatetime() + timedelta(hours=1))
    assert d.basis == "prior" and d.model is not None and d.model.gamma == pytest.approx(-0.08, abs=1e-9)


def test_cold_gap_is_the_median_building_so_one_cold_building_does_not_raise_it() -> None:
    """Imbalance (one building cold, others warm) is for balancing advice, not for the station's target."""
    hours = pd.date_range(datetime(2025, 12, 1, tzinfo=UTC), periods=4, freq="h")
    rows = []
    temps = {"A": [20.0, 20.5, 21.0], "B": [20.0, 20.6, 21.0], "C": [15.0, 15.5, 16.0]}  # C: the far, cold building
    homes = {}
    for b, ts in temps.items():
        for i, t in enumerate(ts):
            hid = f"{b}{i}"
            homes[hid] = b
            rows += [{"home_id": hid, "hour": h, "mean": t} for h in hours]
    indoor = pd.DataFrame(rows)
    empty = pd.DataFrame({"hour": [], "mean": []})
    s = series_from_frames(indoor, empty, empty, homes, hours, quantile=0.05, gap_hours=4)
    mean = np.mean([t for ts in temps.values() for t in ts])
    assert s.indoor_c == pytest.approx(np.full(4, mean))
    # the median building's cold homes (A: its 5 % quantile 20.05) under the mean, not C's 15.05
    assert s.cold_gap_c == pytest.approx(mean - np.quantile(temps["A"], 0.05), abs=1e-9)
    assert s.cold_gap_c < 0  # the warm buildings are above the mean: the cold building does not ask for heat


def test_a_curve_offset_setpoint_travels_and_the_simulated_station_follows_its_curve() -> None:
    from heatwatch.infra.mqtt.setpoint import parse_setpoint, setpoint_payload
    from simulators.physics import station_params, station_target
    from simulators.scenario import load_scenario
    from simulators.simulation import Simulation

    t = datetime(2025, 12, 1, tzinfo=UTC)
    body = setpoint_payload("P1", "S01", 52.0, t, t, "模型", curve_offset_c=2.5)
    cmd = parse_setpoint("heatwatch/control/setpoint/S01", body, "heatwatch")
    assert cmd.curve_offset_c == 2.5 and cmd.supply_c == 52.0
    assert parse_setpoint("heatwatch/control/setpoint/S01", setpoint_payload("P1", "S01", 52.0, t, t, ""),
                          "heatwatch").curve_offset_c is None  # a fixed supply, as before
    bad = body.replace(b'"curve_offset_c":2.5', b'"curve_offset_c":"warm"')
    with pytest.raises(ValueError, match="curve_offset_c must be a finite number"):
        parse_setpoint("heatwatch/control/setpoint/S01", bad, "heatwatch")
    sim = Simulation(load_scenario("normal"), t)
    sim.set_setpoint("S01", 52.0, curve_offset_c=2.5)
    p = station_params(sim.net)
    for outdoor in (-10.0, 0.0):  # the supply keeps following the outdoor temperature, 2.5 °C over the curve
        out = np.full(len(sim.station_ids), outdoor)
        plain = station_target(p, np.full(len(sim.station_ids), np.nan), out)
        shifted = station_target(p, sim.station_state.setpoint_c, out, sim.curve_offset)
        assert shifted[0] == pytest.approx(min(plain[0] + 2.5, 75.0)) and shifted[1] == pytest.approx(plain[1])
    sim.set_setpoint("S01", 52.0)  # a fixed supply again: the shift is gone
    assert sim.station_state.setpoint_c[0] == 52.0 and sim.curve_offset[0] == 0.0


def test_a_recent_model_setpoint_is_held_for_a_block() -> None:
    """`heatwatch run` evaluates every 15 minutes; the plan's blocks are model_hold_h long, so the model does not
    step the station again before its block is over."""
    from dataclasses import replace as dc_replace

    from control.mpc import decide_all
    from control.proposal import Proposal
    from heatwatch.core.registry import Registry

    cfg = Config()
    st_ = Station("S01", "幸福里换热站", ("幸福里小区",), 35.0, 75.0)
    now = datetime(2025, 12, 1, 12, 0, tzinfo=UTC)
    sent = Proposal(proposal_id="P1", station_id="S01", kind="supply", community="", current_c=50.0, proposed_c=53.0,
                    delta_c=3.0, evidence={"curve_offset_c": 1.0}, reason="", created_at=now, effective_at=now,
                    origin="model", published_at=now - timedelta(hours=1))
    d = decide_all(None, Registry({}, {"S01": st_}), cfg, now, {}, {"S01": sent})  # type: ignore[arg-type]
    assert [x.basis for x in d] == ["held"] and d[0].proposal is None
    # a cold-snap or operator setpoint an hour ago does not hold the model; nor does its own after the block
    for p in (dc_replace(sent, origin="cold_snap"), dc_replace(sent, published_at=now - timedelta(hours=3))):
        with pytest.raises(AttributeError):  # past the hold it reads the store (None here)
            decide_all(None, Registry({}, {"S01": st_}), cfg, now, {}, {"S01": p})  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [23, 24, 25])
def test_the_prior_hands_over_to_the_fit_without_a_fallback_cycle(n: int) -> None:
    """``model_min_hours`` hours of telemetry are that many less one hourly transitions: the fit needs one more
    hour, and that hour the design prior still plans (it used to fall back for a cycle: no model setpoint)."""
    cfg = Config()
    st_ = Station("S01", "幸福里换热站", ("幸福里小区",), 35.0, 75.0)
    series = _series(n=n)
    now = series.hours[-1].to_pydatetime() + timedelta(hours=1)
    d = plan_station(cfg, st_, series, [], 50.0, now)
    assert d.basis == ("fit" if n - 1 >= cfg.control.model_min_hours else "prior")
    assert d.model is not None
    # a gap breaks the chain: 60 hours with every other indoor missing (30 with readings, no transition)
    # are no fit, and no fallback either
    gappy = _series(n=60)
    indoor = gappy.indoor_c.copy()
    indoor[::2] = np.nan
    gappy = StationSeries(gappy.hours, indoor, gappy.supply_c, gappy.outdoor_c, cold_gap_c=1.5)
    g = plan_station(cfg, st_, gappy, [], 50.0, gappy.hours[-1].to_pydatetime() + timedelta(hours=1))
    assert g.basis == "prior" and g.model is not None
