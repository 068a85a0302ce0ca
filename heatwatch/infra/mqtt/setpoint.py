"""The setpoint message: control builds it, a station controller (or the simulator standing in for one) parses it.

Topic ``{prefix}/control/setpoint/{station_id}``, retained, QoS 1; payload
``{"proposal_id", "station_id", "supply_c", "effective_at", "issued", "reason"}`` (docs/MQTT.md, Outbound),
and optionally ``curve_offset_c``: follow the station's own heating curve shifted by this many °C (a parallel
displacement, which station controllers offer), so the supply keeps following the outdoor temperature;
``supply_c`` is then what that gives at the time of issue, for a controller that can only take a fixed supply.
Both ends use this module, so the two cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from heatwatch.core.timeutil import from_ns, parse_ts, rfc3339
from heatwatch.infra.mqtt.topics import parse_setpoint_topic


@dataclass(frozen=True, slots=True)
class SetpointCommand:
    """One setpoint as a station receives it: supply temperature ``supply_c`` from ``effective_at`` on."""

    proposal_id: str
    station_id: str
    supply_c: float
    effective_at: datetime
    issued: datetime | None
    reason: str
    curve_offset_c: float | None = None  # None: hold supply_c; else the station's curve shifted by this


def setpoint_payload(
    proposal_id: str, station_id: str, supply_c: float, effective_at: datetime, issued: datetime, reason: str,
    curve_offset_c: float | None = None,
) -> bytes:
    """The JSON body control publishes: UTF-8 (Chinese reasons intact), times in RFC 3339."""
    body: dict[str, Any] = {
        "proposal_id": proposal_id,
        "station_id": station_id,
        "supply_c": supply_c,
        "effective_at": rfc3339(effective_at),
        "issued": rfc3339(issued),
        "reason": reason,
    }
    if curve_offset_c is not None:
        body["curve_offset_c"] = curve_offset_c
    return orjson.dumps(body)  # orjson writes UTF-8, Chinese intact


def parse_setpoint(topic: str, payload: bytes, prefix: str) -> SetpointCommand:
    """Raise ValueError (TopicError for the topic) naming what is wrong; a receiver logs it and keeps running."""
    sid = parse_setpoint_topic(topic, prefix)
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"setpoint for {sid}: payload is not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ValueError(f"setpoint for {sid}: payload must be a JSON object")
    if body.get("station_id", sid) != sid:
        raise ValueError(f"setpoint on topic for {sid!r} names station_id {body.get('station_id')!r}")
    supply = body.get("supply_c")
    if isinstance(supply, bool) or not isinstance(supply, int | float) or not math.isfinite(supply):
        raise ValueError(f"setpoint for {sid}: supply_c must be a finite number, got {supply!r}")
    offset = body.get("curve_offset_c")
    if offset is not None and (isinstance(offset, bool) or not isinstance(offset, int | float) or not math.isfinite(offset)):
        raise ValueError(f"setpoint for {sid}: curve_offset_c must be a finite number, got {offset!r}")
    if "effective_at" not in body:
        raise ValueError(f"setpoint for {sid}: effective_at is missing")
    try:
        eff = from_ns(parse_ts(body["effective_at"]))
        issued = from_ns(parse_ts(body["issued"])) if body.get("issued") is not None else None
    except ValueError as exc:
        raise ValueError(f"setpoint for {sid}: {exc}") from None
    return SetpointCommand(
        proposal_id=str(body.get("proposal_id", "")),
        station_id=sid,
        supply_c=float(supply),
        effective_at=eff,
        issued=issued,
        reason=str(body.get("reason", "")),
        curve_offset_c=None if offset is None else float(offset),
    )
