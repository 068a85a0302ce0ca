"""Cold-snap pre-adjustment: read the forecast, detect the snap, plan a bounded ramp that beats the thermal lag.

Forecast sources: the store's ``forecast`` measurement (tag site_id; timestamp = target time,
field issued_s = when it was issued; the latest issue wins), or a file in Open-Meteo's hourly JSON
shape (``{"utc_offset_seconds": 28800, "hourly": {"time": [...], "temperature_2m": [...]}}``,
times local to the forecast's ``timezone``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from heatwatch.core import schema
from heatwatch.infra.storage.base import Store

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


def _tenth_down(x: float) -> float:
    """Setpoints go out in 0.1 °C; rounding down keeps a step within max_step_c from a measured supply."""
    return math.floor(x * 10 + 1e-6) / 10


def step_down(current_c: float, wanted_c: float, max_step_c: float) -> float:
    """One lowering toward ``wanted_c``, at most ``max_step_c`` below a (measured) ``current_c``, in 0.1 °C."""
    return max(round(wanted_c, 1), math.ceil((current_c - max_step_c) * 10 - 1e-6) / 10)


def coldest_ahead(forecast: Forecast, t: datetime, lead: timedelta) -> float | None:
    """The coldest forecast hour in [t, t + lead]: what water sent at t must still be warm enough for
    by the time it has warmed the buildings; the next forecast hour when that span has none."""
    within = [v for ft, v in forecast if t <= ft <= t + lead]
    if within:
        return min(within)
    return next((v for ft, v in forecast if ft > t), None)


@dataclass(frozen=True, slots=True)
class RampStep:
    at: datetime
    supply_c: float
    sized_for_c: float  # the outdoor temperature this step's supply is for (coldest_ahead)


def plan_following(
    forecast: Forecast,
    now: datetime,
    until: datetime,
    current_c: float,
    supply_for: Callable[[float], float],
    lead: timedelta,
    interval: timedelta,
    max_step_c: float,
    min_change_c: float,
) -> list[RampStep]:
    """A supply ramp that follows the forecast one thermal lag ahead, up to its peak at ``until``.

    At each ramp time t (``interval`` apart, counted back from ``until`` = the forecast minimum − lead) the
    supply should be ``supply_for(coldest_ahead(t))``: raising it to the minimum's value a day before
    the minimum only overheats homes. Steps are at most ``max_step_c``, so a big rise starts as early as
    the bound requires (a backward pass). A forecast too late for that is compressed to one step per
    ``interval / 3`` (the whole plan, not only its start) and, if still short, finishes after ``until``:
    a late step beats one large jump, which the step bound forbids to protect the network. Only
    raises: lowering after the snap is ``ControlLoop._coldsnap_release``'s job. Changes under
    ``min_change_c`` wait for the next step unless waiting would break the step bound; the peak is
    always proposed.
    """
    if not forecast:
        return []
    for gap in (interval, interval / 3):
        times = [until]  # counted back from the peak, so that steps are a whole gap apart
        while times[-1] - gap >= now:
            times.append(times[-1] - gap)
        times = times[::-1] if until >= now else [now]
        sized: list[float] = []
        for t in times:
            x = coldest_ahead(forecast, t, lead)
            sized.append(x if x is not None else (sized[-1] if sized else min(v for _, v in forecast)))
        need = [round(supply_for(x), 1) for x in sized]
        for k in range(len(need) - 2, -1, -1):  # early enough for every later value at max_step_c per step
            need[k] = max(need[k], round(need[k + 1] - max_step_c, 1))
        if need[0] - current_c <= max_step_c + 1e-9:
            break
    peak = max(need)
    if peak - current_c < max(min_change_c, 0.05):
        return []
    values, prev = [], current_c
    for v in need:
        prev = max(prev, min(v, _tenth_down(prev + max_step_c)))
        values.append(prev)
    while values[-1] < peak:  # too late even compressed: keep stepping after ``until``
        nxt = min(peak, _tenth_down(values[-1] + max_step_c))
        if nxt <= values[-1]:  # a max_step_c under 0.1 °C cannot move a setpoint
            break
        times.append(times[-1] + gap)
        sized.append(sized[-1])
        values.append(nxt)
    steps: list[RampStep] = []
    last = current_c
    for k, (t, v) in enumerate(zip(times, values, strict=True)):
        following = values[k + 1] if k + 1 < len(values) else None
        if v - last < 0.05:
            continue
        if v - last >= min_change_c or following is None or following - last > max_step_c + 1e-9:
            steps.append(RampStep(max(t, now), v, sized[k]))
            last = v
    return steps
