"""``analyze``: store + registry + settings + window → AnalysisResult.

I/O is here only: hourly means are aggregated in the database (``Store.hourly``), last sensor
readings come from ``Store.last``; everything else is the pure math of analytics.core / health /
imbalance. ``result_to_json`` and ``write_results`` (analytics.output) are re-exported.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from analytics import core
from analytics.health import HealthRules, sensor_findings
from analytics.imbalance import imbalance
from analytics.output import result_to_json, write_results
from analytics.results import AnalysisResult, CommunityStats, HomeBelow
from heatwatch.core import schema
from heatwatch.core.config import Config
from heatwatch.core.registry import Registry
from heatwatch.core.timeutil import Clock, from_ns, to_ns, utc_now
from heatwatch.infra.storage.base import Store, Where

__all__ = ["analyze", "default_window", "result_to_json", "write_results"]

KIND_CODES = {"residential": core.KIND_RESIDENTIAL, "bungalow": core.KIND_BUNGALOW, "non_residential": core.KIND_CONTRACT}


def default_window(cfg: Config, clock: Clock = utc_now) -> tuple[datetime, datetime]:
    """Today's day period in local time (06:00–21:00 by default), as UTC datetimes."""
    tz = cfg.general.tz
    today = clock().astimezone(tz).date()
    base = datetime(today.year, today.month, today.day, tzinfo=tz)
    start = base + timedelta(hours=cfg.standard.day_start_hour)
    end = base + timedelta(hours=cfg.standard.day_end_hour)
    return start.astimezone(UTC), end.astimezone(UTC)


def _ns(col: pd.Series) -> np.ndarray:
    return np.asarray(pd.DatetimeIndex(col).as_unit("ns").asi8, dtype=np.int64)


def scope_frame(registry: Registry, community: str | None) -> pd.DataFrame:
    """Registered homes in scope, sorted by community and home id (row i ↔ matrix row i)."""
    if community is not None and community not in registry.communities():
        known = ", ".join(registry.communities()) or "none: the registry is empty"
        raise ValueError(f"community {community!r} is not in the registry (known: {known})")
    df = registry.frame().reset_index()
    if community is not None:
        df = df[df["community"] == community]
    return df.sort_values(["community", "home_id"]).reset_index(drop=True)


def _matrices(hourly: pd.DataFrame, index: pd.Index, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids, hrs = hourly["home_id"].to_numpy(), _ns(hourly["hour"])
    return (
        core.hourly_matrix(ids, hrs, hourly["mean"].to_numpy(), index, grid),
        core.hourly_matrix(ids, hrs, hourly["min"].to_numpy(), index, grid),
        core.hourly_matrix(ids, hrs, hourly["max"].to_numpy(), index, grid),
    )


def analyze(
    store: Store,
    registry: Registry,
    cfg: Config,
    start: datetime,
    end: datetime,
    community: str | None = None,
    now: datetime | None = None,
) -> AnalysisResult:
    """Analyse the window [start, end) for one community or all registered ones."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("window times must be timezone-aware")
    if start >= end:
        raise ValueError(f"window start {start.isoformat()} is not before its end {end.isoformat()}")
    tz, a, st = cfg.general.tz, cfg.analytics, cfg.standard
    homes = scope_frame(registry, community)
    index = pd.Index(homes["home_id"].to_numpy(dtype=object))
    grid = core.hour_grid(start, end, tz)
    day = core.day_hours(grid, tz, st.day_start_hour, st.day_end_hour)
    where: Where = {"community": community} if community is not None else {}

    hourly = store.hourly(schema.INDOOR, "temp_c", start, end, tz, by="home_id", where=where or None)
    values, mn, mx = _matrices(hourly, index, grid)

    kind = homes["kind"].map(KIND_CODES).to_numpy(dtype=np.int8)
    contract = pd.to_numeric(homes["min_temp_c"], errors="coerce").to_numpy(dtype=np.float64)
    thr_day, thr_night = core.thresholds(kind, contract, st.day_min_c, st.night_min_c, st.bungalow_min_c)
    sc = core.scan(values, thr_day, thr_night, day, a.min_hours_below)

    comms = sorted(homes["community"].unique()) if community is None else [community]
    codes = pd.Categorical(homes["community"], categories=comms).codes.astype(np.int64)
    is_edge = homes["edge"].to_numpy(dtype=bool)
    ca = core.community_stats(
        codes, len(comms), is_edge, sc.mean_c, sc.below, edge_share_min=a.edge_share_min, min_sample=a.min_sample,
        target_c=st.target_c, cold_share_max=a.cold_share_max,
    )

    # per reporting home: details for home_status, and the below-standard list
    rep = np.flatnonzero(sc.reporting)
    det = core.details(sc, thr_day, thr_night, day, rows=rep)
    rules = core.rule_names(kind[rep], det.day_under, det.night_under)
    table = pd.DataFrame(
        {
            "home_id": homes["home_id"].to_numpy()[rep],
            "community": homes["community"].to_numpy()[rep],
            "building": homes["building"].to_numpy()[rep],
            "entrance": homes["entrance"].to_numpy()[rep],
            "edge": is_edge[rep],
            "mean_c": sc.mean_c[rep],
            "standard_c": thr_day[rep],
            "min_hourly_c": det.min_hourly_c,
            "hours_below": det.hours_below,
            "longest_run_h": det.longest_run_h,
            "threshold_c": det.threshold_c,
            "below": sc.below[rep],
            "rule": rules,
            "first_below": det.first_below,
        }
    )
    below_rows = table[table["below"]].sort_values(["community", "building", "home_id"])
    b = below_rows
    homes_below = [
        HomeBelow(
            home_id=str(hid), community=str(comm), building=str(bld), rule=str(rule), threshold_c=float(thr),
            hours_below=int(hb), longest_run_h=int(lr), mean_c=float(mean), min_hourly_c=float(mnh),
            first_below=from_ns(int(grid[int(fb)])),
        )
        for hid, comm, bld, rule, thr, hb, lr, mean, mnh, fb in zip(
            b["home_id"].tolist(), b["community"].tolist(), b["building"].tolist(), b["rule"].tolist(),
            b["threshold_c"].tolist(), b["hours_below"].tolist(), b["longest_run_h"].tolist(), b["mean_c"].tolist(),
            b["min_hourly_c"].tolist(), b["first_below"].tolist(), strict=True,
        )
    ]

    communities = [
        CommunityStats(
            community=name,
            homes_registered=int(ca.registered[g]),
            homes_reporting=int(ca.reporting[g]),
            edge_homes=int(ca.edge[g]),
            middle_homes=int(ca.middle[g]),
            edge_share=_opt(ca.edge_share[g]),
            edge_weight=_opt(ca.edge_weight[g]),
            weighted_mean_c=_opt(ca.weighted_mean_c[g]),
            plain_mean_c=_opt(ca.plain_mean_c[g]),
            homes_below_standard=int(ca.below[g]),
            status=core.STATUSES[int(ca.status[g])],  # type: ignore[arg-type]
        )
        for g, name in enumerate(comms)
    ]

    # sensor health: on sensor readings only (a manual visit is not the sensor's behaviour)
    sensor_where: Where = {**where, "source": schema.SOURCE_SENSOR}
    if store.count(schema.INDOOR, start, end, where={**where, "source": schema.SOURCE_MANUAL}, field="temp_c"):
        s_values, s_mn, s_mx = _matrices(
            store.hourly(schema.INDOOR, "temp_c", start, end, tz, by="home_id", where=sensor_where), index, grid
        )
    else:
        s_values, s_mn, s_mx = values, mn, mx
    with np.errstate(invalid="ignore", divide="ignore"):
        cnt = np.count_nonzero(~np.isnan(s_values), axis=1)
        s_mean = np.where(cnt > 0, np.nansum(s_values, axis=1) / np.maximum(cnt, 1), np.nan)
    ref = min(now or utc_now(), end)
    lookback = timedelta(days=a.no_sensor_after_days)
    last = store.last(schema.INDOOR, "temp_c", "home_id", where=sensor_where, before=ref, lookback=lookback)
    last_ns = np.full(len(homes), -1, dtype=np.int64)
    if not last.empty:
        pos = index.get_indexer(pd.Index(last["home_id"].to_numpy(dtype=object)))
        ok = pos >= 0
        last_ns[pos[ok]] = _ns(last["time"])[ok]
    sensors = sensor_findings(
        homes, s_values, s_mn, s_mx, s_mean, grid, last_ns, to_ns(ref),
        HealthRules(a.stale_after_h, a.stuck_after_h, a.jump_c_per_h, a.warm_above_c, a.no_sensor_after_days),
    )

    return AnalysisResult(
        window_from=start,
        window_to=end,
        timezone=cfg.general.timezone,
        communities=communities,
        homes_below_standard=homes_below,
        sensors=sensors,
        imbalance=imbalance(table, st.target_c, a.imbalance_warm_margin_c, a.imbalance_min_homes),
        home_means_c=dict(zip(table["home_id"].astype(str), table["mean_c"].astype(float), strict=True)),
        homes=table.drop(columns=["entrance", "edge", "first_below", "standard_c"]),
    )


def _opt(x: float) -> float | None:
    return None if np.isnan(x) else float(x)
