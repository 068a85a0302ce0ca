"""Measurement, tag and field names shared by the collector, storage, analytics and Grafana.

See docs/SCHEMA.md for why each tag is a tag (query needs, series cardinality).
"""

from __future__ import annotations

INDOOR = "indoor"
STATION = "station"
WEATHER = "weather"
FORECAST = "forecast"
COLLECTOR = "collector"

# Tags per measurement. home_id/station_id/site_id identify the series; the others are
# functionally dependent on them (they add index entries, not series).
INDOOR_TAGS = ("home_id", "community", "building", "source")
INDOOR_FIELDS = ("temp_c", "rh", "battery_v")
STATION_TAGS = ("station_id",)
STATION_FIELDS = (
    "supply_c",
    "return_c",
    "supply_kpa",
    "return_kpa",
    "flow_m3h",
    "primary_supply_c",
    "primary_return_c",
)
WEATHER_TAGS = ("site_id",)
WEATHER_FIELDS = ("temp_c",)
FORECAST_TAGS = ("site_id",)
FORECAST_FIELDS = ("temp_c", "issued_s")

UNREGISTERED = "_unregistered"  # community tag of readings from homes not in the registry
SOURCE_SENSOR = "sensor"
SOURCE_MANUAL = "manual"

TAGS: dict[str, tuple[str, ...]] = {
    INDOOR: INDOOR_TAGS,
    STATION: STATION_TAGS,
    WEATHER: WEATHER_TAGS,
    FORECAST: FORECAST_TAGS,
}
FIELDS: dict[str, tuple[str, ...]] = {
    INDOOR: INDOOR_FIELDS,
    STATION: STATION_FIELDS,
    WEATHER: WEATHER_FIELDS,
    FORECAST: FORECAST_FIELDS,
}
