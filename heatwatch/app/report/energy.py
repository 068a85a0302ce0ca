"""The report's energy section: heat delivered per station from its own readings (analytics.energy: Q = ṁ·c·Δt),
over the report's period and per local day, degree-day normalised and per m² where the registry gives areas."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from analytics.energy import DEFAULT_MAX_GAP, summarize
from heatwatch.app.report import html
from heatwatch.core import schema
from heatwatch.core.config import Config
from heatwatch.core.registry import Registry
from heatwatch.infra.storage.base import Store, StoreError, StoreUnavailable

MAX_DAYS_SHOWN = 31


def _f(x: Any, nd: int) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{float(x):,.{nd}f}"


def energy_section(store: Store, registry: Registry, cfg: Config, start: datetime, end: datetime) -> list[str]:
    from heatwatch.app.commands.energy import station_areas

    out = ["<h2>Heat delivered (供热量)</h2>"]
    try:
        readings = store.query(schema.STATION, start, end + DEFAULT_MAX_GAP, fields=["supply_c", "return_c", "flow_m3h"])
        outdoor = store.query(schema.WEATHER, start, end, fields=["temp_c"])
    except (StoreUnavailable, StoreError) as exc:
        return [*out, html.note(f"Station readings could not be read: {exc}", warn=True)]
    if readings.empty:
        return [*out, html.note("No station readings in this period.")]
    s = summarize(readings, outdoor, cfg.general.timezone, station_areas(registry), DEFAULT_MAX_GAP, until=end)
    names = {sid: st.name for sid, st in registry.stations.items()}
    out.append(html.note("Q = ṁ·c·(supply − return) from each station's flow, with water density and specific heat at "
                         "the mean temperature; heating degree-days base 18 °C from the outdoor readings. "
                         "`heatwatch energy` stores the same figures (station_energy)."))
    rows = [[r["station_id"], names.get(r["station_id"], ""), _f(r["gj"], 2), _f(r["kwh"], 0), _f(r["mean_kw"], 1),
             _f(r["hours_covered"], 1), _f(r["hdd"], 1), _f(r["gj_per_hdd"], 3), _f(r["kwh_per_m2"], 2)]
            for r in s.season.to_dict("records")]
    out.append(html.table(rows, ["station", "name", "GJ", "kWh", "mean kW", "hours covered", "degree-days", "GJ/HDD",
                                 "kWh/m²"]))
    daily = s.daily.sort_values(["day", "station_id"]).tail(MAX_DAYS_SHOWN * max(1, len(s.season)))
    rows = [[str(r["day"]), r["station_id"], _f(r["gj"], 2), _f(r["mean_kw"], 1), _f(r["hdd"], 1), _f(r["gj_per_hdd"], 3)]
            for r in daily.to_dict("records")]
    out.append(html.table(rows, ["day (local)", "station", "GJ", "mean kW", "degree-days", "GJ/HDD"]))
    return out
