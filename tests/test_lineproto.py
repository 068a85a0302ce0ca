"""Line protocol encoder: byte-identical to influxdb-client where that is correct, an error where it is not."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client import Point as ClientPoint
from influxdb_client import WritePrecision

from heatwatch.core.model import Point
from heatwatch.infra.storage.base import StoreError
from heatwatch.infra.storage.lineproto import encode, encode_lines

# text that stresses escaping: Chinese, separators, quotes, backslashes, spaces (no \n \r \t: those are errors)
_TRICKY = st.sampled_from(list('阳光小区楼,= "\\abc_-.中文'))
name_text = st.text(alphabet=st.one_of(_TRICKY, st.characters(exclude_categories=["Cs", "Cc"])), min_size=1, max_size=12)
clean_name = name_text.filter(lambda s: not s.endswith("\\"))
tag_value = st.one_of(st.just(""), clean_name)
string_field = st.text(
    alphabet=st.one_of(_TRICKY, st.sampled_from(["\n", "\t", "\r"]), st.characters(exclude_categories=["Cs"])),
    max_size=20,
)
field_value = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    string_field,
)


def client_line(p: Point) -> str:
    cp = ClientPoint(p.measurement).time(p.ts_ns, WritePrecision.NS)
    for k, v in p.tags.items():
        cp.tag(k, v)
    for k, fv in p.fields.items():
        cp.field(k, fv)
    return str(cp.to_line_protocol())


@settings(max_examples=400, deadline=None)
@given(
    measurement=clean_name,
    tags=st.dictionaries(clean_name, tag_value, max_size=4),
    fields=st.dictionaries(clean_name, field_value, min_size=1, max_size=4),
    ts=st.integers(min_value=-(2**62), max_value=2**63 - 1),
)
def test_same_bytes_as_influxdb_client(measurement: str, tags: dict[str, str], fields: dict[str, object], ts: int) -> None:
    p = Point(measurement, tags, fields, ts)  # type: ignore[arg-type]
    assert encode(p) == client_line(p)


def test_float_int_bool_string_forms() -> None:
    p = Point("m", {"t": "x"}, {"f": 21.0, "g": 21.5, "i": 21, "b": True, "s": 'say "hi"\\'}, 5)
    line = encode(p)
    assert line == 'm,t=x b=true,f=21,g=21.5,i=21i,s="say \\"hi\\"\\\\" 5'
    # "f=21" has no "i" suffix, so it is a float in line protocol (checked on influxd in the contract suite)
    assert "f=21i" not in line


def test_empty_tag_values_are_omitted() -> None:
    assert encode(Point("m", {"a": "", "b": "1"}, {"x": 1.5}, 1)) == "m,b=1 x=1.5 1"


def test_chinese_and_separators_escaped() -> None:
    line = encode(Point("indoor", {"community": "阳光 小区,1=2", "home_id": 'a"b\\c'}, {"temp_c": 19.25}, 7))
    assert line == 'indoor,community=阳光\\ 小区\\,1\\=2,home_id=a"b\\c temp_c=19.25 7'


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\tb", "ends\\"])
def test_unrepresentable_tag_value_names_the_tag(bad: str) -> None:
    with pytest.raises(StoreError, match="tag 'community'"):
        encode(Point("indoor", {"community": bad, "home_id": "H1"}, {"temp_c": 20.0}, 1))


@pytest.mark.parametrize("bad", ["a\nb", "x\\"])
def test_unrepresentable_names(bad: str) -> None:
    with pytest.raises(StoreError, match="measurement"):
        encode(Point(bad, {}, {"x": 1.0}, 1))
    with pytest.raises(StoreError, match="field"):
        encode(Point("m", {}, {bad: 1.0}, 1))
    with pytest.raises(StoreError, match="tag key"):
        encode(Point("m", {bad: "v"}, {"x": 1.0}, 1))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_fields_are_errors(value: float) -> None:
    with pytest.raises(StoreError, match=r"'temp_c'.*NaN/inf"):
        encode(Point("indoor", {"home_id": "H1"}, {"temp_c": value}, 1))


def test_other_errors_are_clear() -> None:
    with pytest.raises(StoreError, match="at least one field"):
        encode(Point("m", {}, {}, 1))
    with pytest.raises(StoreError, match="unsupported type list"):
        encode(Point("m", {}, {"x": [1]}, 1))  # type: ignore[dict-item]
    with pytest.raises(StoreError, match="ts_ns"):
        encode(Point("m", {}, {"x": 1.0}, 1.5))  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="tag 'k' must be text"):
        encode(Point("m", {"k": 3}, {"x": 1.0}, 1))  # type: ignore[dict-item]


def test_numpy_values() -> None:
    import numpy as np
    assert encode(Point("m", {}, {"x": np.float64(2.5), "n": np.int64(3)}, 1)) == "m n=3i,x=2.5 1"


def test_encode_lines_joins_utf8() -> None:
    pts = [Point("m", {"c": "小区"}, {"x": float(i)}, i) for i in range(3)]
    assert encode_lines(pts) == "m,c=小区 x=0 0\nm,c=小区 x=1 1\nm,c=小区 x=2 2".encode()
