"""Grafana dashboards generated from code, so every panel's query lives next to its Flux twin.

Each panel carries an InfluxQL query (InfluxDB 1.x, 2.x through its v1 compatibility API, 3.x) and
a Flux query (InfluxDB 2.x). ``python -m tools.dashboards`` writes both dashboard sets under
``deploy/grafana/dashboards/{influxql,flux}/``; ``--check`` fails when the committed JSON differs
from what this module generates (tests/test_dashboards.py runs every InfluxQL query on a real influxd).
The colours, threshold lines and texts come from the configuration's defaults (``Config()``: the day and
night minimums, the target, the warm ceiling, the 40 % edge share, the time zone), so a changed default
moves Grafana with it; ``--config heatwatch.toml --out DIR`` renders a company's own numbers.

Why hand-built JSON and not grafana-foundation-sdk's typed builders: what this module owns is the pairing
of every InfluxQL query with its Flux twin and the checks on both (a real influxd, the Flux checks below);
the JSON rendering is the ~150 lines under "rendering", plain dicts that tests/test_dashboards.py checks
field by field. The SDK publishes one build per Grafana release under a version epoch
(``<build time>!11.3.0``), so "the builders for the Grafana that deploy/ runs" is an exact pin that must
move with every Grafana upgrade, for a tools-only dependency that would replace little code.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from heatwatch.core import schema
from heatwatch.core.config import Config, load_config

Dialect = Literal["influxql", "flux"]
DIALECTS: tuple[Dialect, ...] = ("influxql", "flux")
DATASOURCE_UID: dict[Dialect, str] = {"influxql": "heatwatch-influxql", "flux": "heatwatch-flux"}
SCHEMA_VERSION = 39  # Grafana 10.4 / 11
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "dashboards"
GRID_WIDTH = 24

# Flux building blocks: Grafana substitutes v.* and ${var}.
_FROM = "from(bucket: v.defaultBucket)\n  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)"
_WINDOW = "  |> aggregateWindow(every: v.windowPeriod, fn: {fn}, createEmpty: false)"


def _flux_filter(measurement: str, fields: Sequence[str] = (), extra: str = "") -> str:
    cond = f'r._measurement == "{measurement}"'
    if fields:
        cond += " and (" + " or ".join(f'r._field == "{f}"' for f in fields) + ")"
    if extra:
        cond += f" and {extra}"
    return f"{_FROM}\n  |> filter(fn: (r) => {cond})"


def _flux_series(measurement: str, fields: Sequence[str], by: Sequence[str], fn: str = "mean", extra: str = "") -> str:
    keep = ", ".join(f'"{c}"' for c in ("_time", "_value", "_field", *by))
    return (
        _flux_filter(measurement, fields, extra)
        + f"\n  |> group(columns: [{', '.join(repr_str(c) for c in ('_field', *by))}])"
        + "\n"
        + _WINDOW.format(fn=fn)
        + f"\n  |> keep(columns: [{keep}])"
    )


def _flux_latest_table(measurement: str, fields: Sequence[str], by: Sequence[str], extra: str = "", sort: str = "") -> str:
    cols = ", ".join(repr_str(c) for c in by)
    out = (
        _flux_filter(measurement, fields, extra)
        + "\n  |> last()"
        + f'\n  |> pivot(rowKey: [{cols}], columnKey: ["_field"], valueColumn: "_value")'
        + "\n  |> group()"
        + f"\n  |> keep(columns: [{', '.join(repr_str(c) for c in (*by, *fields))}])"
    )
    if sort:
        out += f'\n  |> sort(columns: ["{sort}"])'
    return out


def repr_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _var(name: str) -> str:
    """A single-value template variable inside an InfluxQL regex (Grafana escapes the value)."""
    return f"/^${name}$/"


@dataclass(frozen=True)
class Query:
    influxql: str
    flux: str
    alias: str = ""  # InfluxQL legend, e.g. "$tag_community"
    table: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str  # Grafana panel type
    queries: tuple[Query, ...]
    w: int = 12
    h: int = 8
    description: str = ""
    unit: str = ""
    decimals: int | None = None
    thresholds: tuple[tuple[str, float | None], ...] = ()  # (color, from value); the first from is None
    threshold_line: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)
    overrides: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    influxql: str
    flux: str


@dataclass(frozen=True)
class Annotation:
    name: str
    color: str
    influxql: str
    flux: str
    text_column: str
    tags_columns: str


@dataclass(frozen=True)
class Dashboard:
    slug: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    variables: tuple[Variable, ...] = ()
    annotations: tuple[Annotation, ...] = ()


# --- the numbers the panels are coloured by -----------------------------------------------------
Steps = tuple[tuple[str, float | None], ...]  # (color, from value); the first from is None


@dataclass(frozen=True)
class Standard:
    """What the dashboards draw against, read from a configuration: Grafana cannot read heatwatch's config."""

    day_min_c: float  # 06:00-21:00 minimum
    night_min_c: float  # never below
    bungalow_min_c: float
    target_c: float  # a community's weighted mean under this is cold
    warm_ceiling_c: float  # above this control proposes less supply (energy)
    day_start_hour: int
    day_end_hour: int
    edge_share_min: float  # top/ground/gable homes carry at least this share of the weight
    cold_share_max: float  # a community is cold when more of its homes than this are below standard
    timezone: str  # dispatch reads local time

    @classmethod
    def of(cls, cfg: Config) -> Standard:
        """The standard ``cfg`` holds."""
        st = cfg.standard
        return cls(st.day_min_c, st.night_min_c, st.bungalow_min_c, st.target_c, cfg.control.warm_ceiling_c,
                   st.day_start_hour, st.day_end_hour, cfg.analytics.edge_share_min, cfg.analytics.cold_share_max,
                   cfg.general.timezone)

    @property
    def temperature_steps(self) -> Steps:
        """A home's or community's temperature: red under the night minimum, orange under the day minimum,
        green up to the warm ceiling, orange (energy) above it."""
        return ("red", None), ("orange", self.night_min_c), ("green", self.day_min_c), ("orange", self.warm_ceiling_c)

    @property
    def target_line(self) -> Steps:
        """A red line at the target in a time series."""
        return ("transparent", None), ("red", self.target_c)

    @property
    def edge_pct(self) -> str:
        """The edge-weight rule as operators say it: '40 %'."""
        return f"{_pct(self.edge_share_min):g} %"

    @property
    def rule_text(self) -> str:
        """The indoor standard in one line, e.g. '06-21 h >= 18 °C, else >= 16 °C; bungalows >= 16 °C'."""
        return (f"{self.day_start_hour:02d}-{self.day_end_hour:02d} h >= {self.day_min_c:g} °C, "
                f"else >= {self.night_min_c:g} °C; bungalows >= {self.bungalow_min_c:g} °C")


def _pct(share: float) -> float:
    """A share as a percentage without float noise (0.4 -> 40.0, not 40.00000000000001)."""
    return round(share * 100, 6)


# --- the four dashboards ----------------------------------------------------------------------
_SORT_ASC = {"showHeader": True, "cellHeight": "sm"}

CS, HS, SH, IM = schema.COMMUNITY_STATS, schema.HOME_STATUS, schema.SENSOR_HEALTH, schema.IMBALANCE
PR, AL, CO, CR = schema.PROPOSALS, schema.ALERTS, schema.COLLECTOR, schema.COLLECTOR_REJECTS
EN = schema.STATION_ENERGY
COMMUNITY_RE = _var("community")
STATION_RE = _var("station")
FLUX_COMMUNITY = 'r.community == "${community}"'
FLUX_STATION = 'r.station_id == "${station}"'


def _city(std: Standard) -> Dashboard:
    return Dashboard(
        slug="heatwatch-city",
        title="heatwatch · city overview",
        description=f"Communities by edge-weighted mean (edge homes carry >= {std.edge_pct}) and share of homes below standard.",
        panels=(
            Panel(
                "Communities by weighted mean (latest)",
                "bargauge",
                (
                    Query(
                        f'SELECT last("weighted_mean_c") FROM "{CS}" WHERE $timeFilter GROUP BY "community"',
                        _flux_filter(CS, ["weighted_mean_c"]) + '\n  |> last()\n  |> group(columns: ["community"])'
                        '\n  |> keep(columns: ["_value", "community"])',
                        alias="$tag_community",
                    ),
                ),
                description=f"Latest community average from analytics, top/ground/gable homes weighted to >= {std.edge_pct}.",
                unit="celsius",
                decimals=1,
                thresholds=std.temperature_steps,
                options={"orientation": "horizontal", "displayMode": "gradient", "reduceOptions": {"calcs": ["lastNotNull"]}},
            ),
            Panel(
                "Share of homes below standard (latest)",
                "bargauge",
                (
                    Query(
                        f'SELECT last("homes_below_standard") / last("homes_reporting") * 100 FROM "{CS}" '
                        'WHERE $timeFilter GROUP BY "community"',
                        _flux_filter(CS, ["homes_below_standard", "homes_reporting"])
                        + '\n  |> last()\n  |> pivot(rowKey: ["community"], columnKey: ["_field"], valueColumn: "_value")'
                        "\n  |> map(fn: (r) => ({community: r.community, "
                        "_value: float(v: r.homes_below_standard) / float(v: r.homes_reporting) * 100.0}))"
                        '\n  |> group(columns: ["community"])',
                        alias="$tag_community",
                    ),
                ),
                description=f"Reporting homes under the indoor standard ({std.rule_text}) in the analysis window.",
                unit="percent",
                decimals=0,
                thresholds=(("green", None), ("orange", _pct(std.cold_share_max / 2)), ("red", _pct(std.cold_share_max))),
                options={"orientation": "horizontal", "displayMode": "gradient", "reduceOptions": {"calcs": ["lastNotNull"]}},
            ),
            Panel(
                f"Weighted community mean vs {std.target_c:g} °C",
                "timeseries",
                (
                    Query(
                        f'SELECT mean("weighted_mean_c") FROM "{CS}" WHERE $timeFilter '
                        'GROUP BY time($__interval), "community" fill(none)',
                        _flux_series(CS, ["weighted_mean_c"], ["community"]),
                        alias="$tag_community",
                    ),
                ),
                w=24,
                unit="celsius",
                decimals=1,
                thresholds=std.target_line,
                threshold_line=True,
            ),
            Panel(
                "Homes below standard",
                "timeseries",
                (
                    Query(
                        f'SELECT last("homes_below_standard") FROM "{CS}" WHERE $timeFilter '
                        'GROUP BY time($__interval), "community" fill(none)',
                        _flux_series(CS, ["homes_below_standard"], ["community"], fn="last"),
                        alias="$tag_community",
                    ),
                ),
                unit="none",
                decimals=0,
            ),
            Panel(
                "Cold communities now",
                "stat",
                (
                    Query(
                        f'SELECT count("status") FROM (SELECT last("status") AS "status" FROM "{CS}" '
                        "WHERE $timeFilter GROUP BY \"community\") WHERE \"status\" = 'cold'",
                        _flux_filter(CS, ["status"]) + '\n  |> last()\n  |> filter(fn: (r) => r._value == "cold")'
                        '\n  |> group()\n  |> count()',
                    ),
                ),
                w=4,
                unit="none",
                thresholds=(("green", None), ("red", 1.0)),
                description="Communities whose latest analytics status is 'cold'.",
            ),
            Panel(
                "Open alerts",
                "stat",
                (
                    Query(
                        f'SELECT count("status") FROM (SELECT last("status") AS "status" FROM "{AL}" '
                        "WHERE $timeFilter GROUP BY \"alert_id\") WHERE \"status\" = 'open'",
                        _flux_filter(AL, ["status", "alert_id"])
                        + '\n  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
                        '\n  |> group(columns: ["alert_id"])\n  |> last(column: "status")'
                        '\n  |> filter(fn: (r) => r.status == "open")\n  |> group()\n  |> count(column: "status")',
                    ),
                ),
                w=4,
                unit="none",
                thresholds=(("green", None), ("orange", 1.0)),
            ),
            Panel(
                "Indoor mean by community (unweighted, from analytics)",
                "timeseries",
                (
                    # analytics' plain mean, not the raw readings: at city scale a mean over every reading of every
                    # home took 20.9 s at 100,000 homes (docs/PERFORMANCE.md); community_stats has one row a cycle
                    Query(
                        f'SELECT mean("plain_mean_c") FROM "{CS}" WHERE $timeFilter '
                        'GROUP BY time($__interval), "community" fill(none)',
                        _flux_series(CS, ["plain_mean_c"], ["community"]),
                        alias="$tag_community",
                    ),
                ),
                w=16,
                unit="celsius",
                decimals=1,
                thresholds=std.target_line,
                threshold_line=True,
            ),
            Panel(
                "Outdoor temperature and forecast",
                "timeseries",
                (
                    Query(
                        f'SELECT mean("temp_c") FROM "{schema.WEATHER}" WHERE $timeFilter '
                        'GROUP BY time($__interval), "site_id" fill(none)',
                        _flux_series(schema.WEATHER, ["temp_c"], ["site_id"]),
                        alias="outdoor $tag_site_id",
                    ),
                    Query(
                        f'SELECT last("temp_c") FROM "{schema.FORECAST}" WHERE $timeFilter '
                        'GROUP BY time($__interval), "site_id" fill(none)',
                        _flux_series(schema.FORECAST, ["temp_c"], ["site_id"], fn="last"),
                        alias="forecast $tag_site_id",
                    ),
                ),
                w=24,
                unit="celsius",
                decimals=1,
            ),
            Panel(
                "Heat delivered per day, by station",
                "timeseries",
                (
                    Query(
                        f'SELECT sum("gj") FROM "{EN}" WHERE "period" = \'day\' AND $timeFilter '
                        'GROUP BY time(1d), "station_id" fill(none)',
                        _flux_series(EN, ["gj"], ["station_id"], fn="sum", extra='r.period == "day"'),
                        alias="$tag_station_id",
                    ),
                ),
                w=24,
                unit="suffix: GJ",
                decimals=2,
                description="Q = ṁ·c·(supply − return) from each station's readings, per local day (station_energy, "
                            "written by `heatwatch energy`). The stations dashboard adds heat per degree-day.",
                custom={"drawStyle": "bars", "fillOpacity": 60, "stacking": {"mode": "normal"}},
            ),
            Panel(
                "Alerts to dispatch",
                "table",
                (
                    Query(
                        f'SELECT "category", "community", "station_id", "home_id", "status", "content", "alert_id" '
                        f'FROM "{AL}" WHERE $timeFilter ORDER BY time DESC LIMIT 200',
                        _flux_filter(AL, ["home_id", "status", "content", "alert_id"])
                        + '\n  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
                        '\n  |> group()\n  |> sort(columns: ["_time"], desc: true)\n  |> limit(n: 200)',
                        table=True,
                    ),
                ),
                w=24,
                h=9,
                options={**_SORT_ASC, "sortBy": [{"displayName": "Time", "desc": True}]},
            ),
        ),
    )


def _community(std: Standard) -> Dashboard:
    c = COMMUNITY_RE
    return Dashboard(
        slug="heatwatch-community",
        title="heatwatch · community detail",
        description="One community: homes sorted by temperature, edge vs middle homes, sensor health.",
        variables=(
            Variable(
                "community",
                "Community",
                f'SHOW TAG VALUES FROM "{schema.INDOOR}" WITH KEY = "community"',
                'import "influxdata/influxdb/schema"\n'
                f'schema.measurementTagValues(bucket: v.defaultBucket, measurement: "{schema.INDOOR}", tag: "community")',
            ),
        ),
        panels=(
            Panel(
                "Weighted mean (latest)",
                "stat",
                (
                    Query(
                        f'SELECT last("weighted_mean_c") AS "weighted", last("plain_mean_c") AS "plain" FROM "{CS}" '
                        f'WHERE "community" =~ {c} AND $timeFilter',
                        _flux_filter(CS, ["weighted_mean_c", "plain_mean_c"], FLUX_COMMUNITY)
                        + '\n  |> last()\n  |> keep(columns: ["_field", "_value"])',
                    ),
                ),
                w=6,
                h=5,
                unit="celsius",
                decimals=1,
                thresholds=std.temperature_steps,
            ),
            Panel(
                f"Edge share and edge weight (>= {std.edge_pct})",
                "stat",
                (
                    Query(
                        f'SELECT last("edge_share") * 100 AS "edge share", last("edge_weight") * 100 AS "edge weight" '
                        f'FROM "{CS}" WHERE "community" =~ {c} AND $timeFilter',
                        _flux_filter(CS, ["edge_share", "edge_weight"], FLUX_COMMUNITY)
                        + "\n  |> last()\n  |> map(fn: (r) => ({r with _value: r._value * 100.0}))"
                        '\n  |> keep(columns: ["_field", "_value"])',
                    ),
                ),
                w=6,
                h=5,
                unit="percent",
                decimals=0,
                thresholds=(("red", None), ("green", _pct(std.edge_share_min))),
                description=f"Top, ground and gable homes together carry at least {std.edge_pct} of the average (000 section 五).",
            ),
            Panel(
                "Homes reporting / below standard",
                "stat",
                (
                    Query(
                        f'SELECT last("homes_registered") AS "registered", last("homes_reporting") AS "reporting", '
                        f'last("homes_below_standard") AS "below standard" FROM "{CS}" '
                        f'WHERE "community" =~ {c} AND $timeFilter',
                        _flux_filter(CS, ["homes_registered", "homes_reporting", "homes_below_standard"], FLUX_COMMUNITY)
                        + '\n  |> last()\n  |> keep(columns: ["_field", "_value"])',
                    ),
                ),
                w=12,
                h=5,
                unit="none",
                decimals=0,
            ),
            Panel(
                "Homes by temperature (coldest first)",
                "table",
                (
                    Query(
                        f'SELECT last("temp_c") AS "temp_c", last("rh") AS "rh", last("battery_v") AS "battery_v" '
                        f'FROM "{schema.INDOOR}" WHERE "community" =~ {c} AND $timeFilter GROUP BY "home_id", "building"',
                        _flux_latest_table(schema.INDOOR, ["temp_c", "rh", "battery_v"], ["home_id", "building"],
                                           FLUX_COMMUNITY, sort="temp_c"),
                        table=True,
                    ),
                ),
                w=12,
                h=14,
                options={**_SORT_ASC, "sortBy": [{"displayName": "temp_c", "desc": False}]},
                unit="",
                overrides=(
                    {
                        "matcher": {"id": "byName", "options": "temp_c"},
                        "properties": [
                            {"id": "unit", "value": "celsius"},
                            {"id": "decimals", "value": 1},
                            {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                            {"id": "thresholds", "value": _thresholds(std.temperature_steps)},
                        ],
                    },
                ),
            ),
            Panel(
                "Homes below standard (analytics)",
                "table",
                (
                    Query(
                        f'SELECT last("mean_c") AS "mean_c", last("min_hourly_c") AS "min_hourly_c", '
                        f'last("hours_below") AS "hours_below", last("longest_run_h") AS "longest_run_h", '
                        f'last("threshold_c") AS "threshold_c", last("rule") AS "rule" FROM "{HS}" '
                        f'WHERE "community" =~ {c} AND "below" = 1 AND $timeFilter GROUP BY "home_id", "building"',
                        _flux_filter(HS, [], FLUX_COMMUNITY)
                        + "\n  |> last()"
                        + '\n  |> pivot(rowKey: ["home_id", "building"], columnKey: ["_field"], valueColumn: "_value")'
                        "\n  |> filter(fn: (r) => r.below == 1)\n  |> group()"
                        '\n  |> keep(columns: ["home_id", "building", "mean_c", "min_hourly_c", "hours_below", '
                        '"longest_run_h", "threshold_c", "rule"])\n  |> sort(columns: ["mean_c"])',
                        table=True,
                    ),
                ),
                w=12,
                h=14,
                options={**_SORT_ASC, "sortBy": [{"displayName": "mean_c", "desc": False}]},
            ),
            Panel(
                "Edge-weighted vs plain mean",
                "timeseries",
                (
                    Query(
                        f'SELECT mean("weighted_mean_c") AS "weighted", mean("plain_mean_c") AS "plain" FROM "{CS}" '
                        f'WHERE "community" =~ {c} AND $timeFilter GROUP BY time($__interval) fill(none)',
                        _flux_series(CS, ["weighted_mean_c", "plain_mean_c"], [], extra=FLUX_COMMUNITY),
                    ),
                ),
                unit="celsius",
                decimals=1,
                thresholds=std.target_line,
                threshold_line=True,
                description="The weighted mean sits below the plain mean when cold edge homes are under-sampled.",
            ),
            Panel(
                "Imbalance: middle minus edge, building and entrance spread",
                "timeseries",
                (
                    Query(
                        f'SELECT mean("edge_middle_gap_c") AS "middle - edge", mean("building_spread_c") AS "building spread", '
                        f'mean("entrance_spread_c") AS "entrance spread" FROM "{IM}" '
                        f'WHERE "community" =~ {c} AND $timeFilter GROUP BY time($__interval) fill(none)',
                        _flux_series(IM, ["edge_middle_gap_c", "building_spread_c", "entrance_spread_c"], [],
                                     extra=FLUX_COMMUNITY),
                    ),
                ),
                unit="celsius",
                decimals=1,
            ),
            Panel(
                "Indoor temperature by building",
                "timeseries",
                (
                    Query(
                        f'SELECT mean("temp_c") FROM "{schema.INDOOR}" WHERE "community" =~ {c} AND $timeFilter '
                        'GROUP BY time($__interval), "building" fill(none)',
                        _flux_series(schema.INDOOR, ["temp_c"], ["building"], extra=FLUX_COMMUNITY),
                        alias="$tag_building",
                    ),
                ),
                unit="celsius",
                decimals=1,
                thresholds=std.target_line,
                threshold_line=True,
            ),
            Panel(
                "Readings per hour (sensor dropout)",
                "timeseries",
                (
                    Query(
                        f'SELECT count("temp_c") FROM "{schema.INDOOR}" WHERE "community" =~ {c} AND $timeFilter '
                        "GROUP BY time(1h) fill(0)",
                        _flux_filter(schema.INDOOR, ["temp_c"], FLUX_COMMUNITY)
                        + "\n  |> group()\n  |> aggregateWindow(every: 1h, fn: count, createEmpty: true)",
                        alias="readings",
                    ),
                ),
                unit="none",
                custom={"drawStyle": "bars", "fillOpacity": 60},
            ),
            Panel(
                "Sensor health findings",
                "table",
                (
                    Query(
                        f'SELECT last("value") AS "value", last("detail") AS "detail" FROM "{SH}" '
                        f'WHERE "community" =~ {c} AND $timeFilter GROUP BY "home_id", "finding"',
                        _flux_latest_table(SH, ["value", "detail"], ["home_id", "finding"], FLUX_COMMUNITY),
                        table=True,
                    ),
                ),
                w=12,
                h=10,
                description="stale, stuck, jump, warm or no_sensor, from analytics.",
                options={**_SORT_ASC, "sortBy": [{"displayName": "finding", "desc": False}]},
            ),
            Panel(
                "Lowest sensor batteries",
                "table",
                (
                    Query(
                        f'SELECT last("battery_v") AS "battery_v" FROM "{schema.INDOOR}" '
                        f'WHERE "community" =~ {c} AND $timeFilter GROUP BY "home_id"',
                        _flux_latest_table(schema.INDOOR, ["battery_v"], ["home_id"], FLUX_COMMUNITY, sort="battery_v"),
                        table=True,
                    ),
                ),
                w=12,
                h=10,
                unit="volt",
                options={**_SORT_ASC, "sortBy": [{"displayName": "battery_v", "desc": False}]},
            ),
        ),
    )


def _stations(std: Standard) -> Dashboard:
    s = STATION_RE
    st = schema.STATION
    return Dashboard(
        slug="heatwatch-stations",
        title="heatwatch · heat-exchange stations",
        description="Secondary supply/return against control's proposed (heating-curve) supply, flow, pressure.",
        variables=(
            Variable(
                "station",
                "Station",
                f'SHOW TAG VALUES FROM "{st}" WITH KEY = "station_id"',
                'import "influxdata/influxdb/schema"\n'
                f'schema.measurementTagValues(bucket: v.defaultBucket, measurement: "{st}", tag: "station_id")',
            ),
        ),
        annotations=(
            Annotation(
                "Proposals",
                "orange",
                f'SELECT "reason", "kind", "status", "proposed_c" FROM "{PR}" WHERE "station_id" =~ {s} AND $timeFilter',
                _flux_filter(PR, ["reason", "status", "proposed_c"], FLUX_STATION)
                + '\n  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
                '\n  |> map(fn: (r) => ({r with text: r.reason}))',
                "reason",
                "kind,status",
            ),
            Annotation(
                "Alerts",
                "red",
                f'SELECT "content", "category", "status" FROM "{AL}" WHERE "station_id" =~ {s} AND $timeFilter',
                _flux_filter(AL, ["content", "status"], FLUX_STATION)
                + '\n  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
                '\n  |> map(fn: (r) => ({r with text: r.content}))',
                "content",
                "category,status",
            ),
        ),
        panels=(
            Panel(
                "Supply and return vs proposed supply (heating curve)",
                "timeseries",
                (
                    Query(
                        f'SELECT mean("supply_c") AS "supply", mean("return_c") AS "return" FROM "{st}" '
                        f'WHERE "station_id" =~ {s} AND $timeFilter GROUP BY time($__interval) fill(none)',
                        _flux_series(st, ["supply_c", "return_c"], [], extra=FLUX_STATION),
                    ),
                    Query(
                        f'SELECT last("proposed_c") AS "proposed supply" FROM "{PR}" '
                        f'WHERE "station_id" =~ {s} AND $timeFilter GROUP BY time($__interval) fill(none)',
                        _flux_series(PR, ["proposed_c"], [], fn="last", extra=FLUX_STATION),
                    ),
                ),
                w=24,
                h=10,
                unit="celsius",
                decimals=1,
                description="Proposed supply = heating curve at the outdoor temperature plus indoor feedback (control).",
                overrides=(
                    {
                        "matcher": {"id": "byRegexp", "options": ".*proposed.*"},
                        "properties": [
                            {"id": "custom.drawStyle", "value": "points"},
                            {"id": "custom.pointSize", "value": 10},
                            {"id": "color", "value": {"mode": "fixed", "fixedColor": "orange"}},
                        ],
                    },
                ),
            ),
            Panel(
                "Outdoor temperature",
                "timeseries",
                (
                    Query(
                        f'SELECT mean("temp_c") FROM "{schema.WEATHER}" WHERE $timeFilter '
                        'GROUP BY time($__interval), "site_id" fill(none)',
                        _flux_series(schema.WEATHER, ["temp_c"], ["site_id"]),
                        alias="$tag_site_id",
                    ),
                ),
                unit="celsius",
                decimals=1,
            ),
            Panel(
                "Flow",
                "timeseries",
                (
                    Query(
                        f'SELECT mean("flow_m3h") AS "flow" FROM "{st}" WHERE "station_id" =~ {s} AND $timeFilter '
                        "GROUP BY time($__interval) fill(none)",
                        _flux_series(st, ["flow_m3h"], [], extra=FLUX_STATION),
                    ),
                ),
                unit="m³/h",
                decimals=1,
            ),
            Panel(
                "Pressure: supply, return, differential",
                "timeseries",
                (
                    Query(
                        f'SELECT mean("supply_kpa") AS "supply", mean("return_kpa") AS "return", '
                        f'mean("supply_kpa") - mean("return_kpa") AS "differential" FROM "{st}" '
                        f'WHERE "station_id" =~ {s} AND $timeFilter GROUP BY time($__interval) fill(none)',
                        _flux_filter(st, ["supply_kpa", "return_kpa"], FLUX_STATION)
                        + '\n  |> group(columns: ["_field"])\n' + _WINDOW.format(fn="mean")
                        + '\n  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
                        "\n  |> map(fn: (r) => ({_time: r._time, supply: r.supply_kpa, return: r.return_kpa, "
                        "differential: r.supply_kpa - r.return_kpa}))",
                    ),
                ),
                unit="kPa",
                decimals=0,
            ),
            Panel(
                "Primary network supply/return",
                "timeseries",
                (
                    Query(
                        f'SELECT mean("primary_supply_c") AS "primary supply", mean("primary_return_c") AS "primary return" '
                        f'FROM "{st}" WHERE "station_id" =~ {s} AND $timeFilter GROUP BY time($__interval) fill(none)',
                        _flux_series(st, ["primary_supply_c", "primary_return_c"], [], extra=FLUX_STATION),
                    ),
                ),
                unit="celsius",
                decimals=1,
            ),
            Panel(
                "Heat delivered per day",
                "timeseries",
                (
                    Query(
                        f'SELECT sum("gj") AS "heat" FROM "{EN}" WHERE "station_id" =~ {s} AND "period" = \'day\' '
                        "AND $timeFilter GROUP BY time(1d) fill(none)",
                        _flux_series(EN, ["gj"], [], fn="sum", extra=FLUX_STATION + ' and r.period == "day"'),
                    ),
                ),
                unit="suffix: GJ",
                decimals=2,
                description="Q = ṁ·c·(supply − return) from the station's own readings, per local day "
                            "(station_energy, written by `heatwatch energy`; docs/SCHEMA.md).",
                custom={"drawStyle": "bars", "fillOpacity": 60},
            ),
            Panel(
                "Heat per heating degree-day",
                "timeseries",
                (
                    Query(
                        f'SELECT mean("gj_per_hdd") AS "GJ per degree-day" FROM "{EN}" WHERE "station_id" =~ {s} '
                        "AND \"period\" = 'day' AND $timeFilter GROUP BY time(1d) fill(none)",
                        _flux_series(EN, ["gj_per_hdd"], [], extra=FLUX_STATION + ' and r.period == "day"'),
                    ),
                ),
                unit="suffix: GJ/HDD",
                decimals=3,
                description="Daily heat over heating degree-days (base 18 °C): comparable across mild and cold days.",
            ),
            Panel(
                "Proposals",
                "table",
                (
                    Query(
                        f'SELECT "proposal_id", "kind", "status", "current_c", "proposed_c", "delta_c", "reason" '
                        f'FROM "{PR}" WHERE "station_id" =~ {s} AND $timeFilter ORDER BY time DESC LIMIT 100',
                        _flux_filter(PR, ["proposal_id", "status", "current_c", "proposed_c", "delta_c", "reason"],
                                     FLUX_STATION)
                        + '\n  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
                        '\n  |> group()\n  |> sort(columns: ["_time"], desc: true)\n  |> limit(n: 100)',
                        table=True,
                    ),
                ),
                w=24,
                h=8,
                options={**_SORT_ASC, "sortBy": [{"displayName": "Time", "desc": True}]},
            ),
        ),
    )


def _collector(std: Standard) -> Dashboard:
    return Dashboard(
        slug="heatwatch-collector",
        title="heatwatch · collector health",
        description="Ingest rate, rejects by reason, spool and queue of every collector replica.",
        panels=(
            Panel(
                "Ingest rate (readings stored per second)",
                "timeseries",
                (
                    Query(
                        f'SELECT non_negative_derivative(max("stored"), 1s) FROM "{CO}" WHERE $timeFilter '
                        'GROUP BY time($__interval), "collector_id" fill(none)',
                        _flux_filter(CO, ["stored"]) + '\n  |> group(columns: ["collector_id"])\n'
                        + _WINDOW.format(fn="max") + "\n  |> derivative(unit: 1s, nonNegative: true)",
                        alias="$tag_collector_id",
                    ),
                ),
                w=12,
                unit="reqps",
                description="Counters are cumulative per collector process; the derivative survives restarts.",
            ),
            Panel(
                "MQTT messages received per second",
                "timeseries",
                (
                    Query(
                        f'SELECT non_negative_derivative(max("received"), 1s) FROM "{CO}" WHERE $timeFilter '
                        'GROUP BY time($__interval), "collector_id" fill(none)',
                        _flux_filter(CO, ["received"]) + '\n  |> group(columns: ["collector_id"])\n'
                        + _WINDOW.format(fn="max") + "\n  |> derivative(unit: 1s, nonNegative: true)",
                        alias="$tag_collector_id",
                    ),
                ),
                w=12,
                unit="reqps",
            ),
            Panel(
                "Rejects by reason (per minute)",
                "timeseries",
                (
                    Query(
                        f'SELECT non_negative_derivative(max("count"), 1m) FROM "{CR}" WHERE $timeFilter '
                        'GROUP BY time($__interval), "reason", "collector_id" fill(none)',
                        _flux_filter(CR, ["count"]) + '\n  |> group(columns: ["reason", "collector_id"])\n'
                        + _WINDOW.format(fn="max") + "\n  |> derivative(unit: 1m, nonNegative: true)",
                        alias="$tag_reason ($tag_collector_id)",
                    ),
                ),
                w=12,
                unit="none",
                custom={"drawStyle": "bars", "fillOpacity": 60, "stacking": {"mode": "normal", "group": "A"}},
            ),
            Panel(
                "Rejected total by reason",
                "bargauge",
                (
                    Query(
                        f'SELECT sum("count") FROM (SELECT last("count") AS "count" FROM "{CR}" WHERE $timeFilter '
                        'GROUP BY "reason", "collector_id") GROUP BY "reason"',
                        _flux_filter(CR, ["count"]) + "\n  |> last()"
                        '\n  |> group(columns: ["reason"])\n  |> sum()',
                        alias="$tag_reason",
                    ),
                ),
                w=12,
                unit="none",
                description="Since each collector last started (counters reset on restart).",
                options={"orientation": "horizontal", "displayMode": "basic", "reduceOptions": {"calcs": ["lastNotNull"]}},
            ),
            Panel(
                "Spool (store unreachable)",
                "timeseries",
                (
                    Query(
                        f'SELECT max("spool_bytes") FROM "{CO}" WHERE $timeFilter '
                        'GROUP BY time($__interval), "collector_id" fill(none)',
                        _flux_series(CO, ["spool_bytes"], ["collector_id"], fn="max"),
                        alias="$tag_collector_id",
                    ),
                ),
                w=8,
                unit="bytes",
                description="Non-zero while batches wait for the store; replayed in order when it returns.",
            ),
            Panel(
                "Spooled and replayed readings",
                "timeseries",
                (
                    Query(
                        f'SELECT max("spooled") AS "spooled", max("replayed") AS "replayed" FROM "{CO}" WHERE $timeFilter '
                        'GROUP BY time($__interval), "collector_id" fill(none)',
                        _flux_series(CO, ["spooled", "replayed"], ["collector_id"], fn="max"),
                        alias="$col $tag_collector_id",
                    ),
                ),
                w=8,
                unit="none",
            ),
            Panel(
                "Queue depth and batch latency",
                "timeseries",
                (
                    Query(
                        f'SELECT max("queue_depth") AS "queue" FROM "{CO}" WHERE $timeFilter '
                        'GROUP BY time($__interval), "collector_id" fill(none)',
                        _flux_series(CO, ["queue_depth"], ["collector_id"], fn="max"),
                        alias="queue $tag_collector_id",
                    ),
                    Query(
                        f'SELECT max("batch_latency_ms") AS "latency" FROM "{CO}" WHERE $timeFilter '
                        'GROUP BY time($__interval), "collector_id" fill(none)',
                        _flux_series(CO, ["batch_latency_ms"], ["collector_id"], fn="max"),
                        alias="batch ms $tag_collector_id",
                    ),
                ),
                w=8,
                unit="none",
            ),
        ),
    )


DF, DO = schema.DESK_FIGURES, schema.DESK_OVERDUE
FLUX_ALL_UNITS = 'r.handling_unit == "ALL"'
# a rate field of desk_figures (ontime_<clock>), not its count (ontime_<clock>_n): RE2 has no lookahead
ONTIME_RATE_RE = "/^ontime_.*([^_].|_[^n])$/"


def _desk(std: Standard) -> Dashboard:
    """The service desk (docs/SERVICE_DESK.md): overdue orders now and the monthly figures per handling unit."""
    return Dashboard(
        slug="heatwatch-desk",
        title="heatwatch · service desk",
        description="Orders past a clock of the standards, and the monthly figures (by the local month an order was received).",
        panels=(
            Panel(
                "Overdue orders now",
                "stat",
                (
                    Query(
                        f'SELECT last("count") FROM "{DO}" WHERE "handling_unit" = \'ALL\' AND $timeFilter',
                        _flux_filter(DO, ["count"], FLUX_ALL_UNITS) + "\n  |> last()",
                    ),
                ),
                w=4,
                unit="none",
                thresholds=(("green", None), ("red", 1.0)),
                description="Open orders past any of their clocks at the desk's last tick (heatwatch orders overdue lists them).",
            ),
            Panel(
                "Overdue orders by handling unit",
                "timeseries",
                (
                    Query(
                        f'SELECT last("count") FROM "{DO}" WHERE "handling_unit" <> \'ALL\' AND $timeFilter '
                        'GROUP BY time($__interval), "handling_unit" fill(none)',
                        _flux_series(DO, ["count"], ["handling_unit"], fn="last", extra='r.handling_unit != "ALL"'),
                        alias="$tag_handling_unit",
                    ),
                ),
                w=20,
                unit="none",
                decimals=0,
            ),
            Panel(
                "Closure, satisfaction and first response on time (all units, per month)",
                "timeseries",
                (
                    Query(
                        f'SELECT last("closure_rate") AS "closure", last("satisfaction_rate") AS "satisfaction", '
                        f'last("ontime_respond") AS "respond on time" FROM "{DF}" WHERE "handling_unit" = \'ALL\' '
                        "AND $timeFilter GROUP BY time($__interval) fill(none)",
                        _flux_series(DF, ["closure_rate", "satisfaction_rate", "ontime_respond"], [], fn="last",
                                     extra=FLUX_ALL_UNITS),
                    ),
                ),
                unit="percentunit",
                decimals=1,
                custom={"drawStyle": "bars", "fillOpacity": 60},
                description="The standards ask for 100 % closure and satisfaction. Each point is a month, at its local start.",
            ),
            Panel(
                "On-time rate by clock (all units, per month)",
                "timeseries",
                (
                    Query(
                        f'SELECT last({ONTIME_RATE_RE}) FROM "{DF}" WHERE "handling_unit" = \'ALL\' AND $timeFilter '
                        "GROUP BY time($__interval) fill(none)",
                        _flux_filter(DF, (), FLUX_ALL_UNITS + ' and r._field =~ /^ontime_/ and r._field !~ /_n$/')
                        + '\n  |> group(columns: ["_field"])\n' + _WINDOW.format(fn="last"),
                    ),
                ),
                unit="percentunit",
                decimals=1,
                description="Met on time / decided (met, late or overdue) for each clock of the standards.",
            ),
            Panel(
                "Monthly figures by handling unit",
                "table",
                (
                    Query(
                        f'SELECT * FROM "{DF}" WHERE $timeFilter ORDER BY time DESC LIMIT 500',
                        _flux_filter(DF)
                        + '\n  |> pivot(rowKey: ["_time", "handling_unit"], columnKey: ["_field"], valueColumn: "_value")'
                        '\n  |> group()\n  |> sort(columns: ["_time"], desc: true)\n  |> limit(n: 500)',
                        table=True,
                    ),
                ),
                w=24,
                h=10,
                options={**_SORT_ASC, "sortBy": [{"displayName": "Time", "desc": True}]},
                description="heatwatch orders figures --month YYYY-MM shows the same; docs/SERVICE_DESK.md defines each column.",
            ),
        ),
    )


DASHBOARDS = (_city, _community, _stations, _collector, _desk)


# --- Flux well-formedness (no Flux engine runs here; InfluxDB 2.x cannot be installed) ---------
_FLUX_STRING_OR_COMMENT = re.compile(r'"(?:\\.|[^"\\])*"|//[^\n]*')


def _strip_flux(text: str) -> tuple[str, list[str]]:
    """Text with string literals emptied and // comments removed, plus problems found on the way."""
    bare = _FLUX_STRING_OR_COMMENT.sub(lambda m: '""' if m.group().startswith('"') else "", text)
    return bare, ["unterminated string literal"] if '"' in bare.replace('""', "") else []


def flux_syntax_problems(text: str) -> list[str]:
    """Shallow checks of a Flux script: strings, balanced brackets, pipeline layout, Grafana/InfluxQL leftovers."""
    bare, problems = _strip_flux(text)
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for ch in bare:
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            problems.append(f"unbalanced {ch!r}")
            break
    if stack:
        problems.append(f"unclosed {''.join(stack)!r}")
    lines = [ln for ln in bare.splitlines() if ln.strip()]
    for ln in lines:
        if ln[0].isspace() and not ln.lstrip().startswith("|>"):
            problems.append(f"indented line that is not a |> pipeline step: {ln.strip()[:60]!r}")
        if not ln[0].isspace() and ln.startswith("|>"):
            problems.append("pipeline step without a source")
    for leftover in ("$timeFilter", "$__interval", "/^$", "GROUP BY", "SELECT "):
        if leftover in text:
            problems.append(f"InfluxQL/Grafana-InfluxQL leftover {leftover!r}")
    if "from(" in bare and "range(" not in bare:
        problems.append("from() without range(): InfluxDB 2.x refuses unbounded queries")
    return problems


# --- rendering to Grafana JSON ------------------------------------------------------------------
def _thresholds(steps: Steps) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for color, value in steps]}


def datasource(dialect: Dialect) -> dict[str, str]:
    return {"type": "influxdb", "uid": DATASOURCE_UID[dialect]}


def _target(q: Query, ref: str, dialect: Dialect) -> dict[str, Any]:
    t: dict[str, Any] = {"refId": ref, "datasource": datasource(dialect)}
    if dialect == "influxql":
        t.update(
            {
                "query": q.influxql,
                "rawQuery": True,
                "resultFormat": "table" if q.table else "time_series",
            }
        )
        if q.alias:
            t["alias"] = q.alias
    else:
        t["query"] = q.flux
    return t


def _panel(p: Panel, pid: int, x: int, y: int, dialect: Dialect) -> dict[str, Any]:
    custom = dict(p.custom)
    if p.threshold_line:
        custom["thresholdsStyle"] = {"mode": "line+area" if p.kind == "timeseries" else "off"}
    defaults: dict[str, Any] = {"custom": custom} if custom else {}
    if p.unit:
        defaults["unit"] = p.unit
    if p.decimals is not None:
        defaults["decimals"] = p.decimals
    if p.thresholds:
        defaults["thresholds"] = _thresholds(p.thresholds)
        if p.kind in ("stat", "bargauge"):
            defaults["color"] = {"mode": "thresholds"}
    refs = "ABCDEFGH"
    return {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": datasource(dialect),
        "gridPos": {"h": p.h, "w": p.w, "x": x, "y": y},
        "targets": [_target(q, refs[i], dialect) for i, q in enumerate(p.queries)],
        "fieldConfig": {"defaults": defaults, "overrides": list(p.overrides)},
        "options": dict(p.options),
    }


def _variable(v: Variable, dialect: Dialect) -> dict[str, Any]:
    q = v.influxql if dialect == "influxql" else v.flux
    return {
        "name": v.name,
        "label": v.label,
        "type": "query",
        "datasource": datasource(dialect),
        "query": q,
        "definition": q,
        "refresh": 2,
        "sort": 1,
        "includeAll": False,
        "multi": False,
        "current": {},
        "options": [],
        "hide": 0,
    }


def _annotation(a: Annotation, dialect: Dialect) -> dict[str, Any]:
    return {
        "name": a.name,
        "datasource": datasource(dialect),
        "enable": True,
        "hide": False,
        "iconColor": a.color,
        "query": a.influxql if dialect == "influxql" else a.flux,
        "textColumn": a.text_column if dialect == "influxql" else "text",
        "tagsColumn": a.tags_columns,
    }


def render(d: Dashboard, dialect: Dialect, timezone: str) -> dict[str, Any]:
    """Grafana dashboard JSON; panels flow left to right in rows of 24 grid units."""
    panels = []
    x = y = row_h = 0
    for i, p in enumerate(d.panels, start=1):
        if x + p.w > GRID_WIDTH:
            x, y, row_h = 0, y + row_h, 0
        panels.append(_panel(p, i, x, y, dialect))
        x += p.w
        row_h = max(row_h, p.h)
    suffix = "" if dialect == "influxql" else "-flux"
    builtin = {
        "builtIn": 1,
        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        "enable": True,
        "hide": True,
        "iconColor": "rgba(0, 211, 255, 1)",
        "name": "Annotations & Alerts",
        "type": "dashboard",
    }
    return {
        "uid": d.slug + suffix,
        "title": d.title + ("" if dialect == "influxql" else " (Flux)"),
        "description": d.description,
        "tags": ["heatwatch", dialect],
        "timezone": timezone,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "1m",
        "time": {"from": "now-7d", "to": "now"},
        "links": [
            {"type": "dashboards", "tags": ["heatwatch", dialect], "asDropdown": True, "title": "heatwatch",
             "icon": "external link"}
        ],
        "templating": {"list": [_variable(v, dialect) for v in d.variables]},
        "annotations": {"list": [builtin, *(_annotation(a, dialect) for a in d.annotations)]},
        "panels": panels,
    }


def generate(cfg: Config | None = None) -> dict[str, dict[str, Any]]:
    """Relative path -> dashboard JSON, for both dialects, drawn against ``cfg``'s standard (default: the defaults)."""
    std = Standard.of(cfg or Config())
    out: dict[str, dict[str, Any]] = {}
    for dialect in DIALECTS:
        for make in DASHBOARDS:
            d = make(std)
            out[f"{dialect}/{d.slug}.json"] = render(d, dialect, std.timezone)
    return out


def dumps(board: dict[str, Any]) -> str:
    return json.dumps(board, ensure_ascii=False, indent=2, sort_keys=False) + "\n"


def write(out_dir: Path, cfg: Config | None = None) -> list[Path]:
    """Write every dashboard under ``out_dir``; the paths written."""
    written = []
    for rel, board in generate(cfg).items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dumps(board), encoding="utf-8")
        written.append(path)
    return written


def check(out_dir: Path) -> list[str]:
    """Paths whose committed JSON differs from the generated one, and Flux problems (empty when all is well)."""
    stale = []
    expected = generate()
    for rel, board in expected.items():
        path = out_dir / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != dumps(board):
            stale.append(rel)
    for rel, board in expected.items():
        if rel.startswith("flux/"):
            for panel in board["panels"]:
                for t in panel["targets"]:
                    stale += [f"{rel} panel {panel['id']}: {p}" for p in flux_syntax_problems(t["query"])]
    for dialect in DIALECTS:
        for extra in sorted((out_dir / dialect).glob("*.json")):
            if f"{dialect}/{extra.name}" not in expected:
                stale.append(f"{dialect}/{extra.name} (not generated; delete it)")
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.dashboards", description=__doc__)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="exit 1 if the files differ from the generated dashboards")
    ap.add_argument("--config", type=Path, help="draw against this heatwatch.toml's standard instead of the defaults")
    args = ap.parse_args(argv)
    cfg = load_config(args.config, environ={}) if args.config else None
    if args.check:
        stale = check(args.out)
        for rel in stale:
            print(f"stale: {rel}", file=sys.stderr)
        return 1 if stale else 0
    for path in write(args.out, cfg):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
