"""``analyze``: store + registry + settings + window → AnalysisResult.

I/O is here only: hourly means are aggregated in the database (``Store.hourly``), last sensor
readings come from ``Store.last``; everything else is the pure math of analytics.core / health /
imbalance. ``result_to_json`` and ``write_results`` (analytics.output) are re-exported.

A city is analysed in **partitions of whole communities** (``partitions``): each partition's hourly
means are read with ``WHERE community = …``, analysed and dropped before the next, so memory is bounded
by a partition, not the city, and a small pool of threads keeps the next partitions' queries running
in the database while this one is computed. Every result is per home or per community, so the merged
result is the one an unpartitioned pass gives (tests/test_analytics_engine.py holds them equal). The
same unit spreads analysis over machines (docs/SCALING.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from analytics import core
from analytics.health import HealthRules, excluded_rows, sensor_findings
from analytics.imbalance import imbalance
from analytics.output import result_to_json, write_results
from analytics.results import AnalysisResult, CommunityStats, HomeBelow, Imbalance, OtherHomes, SensorFinding
from heatwatch.core import schema
from heatwatch.core.config import Config
from heatwatch.core.registry import Registry
from heatwatch.core.timeutil import Clock, from_ns, to_ns, utc_now
from heatwatch.infra.storage.base import Store, Where, empty_hourly, empty_last

__all__ = ["PartResult", "analyze", "analyze_partition", "default_window", "merge", "partitions", "result_to_json",
           "write_results"]

KIND_CODES = {"residential": core.KIND_RESIDENTIAL, "bungalow": core.KIND_BUNGALOW, "non_residential": core.KIND_CONTRACT}
# homes × hours per partition: 5,000 homes over a day, ~700 over a week. Small enough that a partition's matrices
# (3 × 8 bytes a cell) stay a few MB, large enough that a query's fixed cost (~20 ms in influxd) stays in the noise.
PARTITION_CELLS = 120_000
READ_WORKERS = 2  # partitions read at once (also bounded by the store's read_concurrency)
# last sensor reading: first over this recent span (cheap: a few hours of data), then only for the homes
# not seen there, over the rest of the no-sensor lookback
RECENT_LAST = timedelta(hours=6)
LAST_BY_ID_MAX = 200  # homes to look up by id in the long lookback; more than this: one query for the partition
HOURLY = ("mean", "min", "max")  # what the analysis uses (count is not: one aggregate pass less in the database)


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


def partitions(homes: pd.DataFrame, max_homes: int) -> list[list[str]]:
    """Communities of ``homes`` (sorted) in consecutive groups of at most ``max_homes`` homes.

    A community is never split (its statistics need all its homes); one larger than ``max_homes`` is a
    partition of its own.
    """
    sizes = homes.groupby("community", sort=True).size()
    out: list[list[str]] = []
    n = 0
    for comm, size in sizes.items():
        if out and n + int(size) <= max_homes:
            out[-1].append(str(comm))
            n += int(size)
        else:
            out.append([str(comm)])
            n = int(size)
    return out


def _matrices(hourly: pd.DataFrame, index: pd.Index, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids, hrs = hourly["home_id"].to_numpy(), _ns(hourly["hour"])
    return (
        core.hourly_matrix(ids, hrs, hourly["mean"].to_numpy(), index, grid),
        core.hourly_matrix(ids, hrs, hourly["min"].to_numpy(), index, grid),
        core.hourly_matrix(ids, hrs, hourly["max"].to_numpy(), index, grid),
    )


@dataclass(frozen=True)
class _Read:
    """What one partition reads from the store (long form; matrices are built when it is analysed)."""

    hourly: pd.DataFrame
    sensor_hourly: pd.DataFrame | None  # sensor readings only, when manual readings exist in the window
    last: pd.DataFrame  # last sensor reading per home


@dataclass(frozen=True)
class PartResult:
    """The analysis of one partition: everything in it is per community or per home of its communities."""

    communities: list[CommunityStats]
    homes_below: list[HomeBelow]
    sensors: list[SensorFinding]
    imbalance: list[Imbalance]
    table: pd.DataFrame


def _last_sensor(store: Store, where: Where, homes: Sequence[str], ref: datetime, lookback: timedelta) -> pd.DataFrame:
    """Each home's last sensor reading in [ref - lookback, ref).

    A ``last()`` reads every point of its range, so the whole lookback (30 days) costs a month of readings
    per home. Nearly every home reported in the last hours: ask those first, then only for the homes that
    did not, over the rest of the lookback (by id when they are few).
    """
    recent = min(RECENT_LAST, lookback)
    got = store.last(schema.INDOOR, "temp_c", "home_id", where=where, before=ref, lookback=recent)
    if recent >= lookback:
        return got
    missing = sorted(set(homes) - set(got["home_id"]))
    if not missing:
        return got
    older_where: Where = {**where, "home_id": missing} if len(missing) <= LAST_BY_ID_MAX else where
    older = store.last(schema.INDOOR, "temp_c", "home_id", where=older_where, before=ref - recent,
                       lookback=lookback - recent)
    older = older[older["home_id"].isin(missing)]
    return pd.concat([got, older], ignore_index=True) if len(older) else got


def _read(store: Store, cfg: Config, start: datetime, end: datetime, ref: datetime, where: Where,
          homes: Sequence[str]) -> _Read:
    tz = cfg.general.tz
    hourly = store.hourly(schema.INDOOR, "temp_c", start, end, tz, by="home_id", where=where, stats=HOURLY)
    sensor_where: Where = {**where, "source": schema.SOURCE_SENSOR}
    sensor_hourly = None
    # sensor health: on sensor readings only (a manual visit is not the sensor's behaviour)
    if store.count(schema.INDOOR, start, end, where={**where, "source": schema.SOURCE_MANUAL}, field="temp_c"):
        sensor_hourly = store.hourly(schema.INDOOR, "temp_c", start, end, tz, by="home_id", where=sensor_where, stats=HOURLY)
    lookback = timedelta(days=cfg.analytics.no_sensor_after_days)
    return _Read(hourly, sensor_hourly, _last_sensor(store, sensor_where, homes, ref, lookback))


def _reads(parts: list[list[str]], workers: int, read: Callable[[list[str]], _Read]) -> Iterator[_Read]:
    """The partitions' reads in order, at most ``workers`` in flight: the database works on the next ones while
    the caller analyses this one, and memory holds a few partitions, never the city."""
    if workers <= 1 or len(parts) <= 1:
        for p in parts:
            yield read(p)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="analytics-read")
    pending: list[Future[_Read]] = []
    try:
        nxt = 0
        for _ in range(len(parts)):
            while nxt < len(parts) and len(pending) < workers:
                pending.append(pool.submit(read, parts[nxt]))
                nxt += 1
            yield pending.pop(0).result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def analyze(
    store: Store,
    registry: Registry,
    cfg: Config,
    start: datetime,
    end: datetime,
    community: str | None = None,
    now: datetime | None = None,
    *,
    partition_cells: int = PARTITION_CELLS,
    workers: int = READ_WORKERS,
) -> AnalysisResult:
    """Analyse the window [start, end) for one community or all registered ones, partition by partition."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("window times must be timezone-aware")
    if start >= end:
        raise ValueError(f"window start {start.isoformat()} is not before its end {end.isoformat()}")
    tz, st = cfg.general.tz, cfg.standard
    homes = scope_frame(registry, community)
    grid = core.hour_grid(start, end, tz)
    day = core.day_hours(grid, tz, st.day_start_hour, st.day_end_hour)
    ref = min(now or utc_now(), end)
    parts = partitions(homes, max(1, partition_cells // max(1, len(grid))))
    rows = {c: g.index for c, g in homes.groupby("community", sort=False)}

    def part_homes(comms: list[str]) -> pd.DataFrame:
        return homes.loc[np.concatenate([rows[c] for c in comms])] if comms else homes.iloc[:0]

    def read(comms: list[str]) -> _Read:
        return _read(store, cfg, start, end, ref, {"community": comms}, part_homes(comms)["home_id"].tolist())

    done: list[PartResult] = []
    for comms, data in zip(parts, _reads(parts, min(workers, store.read_concurrency), read), strict=True):
        done.append(_analyze_part(cfg, part_homes(comms).reset_index(drop=True), comms, grid, day, ref, data))
    if not done:  # no homes in scope: the empty result, shaped as always
        done.append(_analyze_part(cfg, homes, [], grid, day, ref,
                                  _Read(empty_hourly("home_id", HOURLY), None, empty_last("home_id"))))
    return merge(done, cfg, start, end)


def analyze_partition(store: Store, registry: Registry, cfg: Config, start: datetime, end: datetime,
                      communities: list[str], now: datetime) -> PartResult:
    """One partition on its own — what a worker of a distributed run computes (docs/SCALING.md): its reads, its
    analysis, nothing shared with the other partitions. ``merge`` of every partition's result is ``analyze``'s."""
    tz, st = cfg.general.tz, cfg.standard
    homes = scope_frame(registry, None)
    homes = homes[homes["community"].isin(communities)].reset_index(drop=True)
    grid = core.hour_grid(start, end, tz)
    day = core.day_hours(grid, tz, st.day_start_hour, st.day_end_hour)
    ref = min(now, end)
    comms = sorted(communities)
    data = _read(store, cfg, start, end, ref, {"community": comms}, homes["home_id"].tolist())
    return _analyze_part(cfg, homes, comms, grid, day, ref, data)


def merge(parts: Sequence[PartResult], cfg: Config, start: datetime, end: datetime) -> AnalysisResult:
    """The partitions' results as one (``parts`` in community order, as ``partitions`` makes them): concatenation,
    since every figure is per home or per community."""
    table = pd.concat([p.table for p in parts], ignore_index=True)
    return AnalysisResult(
        window_from=start,
        window_to=end,
        timezone=cfg.general.timezone,
        communities=[c for p in parts for c in p.communities],
        homes_below_standard=[h for p in parts for h in p.homes_below],
        sensors=[f for p in parts for f in p.sensors],
        imbalance=[i for p in parts for i in p.imbalance],
        home_means_c=dict(zip(table["home_id"].astype(str), table["mean_c"].astype(float), strict=True)),
        homes=table.drop(columns=["entrance", "edge", "first_below", "standard_c"]),
    )


def _analyze_part(cfg: Config, homes: pd.DataFrame, comms: list[str], grid: np.ndarray, day: np.ndarray, ref: datetime,
                  data: _Read) -> PartResult:
    """Everything for the homes of whole communities ``comms`` (``homes``: their rows, sorted by community, home id)."""
    a, st = cfg.analytics, cfg.standard
    index = pd.Index(homes["home_id"].to_numpy(dtype=object))
    values, mn, mx = _matrices(data.hourly, index, grid)

    kind = homes["kind"].map(KIND_CODES).to_numpy(dtype=np.int8)
    contract = pd.to_numeric(homes["min_temp_c"], errors="coerce").to_numpy(dtype=np.float64)
    thr_day, thr_night = core.thresholds(kind, contract, st.day_min_c, st.night_min_c, st.bungalow_min_c)
    sc = core.scan(values, thr_day, thr_night, day, a.min_hours_below)

    codes = pd.Categorical(homes["community"], categories=comms).codes.astype(np.int64)
    is_edge = homes["edge"].to_numpy(dtype=bool)
    sensors = _sensors(cfg, homes, index, values, mn, mx, grid, ref, data)
    excluded = excluded_rows(sensors, homes["home_id"].to_numpy())  # a flagged sensor drives nothing
    nights = core.night_share(values, day)  # each home's standard over the hours it reported (night: 16 °C)
    ca = core.community_stats(
        codes, len(comms), is_edge, sc.mean_c, sc.below, edge_share_min=a.edge_share_min, min_sample=a.min_sample,
        target_c=st.target_c, cold_share_max=a.cold_share_max, edge_min_homes=a.edge_min_homes, kind_code=kind,
        excluded=excluded, night_share=nights, night_drop_c=st.day_min_c - st.night_min_c,
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
            "standard_c": (thr_day - (thr_day - thr_night) * np.nan_to_num(nights))[rep],
            "min_hourly_c": det.min_hourly_c,
            "hours_below": det.hours_below,
            "longest_run_h": det.longest_run_h,
            "threshold_c": det.threshold_c,
            "below": sc.below[rep],
            "rule": rules,
            "first_below": det.first_below,
        }
    )
    trusted = ~excluded[rep]
    b = table[table["below"] & trusted].sort_values(["community", "building", "home_id"])
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
            target_c=_opt(ca.target_c[g]),
            homes_excluded=int(ca.excluded[g]),
            bungalows=_other(ca.bungalow_reporting[g], ca.bungalow_mean_c[g], ca.bungalow_below[g]),
            non_residential=_other(ca.contract_reporting[g], ca.contract_mean_c[g], ca.contract_below[g]),
        )
        for g, name in enumerate(comms)
    ]

    return PartResult(communities, homes_below, sensors, imbalance(table[trusted], st.target_c, a.imbalance_warm_margin_c,
                                                               a.imbalance_min_homes), table)


def _sensors(cfg: Config, homes: pd.DataFrame, index: pd.Index, values: np.ndarray, mn: np.ndarray, mx: np.ndarray,
             grid: np.ndarray, ref: datetime, data: _Read) -> list[SensorFinding]:
    """Sensor health: on sensor readings only (a manual visit is not the sensor's behaviour)."""
    a = cfg.analytics
    if data.sensor_hourly is not None:
        s_values, s_mn, s_mx = _matrices(data.sensor_hourly, index, grid)
    else:
        s_values, s_mn, s_mx = values, mn, mx
    with np.errstate(invalid="ignore", divide="ignore"):
        cnt = np.count_nonzero(~np.isnan(s_values), axis=1)
        s_mean = np.where(cnt > 0, np.nansum(s_values, axis=1) / np.maximum(cnt, 1), np.nan)
    last_ns = np.full(len(homes), -1, dtype=np.int64)
    if not data.last.empty:
        pos = index.get_indexer(pd.Index(data.last["home_id"].to_numpy(dtype=object)))
        ok = pos >= 0
        last_ns[pos[ok]] = _ns(data.last["time"])[ok]
    return sensor_findings(
        homes, s_values, s_mn, s_mx, s_mean, grid, last_ns, to_ns(ref),
        HealthRules(a.stale_after_h, a.stuck_after_h, a.jump_c_per_h, a.warm_above_c, a.no_sensor_after_days,
                    a.implausible_below_c),
    )


def _opt(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def _other(n: int, mean: float, below: int) -> OtherHomes | None:
    """A community's bungalows or contract homes, when it has any reporting."""
    return OtherHomes(int(n), _opt(mean), int(below)) if n else None
