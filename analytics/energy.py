"""Heat and energy from station telemetry: what a heating company bills and accounts.

Pure and vectorised (numpy/pandas): frames in, frames out; the command in
``heatwatch/app/commands/energy.py`` reads the store and writes the results.

Heat power per station reading::

    Q = V̇ · ρ(Tm) · c_p(Tm) · (T_supply − T_return),   Tm = (T_supply + T_return) / 2

V̇ is the metered volumetric flow (m³/h). Water properties at the mean temperature:

- ρ: Kell (1975), "Density, thermal expansivity, and compressibility of liquid water from 0° to 150 °C",
  J. Chem. Eng. Data 20(1):97–105, eq. for 1 atm. At network pressures (≤ 1.6 MPa) the pressure effect is
  below 0.1 %, well under a flow meter's class.
- c_p: saturated liquid water as tabulated from IAPWS-95 (Çengel & Boles, *Thermodynamics*, table A-15),
  0–150 °C, linearly interpolated (5 K steps to 100 °C, 10 K above; interpolation error < 0.02 %).

Energy is the trapezoid over the readings' actual timestamps; an interval longer than ``max_gap`` is not
bridged (a silent station is missing energy, not an average of its neighbours), and ``hours_covered`` says
how much of each day is measured. Heating degree-days use base 18 °C on the daily mean outdoor temperature.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd

HDD_BASE_C = 18.0
GJ_PER_KWH = 0.0036
DEFAULT_MAX_GAP = timedelta(hours=1)

# Kell (1975), 1 atm, t in °C, kg/m³
_KELL_NUM = (999.83952, 16.945176, -7.9870401e-3, -46.170461e-6, 105.56302e-9, -280.54253e-12)
_KELL_DEN = 16.879850e-3

# c_p of saturated liquid water, kJ/(kg·K) (IAPWS-95 via Çengel & Boles table A-15)
_CP_T = np.array([0.01, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95, 100,
                  110, 120, 130, 140, 150], dtype=float)
_CP_KJ = np.array([4.217, 4.205, 4.194, 4.185, 4.182, 4.180, 4.178, 4.178, 4.179, 4.180, 4.181, 4.183, 4.185,
                   4.187, 4.190, 4.193, 4.197, 4.201, 4.206, 4.212, 4.217, 4.229, 4.244, 4.263, 4.286, 4.311])

FloatArray = npt.NDArray[np.float64]


def water_density(t_c: npt.ArrayLike) -> FloatArray:
    """Density of liquid water, kg/m³ (Kell 1975; valid 0–150 °C)."""
    t = np.clip(np.asarray(t_c, dtype=float), 0.0, 150.0)
    num = np.polynomial.polynomial.polyval(t, _KELL_NUM)
    return np.asarray(num / (1.0 + _KELL_DEN * t), dtype=float)


def water_cp(t_c: npt.ArrayLike) -> FloatArray:
    """Specific heat of liquid water, J/(kg·K) (IAPWS-95 table; held flat outside 0–150 °C)."""
    return np.asarray(np.interp(np.asarray(t_c, dtype=float), _CP_T, _CP_KJ) * 1000.0, dtype=float)


def heat_kw(supply_c: npt.ArrayLike, return_c: npt.ArrayLike, flow_m3h: npt.ArrayLike) -> FloatArray:
    """Heat power in kW from supply and return temperature (°C) and volumetric flow (m³/h).

    NaN where any input is missing. A return above the supply gives negative heat (a sensor swap or a
    station drawing heat back); it is kept, not hidden, so a data-quality check can see it.
    """
    s = np.asarray(supply_c, dtype=float)
    r = np.asarray(return_c, dtype=float)
    v = np.asarray(flow_m3h, dtype=float)
    tm = (s + r) * 0.5
    mass_kgs = v / 3600.0 * water_density(tm)
    return np.asarray(mass_kgs * water_cp(tm) * (s - r) / 1000.0, dtype=float)


def station_power(readings: pd.DataFrame) -> pd.DataFrame:
    """Station readings (``time``, ``station_id``, ``supply_c``, ``return_c``, ``flow_m3h``) with ``heat_kw`` added.

    Rows missing any of the three inputs are dropped: they carry no heat measurement.
    """
    df = readings.dropna(subset=["supply_c", "return_c", "flow_m3h"]).copy()
    df["heat_kw"] = heat_kw(df["supply_c"].to_numpy(), df["return_c"].to_numpy(), df["flow_m3h"].to_numpy())
    return df.sort_values(["station_id", "time"]).reset_index(drop=True)


def intervals(power: pd.DataFrame, max_gap: timedelta = DEFAULT_MAX_GAP) -> pd.DataFrame:
    """Per station, the trapezoid between consecutive readings: ``station_id``, ``start``, ``hours``, ``kwh``.

    Intervals longer than ``max_gap`` are dropped (not bridged).
    """
    df = power.sort_values(["station_id", "time"])
    same = df["station_id"].eq(df["station_id"].shift(-1)).to_numpy()
    t = df["time"]
    dt_h = ((t.shift(-1) - t).dt.total_seconds() / 3600.0).to_numpy()
    q = df["heat_kw"].to_numpy()
    kwh = (q + np.roll(q, -1)) * 0.5 * dt_h
    keep = same & (dt_h > 0) & (dt_h <= max_gap.total_seconds() / 3600.0)
    return pd.DataFrame({
        "station_id": df["station_id"].to_numpy()[keep],
        "start": t.to_numpy()[keep],
        "hours": dt_h[keep],
        "kwh": kwh[keep],
    })


def degree_days(outdoor: pd.DataFrame, tz: str, base_c: float = HDD_BASE_C) -> pd.Series:
    """Heating degree-days per local day: max(0, base − daily mean outdoor temperature).

    ``outdoor`` has ``time`` (UTC) and ``temp_c``; several sites are averaged (one weather per company).
    """
    if outdoor.empty:
        return pd.Series(dtype=float, name="hdd")
    day = pd.to_datetime(outdoor["time"], utc=True).dt.tz_convert(tz).dt.date
    mean = outdoor.groupby(day)["temp_c"].mean()
    return (base_c - mean).clip(lower=0.0).rename("hdd")


@dataclass(frozen=True)
class EnergySummary:
    """Per station and day, plus the season (whole window) per station."""

    daily: pd.DataFrame  # station_id, day, kwh, gj, mean_kw, hours_covered, hdd, gj_per_hdd, area_m2, kwh_per_m2
    season: pd.DataFrame  # station_id, kwh, gj, mean_kw, hours_covered, hdd, gj_per_hdd, area_m2, kwh_per_m2


def summarize(
    readings: pd.DataFrame,
    outdoor: pd.DataFrame,
    tz: str,
    areas: Mapping[str, float] | None = None,
    max_gap: timedelta = DEFAULT_MAX_GAP,
    until: datetime | None = None,
) -> EnergySummary:
    """Energy per station per local day and over the window, degree-day normalised and per m².

    An interval's energy goes to the local day it starts in; with ``until``, intervals starting at or after
    it are left out (so the caller passes readings a little past the window, to close its last interval).
    ``areas`` is the heated area per station (m²); a station without one gets NaN per m².
    """
    iv = intervals(station_power(readings), max_gap)
    if until is not None:
        iv = iv[pd.to_datetime(iv["start"], utc=True) < pd.Timestamp(until)].reset_index(drop=True)
    iv["day"] = pd.to_datetime(iv["start"], utc=True).dt.tz_convert(tz).dt.date
    daily = iv.groupby(["station_id", "day"], as_index=False).agg(kwh=("kwh", "sum"), hours_covered=("hours", "sum"))
    hdd = degree_days(outdoor, tz)
    daily["hdd"] = daily["day"].map(hdd).astype(float)
    area = {k: float(v) for k, v in (areas or {}).items() if v and v > 0}
    season = daily.groupby("station_id", as_index=False).agg(
        kwh=("kwh", "sum"), hours_covered=("hours_covered", "sum"), hdd=("hdd", "sum"))
    for df in (daily, season):
        df["gj"] = df["kwh"] * GJ_PER_KWH
        df["mean_kw"] = df["kwh"] / df["hours_covered"].where(df["hours_covered"] > 0)
        df["gj_per_hdd"] = df["gj"] / df["hdd"].where(df["hdd"] > 0)
        df["area_m2"] = df["station_id"].map(area).astype(float)
        df["kwh_per_m2"] = df["kwh"] / df["area_m2"]
    return EnergySummary(daily.reset_index(drop=True), season.reset_index(drop=True))
