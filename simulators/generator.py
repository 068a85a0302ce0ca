"""Expand a network spec into homes, stations and the per-home arrays the physics needs.

All homes of a building are simulated (they load the station), but only homes with a sensor
go into the registry: the registry is the ledger of monitored homes, and the coverage bias
(edge homes under-covered) is what the analytics' 40 % edge weighting must correct.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from heatwatch.core.registry import Home, Registry, Station, write_homes, write_stations
from simulators.spec import CommunitySpec, NetworkSpec

SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"


@dataclass(frozen=True)
class Network:
    """Homes (all of them) with aligned numpy arrays; index i of every array is homes[i]."""

    spec: NetworkSpec
    homes: tuple[Home, ...]
    stations: tuple[Station, ...]
    has_sensor: np.ndarray  # bool
    station_idx: np.ndarray  # int, index into stations
    building_key: np.ndarray  # int, a global building number (for per-building truth)
    distance: np.ndarray  # 0 = nearest building of its community, 1 = farthest
    flow_factor: np.ndarray  # share of design flow the home's building gets (hydraulic imbalance)
    margin_c: np.ndarray  # how much colder than design indoor the home sits at the design point
    site_names: tuple[str, ...]
    station_site_idx: np.ndarray  # int, index into site_names per station

    @property
    def n(self) -> int:
        return len(self.homes)

    @property
    def sensor_idx(self) -> np.ndarray:
        return np.flatnonzero(self.has_sensor)

    @property
    def registry(self) -> Registry:
        homes = {self.homes[i].home_id: self.homes[i] for i in self.sensor_idx}
        return Registry(homes, {s.station_id: s for s in self.stations})

    def write_registry(self, out_dir: Path) -> tuple[Path, Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        homes_csv, stations_csv = out_dir / "homes.csv", out_dir / "stations.csv"
        write_homes(homes_csv, (self.homes[i] for i in self.sensor_idx))
        write_stations(stations_csv, self.stations)
        return homes_csv, stations_csv


def _contact(rng: np.random.Generator) -> str:
    surname = SURNAMES[int(rng.integers(len(SURNAMES)))]
    title = "先生" if rng.random() < 0.5 else "女士"
    return f"{surname}{title} 139{int(rng.integers(10**8)):08d}"


def _community_homes(c: CommunitySpec, code: str, rng: np.random.Generator) -> list[tuple[Home, float]]:
    """Homes of one community with their hydraulic distance (0 near .. 1 far)."""
    out: list[tuple[Home, float]] = []
    width = c.entrances * c.homes_per_floor
    for b in range(1, c.buildings + 1):
        dist = (b - 1) / (c.buildings - 1) if c.buildings > 1 else 0.0
        for e in range(1, c.entrances + 1):
            for f in range(1, c.floors + 1):
                for d in range(1, c.homes_per_floor + 1):
                    pos = (e - 1) * c.homes_per_floor + (d - 1)
                    home = Home(
                        home_id=f"{code}-{b:02d}-{e}-{f:02d}{d:02d}",
                        community=c.name,
                        building=f"{b}号楼",
                        entrance=f"{e}单元",
                        floor=f,
                        floors=c.floors,
                        gable=pos in (0, width - 1),
                        kind="residential",
                        min_temp_c=None,
                        station_id=c.station,
                        address=f"{c.street}{c.name}{b}号楼{e}单元{f}{d:02d}室",
                        contact=_contact(rng),
                        position=pos,
                    )
                    out.append((home, dist))
    for k in range(1, c.bungalows + 1):
        home = Home(
            f"{code}-P{k:03d}", c.name, "平房区", "", 1, 1, True, "bungalow", None, c.station,
            f"{c.street}{c.name}平房{k}号", _contact(rng), k - 1,
        )
        out.append((home, 1.0))
    for k in range(1, c.non_residential + 1):
        home = Home(
            f"{code}-N{k:02d}", c.name, "配套用房", "", 1, 1, False, "non_residential", c.non_residential_temp_c,
            c.station, f"{c.street}{c.name}配套用房{k}号", f"物业服务中心 0{int(rng.integers(10**7)):07d}", k - 1,
        )
        out.append((home, 0.5))
    return out


def design_margin(home: Home, spec: NetworkSpec) -> float:
    d = spec.design
    if home.kind == "bungalow":
        return d.margin_bungalow_c
    if home.kind == "non_residential":
        return d.margin_non_residential_c
    return home.top * d.margin_top_c + home.ground * d.margin_ground_c + home.gable * d.margin_gable_c


def generate(spec: NetworkSpec) -> Network:
    """Deterministic in ``spec.seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 1]))
    homes: list[Home] = []
    dist: list[float] = []
    sensor: list[bool] = []
    imbalance: list[float] = []
    bkey: list[int] = []
    building_no: dict[tuple[str, str], int] = {}
    for ci, c in enumerate(spec.communities):
        code = c.code or f"C{ci + 1:02d}"
        for home, d in _community_homes(c, code, rng):
            homes.append(home)
            dist.append(d)
            imbalance.append(c.imbalance)
            p = c.coverage * (c.edge_coverage if home.edge else 1.0)
            sensor.append(bool(rng.random() < p))
            bkey.append(building_no.setdefault((c.name, home.building), len(building_no)))
    stations = tuple(
        Station(
            station_id=s.id,
            name=s.name or f"{s.id}换热站",
            communities=tuple(c.name for c in spec.communities if c.station == s.id),
            supply_min_c=s.supply_min_c,
            supply_max_c=s.supply_max_c,
            weather_site=s.weather_site,
        )
        for s in spec.stations
    )
    st_index = {s.station_id: i for i, s in enumerate(stations)}
    sites = tuple(sorted({s.weather_site for s in stations}))
    distance = np.asarray(dist, dtype=float)
    spread = rng.normal(0.0, spec.design.home_spread_c, len(homes)) if homes else np.zeros(0)
    margin = np.asarray([design_margin(h, spec) for h in homes], dtype=float) + spread
    return Network(
        spec=spec,
        homes=tuple(homes),
        stations=stations,
        has_sensor=np.asarray(sensor, dtype=bool),
        station_idx=np.asarray([st_index[h.station_id] for h in homes], dtype=np.intp),
        building_key=np.asarray(bkey, dtype=np.intp),
        distance=distance,
        flow_factor=1.0 - np.asarray(imbalance, dtype=float) * distance,
        margin_c=margin,
        site_names=sites,
        station_site_idx=np.asarray([sites.index(s.weather_site) for s in stations], dtype=np.intp),
    )
