"""The home registry: the ledger of homes and heat-exchange stations (CSV, UTF-8).

Edge homes (top floor, ground floor, gable end) are derived here once, because the 40 %
rule of the follow-up visits (DOMAIN.md, 000 section 五) depends on them everywhere.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from heatwatch.core.errors import RegistryError

Kind = Literal["residential", "bungalow", "non_residential"]
KINDS: tuple[str, ...] = ("residential", "bungalow", "non_residential")
# heated, or not heated and so left out of averages, flags and cold alerts (heatwatch.core.homestatus)
HomeStatus = Literal["heated", "stopped", "vacant", "not_paid"]
HOME_STATUSES: tuple[str, ...] = ("heated", "stopped", "vacant", "not_paid")

HOME_COLUMNS = (
    "home_id",
    "community",
    "building",
    "entrance",
    "floor",
    "floors",
    "gable",
    "kind",
    "min_temp_c",
    "station_id",
    "address",
    "contact",
)
HOME_REQUIRED = ("home_id", "community", "building", "floor", "floors", "kind", "station_id")
HOME_OPTIONAL_EXTRA = ("position", "heated_area_m2", "status")  # position on the floor (heat maps); heated area; status
STATION_COLUMNS = ("station_id", "name", "communities", "supply_min_c", "supply_max_c")
STATION_OPTIONAL = ("weather_site",)
ID_FORBIDDEN = set("/#+\n\r\t\x00")


@dataclass(frozen=True, slots=True)
class Home:
    """One home of the registry: where it sits (community, building, floor) and the standard it is held to."""

    home_id: str
    community: str
    building: str
    entrance: str
    floor: int
    floors: int
    gable: bool
    kind: Kind
    min_temp_c: float | None
    station_id: str
    address: str = ""
    contact: str = ""
    position: int | None = None
    heated_area_m2: float | None = None  # for heat per m²; optional, older registries have no column
    status: HomeStatus = "heated"  # the ledger's status; dated changes (报停 from a date) are resolved on top of it

    @property
    def top(self) -> bool:
        """On the top floor: under the roof, an edge home."""
        return self.floor == self.floors

    @property
    def ground(self) -> bool:
        """On the ground floor: over the unheated basement, an edge home."""
        return self.floor == 1

    @property
    def edge(self) -> bool:
        """Top floor, ground floor or gable end: the homes that lose most heat and carry ≥ 40 % of the weight."""
        return self.top or self.ground or self.gable

    @property
    def location(self) -> str:
        """Where the home sits, for visit plans and reports."""
        parts = [p for p, on in (("top", self.top), ("ground", self.ground), ("gable", self.gable)) if on]
        return "+".join(parts) if parts else "middle"


@dataclass(frozen=True, slots=True)
class Station:
    """A heat-exchange station: the communities it serves and the supply temperatures it can deliver."""

    station_id: str
    name: str
    communities: tuple[str, ...]
    supply_min_c: float
    supply_max_c: float
    weather_site: str = "default"


@dataclass(frozen=True)
class Registry:
    """Homes and stations by id; an empty registry means ids are not checked."""

    homes: Mapping[str, Home]
    stations: Mapping[str, Station] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> Registry:
        """No homes, no stations: what the collector checks ids against when no registry is configured."""
        return cls({}, {})

    def communities(self) -> list[str]:
        """Every community with at least one home, sorted."""
        return sorted({h.community for h in self.homes.values()})

    def homes_in(self, community: str) -> list[Home]:
        """The homes of one community."""
        return [h for h in self.homes.values() if h.community == community]

    def frame(self) -> pd.DataFrame:
        """Homes as a DataFrame (index home_id) with derived top/ground/edge, for vectorised analytics."""
        cols = [*HOME_COLUMNS, "position"]
        if not self.homes:
            return pd.DataFrame(columns=[*cols, "top", "ground", "edge"]).set_index("home_id")
        df = pd.DataFrame([{c: getattr(h, c) for c in cols} for h in self.homes.values()])
        df["top"] = df["floor"] == df["floors"]
        df["ground"] = df["floor"] == 1
        df["edge"] = df["top"] | df["ground"] | df["gable"].astype(bool)
        return df.set_index("home_id")


def _check_id(value: str, where: str, what: str) -> str:
    if not value:
        raise RegistryError(f"{where}: {what} is empty")
    bad = ID_FORBIDDEN.intersection(value)
    if bad:
        raise RegistryError(f"{where}: {what} {value!r} contains {sorted(bad)!r}, which cannot appear in an MQTT topic")
    return value


def _int(value: str, where: str, col: str, minimum: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise RegistryError(f"{where} column {col}: expected a whole number, got {value!r}") from None
    if n < minimum:
        raise RegistryError(f"{where} column {col}: expected at least {minimum}, got {n}")
    return n


def _float(value: str, where: str, col: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise RegistryError(f"{where} column {col}: expected a number, got {value!r}") from None
    if not math.isfinite(x):
        raise RegistryError(f"{where} column {col}: expected a finite number, got {value!r}")
    return x


def _rows(path: Path, required: Iterable[str]) -> Iterable[tuple[int, dict[str, str]]]:
    try:
        fh = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise RegistryError(f"{path}: cannot open: {exc.strerror}") from None
    with fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise RegistryError(f"{path} row 1 (header): missing column(s) {', '.join(missing)}")
        try:
            for i, row in enumerate(reader, start=2):
                if None in row:
                    raise RegistryError(f"{path} row {i}: more values than header columns")
                yield i, {k: (v or "").strip() for k, v in row.items() if k is not None}
        except UnicodeDecodeError as exc:
            raise RegistryError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None


def load_homes(path: Path) -> dict[str, Home]:
    """Read a homes CSV; a ``RegistryError`` names the file, row and column of the first problem."""
    homes: dict[str, Home] = {}
    for i, row in _rows(path, HOME_REQUIRED):
        where = f"{path} row {i}"
        hid = _check_id(row["home_id"], f"{where} column home_id", "home_id")
        if hid in homes:
            raise RegistryError(f"{where} column home_id: duplicate home id {hid!r}")
        community = row["community"]
        if not community:
            raise RegistryError(f"{where} column community: empty")
        for col in ("community", "building", "entrance"):
            if any(ord(c) < 0x20 for c in row.get(col, "")):
                raise RegistryError(f"{where} column {col}: contains a line break or control character")
        floor = _int(row["floor"], where, "floor", 1)
        floors = _int(row["floors"], where, "floors", 1)
        if floor > floors:
            raise RegistryError(f"{where} column floor: floor {floor} is above floors {floors}")
        gable_txt = row.get("gable", "0") or "0"
        if gable_txt not in ("0", "1"):
            raise RegistryError(f"{where} column gable: expected 0 or 1, got {gable_txt!r}")
        kind = row["kind"]
        if kind not in KINDS:
            raise RegistryError(f"{where} column kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        min_txt = row.get("min_temp_c", "")
        min_temp = _float(min_txt, where, "min_temp_c") if min_txt else None
        if kind == "non_residential" and min_temp is None:
            raise RegistryError(f"{where} column min_temp_c: non_residential homes need their contract temperature")
        pos_txt = row.get("position", "")
        area_txt = row.get("heated_area_m2", "")
        area = _float(area_txt, where, "heated_area_m2") if area_txt else None
        if area is not None and area <= 0:
            raise RegistryError(f"{where} column heated_area_m2: must be positive, got {area_txt!r}")
        status = row.get("status", "") or "heated"
        if status not in HOME_STATUSES:
            raise RegistryError(f"{where} column status: expected one of {', '.join(HOME_STATUSES)}, got {status!r}")
        homes[hid] = Home(
            home_id=hid,
            community=community,
            building=row["building"],
            entrance=row.get("entrance", ""),
            floor=floor,
            floors=floors,
            gable=gable_txt == "1",
            kind=kind,  # type: ignore[arg-type]
            min_temp_c=min_temp,
            station_id=_check_id(row["station_id"], f"{where} column station_id", "station_id"),
            address=row.get("address", ""),
            contact=row.get("contact", ""),
            position=_int(pos_txt, where, "position", 0) if pos_txt else None,
            heated_area_m2=area,
            status=status,  # type: ignore[arg-type]
        )
    return homes


def load_stations(path: Path) -> dict[str, Station]:
    """Read a stations CSV (communities separated by ';'); errors name the file, row and column."""
    stations: dict[str, Station] = {}
    for i, row in _rows(path, STATION_COLUMNS):
        where = f"{path} row {i}"
        sid = _check_id(row["station_id"], f"{where} column station_id", "station_id")
        if sid in stations:
            raise RegistryError(f"{where} column station_id: duplicate station id {sid!r}")
        comms = tuple(c.strip() for c in row["communities"].replace("|", ";").split(";") if c.strip())
        if not comms:
            raise RegistryError(f"{where} column communities: empty (separate several with ';')")
        lo = _float(row["supply_min_c"], where, "supply_min_c")
        hi = _float(row["supply_max_c"], where, "supply_max_c")
        if lo >= hi:
            raise RegistryError(f"{where} column supply_max_c: {hi} is not above supply_min_c {lo}")
        stations[sid] = Station(sid, row["name"], comms, lo, hi, row.get("weather_site") or "default")
    return stations


def load_registry(homes_csv: Path | None, stations_csv: Path | None = None) -> Registry:
    """Both files, checked against each other: every home's station must be in the stations file."""
    homes = load_homes(homes_csv) if homes_csv else {}
    stations = load_stations(stations_csv) if stations_csv else {}
    if stations:
        for h in homes.values():
            if h.station_id not in stations:
                raise RegistryError(f"{homes_csv}: home {h.home_id!r} names station {h.station_id!r}, not in {stations_csv}")
    return Registry(homes, stations)


def write_homes(path: Path, homes: Iterable[Home]) -> None:
    """Write homes in the CSV form ``load_homes`` reads (the simulator's generator and tests use it)."""
    homes = list(homes)
    with_area = any(h.heated_area_m2 is not None for h in homes)  # the column only when someone has an area
    with_status = any(h.status != "heated" for h in homes)
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*HOME_COLUMNS, "position", *(["heated_area_m2"] if with_area else []), *(["status"] if with_status else [])])
        for h in homes:
            w.writerow(
                [
                    h.home_id, h.community, h.building, h.entrance, h.floor, h.floors, int(h.gable), h.kind,
                    "" if h.min_temp_c is None else h.min_temp_c, h.station_id, h.address, h.contact,
                    "" if h.position is None else h.position,
                    *([("" if h.heated_area_m2 is None else h.heated_area_m2)] if with_area else []),
                    *([h.status] if with_status else []),
                ]
            )


def write_stations(path: Path, stations: Iterable[Station]) -> None:
    """Write stations in the CSV form ``load_stations`` reads."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*STATION_COLUMNS, "weather_site"])
        for s in stations:
            w.writerow([s.station_id, s.name, ";".join(s.communities), s.supply_min_c, s.supply_max_c, s.weather_site])
