"""A station's hourly telemetry from the store, as the model and the home-valve advice read it: the hourly mean of
each of the given homes (implausible hours left out, as analytics leaves them), the station's supply and its weather
site's outdoor temperature. One reader, so both see the same hours the same way."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

import pandas as pd

from heatwatch.core import schema
from heatwatch.core.config import Config
from heatwatch.core.registry import Registry, Station
from heatwatch.infra.storage.base import Store


class StationFrames(NamedTuple):
    indoor: pd.DataFrame  # home_id, hour, mean (empty without homes)
    supply: pd.DataFrame  # station_id, hour, mean
    outdoor: pd.DataFrame  # site_id, hour, mean


def read_frames(store: Store, registry: Registry, cfg: Config, st: Station, homes: Iterable[str], start: datetime,
                end: datetime) -> StationFrames:
    """Hourly means over [start, end) (local clock hours); ``homes``: whose indoor readings (their communities are
    queried, the caller picks its homes from the frame)."""
    tz = cfg.general.tz
    comms = sorted({registry.homes[h].community for h in homes})
    indoor = (store.hourly(schema.INDOOR, "temp_c", start, end, tz, by="home_id", where={"community": comms},
                           stats=("mean",)) if comms else pd.DataFrame())
    if not indoor.empty:
        lo, hi = cfg.analytics.implausible_below_c, cfg.analytics.warm_above_c
        indoor = indoor[(indoor["mean"] >= lo) & (indoor["mean"] <= hi)]
    supply = store.hourly(schema.STATION, "supply_c", start, end, tz, by="station_id",
                          where={"station_id": [st.station_id]}, stats=("mean",))
    outdoor = store.hourly(schema.WEATHER, "temp_c", start, end, tz, by="site_id",
                           where={"site_id": [st.weather_site]}, stats=("mean",))
    return StationFrames(indoor, supply, outdoor)
