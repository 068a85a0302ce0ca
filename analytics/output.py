"""Results at the edges: the ``analyze --json`` object, and the points written back for Grafana.

JSON: timestamps RFC 3339 with the local offset, temperatures rounded to 0.01 °C, shares to 4
decimals, Chinese names as-is. Points carry the window end as their time, so re-running the
same window overwrites instead of duplicating (idempotent).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from analytics.results import AnalysisResult, CommunityStats, HomeBelow, Imbalance, OtherHomes, SensorFinding
from heatwatch.core import schema
from heatwatch.core.model import FieldValue, Point
from heatwatch.core.timeutil import rfc3339, to_ns
from heatwatch.infra.storage.base import Store


def _t(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), 2)


def _s(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), 4)


def _ts(dt: datetime | None, tz: ZoneInfo) -> str | None:
    return None if dt is None else rfc3339(dt, tz)


def community_json(c: CommunityStats) -> dict[str, Any]:
    return {
        "community": c.community,
        "homes_registered": c.homes_registered,
        "homes_reporting": c.homes_reporting,
        "edge_homes": c.edge_homes,
        "middle_homes": c.middle_homes,
        "edge_share": _s(c.edge_share),
        "edge_weight": _s(c.edge_weight),
        "weighted_mean_c": _t(c.weighted_mean_c),
        "plain_mean_c": _t(c.plain_mean_c),
        "homes_below_standard": c.homes_below_standard,
        "status": c.status,
        "target_c": _t(c.target_c),
        "homes_excluded": c.homes_excluded,
        "bungalows": _other(c.bungalows),
        "non_residential": _other(c.non_residential),
    }


def _other(o: OtherHomes | None) -> dict[str, Any] | None:
    if o is None:
        return None
    return {"homes_reporting": o.homes_reporting, "mean_c": _t(o.mean_c), "homes_below_standard": o.homes_below_standard}


def home_json(h: HomeBelow, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "home_id": h.home_id,
        "community": h.community,
        "building": h.building,
        "rule": h.rule,
        "threshold_c": _t(h.threshold_c),
        "hours_below": h.hours_below,
        "longest_run_h": h.longest_run_h,
        "mean_c": _t(h.mean_c),
        "min_hourly_c": _t(h.min_hourly_c),
        "first_below": _ts(h.first_below, tz),
    }


def sensor_json(f: SensorFinding, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "home_id": f.home_id,
        "community": f.community,
        "finding": f.finding,
        "detail": f.detail,
        "value": _t(f.value),
        "since": _ts(f.since, tz),
    }


def imbalance_json(i: Imbalance) -> dict[str, Any]:
    return {
        "community": i.community,
        "building_means_c": {k: _t(v) for k, v in i.building_means_c.items()},
        "entrance_means_c": {k: _t(v) for k, v in i.entrance_means_c.items()},
        "building_spread_c": _t(i.building_spread_c),
        "entrance_spread_c": _t(i.entrance_spread_c),
        "edge_mean_c": _t(i.edge_mean_c),
        "middle_mean_c": _t(i.middle_mean_c),
        "edge_middle_gap_c": _t(i.edge_middle_gap_c),
        "cold_buildings": list(i.cold_buildings),
        "warm_buildings": list(i.warm_buildings),
    }


def result_to_json(result: AnalysisResult, tz: ZoneInfo) -> dict[str, Any]:
    """The one object ``heatwatch analyze --json`` prints (docs/ANALYTICS.md, "JSON contract")."""
    return {
        "window": {"from": rfc3339(result.window_from, tz), "to": rfc3339(result.window_to, tz), "timezone": result.timezone},
        "communities": [community_json(c) for c in result.communities],
        "homes_below_standard": [home_json(h, tz) for h in result.homes_below_standard],
        "sensors": [sensor_json(f, tz) for f in result.sensors],
        "imbalance": [imbalance_json(i) for i in result.imbalance],
    }


def _fields(**kw: FieldValue | None) -> dict[str, FieldValue]:
    """Drop None/NaN (a time-series point cannot hold null); numpy scalars become Python values."""
    out: dict[str, FieldValue] = {}
    for k, v in kw.items():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        out[k] = v
    return out


def result_points(result: AnalysisResult, at: datetime | None = None) -> list[Point]:
    """community_stats, home_status, sensor_health and imbalance points, all at ``at`` (default: window end)."""
    ts = to_ns(at or result.window_to)
    pts: list[Point] = []
    for c in result.communities:
        pts.append(Point(schema.COMMUNITY_STATS, {"community": c.community}, _fields(
            weighted_mean_c=c.weighted_mean_c, plain_mean_c=c.plain_mean_c, homes_registered=c.homes_registered,
            homes_reporting=c.homes_reporting, edge_homes=c.edge_homes, middle_homes=c.middle_homes,
            edge_share=c.edge_share, edge_weight=c.edge_weight, homes_below_standard=c.homes_below_standard,
            status=c.status, target_c=c.target_c, homes_excluded=c.homes_excluded,
            bungalow_mean_c=c.bungalows.mean_c if c.bungalows else None,
            non_residential_mean_c=c.non_residential.mean_c if c.non_residential else None), ts))
    if result.homes is not None:
        t = result.homes
        for hid, comm, bld, mean, mn, hb, lr, thr, below, rule in zip(
            t["home_id"], t["community"], t["building"], t["mean_c"].astype(float), t["min_hourly_c"].astype(float),
            t["hours_below"].astype(int), t["longest_run_h"].astype(int), t["threshold_c"].astype(float),
            t["below"].astype(bool), t["rule"], strict=True,
        ):
            pts.append(Point(schema.HOME_STATUS, {"home_id": str(hid), "community": str(comm), "building": str(bld)},
                             _fields(mean_c=float(mean), min_hourly_c=float(mn), hours_below=int(hb), longest_run_h=int(lr),
                                     threshold_c=float(thr), below=int(below), rule=str(rule)), ts))
    for f in result.sensors:
        pts.append(Point(schema.SENSOR_HEALTH, {"home_id": f.home_id, "community": f.community, "finding": f.finding},
                         _fields(value=None if f.value is None else float(f.value), detail=f.detail), ts))
    for i in result.imbalance:
        fields = _fields(building_spread_c=i.building_spread_c, entrance_spread_c=i.entrance_spread_c,
                         edge_middle_gap_c=i.edge_middle_gap_c)
        if fields:
            pts.append(Point(schema.IMBALANCE, {"community": i.community}, fields, ts))
    return pts


def write_results(store: Store, result: AnalysisResult, at: datetime | None = None) -> int:
    """Write the results back to the store; returns the number of points."""
    pts = result_points(result, at)
    store.write(pts)
    return len(pts)
