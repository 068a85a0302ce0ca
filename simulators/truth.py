"""Ground truth files, so tests and analytics can be scored against what really happened.

- truth_indoor.csv   one row per sensor per step: true room temperature, what was sent, faults
- truth_stations.csv one row per station per step: setpoint, supply, return, flow, pressures, fault
- truth_weather.csv  one row per site per step: true outdoor temperature
- events.jsonl       station faults starting/ending, setpoints applied or refused
- forecasts.jsonl    every forecast issued (as published)
All UTF-8 (Chinese names as-is).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from simulators.physics import StationFaults, StationState
from simulators.sensors import TRUTH_COLUMNS, rfc3339_z

STATION_COLUMNS = (
    "ts", "station_id", "setpoint_c", "supply_c", "return_c", "flow_m3h", "supply_kpa", "return_kpa",
    "heat_kw", "outdoor_c", "fault", "published",
)
WEATHER_COLUMNS = ("ts", "site_id", "temp_c")


def fault_name(f: StationFaults, j: int) -> str:
    return "+".join(n for n, arr in (("pump_failure", f.pump), ("leak", f.leak), ("outage", f.outage)) if arr[j])


class TruthWriter:
    def __init__(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.indoor_path = out_dir / "truth_indoor.csv"
        self.stations_path = out_dir / "truth_stations.csv"
        self.weather_path = out_dir / "truth_weather.csv"
        self.events_path = out_dir / "events.jsonl"
        self.forecasts_path = out_dir / "forecasts.jsonl"
        self._files = [
            p.open("w", encoding="utf-8", newline="")
            for p in (self.indoor_path, self.stations_path, self.weather_path, self.events_path, self.forecasts_path)
        ]
        self._indoor, self._stations, self._weather = (csv.writer(fh) for fh in self._files[:3])
        self._indoor.writerow(TRUTH_COLUMNS)
        self._stations.writerow(STATION_COLUMNS)
        self._weather.writerow(WEATHER_COLUMNS)

    def indoor(self, rows: Iterable[Sequence[Any]]) -> None:
        self._indoor.writerows(rows)

    def stations(
        self, t: datetime, ids: Sequence[str], st: StationState, f: StationFaults, outdoor: np.ndarray
    ) -> None:
        ts = rfc3339_z(int(t.timestamp()))
        for j, sid in enumerate(ids):
            sp = st.setpoint_c[j]
            self._stations.writerow(
                [
                    ts, sid, "" if np.isnan(sp) else round(float(sp), 2), round(float(st.supply_c[j]), 3),
                    round(float(st.return_c[j]), 3), round(float(st.flow_m3h[j]), 3), round(float(st.supply_kpa[j]), 1),
                    round(float(st.static_kpa[j]), 1), round(float(st.heat_kw[j]), 2), round(float(outdoor[j]), 2),
                    fault_name(f, j), 0 if f.outage[j] else 1,
                ]
            )

    def weather(self, t: datetime, sites: Sequence[str], temps: np.ndarray) -> None:
        ts = rfc3339_z(int(t.timestamp()))
        self._weather.writerows([ts, s, round(float(v), 3)] for s, v in zip(sites, temps, strict=True))

    def event(self, body: dict[str, Any]) -> None:
        self._files[3].write(json.dumps(body, ensure_ascii=False) + "\n")

    def forecast(self, site: str, payload: bytes) -> None:
        self._files[4].write(json.dumps({"site_id": site, **json.loads(payload)}, ensure_ascii=False) + "\n")

    def flush(self) -> None:
        for fh in self._files:
            fh.flush()

    def close(self) -> None:
        for fh in self._files:
            fh.close()
