"""What the stations measure now: the latest supply, return, pressures, flow and outdoor temperature.

Read from the store (``station`` and ``weather`` measurements) once per cycle; diagnosis gets the
temperatures (``StationState``), the alerts' station check gets the whole ``StationReading``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta

import pandas as pd

from control.alerts.rules import StationReading, outage_evidence
from control.diagnosis import StationState
from heatwatch.core import schema
from heatwatch.core.config import Config
from heatwatch.core.curve import design_for, heating_curve
from heatwatch.core.registry import Registry
from heatwatch.infra.storage.base import Store, StoreError, StoreUnavailable

log = logging.getLogger("heatwatch.control")
STATION_FIELDS = ("supply_c", "return_c", "supply_kpa", "return_kpa", "flow_m3h")
STATION_LOOKBACK = timedelta(days=7)  # an older reading is no reading: the station is reported silent
OUTDOOR_LOOKBACK = timedelta(hours=6)


def read_stations(store: Store, registry: Registry, now: datetime, cfg: Config | None = None) -> dict[str, StationReading]:
    """Each registered station's latest readings at ``now``; a store that does not answer gives what was read.

    With ``cfg``, also since when each station's measurements have shown a heat outage (``outage_since``).
    """
    sids = list(registry.stations)
    if not sids:
        return {}
    before = now + timedelta(seconds=1)
    vals: dict[str, dict[str, tuple[datetime, float]]] = {}
    outdoor: dict[str, float] = {}
    try:
        for f in STATION_FIELDS:
            df = store.last(schema.STATION, f, "station_id", where={"station_id": sids}, before=before,
                            lookback=STATION_LOOKBACK)
            for sid, t, v in df.itertuples(index=False):
                vals.setdefault(str(sid), {})[f] = (t.to_pydatetime(), float(v))
        sites = sorted({st.weather_site for st in registry.stations.values()})
        df = store.last(schema.WEATHER, "temp_c", "site_id", where={"site_id": sites}, before=before,
                        lookback=OUTDOOR_LOOKBACK)
        outdoor = {str(s): float(v) for s, _, v in df.itertuples(index=False)}
    except (StoreUnavailable, StoreError) as exc:
        log.warning("station readings unavailable: %s", exc)
    out = {}
    for sid, fs in vals.items():
        st = registry.stations.get(sid)
        last = fs.get("supply_c", max(fs.values()))[0]
        v = {f: fs[f][1] for f in STATION_FIELDS if f in fs}
        out[sid] = StationReading(
            sid, last, v.get("supply_c"), v.get("return_c"), v.get("supply_kpa"), v.get("return_kpa"),
            v.get("flow_m3h"), outdoor.get(st.weather_site) if st else None,
        )
    if cfg is not None and out:
        since = outage_since(store, cfg, out, now)
        out = {sid: replace(r, outage_since=since.get(sid)) for sid, r in out.items()}
    return out


def outage_since(store: Store, cfg: Config, readings: Mapping[str, StationReading], now: datetime) -> dict[str, datetime]:
    """Per station whose latest measurements show a heat outage, the first reading of that unbroken run (looked
    for over ``outage_notice_h`` + 1 h: a run older than that is older than the notice needs)."""
    showing = {}
    for sid, r in readings.items():
        curve = heating_curve(design_for(cfg, sid), r.outdoor_c).supply_c if r.outdoor_c is not None else None
        if outage_evidence(r.supply_c, r.return_c, r.flow_m3h, r.outdoor_c, curve, cfg) is not None:
            showing[sid] = curve
    if not showing:
        return {}
    lookback = timedelta(hours=cfg.alerts.outage_notice_h + 1)
    try:
        df = store.query(schema.STATION, now - lookback, now + timedelta(seconds=1), where={"station_id": sorted(showing)})
    except (StoreUnavailable, StoreError) as exc:
        log.warning("station history unavailable: %s", exc)
        return {}
    out: dict[str, datetime] = {}
    if df.empty:
        return out
    for key, g in df.sort_values("time").groupby("station_id", sort=False):
        sid = str(key)
        r = readings[sid]
        cols = {f: g[f].to_numpy(dtype=float) if f in g else None for f in ("supply_c", "return_c", "flow_m3h")}
        times = list(pd.DatetimeIndex(g["time"]).to_pydatetime())
        first: datetime | None = None
        for i in range(len(times) - 1, -1, -1):
            v = {f: None if a is None or a[i] != a[i] else float(a[i]) for f, a in cols.items()}
            if outage_evidence(v["supply_c"], v["return_c"], v["flow_m3h"], r.outdoor_c, showing[sid], cfg) is None:
                break
            first = times[i]
        if first is not None:
            out[sid] = first
    return out


def station_states(
    registry: Registry, readings: Mapping[str, StationReading], published: Mapping[str, float] | None = None,
    offsets: Mapping[str, float] | None = None,
) -> dict[str, StationState]:
    """What diagnosis needs of every registered station (None where nothing was measured or published).

    ``offsets``: the curve offset of the last published setpoint, where it shifted the station's curve.
    """
    out = {}
    pub, off = published or {}, offsets or {}
    for sid, st in registry.stations.items():
        r = readings.get(sid)
        out[sid] = (StationState(st, published_c=pub.get(sid), published_offset_c=off.get(sid)) if r is None
                    else StationState(st, r.supply_c, r.return_c, r.outdoor_c, pub.get(sid), off.get(sid)))
    return out
