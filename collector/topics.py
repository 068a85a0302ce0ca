"""Topic parsing: which kind of reading a topic carries and for which home, station or site."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["indoor", "station", "weather", "forecast"]
MAX_ID_LEN = 128


@dataclass(frozen=True, slots=True)
class TopicInfo:
    kind: Kind
    entity_id: str


class TopicError(ValueError):
    """The topic is not one of the shapes in docs/MQTT.md."""


def subscriptions(prefix: str, shared_group: str = "") -> list[str]:
    """Topic filters the collector subscribes to; never its own outbound topics (deadletter, alerts, control)."""
    filters = [f"{prefix}/indoor/#", f"{prefix}/station/#", f"{prefix}/weather/#"]
    if shared_group:
        return [f"$share/{shared_group}/{f}" for f in filters]
    return filters


def probe_topic(prefix: str, client_id: str) -> str:
    """The collector's own liveness probe topic: it publishes here and only it subscribes (not shared)."""
    safe = "".join("_" if c in "+#/" else c for c in client_id) or "collector"
    return f"{prefix}/_probe/{safe}"


def _check_id(value: str, what: str) -> str:
    if not value:
        raise TopicError(f"empty {what} in topic")
    if len(value) > MAX_ID_LEN:
        raise TopicError(f"{what} longer than {MAX_ID_LEN} characters")
    if any(ord(c) < 0x20 or c == "\x7f" for c in value):
        raise TopicError(f"{what} {value[:40]!r} contains control characters")
    return value


def parse_topic(topic: str, prefix: str) -> TopicInfo:
    parts = topic.split("/")
    head = prefix.split("/")
    n = len(head)
    if parts[:n] != head:
        raise TopicError(f"topic does not start with {prefix}/")
    rest = parts[n:]
    if len(rest) == 2 and rest[0] == "indoor":
        return TopicInfo("indoor", _check_id(rest[1], "home id"))
    if len(rest) == 2 and rest[0] == "station":
        return TopicInfo("station", _check_id(rest[1], "station id"))
    if len(rest) == 2 and rest[0] == "weather":
        return TopicInfo("weather", _check_id(rest[1], "weather site id"))
    if len(rest) == 3 and rest[0] == "weather" and rest[2] == "forecast":
        return TopicInfo("forecast", _check_id(rest[1], "weather site id"))
    raise TopicError(
        f"unknown topic shape; expected {prefix}/indoor/{{home_id}}, {prefix}/station/{{station_id}}, "
        f"{prefix}/weather/{{site_id}} or {prefix}/weather/{{site_id}}/forecast"
    )
