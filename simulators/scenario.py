"""Scenario files: a network spec plus weather, sensor faults, station events and timing.

Shipped scenarios live in ``simulators/scenarios/NAME.toml``; ``load_scenario`` takes a name
or a path. Every fault is off unless the scenario switches it on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simulators.spec import NetworkSpec, SpecError, format_validation, read_toml
from simulators.weather import ForecastSpec, WeatherSpec

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SensorSpec(_Model):
    noise_sd_c: float = Field(0.1, ge=0, description="sensor noise, clipped at 3 sd")
    epoch_share: float = Field(0.2, ge=0, le=1, description="sensors that send epoch seconds instead of RFC 3339")
    batch: int = Field(1, ge=1, le=100, description="readings per message (a JSON array when > 1)")
    with_rh: bool = True


class SensorFaults(_Model):
    dropout_share: float = Field(0.0, ge=0, le=1, description="sensors that go silent now and then")
    dropout_per_day: float = Field(1.0, ge=0)
    dropout_mean_h: float = Field(3.0, gt=0)
    stuck_share: float = Field(0.0, ge=0, le=1, description="sensors that freeze at some point")
    spike_prob: float = Field(0.0, ge=0, le=1, description="per reading")
    spike_min_c: float = 8.0
    spike_max_c: float = 20.0
    window_share: float = Field(0.0, ge=0, le=1, description="sensors near a window (read low, follow outdoor)")
    window_coupling: float = Field(0.08, ge=0, le=1)
    heat_source_share: float = Field(0.0, ge=0, le=1, description="sensors near a radiator or stove (read high)")
    heat_source_c: float = 4.0
    duplicate_prob: float = Field(0.0, ge=0, le=1, description="per message: sent twice")
    late_prob: float = Field(0.0, ge=0, le=1, description="per message: held back, so it arrives out of order")
    late_max_steps: int = Field(4, ge=1)
    skew_share: float = Field(0.0, ge=0, le=1, description="sensors whose clock is off")
    skew_max_s: float = Field(240.0, ge=0, description="keep under the collector's 5-minute future tolerance")
    malformed_prob: float = Field(0.0, ge=0, le=1, description="per message: broken payload")


class StationEvent(_Model):
    kind: Literal["pump_failure", "leak", "outage"]
    station: str
    start_h: float = Field(ge=0)
    duration_h: float = Field(gt=0)


class SetpointChange(_Model):
    """A scripted setpoint change (as if an operator typed it), hours after the start."""

    at_h: float = Field(ge=0)
    station: str
    supply_c: float | None = Field(description="None (omit) = back to the outdoor-reset curve")


class Scenario(_Model):
    name: str
    description: str = ""
    seed: int = 1
    duration_h: float = Field(72.0, gt=0)
    step_min: float = Field(15.0, gt=0, le=120)
    network: NetworkSpec
    weather: WeatherSpec = WeatherSpec()
    forecast: ForecastSpec = ForecastSpec()
    sensors: SensorSpec = SensorSpec()
    faults: SensorFaults = SensorFaults()
    events: list[StationEvent] = Field(default_factory=list)
    setpoints: list[SetpointChange] = Field(default_factory=list)

    @model_validator(mode="after")
    def _refs(self) -> Scenario:
        ids = {s.id for s in self.network.stations}
        named = [e.station for e in self.events] + [s.station for s in self.setpoints]
        for sid in named:
            if sid not in ids:
                raise ValueError(f"event names station {sid!r}; known: {', '.join(sorted(ids))}")
        return self

    @property
    def step_s(self) -> float:
        return self.step_min * 60.0


def shipped_scenarios() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def parse_scenario(data: dict[str, Any], source: str) -> Scenario:
    body = dict(data)
    net = body.get("network")
    if isinstance(net, dict) and "seed" not in net:
        body["network"] = {**net, "seed": body.get("seed", 1)}
    try:
        return Scenario.model_validate(body)
    except ValidationError as exc:
        raise SpecError(format_validation(exc, source)) from None


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name (``normal``), or a TOML file by path."""
    p = Path(name_or_path)
    if p.suffix != ".toml" and p.parent == Path("."):
        p = SCENARIO_DIR / f"{name_or_path}.toml"
        if not p.is_file():
            raise SpecError(f"unknown scenario {name_or_path!r}; shipped: {', '.join(shipped_scenarios())}")
    data = read_toml(p)
    data.setdefault("name", p.stem)
    return parse_scenario(data, str(p))
