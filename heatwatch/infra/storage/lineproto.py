"""Point → InfluxDB line protocol, fast enough for the collector's hot path (~100k readings/s).

The escaping is influxdb-client's own (its translate tables), so a line is byte-for-byte what
``influxdb_client.Point(...).to_line_protocol()`` writes — tests/test_lineproto.py proves it.
Where that encoder would silently corrupt or drop data we raise ``StoreError`` instead:

* a newline, carriage return or tab in a measurement, tag key, tag value or field key: line
  protocol has no escape for them (the client writes ``\\n``, which InfluxDB stores as the two
  characters backslash + n);
* a name or tag value ending in a backslash: InfluxDB 1.x reads it as escaping the separator
  after it, so the line parses as a different point or not at all;
* NaN / ±inf fields (the client skips them, silently dropping the reading), unsupported types,
  a point with no fields.

Whole floats are written the client's way (``21`` for 21.0): in line protocol a number without
the ``i`` suffix *is* a float, so the field type stays float (tests check this on influxd).
Empty tag values are omitted, as InfluxDB does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from influxdb_client.client.write.point import _ESCAPE_KEY, _ESCAPE_MEASUREMENT, _ESCAPE_STRING

from heatwatch.core.model import FieldValue, Point
from heatwatch.infra.storage.base import StoreError

_UNREPRESENTABLE = ("\n", "\r", "\t")
_PREFIX_CACHE_MAX = 200_000
_prefix_cache: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
_fkey_cache: dict[str, str] = {}


def _check_name(kind: str, text: str, where: str) -> None:
    for ch in _UNREPRESENTABLE:
        if ch in text:
            raise StoreError(f"{where}: {kind} {text[:60]!r} contains {ch!r}, which line protocol cannot represent")
    if text.endswith("\\"):
        raise StoreError(f"{where}: {kind} {text[:60]!r} ends with a backslash, which line protocol cannot represent")


def _prefix(measurement: str, tags: Mapping[str, str]) -> str:
    """``measurement,k=v,... `` (with the trailing space), validated and escaped."""
    _check_name("measurement name", measurement, f"measurement {measurement[:60]!r}")
    if not measurement:
        raise StoreError("a point has an empty measurement name")
    parts = [measurement.translate(_ESCAPE_MEASUREMENT)]
    for key, value in sorted(tags.items()):
        if value is None or value == "" or key == "":
            continue
        if not isinstance(value, str):
            raise StoreError(f"{measurement}: tag {key!r} must be text, got {type(value).__name__}")
        _check_name("tag key", key, f"{measurement}: tag {key!r}")
        _check_name("tag value", value, f"{measurement}: tag {key!r}")
        parts.append(f"{key.translate(_ESCAPE_KEY)}={value.translate(_ESCAPE_KEY)}")
    return ",".join(parts) + " "


def series_prefix(measurement: str, tags: Mapping[str, str]) -> str:
    """``_prefix``, cached per series: the collector encodes the same few series over and over."""
    key = (measurement, tuple(tags.items()))
    try:
        return _prefix_cache[key]
    except KeyError:
        pass
    except TypeError:  # unhashable tag value: let _prefix name it
        return _prefix(measurement, tags)
    text = _prefix(measurement, tags)
    if len(_prefix_cache) >= _PREFIX_CACHE_MAX:
        _prefix_cache.clear()
    _prefix_cache[key] = text
    return text


def _field_key(key: str, measurement: str) -> str:
    esc = _fkey_cache.get(key)
    if esc is None:
        if not isinstance(key, str) or key == "":
            raise StoreError(f"{measurement}: field name {key!r} must be non-empty text")
        _check_name("field name", key, f"{measurement}: field {key!r}")
        esc = key.translate(_ESCAPE_KEY)
        if len(_fkey_cache) < 10_000:
            _fkey_cache[key] = esc
    return esc


def _field(key: str, value: FieldValue, measurement: str) -> str:
    t = type(value)
    if t is float or isinstance(value, float):  # numpy.float64 is a float subclass
        f = float(value)
        if not math.isfinite(f):
            raise StoreError(f"{measurement}: field {key!r} is {f}, and NaN/inf cannot be stored")
        s = repr(f)
        if s.endswith(".0"):
            s = s[:-2]
        return f"{_field_key(key, measurement)}={s}"
    if t is bool:
        return f"{_field_key(key, measurement)}={'true' if value else 'false'}"
    if t is int or (isinstance(value, int) and not isinstance(value, bool)):
        return f"{_field_key(key, measurement)}={int(value)}i"
    if t is str or isinstance(value, str):
        return f'{_field_key(key, measurement)}="{str(value).translate(_ESCAPE_STRING)}"'
    if hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu":  # numpy integers
        return f"{_field_key(key, measurement)}={int(value)}i"
    raise StoreError(f"{measurement}: field {key!r} has unsupported type {t.__name__}")


def encode(point: Point) -> str:
    """One line (no trailing newline)."""
    fields = point.fields
    m = point.measurement
    if len(fields) == 1:
        ((k, v),) = fields.items()
        if v is None:
            raise StoreError(f"{m}: a point needs at least one field (all were empty)")
        body = _field(k, v, m)
    else:
        body = ",".join(_field(k, v, m) for k, v in sorted(fields.items()) if v is not None)
        if not body:
            raise StoreError(f"{m}: a point needs at least one field (all were empty)")
    ts = point.ts_ns
    if type(ts) is not int:
        raise StoreError(f"{m}: ts_ns must be an int of nanoseconds, got {type(ts).__name__}")
    return f"{series_prefix(m, point.tags)}{body} {ts}"


def encode_lines(points: Iterable[Point]) -> bytes:
    """The body of a ``/write`` request: one line per point, UTF-8."""
    return "\n".join([encode(p) for p in points]).encode("utf-8")
