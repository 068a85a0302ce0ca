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

# --- derived measurements (written by analytics, control, alerts; charted by Grafana) ---------
COMMUNITY_STATS = "community_stats"  # tags: community; fields: weighted_mean_c, plain_mean_c, homes_registered,
#   homes_reporting, edge_homes, middle_homes, edge_share, edge_weight, homes_below_standard, status (str)
HOME_STATUS = "home_status"  # tags: home_id, community, building; fields: mean_c, min_hourly_c, hours_below,
#   longest_run_h, threshold_c, below (0/1), rule (str)
SENSOR_HEALTH = "sensor_health"  # tags: home_id, community, finding; fields: value, detail (str)
IMBALANCE = "imbalance"  # tags: community; fields: building_spread_c, entrance_spread_c, edge_middle_gap_c
PROPOSALS = "proposals"  # tags: station_id, kind; fields: proposal_id, status, current_c, proposed_c, delta_c, reason
ALERTS = "alerts"  # tags: category, community, station_id; fields: alert_id, home_id, status, content
STATION_ENERGY = "station_energy"  # tags: station_id, period (day|season); fields: kwh, gj, mean_kw, hours_covered,
#   hdd, gj_per_hdd, area_m2, kwh_per_m2 (analytics.energy; one point per station per local day, at its start)
DESK_FIGURES = "desk_figures"  # tags: handling_unit (ALL = the month's total); at the local month's start; fields:
#   received, received_<category>, ontime_<clock> (0..1) and ontime_<clock>_n, contacted, median_contact_min, repaired,
#   median_repair_h, closed, closure_rate, callbacks, satisfied, satisfaction_rate (dispatch.figures, docs/SERVICE_DESK.md)
DESK_OVERDUE = "desk_overdue"  # tags: handling_unit (ALL = every unit); fields: count (open orders past a clock, now)
COLLECTOR_REJECTS = "collector_rejects"  # tags: collector_id, reason; fields: count
COLLECTOR_ALARMS = "collector_alarms"  # tags: collector_id, alarm (session_lost); fields: count, detail (str)
# Dead letters: what the collector rejected, kept in the store so they survive (docs/MQTT.md "Dead letters").
# One point per rejection, at a time unique per collector (the receive time, nudged by 1 ns when it repeats).
DEADLETTER = "deadletter"
DEADLETTER_TAGS = ("reason", "collector_id")  # reason: the reject code (unknown_home, out_of_range, …)
DEADLETTER_FIELDS = (
    "topic", "payload", "payload_encoding", "payload_bytes", "truncated", "index", "detail", "received_at", "status", "note",
)  # payload: UTF-8 text or base64; status: pending | replayed; note: what a replay did
DEADLETTER_PENDING = "pending"
DEADLETTER_REPLAYED = "replayed"
# COLLECTOR: tags collector_id; fields: received, stored, rejected, spooled, replayed, spool_bytes,
#   queue_depth, batch_latency_ms
