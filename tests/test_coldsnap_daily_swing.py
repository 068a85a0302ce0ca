"""The cold-snap job measures a drop from the day's mean outdoor temperature, not from the warm afternoon:
an ordinary night is not a cold snap (issue 15: on `imbalanced` every setpoint was a ramp fired by the swing)."""

from __future__ import annotations

import math
from pathlib import Path

from heatwatch.core import schema
from heatwatch.core.model import Point
from heatwatch.core.timeutil import to_ns
from tests.test_control_forecasts import ST1, T0, H, loop_for, write_file

MEAN, SWING = -3.0, 4.0  # a day around −3 °C, ±4 °C; T0 is its warm afternoon peak


def day(h: float, mean: float = MEAN) -> float:
    return round(mean + SWING * math.cos(2 * math.pi * h / 24), 1)


def _measured(store: object) -> None:
    pts = [Point(schema.WEATHER, {"site_id": ST1.weather_site}, {"temp_c": day(-k)}, to_ns(T0 - k * H))
           for k in range(1, 25)]
    pts.append(Point(schema.WEATHER, {"site_id": ST1.weather_site}, {"temp_c": day(0)}, to_ns(T0 - H / 12)))
    store.write(pts)  # type: ignore[attr-defined]


def test_the_night_after_a_warm_afternoon_is_not_a_snap(tmp_path: Path) -> None:
    # the old reference (+1 °C now) puts the −7 °C night exactly drop_c = 8 °C under it
    path = write_file(tmp_path, [day(h) for h in range(1, 73)])
    _, store, _, _, loop = loop_for(tmp_path, {"S1": ST1}, forecast_file=str(path), coldsnap_drop_c=8.0)
    try:
        _measured(store)
        assert loop.run_coldsnap() == []
    finally:
        loop.shutdown()
        store.close()


def test_a_real_front_still_is(tmp_path: Path) -> None:
    front = [day(h) if h < 24 else day(h, mean=MEAN - 10.0) for h in range(1, 73)]  # the day's mean falls 10 °C
    path = write_file(tmp_path, front)
    _, store, _, _, loop = loop_for(tmp_path, {"S1": ST1}, forecast_file=str(path), coldsnap_drop_c=8.0)
    try:
        _measured(store)
        made = loop.run_coldsnap()
        assert made and {p.origin for p in made} == {"cold_snap"}
        assert abs(made[0].evidence["reference_c"] - MEAN) < 0.3  # measured from the day's mean (not +1 °C now)
    finally:
        loop.shutdown()
        store.close()
