"""The codec's inline fast path for indoor readings must decide exactly as the general path does."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.codec import Codec
from heatwatch.core.timeutil import to_ns, utc_now
from tests.helpers import config, registry_for

NOW_NS = to_ns(utc_now())
NOW_S = NOW_NS / 1e9
CODEC = Codec(config(Path("/nonexistent-heatwatch-test"), 1883), registry_for(5))
SLOW = Codec(config(Path("/nonexistent-heatwatch-test"), 1883), registry_for(5))
SLOW._indoor_fast = lambda tags, obj, now_ns: None  # type: ignore[method-assign]

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-40, max_value=120),
    st.integers(min_value=-100, max_value=200),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
)
timestamps = st.one_of(
    st.floats(min_value=NOW_S - 400 * 86400, max_value=NOW_S + 900),
    st.integers(min_value=int(NOW_S) - 400 * 86400, max_value=int(NOW_S) + 900),
    st.just(-0.0),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**40), max_value=2**62),
    st.booleans(),
    st.none(),
    st.just("2026-11-24T08:00:00Z"),
)
readings = st.fixed_dictionaries(
    {},
    optional={"ts": timestamps, "temp_c": numbers, "rh": numbers, "battery_v": numbers, "other": numbers},
)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    return obj


@settings(max_examples=400, deadline=None)
@given(st.one_of(readings, st.lists(readings, max_size=5), numbers))
def test_fast_path_matches_general_path(body: Any) -> None:
    payload = orjson.dumps(_json_safe(body) if not isinstance(body, list) else [_json_safe(b) for b in body])
    fast = CODEC.decode("heat/indoor/H000001", payload, NOW_NS)
    slow = SLOW.decode("heat/indoor/H000001", payload, NOW_NS)
    assert fast.points == slow.points
    assert [(r.code, r.index) for r in fast.rejects] == [(r.code, r.index) for r in slow.rejects]
    for p in fast.points:
        assert all(type(v) is float for v in p.fields.values())


def test_fast_path_takes_the_plain_reading() -> None:
    calls: list[object] = []
    codec = Codec(config(Path("/nonexistent-heatwatch-test"), 1883), registry_for(5))
    original = codec._indoor_fast

    def spy(tags: dict[str, str], obj: Any, now_ns: int) -> Any:
        calls.append(obj)
        return original(tags, obj, now_ns)

    codec._indoor_fast = spy  # type: ignore[method-assign]
    out = codec.decode("heat/indoor/H000001", orjson.dumps({"ts": NOW_S - 60, "temp_c": 21, "rh": 40.5}), NOW_NS)
    assert calls and len(out.points) == 1
    assert dict(out.points[0].fields) == {"temp_c": 21.0, "rh": 40.5}
