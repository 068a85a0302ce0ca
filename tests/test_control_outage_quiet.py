"""A station down for announced work (an outage announced through the desk) gets no setpoint: its homes cool because
it is off, not because the supply is too low — a raise then would only overshoot when it comes back. The cold alerts
of its homes are quiet already (tests/test_service_homes_outages.py); this is control's side."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from control.alerts.rules import Quiet
from heatwatch.core import schema
from heatwatch.core.config import load_config
from heatwatch.core.model import Point
from heatwatch.core.registry import Registry
from heatwatch.core.timeutil import to_ns
from heatwatch.infra.storage.sqlite import SqliteStore
from tests.test_control_invariants import HOMES, ST, offline_loop, result


@pytest.mark.parametrize("strategy", ["feedback", "model"])
def test_no_setpoint_for_a_station_in_an_announced_outage(tmp_path: Path, strategy: str) -> None:
    c = load_config(environ={}, overrides={"general": {"data_dir": str(tmp_path / "data")}, "alerts": {"mqtt": False},
                                           "control": {"auto_apply": True, "strategy": strategy}})
    store = SqliteStore(tmp_path / "s.sqlite")
    loop, clock, rec = offline_loop(c, Registry(HOMES, {"S1": ST}), store)
    down = Quiet(homes={h: "outage O1 at S1" for h in HOMES}, stations={"S1": "announced outage O1"})
    try:
        store.write([Point(schema.STATION, {"station_id": "S1"}, {"supply_c": 50.0, "flow_m3h": 80.0},
                           to_ns(clock() - timedelta(minutes=5)))])
        cold = replace(result(15.0, "cold"), window_to=clock())
        assert not [p for p in loop.evaluate(cold, down).proposals if p.is_setpoint]
        assert rec.sent == [] and loop.down == {"S1": "announced outage O1"}
        assert loop.run_coldsnap() == []  # nor a cold-snap step while it is down
        clock.advance(hours=3)  # the outage is over: the same cold community gets its raise
        store.write([Point(schema.STATION, {"station_id": "S1"}, {"supply_c": 50.0, "flow_m3h": 80.0},
                           to_ns(clock() - timedelta(minutes=5)))])
        made = [p for p in loop.evaluate(replace(result(15.0, "cold"), window_to=clock()), Quiet()).proposals
                if p.is_setpoint]
        assert made and made[0].kind == "supply" and [b["supply_c"] for _, b in rec.sent] == [53.0]
    finally:
        loop.shutdown()
        store.close()
