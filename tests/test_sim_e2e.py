"""End to end: a faulty scenario → real Mosquitto → the Collector → SqliteStore, scored against the ground truth.

Run in lockstep (heatwatch.app.lockstep): when it returns, the broker has acknowledged every message and the
collector has taken every one, so the store is checked at once — no waiting for it to "settle".
"""

from __future__ import annotations

import csv
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from collector.service import Collector
from heatwatch.app.lockstep import Lockstep
from heatwatch.core import schema
from heatwatch.core.config import load_config
from heatwatch.core.timeutil import parse_ts, utc_now
from heatwatch.infra.storage.sqlite import SqliteStore
from simulators.mqttio import MqttTarget
from simulators.runner import ScenarioRunner, floor_to_step
from simulators.scenario import load_scenario
from tools.servers import Mosquitto

pytestmark = pytest.mark.mosquitto


def test_scenario_readings_land_in_the_store_and_match_the_ground_truth(tmp_path: Path, mosquitto: Mosquitto) -> None:
    prefix = f"e2e{uuid.uuid4().hex[:6]}"
    cfg = load_config(
        environ={},
        overrides={
            "general": {"data_dir": str(tmp_path / "data")},
            "mqtt": {"port": mosquitto.port, "topic_prefix": prefix, "client_id": f"col-{prefix}"},
            "collector": {"batch_interval_s": 0.2, "metrics_interval_s": 1.0},
        },
    )
    sc = load_scenario("bad_sensors")
    sc = sc.model_copy(update={"duration_h": 8.0})
    until = floor_to_step(utc_now() - timedelta(minutes=30), sc.step_s)
    runner = ScenarioRunner(sc, MqttTarget.from_config(cfg), out_dir=tmp_path / "sim", speed=0, until=until,
                            client_id=f"sim-{prefix}")
    store = SqliteStore(tmp_path / "store.sqlite")
    col = Collector(cfg, runner.registry, store).start()
    lockstep = Lockstep(runner, [col])
    try:
        stats = lockstep.run()
        snap = col.snapshot()  # everything published is taken: nothing more is on its way
    finally:
        lockstep.close()
        col.stop(timeout=30)
    with runner.ground_truth_path.open(encoding="utf-8") as fh:
        truth = list(csv.DictReader(fh))
    sent = {(r["home_id"], parse_ts(r["sent_ts"])): r for r in truth if r["reported_c"] != ""}
    window = (runner.start_time - timedelta(hours=1), until + timedelta(hours=1))
    df = store.query(schema.INDOOR, *window)
    stored = {(h, int(t.value)): float(v) for h, t, v in zip(df["home_id"], df["time"], df["temp_c"], strict=True)}
    # every reading that was sent well-formed is stored once, with exactly the value sent
    assert len(stored) == len(sent) > 500
    assert set(stored) == set(sent)
    for key, value in stored.items():
        assert value == pytest.approx(float(sent[key]["reported_c"]), abs=1e-9)
    # ... and minus the injected faults, what was stored is the true room temperature (sensor noise only)
    clean = [r for r in sent.values() if set(filter(None, r["faults"].split("+"))) <= {"late", "duplicate", "skew"}]
    assert len(clean) > 0.7 * len(sent)
    for r in clean:
        assert abs(stored[(r["home_id"], parse_ts(r["sent_ts"]))] - float(r["true_c"])) <= 0.36
    # the faults did reach the store and are visibly wrong there
    faulty = [r for r in sent.values() if "spike" in r["faults"] or "heat_source" in r["faults"]]
    assert faulty and all(abs(float(r["reported_c"]) - float(r["true_c"])) > 2 for r in faulty)
    # malformed payloads were dead-lettered, never stored; the collector saw everything we published, once
    assert int(col.snapshot()["received"]) == int(snap["received"])  # nothing arrived after the lockstep ended
    n_malformed = sum("malformed" in r["faults"] for r in truth)
    assert n_malformed > 0
    assert int(snap["rejected"]) >= n_malformed
    assert int(snap["received"]) == stats["published"]
    # station telemetry too: one row per station and step, except during outages
    st = store.query(schema.STATION, *window)
    with (runner.out_dir / "truth_stations.csv").open(encoding="utf-8") as fh:
        published = [r for r in csv.DictReader(fh) if r["published"] == "1"]
    assert len(st) == len(published)
