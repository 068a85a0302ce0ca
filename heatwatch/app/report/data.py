"""What the report reads from the store, reduced to small frames before any plotting.

Everything is aggregated in the database (hourly means) so a report over a week of a large city
reads hours × homes rows, not every raw reading — and those a partition of whole communities at a
time (analytics.engine.partitions), each reduced at once to its homes' period means and its
communities' weighted hourly means, so memory holds one partition's hours, never the city's.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from heatwatch.core import schema
from heatwatch.core.config import Config
from heatwatch.core.registry import Registry
from heatwatch.infra.storage.base import Store, Where

log = logging.getLogger(__name__)

Curve = Callable[[float], tuple[float, float]]  # outdoor °C -> (supply, return) °C


@dataclass
class StationData:
    station_id: str
    name: str
    hourly: pd.DataFrame  # hour, supply_c, return_c, outdoor_c (NaN without weather), curve_c, curve_return_c (NaN: no curve)
    curve_note: str


@dataclass
class ReportData:
    start: datetime
    end: datetime
    communities: list[str]
    community_means: pd.DataFrame  # community, time, value
    community_source: str
    community_latest: pd.DataFrame  # one row per community (analytics fields) or empty
    homes: pd.DataFrame  # home_id, community, building, entrance, floor, floors, position, location, edge, mean_c, threshold_c
    stations: list[StationData]
    alerts: pd.DataFrame
    proposals: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def _where(communities: Sequence[str] | None) -> Where | None:
    return {"community": list(communities)} if communities else None


def _hourly_wide(store: Store, meas: str, fields: Sequence[str], start: datetime, end: datetime, cfg: Config, by: str,
                 where: Where | None = None) -> pd.DataFrame:
    """Hourly means of several fields side by side: columns by, hour, <field>..."""
    out: pd.DataFrame | None = None
    for f in fields:
        df = store.hourly(meas, f, start, end, cfg.general.tz, by, where)[[by, "hour", "mean"]].rename(columns={"mean": f})
        out = df if out is None else out.merge(df, on=[by, "hour"], how="outer")
    assert out is not None
    return out.sort_values([by, "hour"]).reset_index(drop=True)


def weighted_hourly(hourly: pd.DataFrame, homes: pd.DataFrame, edge_share_min: float) -> pd.DataFrame:
    """Per community and hour, the mean with edge homes carrying at least ``edge_share_min`` of the weight.

    Used when analytics results are absent; mirrors the visit rule (000 section 五): top, ground and
    gable homes count for at least 40 %, more if they are more of the sample.
    """
    empty = pd.DataFrame({"community": pd.Series([], dtype=object), "time": pd.Series([], dtype="datetime64[ns, UTC]"),
                          "value": pd.Series([], dtype=float)})
    if hourly.empty:
        return empty
    df = hourly[["home_id", "hour", "mean"]].merge(homes[["home_id", "community", "edge"]], on="home_id", how="inner")
    if df.empty:
        return empty
    df["edge"] = df["edge"].astype(bool)
    g = df.groupby(["community", "hour", "edge"])["mean"].agg(["mean", "count"]).unstack("edge")
    e_mean = g[("mean", True)] if ("mean", True) in g.columns else pd.Series(float("nan"), index=g.index)
    m_mean = g[("mean", False)] if ("mean", False) in g.columns else pd.Series(float("nan"), index=g.index)
    e_n = g[("count", True)].fillna(0) if ("count", True) in g.columns else pd.Series(0.0, index=g.index)
    m_n = g[("count", False)].fillna(0) if ("count", False) in g.columns else pd.Series(0.0, index=g.index)
    both = (e_n > 0) & (m_n > 0)
    w = (e_n / (e_n + m_n)).clip(lower=edge_share_min)
    value = (w * e_mean + (1 - w) * m_mean).where(both, e_mean.where(e_n > 0, m_mean))
    out = value.rename("value").reset_index().rename(columns={"hour": "time"})
    out["community"] = out["community"].astype(object)
    return out[["community", "time", "value"]]


def _home_threshold(kind: str, contract: float | None, cfg: Config) -> float:
    if kind == "bungalow":
        return cfg.standard.bungalow_min_c
    if kind == "non_residential" and contract is not None:
        return float(contract)
    return cfg.standard.day_min_c


def _homes_frame(registry: Registry, communities: Sequence[str], means: pd.Series, cfg: Config) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for h in registry.homes.values():
        if communities and h.community not in communities:
            continue
        rows.append({
            "home_id": h.home_id, "community": h.community, "building": h.building, "entrance": h.entrance,
            "floor": h.floor, "floors": h.floors, "position": h.position, "gable": h.gable, "location": h.location,
            "edge": h.edge, "threshold_c": _home_threshold(h.kind, h.min_temp_c, cfg),
            "mean_c": float(means[h.home_id]) if h.home_id in means.index else float("nan"),
        })
    cols = ["home_id", "community", "building", "entrance", "floor", "floors", "position", "gable", "location", "edge",
            "threshold_c", "mean_c"]
    return pd.DataFrame(rows, columns=cols)


def station_curve(cfg: Config, station_id: str) -> tuple[Curve | None, str]:
    """The quality-regulation heating curve from control (``control.curve``) for this station's design values."""
    try:
        mod = importlib.import_module("control.curve")
    except ModuleNotFoundError as exc:
        if exc.name not in ("control.curve", "control"):
            raise
        return None, "heating curve not available (control.curve is not installed): supply and return only"
    heating_curve, design_for = getattr(mod, "heating_curve", None), getattr(mod, "design_for", None)
    if heating_curve is None or design_for is None:
        return None, "heating curve not available (control.curve has no heating_curve/design_for): supply and return only"
    try:
        design = design_for(cfg, station_id)
    except (KeyError, ValueError) as exc:
        return None, f"no heating curve for {station_id} ({exc}): supply and return only"

    def curve(outdoor_c: float) -> tuple[float, float]:
        point = heating_curve(design, outdoor_c)
        return float(point.supply_c), float(point.return_c)

    return curve, "heating curve from control at the measured outdoor temperature"


def _stations(store: Store, registry: Registry, cfg: Config, start: datetime, end: datetime,
              communities: Sequence[str]) -> list[StationData]:
    hourly = _hourly_wide(store, schema.STATION, ["supply_c", "return_c"], start, end, cfg, "station_id")
    weather = store.hourly(schema.WEATHER, "temp_c", start, end, cfg.general.tz, "site_id")
    out = []
    for sid in sorted(hourly["station_id"].unique()):
        st = registry.stations.get(sid)
        if communities and st is not None and not set(st.communities) & set(communities):
            continue
        df = hourly[hourly["station_id"] == sid].drop(columns="station_id").reset_index(drop=True)
        site = st.weather_site if st is not None else "default"
        w = weather[weather["site_id"] == site]
        if w.empty and weather["site_id"].nunique() == 1:
            w = weather  # a single weather site serves every station
        df = df.merge(w[["hour", "mean"]].rename(columns={"mean": "outdoor_c"}), on="hour", how="left")
        curve, note = station_curve(cfg, sid)
        df["curve_c"] = df["curve_return_c"] = float("nan")
        if curve is not None and df["outdoor_c"].notna().any():
            points = [curve(float(t)) if pd.notna(t) else (float("nan"), float("nan")) for t in df["outdoor_c"]]
            df["curve_c"] = [p[0] for p in points]
            df["curve_return_c"] = [p[1] for p in points]
        elif curve is not None:
            note = "heating curve exists but no outdoor temperature was stored: supply and return only"
        out.append(StationData(sid, st.name if st is not None else sid, df, note))
    return out


def _events(store: Store, meas: str, start: datetime, end: datetime, communities: Sequence[str],
            registry: Registry) -> pd.DataFrame:
    df = store.query(meas, start, end)
    if df.empty or not communities:
        return df
    keep = pd.Series(False, index=df.index)
    if "community" in df.columns:
        keep |= df["community"].isin(communities)
    if "station_id" in df.columns:
        sids = {s.station_id for s in registry.stations.values() if set(s.communities) & set(communities)}
        keep |= df["station_id"].isin(sids)
    return df[keep].reset_index(drop=True)


PARTITION_CELLS = 240_000  # homes × hours read at once (one week: ~1,400 homes; one day: 10,000)


@dataclass
class _Indoor:
    means: pd.Series  # home_id -> mean of its hourly means over the period
    weighted: pd.DataFrame  # community, time, value (edge homes weighted; empty without a registry)
    unknown: int  # reporting homes that are not in the registry


def _indoor(store: Store, registry: Registry, cfg: Config, start: datetime, end: datetime,
            wanted: Sequence[str]) -> _Indoor:
    """Per-home period means and weighted community hourly means, read partition by partition."""
    from analytics.engine import partitions  # the analytics' own unit of work

    tz, hours = cfg.general.tz, max(1, int((end - start).total_seconds() // 3600))
    frame = registry.frame().reset_index()
    if wanted:
        frame = frame[frame["community"].isin(wanted)]
    homes = frame[["home_id", "community", "edge"]]
    means: list[pd.Series] = []
    weighted: list[pd.DataFrame] = []
    for comms in partitions(homes, max(1, PARTITION_CELLS // hours)):
        hourly = store.hourly(schema.INDOOR, "temp_c", start, end, tz, "home_id", {"community": comms}, stats=("mean",))
        if hourly.empty:
            continue
        means.append(hourly.groupby("home_id")["mean"].mean())
        weighted.append(weighted_hourly(hourly, homes[homes["community"].isin(comms)], cfg.analytics.edge_share_min))
    # readings of homes the registry does not know carry community "_unregistered" (collector); only count them
    stray = store.last(schema.INDOOR, "temp_c", "home_id", {"community": [schema.UNREGISTERED]}, before=end,
                       lookback=end - start)
    return _Indoor(
        pd.concat(means) if means else pd.Series(dtype=float),
        pd.concat(weighted, ignore_index=True) if weighted else weighted_hourly(pd.DataFrame(), homes, 0.0),
        len(stray),
    )


def load_report_data(store: Store, registry: Registry, cfg: Config, start: datetime, end: datetime,
                     communities: Sequence[str] | None = None) -> ReportData:
    """Everything the report shows for [start, end), reduced in the store and per partition of communities."""
    notes: list[str] = []
    wanted = list(communities or [])
    where = _where(wanted)
    indoor = _indoor(store, registry, cfg, start, end, wanted) if registry.homes else None
    means = indoor.means if indoor is not None else pd.Series(dtype=float)
    homes = _homes_frame(registry, wanted, means, cfg)
    if indoor is not None and indoor.unknown:
        notes.append(f"{indoor.unknown} reporting home(s) are not in the registry and are left out of the heat map.")

    stats = store.query(schema.COMMUNITY_STATS, start, end, where)
    latest = pd.DataFrame()
    if not stats.empty and "weighted_mean_c" in stats.columns:
        cm = stats[["community", "time", "weighted_mean_c"]].rename(columns={"weighted_mean_c": "value"}).dropna()
        source = "analytics results (community_stats): edge homes weighted to at least 40 %"
        latest = stats.sort_values("time").groupby("community").tail(1).sort_values("community").reset_index(drop=True)
    elif indoor is not None and not indoor.weighted.empty:
        cm = indoor.weighted
        source = ("computed by the report from hourly indoor means (no analytics results stored): "
                  f"edge homes weighted to at least {cfg.analytics.edge_share_min:.0%}")
    else:
        by_c = store.hourly(schema.INDOOR, "temp_c", start, end, cfg.general.tz, "community", where, stats=("mean",))
        cm = by_c.rename(columns={"hour": "time", "mean": "value"})[["community", "time", "value"]]
        source = "plain hourly indoor means (no analytics results and no registry: edge homes not weighted)"
    found = sorted(set(cm["community"]) | set(homes["community"])) if not cm.empty or not homes.empty else []
    if not found:
        notes.append("No indoor readings or community results in this period.")

    return ReportData(
        start=start,
        end=end,
        communities=wanted or found,
        community_means=cm.reset_index(drop=True),
        community_source=source,
        community_latest=latest,
        homes=homes,
        stations=_stations(store, registry, cfg, start, end, wanted),
        alerts=_events(store, schema.ALERTS, start, end, wanted, registry),
        proposals=_events(store, schema.PROPOSALS, start, end, wanted, registry),
        notes=notes,
    )
