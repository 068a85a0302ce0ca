"""heatwatch.infra.mqtt.topics and .setpoint: every topic built and parsed in one place, Chinese ids intact,
ids that would change a topic's shape refused with a message naming the id and the character."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heatwatch.infra.mqtt.setpoint import SetpointCommand, parse_setpoint, setpoint_payload
from heatwatch.infra.mqtt.topics import (
    MAX_ID_LEN,
    AlertTopic,
    SetpointTopic,
    TopicError,
    TopicInfo,
    alert_topic,
    alerts_filter,
    deadletter_topic,
    forecast_topic,
    indoor_topic,
    parse_setpoint_topic,
    parse_topic,
    probe_topic,
    setpoint_filter,
    setpoint_topic,
    station_topic,
    subscriptions,
    weather_topic,
)

PREFIXES = ("heat", "city-a/heat", "北京/供热")


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT filter matching (``+`` one level, ``#`` the rest; a shared subscription's ``$share/<group>/`` stripped)."""
    if topic_filter.startswith("$share/"):
        topic_filter = topic_filter.split("/", 2)[2]
    f, t = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(f) == len(t)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_reading_topics_round_trip_with_chinese_ids(prefix: str) -> None:
    assert indoor_topic(prefix, "幸福小区-3号楼-101") == f"{prefix}/indoor/幸福小区-3号楼-101"
    assert parse_topic(f"{prefix}/indoor/幸福小区-3号楼-101", prefix) == TopicInfo("indoor", "幸福小区-3号楼-101")
    assert parse_topic(station_topic(prefix, "阳光换热站"), prefix) == TopicInfo("station", "阳光换热站")
    assert parse_topic(weather_topic(prefix, "北京"), prefix) == TopicInfo("weather", "北京")
    assert forecast_topic(prefix, "北京") == f"{prefix}/weather/北京/forecast"
    assert parse_topic(forecast_topic(prefix, "北京"), prefix) == TopicInfo("forecast", "北京")
    assert TopicInfo.parse(TopicInfo("station", "S1").topic(prefix), prefix) == TopicInfo("station", "S1")


@pytest.mark.parametrize("prefix", PREFIXES)
def test_outbound_topics_round_trip(prefix: str) -> None:
    assert setpoint_topic(prefix, "阳光换热站") == f"{prefix}/control/setpoint/阳光换热站"
    assert parse_setpoint_topic(setpoint_topic(prefix, "阳光换热站"), prefix) == "阳光换热站"
    assert SetpointTopic.parse(f"{prefix}/control/setpoint/S1", prefix) == SetpointTopic("S1")
    assert matches(setpoint_filter(prefix), setpoint_topic(prefix, "阳光换热站"))
    assert not matches(setpoint_filter(prefix), alert_topic(prefix, "underheating"))
    assert alert_topic(prefix, "underheating") == f"{prefix}/alerts/underheating"
    assert AlertTopic.parse(alert_topic(prefix, "underheating"), prefix) == AlertTopic("underheating")
    assert matches(alerts_filter(prefix), alert_topic(prefix, "broker_session_lost"))
    assert deadletter_topic(prefix) == f"{prefix}/deadletter"


def test_the_collector_never_subscribes_to_what_heatwatch_publishes() -> None:
    outbound = [setpoint_topic("heat", "S1"), alert_topic("heat", "underheating"), deadletter_topic("heat"),
                probe_topic("heat", "collector-1")]
    for filters in (subscriptions("heat"), subscriptions("heat", "collectors")):
        assert not [(f, t) for f in filters for t in outbound if matches(f, t)]
        assert all(any(matches(f, indoor_topic("heat", h)) for f in filters) for h in ("H1", "幸福-1"))
    assert subscriptions("heat", "collectors")[0] == "$share/collectors/heat/indoor/#"


def test_probe_topic_keeps_a_client_id_that_could_not_be_a_topic_level_readable() -> None:
    assert probe_topic("heat", "collector-北京-1") == "heat/_probe/collector-北京-1"
    assert probe_topic("heat", "a/b+c#d") == "heat/_probe/a_b_c_d"
    assert probe_topic("heat", "") == "heat/_probe/collector"


@pytest.mark.parametrize(("bad", "named"), [
    ("S1/extra", "'/' (it would add a topic level)"),
    ("S+", "'+' (an MQTT wildcard)"),
    ("S#", "'#' (an MQTT wildcard)"),
    ("S1\n", "the control character U+000A"),
    ("S1\r", "the control character U+000D"),
    ("S\x00", "the control character U+0000"),
    ("S\x7f", "the control character U+007F"),
    ("S\x85", "the control character U+0085"),
    ("S\ud800", "an unpaired surrogate U+D800"),
])
def test_ids_that_would_change_the_topic_are_refused_naming_id_and_character(bad: str, named: str) -> None:
    with pytest.raises(TopicError) as err:
        setpoint_topic("heat", bad)
    assert str(err.value).startswith(f"station id {bad!r} contains {named}")
    with pytest.raises(TopicError, match=r"^home id"):
        indoor_topic("heat", bad)
    with pytest.raises(TopicError, match=r"^weather site id"):
        forecast_topic("heat", bad)
    with pytest.raises(TopicError, match=r"^alert category"):
        alert_topic("heat", bad)


def test_empty_and_overlong_ids_and_bad_prefixes_are_refused() -> None:
    with pytest.raises(TopicError, match=r"^empty station id$"):
        setpoint_topic("heat", "")
    assert station_topic("heat", "站" * MAX_ID_LEN).endswith("站" * MAX_ID_LEN)
    with pytest.raises(TopicError, match=f"^home id '{'户' * 40}'… is longer than {MAX_ID_LEN} characters"):
        indoor_topic("heat", "户" * (MAX_ID_LEN + 1))
    with pytest.raises(TopicError, match=r"^topic prefix 'heat/' has an empty level"):
        indoor_topic("heat/", "H1")
    with pytest.raises(TopicError, match=r"^topic prefix 'heat/#' contains '#' \(an MQTT wildcard\)"):
        subscriptions("heat/#")
    with pytest.raises(TopicError, match=r"^shared subscription group"):
        subscriptions("heat", "a/b")
    with pytest.raises(TopicError, match=r"^unknown reading kind 'humidity'"):
        TopicInfo("humidity", "H1")  # type: ignore[arg-type]


@pytest.mark.parametrize(("topic", "message"), [
    ("other/indoor/H1", "does not start with heat/"),
    ("heat/indoor/H1/extra", "unknown topic shape; expected heat/indoor/{home_id}"),
    ("heat/indoor", "unknown topic shape"),
    ("heat/indoor/", "empty home id"),
    ("heat/station/S1\x07", "station id 'S1\\x07' contains the control character U+0007"),
    ("heat/weather//forecast", "empty weather site id"),
    ("heat/control/setpoint/S1", "unknown topic shape"),
])
def test_parse_topic_says_what_is_wrong(topic: str, message: str) -> None:
    with pytest.raises(TopicError) as err:
        parse_topic(topic, "heat")
    assert message in str(err.value)


@pytest.mark.parametrize(("topic", "message"), [
    ("heat/control/setpoint/S1/x", "has levels after the station id; expected heat/control/setpoint/{station_id}"),
    ("heat/control/setpoint/", "empty station id"),
    ("heat/control/setpoint", "is not heat/control/setpoint/{station_id}"),
    ("heat/indoor/S1", "is not heat/control/setpoint/{station_id}"),
    ("city/heat/control/setpoint/S1", "does not start with heat/"),
])
def test_parse_setpoint_topic_says_what_is_wrong(topic: str, message: str) -> None:
    with pytest.raises(TopicError) as err:
        parse_setpoint_topic(topic, "heat")
    assert message in str(err.value)


def test_setpoint_message_round_trips_between_control_and_a_station() -> None:
    eff = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    issued = datetime(2026, 12, 1, 5, 30, tzinfo=UTC)
    body = setpoint_payload("p-1", "阳光换热站", 66.5, eff, issued, "寒潮：提高供水温度")
    assert "寒潮".encode() in body  # UTF-8 on the wire, not \u escapes
    cmd = parse_setpoint(setpoint_topic("city/heat", "阳光换热站"), body, "city/heat")
    assert cmd == SetpointCommand("p-1", "阳光换热站", 66.5, eff, issued, "寒潮：提高供水温度")


def test_a_setpoint_whose_body_names_another_station_is_refused() -> None:
    body = setpoint_payload("p-1", "S2", 60.0, datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC), "")
    with pytest.raises(ValueError, match="setpoint on topic for 'S1' names station_id 'S2'"):
        parse_setpoint(setpoint_topic("heat", "S1"), body, "heat")
    with pytest.raises(TopicError, match="has levels after the station id"):
        parse_setpoint("heat/control/setpoint/S1/x", body, "heat")


# valid ids: any Unicode text without '/', wildcards, controls or surrogates, 1..128 characters
VALID_ID = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/+#"), min_size=1,
    max_size=MAX_ID_LEN,
)
PREFIX = st.lists(VALID_ID.filter(lambda s: len(s) <= 20), min_size=1, max_size=3).map("/".join)


@given(PREFIX, VALID_ID)
def test_build_then_parse_is_the_identity_for_valid_ids(prefix: str, entity_id: str) -> None:
    for kind in ("indoor", "station", "weather", "forecast"):
        info = TopicInfo(kind, entity_id)  # type: ignore[arg-type]
        assert parse_topic(info.topic(prefix), prefix) == info
    assert parse_setpoint_topic(setpoint_topic(prefix, entity_id), prefix) == entity_id
    assert AlertTopic.parse(alert_topic(prefix, entity_id), prefix).category == entity_id


@given(st.text(max_size=MAX_ID_LEN + 2))
def test_any_text_is_either_refused_or_round_trips(entity_id: str) -> None:
    """A builder never hands out a topic that parses to another id (or does not parse)."""
    try:
        topic = indoor_topic("heat", entity_id)
    except TopicError as exc:
        assert "home id" in str(exc)
        return
    assert parse_topic(topic, "heat") == TopicInfo("indoor", entity_id)
    assert topic.encode("utf-8").decode("utf-8") == topic
