"""Manual measurements (入户测温 / 回访台账) from a CSV ledger, stored as indoor readings with source=manual.

They count like sensor readings in every analysis (the hourly means do not look at the source) and
stay distinguishable by the ``source`` tag. The whole file is checked first and nothing is stored
when any row is wrong, so a corrected file can simply be imported again (writes are idempotent).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from heatwatch.core import schema
from heatwatch.core.config import LimitsSettings
from heatwatch.core.model import Point
from heatwatch.core.registry import Registry
from heatwatch.core.timeutil import NS, Clock, parse_ts, to_ns, utc_now

REQUIRED = ("home_id", "ts", "temp_c")
OPTIONAL = ("rh", "note")
MAX_ERRORS_SHOWN = 20


class ManualImportError(ValueError):
    """The file has errors; each names the row and column."""

    def __init__(self, path: Path, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        shown = self.errors[:MAX_ERRORS_SHOWN]
        more = f"; … and {len(self.errors) - len(shown)} more" if len(self.errors) > len(shown) else ""
        super().__init__(f"{path}: {len(self.errors)} error(s), nothing imported: " + "; ".join(shown) + more)


@dataclass(frozen=True, slots=True)
class ManualReading:
    row: int
    home_id: str
    ts_ns: int
    temp_c: float
    rh: float | None
    note: str


def _number(text: str, row: int, col: str, lo: float, hi: float, errors: list[str]) -> float | None:
    try:
        x = float(text)
    except ValueError:
        errors.append(f"row {row} column {col}: expected a number, got {text[:40]!r}")
        return None
    if not math.isfinite(x) or not lo <= x <= hi:
        errors.append(f"row {row} column {col}: {text} is outside the plausible range {lo:g}…{hi:g}")
        return None
    return x


def _ts(text: str, row: int, errors: list[str]) -> int | None:
    value: object = text
    try:
        value = float(text) if text.replace(".", "", 1).isdigit() else text
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return parse_ts(value)
    except ValueError as exc:
        errors.append(f"row {row} column ts: {exc}")
        return None


def read_manual_csv(
    path: Path, registry: Registry, limits: LimitsSettings, clock: Clock = utc_now, future_tolerance_s: float = 300.0
) -> list[ManualReading]:
    """Parse and validate the whole ledger; raise ManualImportError listing every bad row."""
    errors: list[str] = []
    out: list[ManualReading] = []
    seen: dict[tuple[str, int], int] = {}
    latest = to_ns(clock()) + int(future_tolerance_s * NS)
    try:
        fh = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ManualImportError(path, [f"cannot open: {exc.strerror}"]) from None
    with fh:
        try:
            reader = csv.DictReader(fh)
            header = [c.strip() for c in (reader.fieldnames or [])]
            reader.fieldnames = header
            missing = [c for c in REQUIRED if c not in header]
            unknown = [c for c in header if c not in (*REQUIRED, *OPTIONAL)]
            if missing or unknown:
                what = []
                if missing:
                    what.append(f"missing column(s) {', '.join(missing)}")
                if unknown:
                    what.append(f"unknown column(s) {', '.join(unknown)}")
                raise ManualImportError(path, [f"row 1 (header): {'; '.join(what)}; expected home_id, ts, temp_c[, rh, note]"])
            for i, raw in enumerate(reader, start=2):
                if None in raw:
                    errors.append(f"row {i}: more values than header columns")
                    continue
                row = {k: (v or "").strip() for k, v in raw.items()}
                if not any(row.values()):
                    continue  # blank line
                n_err = len(errors)
                hid = row["home_id"]
                if not hid:
                    errors.append(f"row {i} column home_id: empty")
                elif hid not in registry.homes:
                    errors.append(f"row {i} column home_id: {hid!r} is not in the registry")
                ts = _ts(row["ts"], i, errors) if row["ts"] else None
                if not row["ts"]:
                    errors.append(f"row {i} column ts: empty")
                elif ts is not None and ts > latest:
                    errors.append(f"row {i} column ts: {row['ts']} is in the future")
                temp = None
                if row["temp_c"]:
                    temp = _number(row["temp_c"], i, "temp_c", limits.indoor_min_c, limits.indoor_max_c, errors)
                else:
                    errors.append(f"row {i} column temp_c: empty")
                rh = _number(row["rh"], i, "rh", limits.rh_min, limits.rh_max, errors) if row.get("rh") else None
                if len(errors) > n_err or ts is None or temp is None:
                    continue
                if (hid, ts) in seen:
                    errors.append(f"row {i}: same home_id and ts as row {seen[(hid, ts)]}")
                    continue
                seen[(hid, ts)] = i
                out.append(ManualReading(i, hid, ts, temp, rh, row.get("note", "")))
        except UnicodeDecodeError as exc:
            raise ManualImportError(path, [f"not UTF-8 ({exc.reason} at byte {exc.start}); save the file as UTF-8"]) from None
        except csv.Error as exc:
            raise ManualImportError(path, [f"not a readable CSV file: {exc}"]) from None
    if errors:
        raise ManualImportError(path, errors)
    if not out:
        raise ManualImportError(path, ["no readings (only a header?)"])
    return out


def manual_points(readings: Sequence[ManualReading], registry: Registry) -> list[Point]:
    pts = []
    for r in readings:
        h = registry.homes[r.home_id]
        fields: dict[str, float] = {"temp_c": r.temp_c}
        if r.rh is not None:
            fields["rh"] = r.rh
        tags = {"home_id": h.home_id, "community": h.community, "building": h.building, "source": schema.SOURCE_MANUAL}
        pts.append(Point(schema.INDOOR, tags, fields, r.ts_ns))
    return pts
