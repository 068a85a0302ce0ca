"""Every MQTT topic heatwatch publishes or subscribes to, built and parsed here and nowhere else (docs/MQTT.md).

Inbound (readings): ``{prefix}/indoor/{home_id}``, ``{prefix}/station/{station_id}``, ``{prefix}/weather/{site_id}``,
``{prefix}/weather/{site_id}/forecast``. Outbound: ``{prefix}/control/setpoint/{station_id}`` (retained),
``{prefix}/alerts/{category}``, ``{prefix}/deadletter``; the collector's own ``{prefix}/_probe/{client_id}``.

Ids are UTF-8 and may be Chinese. An id that would change the topic's shape (``/`` adds a level, ``+`` and ``#``
are wildcards) or that brokers refuse (control characters: Mosquitto disconnects the publisher) is refused with a
``TopicError`` naming the id and the character, so the mistake shows where the id came from instead of as a
message that silently lands on another topic, or none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

Kind = Literal["indoor", "station", "weather", "forecast"]
MAX_ID_LEN = 128

# what each id is called in messages, by the kind of topic it names
_ID_NAME: dict[str, str] = {"indoor": "home id", "station": "station id", "weather": "weather site id",
                            "forecast": "weather site id"}
# '/', wildcards, C0 and C1 controls (MQTT 5 §1.5.4: a topic should not hold them) and lone surrogates (not UTF-8)
_FORBIDDEN = re.compile("[/+#\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class TopicError(ValueError):
    """A topic, or an id meant for one, that does not fit docs/MQTT.md."""


def _describe(c: str) -> str:
    if c == "/":
        return "'/' (it would add a topic level)"
    if c in "+#":
        return f"{c!r} (an MQTT wildcard)"
    if "\ud800" <= c <= "\udfff":
        return f"an unpaired surrogate U+{ord(c):04X} (not UTF-8)"
    return f"the control character U+{ord(c):04X}"


def check_id(value: str, what: str) -> str:
    """``value`` if it can stand as one topic level; TopicError naming ``what`` (e.g. "home id") and the fault."""
    if not value:
        raise TopicError(f"empty {what}")
    if len(value) > MAX_ID_LEN:
        raise TopicError(f"{what} {value[:40]!r}… is longer than {MAX_ID_LEN} characters")
    bad = _FORBIDDEN.search(value)
    if bad is not None:
        raise TopicError(f"{what} {value[:40]!r} contains {_describe(bad.group())}")
    return value


@lru_cache(maxsize=64)
def check_prefix(prefix: str) -> str:
    """The topic prefix (``[mqtt] topic_prefix``): one or more levels such as ``heat`` or ``city-a/heat``."""
    if not prefix:
        raise TopicError("empty topic prefix")
    for level in prefix.split("/"):
        if not level:
            raise TopicError(f"topic prefix {prefix!r} has an empty level (a leading, trailing or double '/')")
        bad = _FORBIDDEN.search(level)
        if bad is not None:
            raise TopicError(f"topic prefix {prefix!r} contains {_describe(bad.group())}")
    return prefix


def _levels(topic: str, prefix: str, expected: str) -> list[str]:
    """The levels of ``topic`` after ``prefix``; TopicError saying what was ``expected`` when it does not start so."""
    head = check_prefix(prefix)
    if not topic.startswith(head + "/"):
        raise TopicError(f"topic {topic[:80]!r} does not start with {head}/ (expected {expected})")
    return topic[len(head) + 1:].split("/")


# --- inbound: readings -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """A reading topic: which kind of reading it carries, for which home, station or weather site."""

    kind: Kind
    entity_id: str

    def __post_init__(self) -> None:
        what = _ID_NAME.get(self.kind)
        if what is None:
            raise TopicError(f"unknown reading kind {self.kind!r}; expected one of {', '.join(_ID_NAME)}")
        check_id(self.entity_id, what)

    def topic(self, prefix: str) -> str:
        """The topic this kind of reading for this id is published on."""
        head = check_prefix(prefix)
        if self.kind == "forecast":
            return f"{head}/weather/{self.entity_id}/forecast"
        return f"{head}/{self.kind}/{self.entity_id}"

    @classmethod
    def parse(cls, topic: str, prefix: str) -> TopicInfo:
        """``parse_topic``."""
        return parse_topic(topic, prefix)


_READING_KINDS: dict[str, Kind] = {"indoor": "indoor", "station": "station", "weather": "weather"}


def _reading_shapes(prefix: str) -> str:
    return (f"{prefix}/indoor/{{home_id}}, {prefix}/station/{{station_id}}, {prefix}/weather/{{site_id}} or "
            f"{prefix}/weather/{{site_id}}/forecast")


def parse_topic(topic: str, prefix: str) -> TopicInfo:
    """The reading a topic carries; TopicError (the dead letter's reason) for any other topic."""
    rest = _levels(topic, prefix, _reading_shapes(prefix))
    kind = _READING_KINDS.get(rest[0]) if len(rest) == 2 else None
    if kind is not None:
        return TopicInfo(kind, rest[1])
    if len(rest) == 3 and rest[0] == "weather" and rest[2] == "forecast":
        return TopicInfo("forecast", rest[1])
    raise TopicError(f"unknown topic shape; expected {_reading_shapes(prefix)}")


def indoor_topic(prefix: str, home_id: str) -> str:
    """``{prefix}/indoor/{home_id}``: a home's indoor temperature (TopicError for an id that cannot be a level)."""
    return TopicInfo("indoor", home_id).topic(prefix)


def station_topic(prefix: str, station_id: str) -> str:
    """``{prefix}/station/{station_id}``: a substation's supply, return, pressure and flow."""
    return TopicInfo("station", station_id).topic(prefix)


def weather_topic(prefix: str, site_id: str) -> str:
    """``{prefix}/weather/{site_id}``: the outdoor temperature at a weather site."""
    return TopicInfo("weather", site_id).topic(prefix)


def forecast_topic(prefix: str, site_id: str) -> str:
    """``{prefix}/weather/{site_id}/forecast``: a weather site's forecast."""
    return TopicInfo("forecast", site_id).topic(prefix)


def subscriptions(prefix: str, shared_group: str = "") -> list[str]:
    """Topic filters the collector subscribes to; never its own outbound topics (deadletter, alerts, control)."""
    head = check_prefix(prefix)
    filters = [f"{head}/indoor/#", f"{head}/station/#", f"{head}/weather/#"]
    if shared_group:
        check_id(shared_group, "shared subscription group ([mqtt] shared_group)")
        return [f"$share/{shared_group}/{f}" for f in filters]
    return filters


def probe_topic(prefix: str, client_id: str) -> str:
    """The collector's own liveness probe topic: it publishes here and only it subscribes (not shared).

    A client id may legally hold characters a topic level cannot; they become ``_`` (the broker ACL's
    ``pattern readwrite heat/_probe/%c`` then does not match, and the collector says so when probing fails)."""
    safe = _FORBIDDEN.sub("_", client_id) or "collector"
    return f"{check_prefix(prefix)}/_probe/{safe}"


# --- outbound ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetpointTopic:
    """The retained topic a station's supply-temperature setpoint is published on."""

    station_id: str

    def __post_init__(self) -> None:
        check_id(self.station_id, "station id")

    def topic(self, prefix: str) -> str:
        """``{prefix}/control/setpoint/{station_id}``."""
        return f"{check_prefix(prefix)}/control/setpoint/{self.station_id}"

    @classmethod
    def parse(cls, topic: str, prefix: str) -> SetpointTopic:
        """The station a setpoint topic is for; TopicError naming what is wrong with any other topic."""
        expected = f"{prefix}/control/setpoint/{{station_id}}"
        rest = _levels(topic, prefix, expected)
        if len(rest) < 3 or rest[:2] != ["control", "setpoint"]:
            raise TopicError(f"topic {topic[:80]!r} is not {expected}")
        if len(rest) > 3:
            raise TopicError(f"topic {topic[:80]!r} has levels after the station id; expected {expected}")
        return cls(rest[2])


def setpoint_topic(prefix: str, station_id: str) -> str:
    """``{prefix}/control/setpoint/{station_id}``, where control publishes a station's setpoint (retained)."""
    return SetpointTopic(station_id).topic(prefix)


def parse_setpoint_topic(topic: str, prefix: str) -> str:
    """The station id of a setpoint topic; TopicError for any other topic."""
    return SetpointTopic.parse(topic, prefix).station_id


def setpoint_filter(prefix: str) -> str:
    """Every station's setpoint (what a simulator standing in for all stations subscribes to)."""
    return f"{check_prefix(prefix)}/control/setpoint/+"


@dataclass(frozen=True, slots=True)
class AlertTopic:
    """The topic work orders of one category are published on (docs/CONTROL.md)."""

    category: str

    def __post_init__(self) -> None:
        check_id(self.category, "alert category")

    def topic(self, prefix: str) -> str:
        """``{prefix}/alerts/{category}``."""
        return f"{check_prefix(prefix)}/alerts/{self.category}"

    @classmethod
    def parse(cls, topic: str, prefix: str) -> AlertTopic:
        """The category of an alerts topic; TopicError for any other topic."""
        expected = f"{prefix}/alerts/{{category}}"
        rest = _levels(topic, prefix, expected)
        if len(rest) != 2 or rest[0] != "alerts":
            raise TopicError(f"topic {topic[:80]!r} is not {expected}")
        return cls(rest[1])


def alert_topic(prefix: str, category: str) -> str:
    """``{prefix}/alerts/{category}``, where control publishes work orders of that category."""
    return AlertTopic(category).topic(prefix)


def alerts_filter(prefix: str) -> str:
    """Every category of work order (what a dispatch system subscribes to)."""
    return f"{check_prefix(prefix)}/alerts/+"


def deadletter_topic(prefix: str) -> str:
    """``{prefix}/deadletter``: rejected messages, for live listeners (the store keeps them too)."""
    return f"{check_prefix(prefix)}/deadletter"


# --- the service desk's intake (docs/SERVICE_DESK.md, "MQTT") ------------------------------------------------


def orders_new_topic(prefix: str) -> str:
    """``{prefix}/orders/new``: orders another system publishes to the desk (JSON, QoS 1)."""
    return f"{check_prefix(prefix)}/orders/new"


def orders_accepted_topic(prefix: str) -> str:
    """``{prefix}/orders/accepted``: the desk's answer to an order it stored (order id, ref, deadline)."""
    return f"{check_prefix(prefix)}/orders/accepted"


def orders_refused_topic(prefix: str) -> str:
    """``{prefix}/orders/refused``: the desk's answer to an order it refused, naming what was wrong."""
    return f"{check_prefix(prefix)}/orders/refused"
