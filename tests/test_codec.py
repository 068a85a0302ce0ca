"""The MQTT contract's validation: every kind of bad input gets a reason; good readings beside it survive."""

from __future__ import annotations

import base64
import math
from pathlib import Path

import orjson
import pytest

from collector.codec import Codec
from collector.deadletter import deadletter
from heatwatch.core import schema
from heatwatch.core.timeutil import NS, to_ns, utc_now
from heatwatch.infra.mqtt.topics import parse_topic, subscriptions
from tests.helpers import config, registry_for

NOW = utc_now().replace(microsecond=0)
NOW_NS = to_ns(NOW)
T = NOW.timestamp() - 600


@pytest.fixture
def codec(tmp_path: Path) -> Codec:
    return Codec(config(tmp_path, 1883), registry_for(30))


def j(obj: object) -> bytes:
    return orjson.dumps(obj)


BAD_CASES: list[tuple[str, str, bytes, str]] = [
    ("truncated JSON", "heat/indoor/H000001", b'{"ts": 1700000000, "temp_c": 2', "invalid_json"),
    ("binary garbage", "heat/indoor/H000001", bytes(range(256)), "invalid_json"),
    ("empty payload", "heat/indoor/H000001", b"", "invalid_json"),
    ("NaN literal", "heat/indoor/H000001", b'{"ts": 1700000000, "temp_c": NaN}', "invalid_json"),
    ("temp as string", "heat/indoor/H000001", j({"ts": T, "temp_c": "21.5"}), "wrong_type"),
    ("temp as bool", "heat/indoor/H000001", j({"ts": T, "temp_c": True}), "wrong_type"),
    ("temp missing", "heat/indoor/H000001", j({"ts": T}), "missing_field"),
    ("ts missing", "heat/indoor/H000001", j({"temp_c": 20.0}), "missing_field"),
    ("temp too hot", "heat/indoor/H000001", j({"ts": T, "temp_c": 85.0}), "out_of_range"),
    ("temp too cold", "heat/indoor/H000001", j({"ts": T, "temp_c": -45.0}), "out_of_range"),
    ("huge number", "heat/indoor/H000001", b'{"ts": 1700000000, "temp_c": 1e400}', "invalid_json"),
    ("rh over 100", "heat/indoor/H000001", j({"ts": T, "temp_c": 20.0, "rh": 140}), "out_of_range"),
    ("future timestamp", "heat/indoor/H000001", j({"ts": T + 3600, "temp_c": 20.0}), "future_timestamp"),
    ("ancient timestamp", "heat/indoor/H000001", j({"ts": 86400, "temp_c": 20.0}), "too_old"),
    ("epoch milliseconds", "heat/indoor/H000001", j({"ts": T * 1000, "temp_c": 20.0}), "bad_timestamp"),
    ("naive RFC 3339", "heat/indoor/H000001", j({"ts": "2026-11-24T08:00:00", "temp_c": 20.0}), "bad_timestamp"),
    ("not a date", "heat/indoor/H000001", j({"ts": "yesterday", "temp_c": 20.0}), "bad_timestamp"),
    ("unknown home", "heat/indoor/NOPE", j({"ts": T, "temp_c": 20.0}), "unknown_home"),
    ("tag-breaking home id", 'heat/indoor/a,b= "c', j({"ts": T, "temp_c": 20.0}), "unknown_home"),
    ("newline in home id", "heat/indoor/H1\nH2", j({"ts": T, "temp_c": 20.0}), "bad_topic"),
    ("unknown topic shape", "heat/indoor/H000001/extra", j({"ts": T, "temp_c": 20.0}), "bad_topic"),
    ("JSON string", "heat/indoor/H000001", j("21.5"), "not_object"),
    ("JSON number", "heat/indoor/H000001", b"21.5", "not_object"),
    ("empty array", "heat/indoor/H000001", b"[]", "empty_batch"),
    ("huge payload", "heat/indoor/H000001", b"[" + b",".join([j({"ts": T, "temp_c": 20.0})] * 20000) + b"]", "too_large"),
    ("station missing return", "heat/station/S1", j({"ts": T, "supply_c": 60.0}), "missing_field"),
    ("station supply 300", "heat/station/S1", j({"ts": T, "supply_c": 300.0, "return_c": 40.0}), "out_of_range"),
    ("unknown station", "heat/station/S99", j({"ts": T, "supply_c": 60.0, "return_c": 40.0}), "unknown_station"),
    ("forecast without points", "heat/weather/bj/forecast", j({"issued": T}), "missing_field"),
    ("weather temp 99", "heat/weather/bj", j({"ts": T, "temp_c": 99.0}), "out_of_range"),
]


@pytest.mark.parametrize(("name", "topic", "payload", "code"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_is_rejected_with_reason(codec: Codec, name: str, topic: str, payload: bytes, code: str) -> None:
    res = codec.decode(topic, payload, NOW_NS)
    assert res.points == []
    assert [r.code for r in res.rejects] == [code]
    assert res.rejects[0].detail  # a reason an operator can read
    dl = orjson.loads(deadletter(topic, payload, res.rejects[0], NOW_NS))
    assert dl["topic"] == topic and dl["reason"].startswith(code)
    raw = base64.b64decode(dl["payload"]) if dl["payload_encoding"] == "base64" else dl["payload"].encode()
    assert raw == payload  # the dead letter carries the payload exactly as received


def test_array_keeps_good_readings_and_rejects_bad_ones_individually(codec: Codec) -> None:
    body = [
        {"ts": T, "temp_c": 20.5},
        {"ts": T + 1, "temp_c": "warm"},
        {"ts": T + 2, "temp_c": 19.25, "rh": 40, "battery_v": 3.1},
        42,
        {"ts": T + 3600, "temp_c": 20.0},
    ]
    res = codec.decode("heat/indoor/H000003", j(body), NOW_NS)
    assert [p.fields["temp_c"] for p in res.points] == [20.5, 19.25]
    assert res.points[1].fields == {"temp_c": 19.25, "rh": 40.0, "battery_v": 3.1}
    assert [(r.index, r.code) for r in res.rejects] == [(1, "wrong_type"), (3, "not_object"), (4, "future_timestamp")]
    dl = orjson.loads(deadletter("heat/indoor/H000003", j(body), res.rejects[0], NOW_NS))
    assert dl["index"] == 1 and orjson.loads(dl["payload"]) == body[1]


def test_indoor_point_carries_registry_tags_with_chinese_names(codec: Codec) -> None:
    res = codec.decode("heat/indoor/H000000", j({"ts": "2026-11-24T08:00:00+08:00", "temp_c": 21}), NOW_NS)
    assert res.rejects == []
    (p,) = res.points
    assert p.measurement == schema.INDOOR
    assert p.tags == {"home_id": "H000000", "community": "幸福小区", "building": "1号楼", "source": "sensor"}
    assert isinstance(p.fields["temp_c"], float)  # always float: an int would make a conflicting field type
    assert p.ts_ns == to_ns(NOW.fromisoformat("2026-11-24T00:00:00+00:00"))


def test_station_weather_and_forecast(codec: Codec) -> None:
    st = codec.decode("heat/station/S2", j({"ts": T, "supply_c": 55, "return_c": 41.5, "flow_m3h": 120.0, "supply_kpa": 450}), NOW_NS)
    assert st.rejects == [] and st.points[0].fields == {"supply_c": 55.0, "return_c": 41.5, "supply_kpa": 450.0, "flow_m3h": 120.0}
    w = codec.decode("heat/weather/北京", j({"ts": T, "temp_c": -12.5}), NOW_NS)
    assert w.points[0].tags == {"site_id": "北京"} and w.points[0].fields == {"temp_c": -12.5}
    fc = codec.decode(
        "heat/weather/北京/forecast",
        j({"issued": T, "points": [{"ts": T + 3600 * k, "temp_c": -10.0 - k} for k in range(1, 49)] + [{"ts": T, "temp_c": "x"}]}),
        NOW_NS,
    )
    assert len(fc.points) == 48 and fc.points[0].measurement == schema.FORECAST
    assert fc.points[0].fields["issued_s"] == int(T)
    assert [r.index for r in fc.rejects] == [48]


def test_unknown_homes_can_be_stored_as_unregistered(tmp_path: Path) -> None:
    codec = Codec(config(tmp_path, 1883, collector={"unknown_ids": "store"}), registry_for(3))
    res = codec.decode("heat/indoor/NEW-1", j({"ts": T, "temp_c": 20.0}), NOW_NS)
    assert res.points[0].tags["community"] == schema.UNREGISTERED


def test_epoch_float_and_rfc3339_give_the_same_instant(codec: Codec) -> None:
    a = codec.decode("heat/indoor/H000001", j({"ts": 1795500000.25, "temp_c": 20.0}), 1795500000 * NS)
    b = codec.decode("heat/indoor/H000001", j({"ts": "2026-11-24T06:00:00.250+00:00", "temp_c": 20.0}), 1795500000 * NS)
    assert a.points[0].ts_ns == b.points[0].ts_ns == 1795500000_250_000_000


def test_topics() -> None:
    assert parse_topic("heat/weather/x/forecast", "heat").kind == "forecast"
    assert parse_topic("city/heat/indoor/幸福-1", "city/heat").entity_id == "幸福-1"
    assert subscriptions("heat", "g1")[0] == "$share/g1/heat/indoor/#"
    assert not any(s.startswith("heat/deadletter") or "control" in s for s in subscriptions("heat"))
    assert math.isfinite(T)
