"""Setpoint commands from control (``{prefix}/control/setpoint/{station_id}``), parsed and scheduled.

A command takes effect at ``effective_at`` in simulated time; one that lies ahead waits. A newer
command for the same station replaces a pending one (the topic is retained: last one wins).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import orjson

from heatwatch.core.timeutil import from_ns, parse_ts


@dataclass(frozen=True, slots=True)
class SetpointCommand:
    proposal_id: str
    station_id: str
    supply_c: float
    effective_at: datetime
    issued: datetime | None
    reason: str


def setpoint_topic(prefix: str, station_id: str) -> str:
    return f"{prefix}/control/setpoint/{station_id}"


def parse_setpoint(topic: str, payload: bytes, prefix: str) -> SetpointCommand:
    """Raise ValueError naming what is wrong; the simulator logs it and keeps running."""
    head = f"{prefix}/control/setpoint/"
    if not topic.startswith(head) or "/" in topic[len(head) :] or topic == head:
        raise ValueError(f"topic {topic!r} is not {head}<station_id>")
    sid = topic[len(head) :]
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
    )


class SetpointSchedule:
    """Pending commands per station; ``due(now)`` hands back those whose time has come."""

    def __init__(self) -> None:
        self._pending: dict[str, SetpointCommand] = {}

    def add(self, cmd: SetpointCommand) -> None:
        self._pending[cmd.station_id] = cmd

    def due(self, now: datetime) -> list[SetpointCommand]:
        ready = [c for c in self._pending.values() if c.effective_at <= now]
        for c in ready:
            del self._pending[c.station_id]
        return sorted(ready, key=lambda c: (c.effective_at, c.station_id))

    def pending(self) -> list[SetpointCommand]:
        return list(self._pending.values())
