"""The network spec: communities, buildings, stations and the design point, read from TOML.

A spec is small on purpose (a few lines per community) so a test or a demo can describe a
network of any size; the generator expands it into homes and stations deterministically.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from heatwatch.core.config import ConfigError


class SpecError(ConfigError):
    """A spec or scenario file problem; names the file and the key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DesignSpec(_Model):
    """The design point that homes are calibrated to (a middle home sits at indoor_c)."""

    outdoor_c: float = -9.0
    indoor_c: float = 20.0
    supply_c: float = 60.0
    return_c: float = 45.0
    heat_loss_w: float = Field(4000.0, gt=0, description="middle home's loss at the design point")
    internal_gain_w: float = Field(300.0, ge=0)
    time_constant_h: float = Field(40.0, gt=0)
    radiator_exponent: float = Field(1.3, ge=1.0, le=2.0)
    margin_top_c: float = Field(2.0, ge=0)
    margin_ground_c: float = Field(1.5, ge=0)
    margin_gable_c: float = Field(1.5, ge=0)
    margin_bungalow_c: float = Field(3.0, ge=0)
    margin_non_residential_c: float = 0.0
    home_spread_c: float = Field(0.3, ge=0, description="sd of home-to-home differences at the design point")

    @model_validator(mode="after")
    def _order(self) -> DesignSpec:
        if not self.supply_c > self.return_c > self.indoor_c > self.outdoor_c:
            raise ValueError("design temperatures must satisfy supply_c > return_c > indoor_c > outdoor_c")
        return self


class StationSpec(_Model):
    id: str = Field(min_length=1)
    name: str = ""
    supply_min_c: float = 35.0
    supply_max_c: float = 80.0
    setpoint_c: float | None = None  # default: the design supply
    curve: list[tuple[float, float]] = Field(
        default_factory=list, description="outdoor-reset curve [[outdoor_c, supply_c], ...]; empty = fixed setpoint"
    )
    weather_site: str = "default"
    lag_h: float = Field(0.5, gt=0)
    static_kpa: float = Field(300.0, gt=0)
    pump_kpa: float = Field(150.0, ge=0)
    primary_curve: list[tuple[float, float]] = Field(default_factory=lambda: [(-9.0, 110.0), (10.0, 70.0)])
    approach_c: float = Field(5.0, ge=0)


class CommunitySpec(_Model):
    name: str = Field(min_length=1)
    code: str = Field("", description="ASCII prefix of home ids; default C01, C02, ...")
    station: str = Field(min_length=1)
    street: str = "建设路"
    buildings: int = Field(3, ge=0)
    floors: int = Field(6, ge=1, le=60)
    entrances: int = Field(2, ge=1)
    homes_per_floor: int = Field(2, ge=1, description="per entrance")
    bungalows: int = Field(0, ge=0)
    non_residential: int = Field(0, ge=0)
    non_residential_temp_c: float = 16.0
    coverage: float = Field(1.0, ge=0, le=1, description="share of homes with a sensor")
    edge_coverage: float = Field(1.0, ge=0, le=1, description="edge homes are covered at coverage x this (bias)")
    imbalance: float = Field(0.0, ge=0, lt=1, description="share of design flow missing at the farthest building")


class NetworkSpec(_Model):
    seed: int = 1
    design: DesignSpec = DesignSpec()
    stations: list[StationSpec] = Field(min_length=1)
    communities: list[CommunitySpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _refs(self) -> NetworkSpec:
        ids = [s.id for s in self.stations]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate station id in {ids}")
        names = [c.name for c in self.communities]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate community name in {names}")
        for c in self.communities:
            if c.station not in ids:
                raise ValueError(f"community {c.name!r} names station {c.station!r}; known stations: {', '.join(ids)}")
        return self


def format_validation(err: ValidationError, source: str) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        parts.append(f"{loc}: {msg}")
    return f"{source}: " + "; ".join(parts)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise SpecError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None


def parse_network(data: dict[str, Any], source: str) -> NetworkSpec:
    try:
        return NetworkSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation(exc, source)) from None


def load_network(path: Path) -> NetworkSpec:
    """A bare network spec, or the ``[network]`` table of a scenario file."""
    data = read_toml(path)
    if "network" in data:
        body = dict(data["network"])
        body.setdefault("seed", data.get("seed", 1))
        return parse_network(body, f"{path} [network]")
    return parse_network(data, str(path))
