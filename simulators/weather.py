"""Outdoor temperature: diurnal cycle + weather fronts + scripted cold snaps, and its forecast.

The fronts are an Ornstein-Uhlenbeck process on an hourly grid, extended in order in chunks,
so the weather at any time is the same however the simulation is paced (determinism), and a
forecast can look ahead at the truth and add an error that grows with lead time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

CHUNK_H = 24 * 10


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColdSnap(_Model):
    start_h: float = Field(ge=0, description="hours after the scenario start when the fall begins")
    duration_h: float = Field(gt=0, description="from the start of the fall to the start of the recovery")
    depth_c: float = Field(gt=0, description="how far below the normal weather it gets")
    ramp_h: float = Field(12.0, gt=0)


class WeatherSpec(_Model):
    mean_c: float = -5.0
    diurnal_amplitude_c: float = Field(4.0, ge=0)
    peak_hour_local: float = Field(14.0, ge=0, lt=24)
    front_sd_c: float = Field(2.5, ge=0)
    front_hours: float = Field(48.0, gt=0)
    site_offsets: dict[str, float] = Field(default_factory=dict)
    cold_snaps: list[ColdSnap] = Field(default_factory=list)


class ForecastSpec(_Model):
    enabled: bool = True
    every_h: float = Field(6.0, gt=0)
    horizon_h: int = Field(48, ge=1, le=240)
    bias_sd_c: float = Field(0.5, ge=0)
    error_growth_c: float = Field(0.3, ge=0, description="error sd grows by this per sqrt(hour) of lead time")


def snap_profile(hours: np.ndarray, snaps: Sequence[ColdSnap]) -> np.ndarray:
    """Trapezoids: fall over ramp_h, hold, recover over ramp_h (all in hours since start)."""
    out = np.zeros_like(hours, dtype=float)
    for s in snaps:
        fall = np.clip((hours - s.start_h) / s.ramp_h, 0.0, 1.0)
        rise = np.clip((hours - s.start_h - s.duration_h) / s.ramp_h, 0.0, 1.0)
        out -= s.depth_c * (fall - rise)
    return out


class Weather:
    """True outdoor temperature per site (one shared weather, each site with its offset)."""

    def __init__(
        self, spec: WeatherSpec, sites: Sequence[str], start: datetime, seed: int, utc_offset_h: float = 8.0
    ) -> None:
        self.spec = spec
        self.sites = tuple(sites)
        self.start = start
        self.start_s = start.timestamp()
        self.utc_offset_h = utc_offset_h
        self.offsets = np.array([spec.site_offsets.get(s, 0.0) for s in self.sites])
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
        self._fronts = np.zeros(0)
        self._x = float(self._rng.normal(0.0, spec.front_sd_c)) if spec.front_sd_c > 0 else 0.0

    def _extend(self, hours_needed: int) -> None:
        a = math.exp(-1.0 / self.spec.front_hours)
        noise_sd = self.spec.front_sd_c * math.sqrt(1 - a * a)
        while len(self._fronts) < hours_needed:
            chunk = np.empty(CHUNK_H)
            eps = self._rng.normal(0.0, 1.0, CHUNK_H) * noise_sd
            x = self._x
            for i in range(CHUNK_H):
                chunk[i] = x
                x = a * x + eps[i]
            self._x = x
            self._fronts = np.concatenate([self._fronts, chunk])

    def base(self, epoch_s: np.ndarray) -> np.ndarray:
        """Site-independent outdoor temperature at the given times (epoch seconds)."""
        hours = (np.asarray(epoch_s, dtype=float) - self.start_s) / 3600.0
        if np.any(hours < 0):
            raise ValueError("weather asked for a time before the scenario start")
        self._extend(int(np.max(hours, initial=0.0)) + 2)
        fronts = np.interp(hours, np.arange(len(self._fronts)), self._fronts)
        local_h = (np.asarray(epoch_s, dtype=float) / 3600.0 + self.utc_offset_h) % 24.0
        diurnal = self.spec.diurnal_amplitude_c * np.cos(2 * np.pi * (local_h - self.spec.peak_hour_local) / 24.0)
        return self.spec.mean_c + diurnal + fronts + snap_profile(hours, self.spec.cold_snaps)

    def at(self, t: datetime) -> np.ndarray:
        """Per site, at one time."""
        return self.base(np.array([t.timestamp()]))[0] + self.offsets


class Forecaster:
    """Issues forecasts = truth + an error that grows with lead time (random walk plus a bias)."""

    def __init__(self, spec: ForecastSpec, weather: Weather, seed: int) -> None:
        self.spec = spec
        self.weather = weather
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))

    def issue(self, issued: datetime) -> dict[str, list[tuple[datetime, float]]]:
        """Hourly points from the next whole hour up to the horizon, per site."""
        first = issued.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        times = [first + timedelta(hours=h) for h in range(self.spec.horizon_h)]
        truth = self.weather.base(np.array([t.timestamp() for t in times]))
        out: dict[str, list[tuple[datetime, float]]] = {}
        for j, site in enumerate(self.weather.sites):
            bias = self._rng.normal(0.0, self.spec.bias_sd_c)
            walk = np.cumsum(self._rng.normal(0.0, self.spec.error_growth_c, len(times)))
            vals = truth + self.weather.offsets[j] + bias + walk
            out[site] = [(t, round(float(v), 1)) for t, v in zip(times, vals, strict=True)]
        return out
