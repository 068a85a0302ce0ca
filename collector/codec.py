"""Payload decoding and validation: MQTT bytes in, Points or reasoned rejections out.

Nothing here raises on bad input: every problem becomes a ``Reject`` with a reason an operator
can act on, so one bad element of a gateway batch never costs the good ones beside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from heatwatch.core import schema
from heatwatch.core.config import Config, LimitsSettings
from heatwatch.core.model import Point
from heatwatch.core.registry import Registry
from heatwatch.core.timeutil import _MS_EPOCH_THRESHOLD, NS, parse_ts
from heatwatch.infra.mqtt.topics import TopicError, TopicInfo, parse_topic

FORECAST_HORIZON_NS = 16 * 86_400 * NS
TOPIC_CACHE_MAX = 200_000  # parsed topics kept (one per home/station); cleared when full


@dataclass(frozen=True, slots=True)
class Reject:
    code: str  # short, countable: invalid_json, out_of_range, unknown_home, …
    detail: str
    index: int | None = None  # position in a JSON array
    element: Any = None  # the offending element (for array members)

    @property
    def reason(self) -> str:
        where = f"element {self.index}: " if self.index is not None else ""
        return f"{self.code}: {where}{self.detail}"


@dataclass(slots=True)
class Decoded:
    points: list[Point] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


class _Bad(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _num(obj: Mapping[str, Any], key: str, lo: float, hi: float, unit: str, required: bool) -> float | None:
    if key not in obj or obj[key] is None:
        if required:
            raise _Bad("missing_field", f"{key} is required")
        return None
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _Bad("wrong_type", f"{key} must be a number, got {type(v).__name__} {str(v)[:30]!r}")
    x = float(v)
    if not math.isfinite(x):
        raise _Bad("not_finite", f"{key} is not a finite number")
    if not lo <= x <= hi:
        raise _Bad("out_of_range", f"{key} {x:g} {unit} outside {lo:g}…{hi:g} {unit}")
    return x


class Codec:
    """Validates payloads against the MQTT contract (docs/MQTT.md), the limits and the registry."""

    def __init__(self, cfg: Config, registry: Registry) -> None:
        self.prefix = cfg.mqtt.topic_prefix
        self.limits: LimitsSettings = cfg.limits
        self.max_bytes = cfg.collector.max_payload_bytes
        self.unknown = cfg.collector.unknown_ids
        self.future_ns = int(cfg.collector.future_tolerance_s * NS)
        self.retention_ns = cfg.storage.retention_days * 86_400 * NS
        # tags are built once per home and shared by every Point of that home
        self._home_tags: dict[str, dict[str, str]] = {
            h.home_id: {"home_id": h.home_id, "community": h.community, "building": h.building, "source": schema.SOURCE_SENSOR}
            for h in registry.homes.values()
        }
        self._stations = set(registry.stations)
        self._enforce_stations = bool(registry.stations)
        self._enforce_homes = bool(registry.homes)
        self._topics: dict[str, TopicInfo] = {}
        lim = cfg.limits  # the fast path's bounds as plain locals-to-be (pydantic attribute access costs)
        self._indoor_bounds = (lim.indoor_min_c, lim.indoor_max_c, lim.rh_min, lim.rh_max, lim.battery_min_v, lim.battery_max_v)

    # --- entry point -----------------------------------------------------------------------
    def decode(self, topic: str, payload: bytes, now_ns: int) -> Decoded:
        out = Decoded()
        if len(payload) > self.max_bytes:
            out.rejects.append(Reject("too_large", f"payload is {len(payload)} bytes, limit {self.max_bytes}"))
            return out
        info = self._topics.get(topic)
        if info is None:
            try:
                info = parse_topic(topic, self.prefix)
            except TopicError as exc:
                out.rejects.append(Reject("bad_topic", str(exc)))
                return out
            if len(self._topics) >= TOPIC_CACHE_MAX:
                self._topics.clear()
            self._topics[topic] = info
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            detail = "payload is not UTF-8" if "utf-8" in str(exc).lower() else f"invalid JSON ({exc})"
            out.rejects.append(Reject("invalid_json", detail[:200]))
            return out
        if info.kind == "forecast":
            self._forecast(info, body, now_ns, out)
            return out
        try:
            tags = self._tags(info)
        except _Bad as bad:
            out.rejects.append(Reject(bad.code, bad.detail))
            return out
        fast = self._indoor_fast if info.kind == "indoor" else None
        if isinstance(body, list):
            if not body:
                out.rejects.append(Reject("empty_batch", "empty JSON array"))
            for i, element in enumerate(body):
                point = fast(tags, element, now_ns) if fast else None
                if point is None:
                    self._one(info, tags, element, now_ns, out, i)
                else:
                    out.points.append(point)
        else:
            point = fast(tags, body, now_ns) if fast else None
            if point is None:
                self._one(info, tags, body, now_ns, out, None)
            else:
                out.points.append(point)
        return out

    def _indoor_fast(self, tags: dict[str, str], obj: Any, now_ns: int) -> Point | None:
        """A plain good indoor reading, checked inline by the same rules as ``_one``; None sends it the long
        way, which names the problem. (The batched-ingest profile showed ``_one``/``parse_ts`` as most of decoding.)"""
        if type(obj) is not dict:
            return None
        ts = obj.get("ts")
        if type(ts) is float:
            if not 0.0 <= ts < _MS_EPOCH_THRESHOLD:  # NaN fails too
                return None
            ts_ns = round(ts * 1e6) * 1000
        elif type(ts) is int:
            if not 0 <= ts < _MS_EPOCH_THRESHOLD:
                return None
            ts_ns = ts * NS
        else:
            return None
        if ts_ns > now_ns + self.future_ns or ts_ns < now_ns - self.retention_ns:
            return None
        t_lo, t_hi, rh_lo, rh_hi, bv_lo, bv_hi = self._indoor_bounds
        t = obj.get("temp_c")
        if (type(t) is not float and type(t) is not int) or not t_lo <= t <= t_hi:
            return None
        fields = {"temp_c": float(t)}
        rh = obj.get("rh")
        if rh is not None:
            if (type(rh) is not float and type(rh) is not int) or not rh_lo <= rh <= rh_hi:
                return None
            fields["rh"] = float(rh)
        bv = obj.get("battery_v")
        if bv is not None:
            if (type(bv) is not float and type(bv) is not int) or not bv_lo <= bv <= bv_hi:
                return None
            fields["battery_v"] = float(bv)
        return Point(schema.INDOOR, tags, fields, ts_ns)

    # --- helpers ---------------------------------------------------------------------------
    def _tags(self, info: TopicInfo) -> dict[str, str]:
        if info.kind == "indoor":
            tags = self._home_tags.get(info.entity_id)
            if tags is not None:
                return tags
            if self._enforce_homes and self.unknown == "reject":
                raise _Bad("unknown_home", f"home {info.entity_id!r} is not in the registry")
            return {"home_id": info.entity_id, "community": schema.UNREGISTERED, "source": schema.SOURCE_SENSOR}
        if info.kind == "station":
            if self._enforce_stations and info.entity_id not in self._stations and self.unknown == "reject":
                raise _Bad("unknown_station", f"station {info.entity_id!r} is not in the registry")
            return {"station_id": info.entity_id}
        return {"site_id": info.entity_id}

    def _ts(self, obj: Mapping[str, Any], key: str, now_ns: int, allow_future: bool = False) -> int:
        if key not in obj:
            raise _Bad("missing_field", f"{key} is required")
        try:
            ts = parse_ts(obj[key])
        except ValueError as exc:
            raise _Bad("bad_timestamp", str(exc)) from None
        if not allow_future and ts > now_ns + self.future_ns:
            ahead = (ts - now_ns) / NS
            raise _Bad("future_timestamp", f"{key} is {ahead:.0f} s in the future (limit {self.future_ns / NS:.0f} s)")
        if ts < now_ns - self.retention_ns:
            raise _Bad("too_old", f"{key} is older than the retention window ({self.retention_ns // (86_400 * NS)} days)")
        return ts

    def _one(
        self, info: TopicInfo, tags: dict[str, str], obj: Any, now_ns: int, out: Decoded, index: int | None
    ) -> None:
        try:
            if not isinstance(obj, dict):
                raise _Bad("not_object", f"expected a JSON object, got {type(obj).__name__}")
            ts = self._ts(obj, "ts", now_ns)
            lim = self.limits
            fields: dict[str, float]
            if info.kind == "indoor":
                fields = {"temp_c": _num(obj, "temp_c", lim.indoor_min_c, lim.indoor_max_c, "°C", True)}  # type: ignore[dict-item]
                rh = _num(obj, "rh", lim.rh_min, lim.rh_max, "%", False)
                if rh is not None:
                    fields["rh"] = rh
                bv = _num(obj, "battery_v", lim.battery_min_v, lim.battery_max_v, "V", False)
                if bv is not None:
                    fields["battery_v"] = bv
                out.points.append(Point(schema.INDOOR, tags, fields, ts))
            elif info.kind == "station":
                fields = {}
                for key, lo, hi, unit, req in (
                    ("supply_c", lim.supply_min_c, lim.supply_max_c, "°C", True),
                    ("return_c", lim.return_min_c, lim.return_max_c, "°C", True),
                    ("supply_kpa", lim.pressure_min_kpa, lim.pressure_max_kpa, "kPa", False),
                    ("return_kpa", lim.pressure_min_kpa, lim.pressure_max_kpa, "kPa", False),
                    ("flow_m3h", lim.flow_min_m3h, lim.flow_max_m3h, "m³/h", False),
                    ("primary_supply_c", lim.supply_min_c, lim.supply_max_c, "°C", False),
                    ("primary_return_c", lim.return_min_c, lim.return_max_c, "°C", False),
                ):
                    v = _num(obj, key, lo, hi, unit, req)
                    if v is not None:
                        fields[key] = v
                out.points.append(Point(schema.STATION, tags, fields, ts))
            else:
                t = _num(obj, "temp_c", lim.outdoor_min_c, lim.outdoor_max_c, "°C", True)
                out.points.append(Point(schema.WEATHER, tags, {"temp_c": t}, ts))  # type: ignore[dict-item]
        except _Bad as bad:
            out.rejects.append(Reject(bad.code, bad.detail, index, obj if index is not None else None))

    def _forecast(self, info: TopicInfo, body: Any, now_ns: int, out: Decoded) -> None:
        try:
            if not isinstance(body, dict):
                raise _Bad("not_object", "forecast must be a JSON object with issued and points")
            issued = self._ts(body, "issued", now_ns)
            points = body.get("points")
            if not isinstance(points, list) or not points:
                raise _Bad("missing_field", "points must be a non-empty array of {ts, temp_c}")
        except _Bad as bad:
            out.rejects.append(Reject(bad.code, bad.detail))
            return
        tags = {"site_id": info.entity_id}
        issued_s = issued // NS
        lim = self.limits
        for i, p in enumerate(points):
            try:
                if not isinstance(p, dict):
                    raise _Bad("not_object", f"expected a JSON object, got {type(p).__name__}")
                ts = self._ts(p, "ts", now_ns, allow_future=True)
                if ts > issued + FORECAST_HORIZON_NS:
                    raise _Bad("out_of_range", "forecast point more than 16 days after issued")
                t = _num(p, "temp_c", lim.outdoor_min_c, lim.outdoor_max_c, "°C", True)
                out.points.append(Point(schema.FORECAST, tags, {"temp_c": t, "issued_s": issued_s}, ts))  # type: ignore[dict-item]
            except _Bad as bad:
                out.rejects.append(Reject(bad.code, bad.detail, i, p))
