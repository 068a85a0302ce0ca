"""Hostile input never stalls ingestion: the codec never raises, and a message that makes it raise anyway is
dead-lettered alone (``internal_error``) while the rest of its batch is stored and acknowledged."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.codec import Codec, Decoded
from collector.service import Collector
from collector.transport import Inbound
from heatwatch.core import schema
from heatwatch.core.timeutil import NS, parse_ts, to_ns, utc_now
from heatwatch.infra.storage.sqlite import SqliteStore
from tests.helpers import Publisher, config, registry_for
from tools.servers import Mosquitto

NOW_NS = to_ns(utc_now())
T = NOW_NS / NS - 600
CODEC = Codec(config(Path("/nonexistent-heatwatch-test"), 1883), registry_for(5))
# the same codec, storing unknown homes (a second path through _tags)
LOOSE = Codec(config(Path("/nonexistent-heatwatch-test"), 1883, collector={"unknown_ids": "store"}), registry_for(5))
OVERFLOWING = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999999-12:00"]


@pytest.mark.parametrize("ts", OVERFLOWING)
def test_timestamps_outside_datetime_range_are_value_errors(ts: str) -> None:
    with pytest.raises(ValueError, match="range"):
        parse_ts(ts)


@pytest.mark.parametrize("ts", [*OVERFLOWING, 1e300, -1e300, 2**63, -(2**63), 1e18, -0.5])
@pytest.mark.parametrize("topic", ["heat/indoor/H000001", "heat/station/S1", "heat/weather/北京"])
def test_overflowing_timestamp_is_a_bad_timestamp_and_its_neighbours_are_kept(topic: str, ts: Any) -> None:
    good = {"ts": T, "temp_c": 20.5, "supply_c": 60.0, "return_c": 40.0}
    bad = {**good, "ts": ts}
    res = CODEC.decode(topic, orjson.dumps([good, bad, {**good, "ts": T + 1}]), NOW_NS)
    assert [(r.index, r.code) for r in res.rejects] == [(1, "bad_timestamp")]
    assert [p.ts_ns for p in res.points] == [round(T * 1e6) * 1000, round((T + 1) * 1e6) * 1000]
    single = CODEC.decode(topic, orjson.dumps(bad), NOW_NS)
    assert [r.code for r in single.rejects] == ["bad_timestamp"] and single.points == []


@pytest.mark.parametrize("ts", [*OVERFLOWING, 1e300, -1e300])
def test_overflowing_forecast_times(ts: Any) -> None:
    issued = CODEC.decode("heat/weather/北京/forecast", orjson.dumps({"issued": ts, "points": [{"ts": T, "temp_c": 1.0}]}), NOW_NS)
    assert [r.code for r in issued.rejects] == ["bad_timestamp"]
    pts = [{"ts": T + 3600, "temp_c": 1.0}, {"ts": ts, "temp_c": 2.0}]
    point = CODEC.decode("heat/weather/北京/forecast", orjson.dumps({"issued": T, "points": pts}), NOW_NS)
    assert [(r.index, r.code) for r in point.rejects] == [(1, "bad_timestamp")] and len(point.points) == 1


def test_non_finite_and_huge_numbers_in_raw_json() -> None:
    for raw in (b'{"ts": 1e400, "temp_c": 20}', b'{"ts": -1e400, "temp_c": 20}', b'{"ts": Infinity, "temp_c": 20}',
                b'{"ts": NaN, "temp_c": 20}', b'{"ts": 123456789012345678901234567890, "temp_c": 20}',
                b'{"ts": -123456789012345678901234567890, "temp_c": 20}', b'{"ts": 1, "temp_c": 1e400}'):
        res = CODEC.decode("heat/indoor/H000001", raw, NOW_NS)
        assert res.points == [] and len(res.rejects) == 1 and res.rejects[0].code in ("invalid_json", "bad_timestamp")


# --- fuzzing: decode never raises ------------------------------------------------------------
any_text = st.text(alphabet=st.characters(blacklist_categories=()), max_size=40)  # incl. surrogates and controls
topics = st.one_of(
    any_text,
    st.builds(lambda kind, ident: f"heat/{kind}/{ident}", st.sampled_from(["indoor", "station", "weather"]), any_text),
    st.builds(lambda ident: f"heat/weather/{ident}/forecast", any_text),
    st.sampled_from(["heat/indoor/H000001", "heat/station/S1", "heat/weather/北京", "heat/weather/北京/forecast"]),
)
scalars = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    any_text, st.sampled_from(OVERFLOWING), st.just(T), st.just(20.0),
)
keys = st.one_of(st.sampled_from(["ts", "temp_c", "rh", "battery_v", "issued", "points", "supply_c", "return_c", "flow_m3h"]), any_text)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=6), max_leaves=25)


def _decode_all(topic: str, payload: bytes) -> None:
    for codec in (CODEC, LOOSE):
        res = codec.decode(topic, payload, NOW_NS)
        assert isinstance(res, Decoded)
        assert all(r.code and r.detail for r in res.rejects)


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(topics, st.binary(max_size=300))
def test_decode_never_raises_on_any_bytes(topic: str, payload: bytes) -> None:
    _decode_all(topic, payload)


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(topics, json_values)
def test_decode_never_raises_on_any_json(topic: str, body: Any) -> None:
    try:
        payload = orjson.dumps(body)
    except (TypeError, orjson.JSONEncodeError):  # e.g. a lone surrogate: not sendable as JSON
        return
    _decode_all(topic, payload)


# --- the collector isolates a message the codec cannot handle -----------------------------------
def _inbound(topic: str, body: Any, mid: int) -> Inbound:
    return Inbound(0, mid, 1, topic, body if isinstance(body, bytes) else orjson.dumps(body))


def test_decode_isolates_a_raising_message(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite")
    col = Collector(config(tmp_path, 1883), registry_for(5), store)
    real = col.codec.decode

    def fragile(topic: str, payload: bytes, now_ns: int) -> Decoded:
        if b"boom" in payload:
            raise RuntimeError("a codec bug")
        return real(topic, payload, now_ns)

    col.codec.decode = fragile  # type: ignore[method-assign]
    batch = [_inbound("heat/indoor/H000001", {"ts": T, "temp_c": 20.0}, 1), _inbound("heat/indoor/H000002", b'{"boom": 1}', 2),
             _inbound("heat/indoor/H000003", {"ts": T, "temp_c": 21.0}, 3)]
    out = col._decode(batch)
    assert [p.fields["temp_c"] for p in out.points] == [20.0, 21.0]
    assert [(t, p, r.code) for t, p, r in out.dead] == [("heat/indoor/H000002", b'{"boom": 1}', "internal_error")]
    assert "RuntimeError: a codec bug" in out.dead[0][2].detail
    store.close()


@pytest.mark.mosquitto
def test_overflowing_timestamp_does_not_stall_the_batch(tmp_path: Path, mosquitto: Mosquitto) -> None:
    prefix = f"ovf{tmp_path.name[-6:]}"
    cfg = config(tmp_path, mosquitto.port, mqtt={"topic_prefix": prefix})
    store = SqliteStore(tmp_path / "s.sqlite")
    col = Collector(cfg, registry_for(10), store).start()
    pub = Publisher(mosquitto.port, f"pub-{prefix}")
    try:
        assert col.wait_ready()
        t = utc_now().timestamp() - 60
        pub.publish(f"{prefix}/indoor/H000001", {"ts": t, "temp_c": 20.0})
        pub.publish(f"{prefix}/indoor/H000002", {"ts": "0001-01-01T00:00:00+01:00", "temp_c": 20.0})
        pub.publish(f"{prefix}/indoor/H000003", [{"ts": t, "temp_c": 21.0}, {"ts": "9999-12-31T23:59:59-01:00", "temp_c": 1.0},
                                                 {"ts": t + 1, "temp_c": 22.0}])
        pub.publish(f"{prefix}/indoor/H000004", {"ts": t, "temp_c": 23.0})
        pub.wait_all(4)
        window = (utc_now() - timedelta(hours=1), utc_now() + timedelta(minutes=1))
        end = time.monotonic() + 60
        while time.monotonic() < end and (store.count(schema.INDOOR, *window) < 4 or int(col.snapshot()["acked"]) < 4):  # type: ignore[call-overload]
            time.sleep(0.05)
        assert store.count(schema.INDOOR, *window) == 4
        snap = col.snapshot()
        assert snap["acked"] == 4 and snap["rejects_by_reason"] == {"bad_timestamp": 2}
    finally:
        pub.close()
        col.stop()
        store.close()
