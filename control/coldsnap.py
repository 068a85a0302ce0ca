"""Cold-snap pre-adjustment: read the forecast, detect the snap, plan a bounded ramp that beats the thermal lag.

Forecast sources: the store's ``forecast`` measurement (tag site_id; timestamp = target time,
field issued_s = when it was issued; the latest issue wins), or a file in Open-Meteo's hourly JSON
shape (``{"utc_offset_seconds": 28800, "hourly": {"time": [...], "temperature_2m": [...]}}``,
times local to the forecast's ``timezone``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from heatwatch import schema
from heatwatch.storage.base import Store

Forecast = list[tuple[datetime, float]]  # (target time UTC, °C), sorted


class ForecastError(ValueError):
    """The forecast file or payload is unusable; the message says where."""


def parse_openmeteo(data: Any, source: str = "forecast") -> Forecast:
    if not isinstance(data, dict) or not isinstance(data.get("hourly"), dict):
        raise ForecastError(f"{source}: expected an object with an 'hourly' object (Open-Meteo shape)")
    hourly = data["hourly"]
    times, temps = hourly.get("time"), hourly.get("temperature_2m")
    if not isinstance(times, list) or not isinstance(temps, list):
        raise ForecastError(f"{source}: hourly.time and hourly.temperature_2m must be lists")
    if len(times) != len(temps):
        raise ForecastError(f"{source}: hourly.time has {len(times)} entries but temperature_2m has {len(temps)}")
    offset = data.get("utc_offset_seconds", 0)
    if isinstance(offset, bool) or not isinstance(offset, int | float):
        raise ForecastError(f"{source}: utc_offset_seconds must be a number of seconds, got {offset!r}")
    out: Forecast = []
    for i, (t, v) in enumerate(zip(times, temps, strict=True)):
        if v is None:
            continue  # Open-Meteo leaves gaps as null
        try:
            dt = datetime.fromisoformat(str(t))
        except ValueError:
            raise ForecastError(f"{source}: hourly.time[{i}] {str(t)[:30]!r} is not an ISO 8601 time") from None
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ForecastError(f"{source}: hourly.temperature_2m[{i}] {v!r} is not a number")
        if dt.tzinfo is None:  # Open-Meteo's local wall time
            dt = dt.replace(tzinfo=UTC) - timedelta(seconds=offset)
        out.append((dt.astimezone(UTC), float(v)))
    return sorted(out)


def load_openmeteo(path: Path) -> Forecast:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ForecastError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ForecastError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    return parse_openmeteo(data, str(path))


def forecast_from_store(store: Store, site_id: str, now: datetime, horizon: timedelta) -> Forecast:
    df = store.query(schema.FORECAST, now, now + horizon, where={"site_id": site_id})
    if df.empty or "temp_c" not in df:
        return []
    df = df.dropna(subset=["temp_c"])
    if "issued_s" in df:
        df = df.sort_values(["time", "issued_s"]).drop_duplicates("time", keep="last")
    return [(t.to_pydatetime(), float(v)) for t, v in zip(df["time"], df["temp_c"], strict=True)]


@dataclass(frozen=True, slots=True)
class ColdSnap:
    arrival: datetime  # first forecast hour past the threshold / drop
    min_c: float
    min_at: datetime
    trigger: str  # "threshold" | "drop"
    reference_c: float  # outdoor temperature the drop is measured from


def detect(
    forecast: Forecast, now: datetime, outdoor_now_c: float | None, threshold_c: float, drop_c: float, horizon: timedelta
) -> ColdSnap | None:
    """A snap when the forecast goes under ``threshold_c`` or ``drop_c`` below now, within the horizon."""
    ahead = [(t, v) for t, v in forecast if now <= t <= now + horizon]
    if not ahead:
        return None
    ref = outdoor_now_c if outdoor_now_c is not None else ahead[0][1]
    min_at, min_c = min(ahead, key=lambda tv: tv[1])
    for t, v in ahead:
        if v < threshold_c:
            return ColdSnap(t, min_c, min_at, "threshold", ref)
        if v <= ref - drop_c:
            return ColdSnap(t, min_c, min_at, "drop", ref)
    return None


def plan_ramp(
    current_c: float, target_c: float, max_step_c: float, last_effective: datetime, interval: timedelta, now: datetime
) -> list[tuple[datetime, float]]:
    """Steps of at most ``max_step_c``, ``interval`` apart, reaching ``target_c`` at ``last_effective``.

    When the forecast comes too late for that, the ramp starts now and is compressed to still arrive in
    time, but never faster than a step per ``interval / 3``: stacking the steps into one jump would
    defeat the step bound, which protects the network (and a late step beats no step).
    """
    if target_c <= current_c:
        return []
    n = math.ceil(round((target_c - current_c) / max_step_c, 9))
    values = [round(min(current_c + k * max_step_c, target_c), 1) for k in range(1, n + 1)]
    gap = interval if last_effective - (n - 1) * interval >= now else (last_effective - now) / max(n - 1, 1)
    if gap >= interval / 3:  # in time (or compressed): the last step lands exactly at last_effective
        times = [max(now, last_effective - (n - k) * gap) for k in range(1, n + 1)]
    else:  # too late even compressed: start now at the fastest allowed pace
        times = [now + (k - 1) * (interval / 3) for k in range(1, n + 1)]
    return list(zip(times, values, strict=True))
