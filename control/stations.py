"""What the stations measure now: the latest supply, return, pressures, flow and outdoor temperature.

Read from the store (``station`` and ``weather`` measurements) once per cycle; diagnosis gets the
temperatures (``StationState``), the alerts' station check gets the whole ``StationReading``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

from control.alerts.rules import StationReading
from control.diagnosis import StationState
from heatwatch.core import schema
from heatwatch.core.registry import Registry
from heatwatch.infra.storage.base import Store, StoreError, StoreUnavailable

log = logging.getLogger("heatwatch.control")
STATION_FIELDS = ("supply_c", "return_c", "supply_kpa", "return_kpa", "flow_m3h")
STATION_LOOKBACK = timedelta(days=7)  # an older reading is no reading: the station is reported silent
OUTDOOR_LOOKBACK = timedelta(hours=6)


def read_stations(store: Store, registry: Registry, now: datetime) -> dict[str, StationReading]:
    """Each registered station's latest readings at ``now``; a store that does not answer gives what was read."""
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
    return out


def station_states(
    registry: Registry, readings: Mapping[str, StationReading], published: Mapping[str, float] | None = None
) -> dict[str, StationState]:
    """What diagnosis needs of every registered station (None where nothing was measured or published)."""
    out = {}
    pub = published or {}
    for sid, st in registry.stations.items():
        r = readings.get(sid)
        out[sid] = (StationState(st, published_c=pub.get(sid)) if r is None
                    else StationState(st, r.supply_c, r.return_c, r.outdoor_c, pub.get(sid)))
    return out
