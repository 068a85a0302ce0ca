"""Sensor faults show up in the published messages and in the ground truth; runs are deterministic."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from heatwatch.core.timeutil import parse_ts
from simulators.runner import ScenarioRunner
from simulators.scenario import Scenario, load_scenario
from simulators.sensors import Message
from tools.fixtures import design_scenario

END = datetime(2026, 1, 12, 16, 0, tzinfo=UTC)
Run = tuple[list[Message], list[dict[str, str]]]


def run(scenario: Scenario | str, out: Path, **kw: Any) -> tuple[list[Message], list[dict[str, str]]]:
    msgs: list[Message] = []
    r = ScenarioRunner(scenario, None, out_dir=out, speed=0, until=END, sink=msgs.append, **kw)
    r.run()
    with r.ground_truth_path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return msgs, rows


def parse(m: Message) -> list[dict[str, Any]] | None:
    try:
        body = json.loads(m.payload)
    except (UnicodeDecodeError, ValueError):
        return None
    body = body if isinstance(body, list) else [body]
    for rd in body:
        temp = rd.get("temp_c") if isinstance(rd, dict) else None
        if not isinstance(temp, float | int) or not math.isfinite(temp):
            return None
        try:
            parse_ts(rd["ts"])
        except (ValueError, KeyError):
            return None
    return body


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run("bad_sensors", tmp_path_factory.mktemp("bad"))


def labels(rows: list[dict[str, str]]) -> Counter[str]:
    c: Counter[str] = Counter()
    for r in rows:
        for lab in filter(None, r["faults"].split("+")):
            c[lab.split(":")[0]] += 1
    return c


def test_every_switched_on_fault_is_in_the_ground_truth(bad: Run) -> None:
    c = labels(bad[1])
    for kind in ("dropout", "stuck", "spike", "window", "heat_source", "duplicate", "late", "skew", "malformed"):
        assert c[kind] > 0, f"{kind} missing from the ground truth"


def test_healthy_scenario_has_no_faults(tmp_path: Path) -> None:
    msgs, rows = run("normal", tmp_path)
    assert labels(rows) == Counter()
    assert all(parse(m) is not None for m in msgs if "/indoor/" in m.topic)
    # every healthy reading is within the sensor noise (0.1 sd, clipped at 3 sd, rounded to 0.1)
    assert max(abs(float(r["reported_c"]) - float(r["true_c"])) for r in rows) <= 0.36


def test_faults_are_visible_in_the_messages(bad: Run) -> None:
    msgs, rows = bad
    indoor = [m for m in msgs if "/indoor/" in m.topic]
    malformed = [m for m in indoor if parse(m) is None]
    n_malformed_rows = sum("malformed" in r["faults"] for r in rows)
    n_malformed_dup = sum("malformed" in r["faults"] and "duplicate" in r["faults"] for r in rows)
    assert len(malformed) == n_malformed_rows + n_malformed_dup
    assert n_malformed_rows > 0
    counts = Counter((m.topic, m.payload) for m in indoor)
    dup_rows = sum("duplicate" in r["faults"] for r in rows)
    assert sum(1 for n in counts.values() if n == 2) >= dup_rows * 0.9 > 0
    # late messages arrive after a newer reading of the same home: out of order
    last: dict[str, int] = {}
    out_of_order = 0
    for m in indoor:
        body = parse(m)
        if body is None:
            continue
        ts = parse_ts(body[0]["ts"])
        if ts < last.get(m.topic, 0):
            out_of_order += 1
        last[m.topic] = max(ts, last.get(m.topic, 0))
    assert out_of_order > 0
    # dropout rows have no reported value; spikes are far from the truth
    assert all(r["reported_c"] == "" for r in rows if "dropout" in r["faults"])
    spikes = [r for r in rows if r["faults"].endswith("spike") and "stuck" not in r["faults"]]
    assert spikes and all(abs(float(r["reported_c"]) - float(r["true_c"])) > 5 for r in spikes)


def test_stuck_sensor_repeats_one_value_and_placement_biases_have_the_right_sign(bad: Run) -> None:
    rows = bad[1]
    by_home: dict[str, set[str]] = {}
    for r in rows:
        if r["faults"] == "stuck":
            by_home.setdefault(r["home_id"], set()).add(r["reported_c"])
    assert by_home and all(len(v) == 1 for v in by_home.values())
    window = [float(r["reported_c"]) - float(r["true_c"]) for r in rows if r["faults"] == "window"]
    heat = [float(r["reported_c"]) - float(r["true_c"]) for r in rows if r["faults"] == "heat_source"]
    assert window and sum(window) / len(window) < -1.0
    assert heat and sum(heat) / len(heat) > 3.0


def test_clock_skew_shifts_sent_timestamps(tmp_path: Path) -> None:
    sc = design_scenario(faults={"skew_share": 0.5, "skew_max_s": 200.0}, duration_h=2)
    msgs: list[Message] = []
    r = ScenarioRunner(sc, None, out_dir=tmp_path, speed=0, until=END, sink=msgs.append)
    r.run()
    with r.ground_truth_path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    bank = r.sensors
    skew = dict(zip(bank.ids, bank.skew_s.tolist(), strict=True))
    phase = dict(zip(bank.ids, bank.phase_s.tolist(), strict=True))
    skewed = [r for r in rows if "skew" in r["faults"]]
    assert skewed and len({r["home_id"] for r in skewed}) > 10
    for row in rows:
        offset = (parse_ts(row["sent_ts"]) - parse_ts(row["ts"])) // 10**9
        assert offset == skew[row["home_id"]] - phase[row["home_id"]]
        assert (skew[row["home_id"]] != 0) == ("skew" in row["faults"])
    assert max(abs(v) for v in skew.values()) <= 200


def test_same_seed_same_output_and_other_seed_differs(tmp_path: Path) -> None:
    sc = load_scenario("bad_sensors")
    a = run(sc, tmp_path / "a")
    b = run(sc, tmp_path / "b")
    assert a[0] == b[0]
    assert a[1] == b[1]
    for name in ("truth_stations.csv", "truth_weather.csv", "forecasts.jsonl", "homes.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    other = run(sc.model_copy(update={"seed": sc.seed + 1}), tmp_path / "c")
    assert other[1] != a[1]


def test_batched_sensors_send_arrays(tmp_path: Path) -> None:
    msgs, rows = run(design_scenario(sensors={"batch": 4}, duration_h=4), tmp_path)
    indoor = [json.loads(m.payload) for m in msgs if "/indoor/" in m.topic]
    assert indoor and all(isinstance(b, list) and 1 <= len(b) <= 4 for b in indoor)
    assert sum(len(b) for b in indoor) == len(rows)


def test_station_fault_events_recorded(tmp_path: Path) -> None:
    run("station_fault", tmp_path)
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    active = [e["active"] for e in events if e["kind"] == "station_faults"]
    assert "S01:pump_failure" in active and "S02:leak" in active and "S01:outage" in active
    with (tmp_path / "truth_stations.csv").open(encoding="utf-8") as fh:
        st = list(csv.DictReader(fh))
    assert any(r["fault"] == "outage" and r["published"] == "0" for r in st)
