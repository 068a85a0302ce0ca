"""In-home measurement records (入户测温; 000 section 三, 001 section 八): room by room, two staff, a calibrated
thermometer, the customer's co-signature.

- Append-only: a correction is a new record that ``supersedes`` the old one; nothing is updated or deleted.
- Checked at the boundary (``check``, pure): ``[measurements] staff_required`` distinct staff, an instrument whose
  calibration date is not in the future and at most ``calibration_valid_days`` old on the day of measuring,
  readings within ``reading_min_c``..``reading_max_c``, a co-signature with the customer's name.
- A co-signed measurement under the home's standard at that hour (18 °C by day / 16 °C at night, bungalows 16 °C,
  contract homes their own; ``[standard]``) opens a ``not_warm`` order on the desk — or is a note on an order of
  that home still open — even though it is a single reading: the customer signed it.

``record`` (one record, e.g. from the HTTP intake) and ``import_csv`` (a file; every bad row refused with its row
number and reason, the good rows kept) are the two ways in.
"""

from __future__ import annotations

import csv
import math
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Column, Engine, MetaData, String, Table, Text, insert, select

from analytics.core import KIND_BUNGALOW, KIND_CONTRACT, KIND_RESIDENTIAL, thresholds
from control.alerts.rules import unit_of
from control.valves import Spot
from heatwatch.core.config import Config
from heatwatch.core.errors import UsageError
from heatwatch.core.registry import Home, Registry
from heatwatch.core.timeutil import parse_cli_time
from heatwatch.infra import statedb
from heatwatch.infra.servicedb import ServiceDb

if TYPE_CHECKING:
    from dispatch.desk import Desk

metadata = MetaData()
records = Table(
    "measurement_records",
    metadata,
    Column("record_id", String, primary_key=True),
    Column("home_id", String, nullable=False, index=True),
    Column("measured_at", String, nullable=False),
    Column("supersedes", String, nullable=False, default="", index=True),
    Column("recorded_at", String, nullable=False),
    Column("recorded_by", String, nullable=False),
    Column("body", Text, nullable=False),  # the record as JSON
)

CSV_COLUMNS = ("home_id", "measured_at", "rooms", "staff", "instrument_id", "calibrated_on", "cosigned", "cosigner",
               "note", "supersedes")
CSV_REQUIRED = ("home_id", "measured_at", "rooms", "staff", "instrument_id", "calibrated_on")
YES = {"1", "yes", "y", "true", "是", "已签", "签字"}
NO = {"", "0", "no", "n", "false", "否", "未签"}


class MeasurementRefused(ValueError):
    """A record that cannot be kept as given; the message names every problem."""


@dataclass(frozen=True, slots=True)
class Measurement:
    """One visit's record. ``rooms``: room name → °C, in the order measured."""

    home_id: str
    measured_at: datetime  # UTC
    rooms: tuple[tuple[str, float], ...]
    staff: tuple[str, ...]
    instrument_id: str
    calibrated_on: date
    cosigned: bool = False
    cosigner: str = ""
    note: str = ""
    supersedes: str = ""  # the record this one corrects

    @property
    def mean_c(self) -> float:
        """The home's temperature: the mean of its rooms."""
        return sum(t for _, t in self.rooms) / len(self.rooms)

    @property
    def lowest(self) -> tuple[str, float]:
        """The coldest room."""
        return min(self.rooms, key=lambda r: r[1])


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A kept record with its id and who recorded it when."""

    record_id: str
    m: Measurement
    recorded_at: datetime
    recorded_by: str


@dataclass(frozen=True, slots=True)
class Recorded:
    """What ``record`` did: the record, the standard it was held to, and the desk order it opened or noted."""

    record: StoredRecord
    threshold_c: float
    below: bool
    order_id: str = ""
    action: str = ""  # "opened" | "noted" | "" (no order: not co-signed, or at the standard) | "refused: …"


def to_json(m: Measurement) -> dict[str, Any]:
    """The record's JSON body (times RFC 3339 UTC)."""
    return {"home_id": m.home_id, "measured_at": statedb.ts(m.measured_at), "rooms": [[r, t] for r, t in m.rooms],
            "staff": list(m.staff), "instrument_id": m.instrument_id, "calibrated_on": m.calibrated_on.isoformat(),
            "cosigned": m.cosigned, "cosigner": m.cosigner, "note": m.note, "supersedes": m.supersedes}


def from_json(d: Mapping[str, Any]) -> Measurement:
    """The inverse of ``to_json``."""
    at = statedb.parse_ts(d["measured_at"])
    assert at is not None
    return Measurement(d["home_id"], at, tuple((str(r), float(t)) for r, t in d["rooms"]), tuple(d["staff"]),
                       d["instrument_id"], date.fromisoformat(d["calibrated_on"]), bool(d["cosigned"]), d["cosigner"],
                       d["note"], d["supersedes"])


# --- the rules (pure) ----------------------------------------------------------------------------------
def standard_for(home: Home | None, at: datetime, cfg: Config) -> float:
    """The minimum the home is held to at ``at`` (local hour decides day or night), as analytics holds it."""
    s = cfg.standard
    kind = home.kind if home else "residential"
    code = {"residential": KIND_RESIDENTIAL, "bungalow": KIND_BUNGALOW}.get(kind, KIND_CONTRACT)
    contract = home.min_temp_c if home and home.min_temp_c is not None else s.day_min_c
    day, night = thresholds(np.array([code]), np.array([contract]), s.day_min_c, s.night_min_c, s.bungalow_min_c)
    hour = at.astimezone(cfg.general.tz).hour
    return float(day[0] if s.day_start_hour <= hour < s.day_end_hour else night[0])


def check(m: Measurement, cfg: Config, registry: Registry, now: datetime) -> list[str]:
    """Every problem of ``m`` (empty: it can be kept). Pure: the caller checks ``supersedes`` against the book."""
    c = cfg.measurements
    out: list[str] = []
    if not m.home_id:
        out.append("home_id is empty")
    elif registry.homes and m.home_id not in registry.homes:
        out.append(f"home {m.home_id!r} is not in the registry")
    if m.measured_at > now + timedelta(seconds=cfg.collector.future_tolerance_s):
        out.append(f"measured_at {m.measured_at.isoformat()} is in the future")
    if not m.rooms:
        out.append("no room readings")
    names = [r for r, _ in m.rooms]
    if any(not r for r in names):
        out.append("a room without a name")
    if len(set(names)) != len(names):
        out.append("a room is named twice: " + ", ".join(sorted({r for r in names if names.count(r) > 1})))
    for room, t in m.rooms:
        if not math.isfinite(t) or not c.reading_min_c <= t <= c.reading_max_c:
            out.append(f"room {room}: {t} °C is outside {c.reading_min_c:g}..{c.reading_max_c:g} °C")
    staff = {s.strip() for s in m.staff if s.strip()}
    if len(staff) < c.staff_required:
        out.append(f"{c.staff_required} distinct staff required, got {len(staff)}" + (f" ({', '.join(sorted(staff))})" if staff else ""))
    if not m.instrument_id.strip():
        out.append("instrument_id is empty")
    day = m.measured_at.astimezone(cfg.general.tz).date()
    if m.calibrated_on > day:
        out.append(f"calibrated_on {m.calibrated_on.isoformat()} is after the measurement ({day.isoformat()})")
    elif (day - m.calibrated_on).days > c.calibration_valid_days:
        out.append(f"calibration of {m.calibrated_on.isoformat()} had expired ({(day - m.calibrated_on).days} days before "
                   f"the measurement; valid {c.calibration_valid_days} days)")
    if m.cosigned and not m.cosigner.strip():
        out.append("co-signed without the customer's name (cosigner)")
    return out


def parse_rooms(text: str) -> tuple[tuple[str, float], ...]:
    """``客厅=17.5;主卧=16.8`` (``:`` / ``：`` and ``；`` / ``,`` work too) → ((room, °C), ...)."""
    out = []
    for part in text.replace("；", ";").replace("，", ";").replace(",", ";").split(";"):
        part = part.strip()
        if not part:
            continue
        for sep in ("=", "：", ":"):
            if sep in part:
                room, _, val = part.partition(sep)
                break
        else:
            raise ValueError(f"room reading {part!r}: expected room=°C such as 客厅=17.5")
        try:
            out.append((room.strip(), float(val.strip())))
        except ValueError:
            raise ValueError(f"room {room.strip()}: {val.strip()!r} is not a number") from None
    return tuple(out)


# --- the book: append-only storage -----------------------------------------------------------------------
class MeasurementBook:
    """The records table in the service database (``[season] db_path``): insert and read, never update or delete."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, cfg: Config) -> MeasurementBook:
        return cls(ServiceDb.open(cfg, metadata).engine)

    def add(self, m: Measurement, by: str, at: datetime) -> StoredRecord:
        rec = StoredRecord("M" + secrets.token_hex(5), m, at, by)
        with self.engine.begin() as conn:
            conn.execute(insert(records).values(record_id=rec.record_id, home_id=m.home_id, measured_at=statedb.ts(m.measured_at),
                                                supersedes=m.supersedes, recorded_at=statedb.ts(at), recorded_by=by,
                                                body=statedb.dumps(to_json(m))))
        return rec

    def _rows(self, q: Any) -> list[StoredRecord]:
        import json

        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        out = []
        for r in rows:
            at = statedb.parse_ts(r["recorded_at"])
            assert at is not None
            out.append(StoredRecord(r["record_id"], from_json(json.loads(r["body"])), at, r["recorded_by"]))
        return out

    def get(self, record_id: str) -> StoredRecord | None:
        found = self._rows(select(records).where(records.c.record_id == record_id))
        return found[0] if found else None

    def superseded_by(self, record_id: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(records.c.record_id).where(records.c.supersedes == record_id)).first()
        return None if row is None else str(row[0])

    def all(self, home_id: str | None = None) -> list[StoredRecord]:
        """Every record (of one home), corrections included, by measurement time."""
        q = select(records).order_by(records.c.measured_at, records.c.recorded_at)
        return self._rows(q if home_id is None else q.where(records.c.home_id == home_id))

    def current(self, start: datetime | None = None, end: datetime | None = None) -> list[StoredRecord]:
        """The records in force (none corrects them), measured in [start, end)."""
        rows = self.all()
        corrected = {r.m.supersedes for r in rows if r.m.supersedes}
        return [r for r in rows if r.record_id not in corrected and (start is None or r.m.measured_at >= start)
                and (end is None or r.m.measured_at < end)]


# --- the ways in ----------------------------------------------------------------------------------------
def _supersedes_problem(book: MeasurementBook, m: Measurement) -> str | None:
    if not m.supersedes:
        return None
    old = book.get(m.supersedes)
    if old is None:
        return f"supersedes {m.supersedes!r}: no such record"
    if old.m.home_id != m.home_id:
        return f"supersedes {m.supersedes!r}: that record is for home {old.m.home_id!r}, not {m.home_id!r}"
    newer = book.superseded_by(m.supersedes)
    if newer is not None:
        return f"supersedes {m.supersedes!r}: already corrected by {newer} (correct that one)"
    return None


def record(book: MeasurementBook, m: Measurement, *, cfg: Config, registry: Registry, now: datetime, by: str,
           desk: Desk | None = None) -> Recorded:
    """Check and keep one record; a co-signed one under the standard opens (or notes) a not_warm order on ``desk``.
    ``MeasurementRefused`` names every problem; nothing is stored then."""
    problems = check(m, cfg, registry, now)
    sup = _supersedes_problem(book, m)
    if sup:
        problems.append(sup)
    if not by.strip():
        problems.append("recorded by nobody (by)")
    if problems:
        raise MeasurementRefused("; ".join(problems))
    rec = book.add(m, by.strip(), now)
    home = registry.homes.get(m.home_id)
    threshold = standard_for(home, m.measured_at, cfg)
    below = m.mean_c < threshold
    out = Recorded(rec, threshold, below)
    if not (below and m.cosigned) or desk is None:
        return out
    return _to_desk(out, home, cfg, registry, desk, by.strip())


def _to_desk(out: Recorded, home: Home | None, cfg: Config, registry: Registry, desk: Desk, by: str) -> Recorded:
    from dataclasses import replace

    from dispatch.model import OrderInput, OrderRefused

    m, rid = out.record.m, out.record.record_id
    room, low = m.lowest
    local = m.measured_at.astimezone(cfg.general.tz).isoformat(timespec="minutes")
    text = (f"co-signed measurement {rid} at {local}: mean {m.mean_c:.1f} °C under {out.threshold_c:.1f} °C "
            f"(coldest {room} {low:.1f} °C; staff {', '.join(m.staff)}; instrument {m.instrument_id}, "
            f"calibrated {m.calibrated_on.isoformat()}; signed by {m.cosigner})")
    evidence = {"record_id": rid, "mean_c": round(m.mean_c, 2), "threshold_c": out.threshold_c, "rooms": dict(m.rooms),
                "cosigner": m.cosigner}
    open_orders = [o for o in desk.find_open(m.home_id) if o.category in ("not_warm", "measurement")]
    if open_orders:
        o = desk.note(open_orders[0].order_id, by, text, evidence)
        return replace(out, order_id=o.order_id, action="noted")
    sid = home.station_id if home else ""
    inp = OrderInput(
        source="measurement", category="not_warm", reporter=m.cosigner, phone=(home.contact if home else "") or "未登记 none registered",
        address=(home.address if home else "") or m.home_id, home_id=m.home_id, community=home.community if home else "",
        station_id=sid, content=text, handling_unit=unit_of(cfg, registry.stations.get(sid), sid), evidence=evidence,
        ref=f"measurement:{rid}",
    )
    try:
        o = desk.open(inp, by)
    except OrderRefused as exc:  # the record is kept; dispatch sees why no order was opened
        return replace(out, action=f"refused: {exc}")
    return replace(out, order_id=o.order_id, action="opened")


@dataclass
class ImportReport:
    """Rows kept and rows refused (row number, reason) of one file."""

    kept: list[Recorded] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in YES:
        return True
    if t in NO:
        return False
    raise ValueError(f"cosigned {text!r}: expected 1/0 (是/否)")


def parse_row(row: Mapping[str, str], cfg: Config) -> Measurement:
    """One CSV row → a Measurement (ValueError naming the column)."""
    try:
        at = parse_cli_time(row["measured_at"], cfg.general.tz, "measured_at")
    except UsageError as exc:
        raise ValueError(str(exc)) from None
    try:
        cal = date.fromisoformat(row["calibrated_on"].strip())
    except ValueError:
        raise ValueError(f"calibrated_on {row['calibrated_on']!r}: expected a date YYYY-MM-DD") from None
    staff = tuple(s.strip() for s in row["staff"].replace("；", ";").replace("、", ";").replace(",", ";").split(";") if s.strip())
    return Measurement(
        home_id=row["home_id"].strip(), measured_at=at.astimezone(UTC), rooms=parse_rooms(row["rooms"]), staff=staff,
        instrument_id=row["instrument_id"].strip(), calibrated_on=cal, cosigned=_bool(row.get("cosigned") or ""),
        cosigner=(row.get("cosigner") or "").strip(), note=(row.get("note") or "").strip(),
        supersedes=(row.get("supersedes") or "").strip(),
    )


def import_csv(path: Path, book: MeasurementBook, *, cfg: Config, registry: Registry, now: datetime, by: str,
               desk: Desk | None = None) -> ImportReport:
    """Every good row kept (and sent to the desk as ``record`` does), every bad one refused with its row number and
    reason. A file that cannot be read at all (missing, not UTF-8, no header) is a ``UsageError``."""
    rep = ImportReport()
    try:
        fh = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise UsageError(f"{path}: cannot open: {exc.strerror}") from None
    with fh:
        try:
            rows: Sequence[dict[str, str]] = list(csv.DictReader(fh))
            header = list(rows[0].keys()) if rows else []
        except UnicodeDecodeError as exc:
            raise UsageError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not rows:
        raise UsageError(f"{path}: no rows (header: {', '.join(CSV_COLUMNS)})")
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        raise UsageError(f"{path} row 1 (header): missing column(s) {', '.join(missing)}")
    for i, row in enumerate(rows, start=2):
        if None in row:
            rep.refused.append((i, "more values than header columns"))
            continue
        try:
            m = parse_row({k: v or "" for k, v in row.items()}, cfg)
            rep.kept.append(record(book, m, cfg=cfg, registry=registry, now=now, by=by, desk=desk))
        except (ValueError, MeasurementRefused) as exc:
            rep.refused.append((i, str(exc)))
    return rep


# --- the way out: to control's home valves ------------------------------------------------------------------
def in_home_spots(cfg: Config) -> Callable[[datetime, datetime], list[Spot]]:
    """The records in force measured in [start, end) as control's in-home measurements (``control.valves.Spot``: a
    home's room mean): what lets a class that one sensor home measures be throttled, and what keeps a class a crew
    found cold from being throttled. Reads nothing while there is no service database (a cycle creates none)."""
    from heatwatch.infra.servicedb import db_path

    book: list[MeasurementBook] = []

    def read(start: datetime, end: datetime) -> list[Spot]:
        if not book:
            if not db_path(cfg).exists():
                return []
            book.append(MeasurementBook.open(cfg))
        return [Spot(r.m.home_id, r.m.measured_at, r.m.mean_c) for r in book[0].current(start, end)]

    return read
