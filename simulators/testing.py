"""Small scenarios for tests and benchmarks (constant weather at the design point unless asked otherwise)."""

from __future__ import annotations

from typing import Any

from simulators.scenario import Scenario, parse_scenario


def design_scenario(**over: Any) -> Scenario:
    """A one-station, one-community scenario at the design point; ``over`` replaces top-level tables."""
    body: dict[str, Any] = {
        "name": "test",
        "seed": 5,
        "duration_h": 24,
        "step_min": 15,
        "network": {
            "design": {"outdoor_c": -9.0, "indoor_c": 20.0, "supply_c": 60.0, "return_c": 45.0,
                       "margin_top_c": 2.0, "margin_ground_c": 1.5, "margin_gable_c": 1.0, "home_spread_c": 0.2},
            "stations": [{"id": "S1", "name": "测试换热站", "setpoint_c": 60.0, "supply_min_c": 35.0,
                          "supply_max_c": 80.0}],
            "communities": [{"name": "测试小区", "code": "T", "station": "S1", "buildings": 4, "floors": 7,
                             "entrances": 3, "homes_per_floor": 2, "coverage": 1.0}],
        },
        "weather": {"mean_c": -9.0, "diurnal_amplitude_c": 0.0, "front_sd_c": 0.0},
    }
    body.update(over)
    return parse_scenario(body, "test scenario")
