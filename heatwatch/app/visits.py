"""The season's visit plan (访民问暖, 000 section 五) and the visit ledger's community averages beside the sensors'.

``heatwatch plan-visits --season 2026-2027`` plans every residential community (``[visits] per_community`` homes,
top, ground and gable homes ≥ ``analytics.edge_share_min``) among the homes heated on the season's first day, and
writes the plan as a UTF-8 CSV with the communities' Chinese names. ``--ledger`` averages the measurement records
in force (``dispatch.measurements``: the visits' temperatures) per community over the season so far, next to the
sensors' weighted and plain means of the analysis window.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

from analytics.results import AnalysisResult
from analytics.visits import LedgerAverage, VisitPlan, ledger_averages, plan_season
from dispatch.measurements import MeasurementBook
from heatwatch.app.servicestate import season_of
from heatwatch.core.config import Config
from heatwatch.core.errors import UsageError
from heatwatch.core.homestatus import heated_only, status_on
from heatwatch.core.registry import Registry
from heatwatch.infra.servicedb import ServiceDb

PLAN_COLUMNS = ("season", "community", "home_id", "building", "entrance", "floor", "location", "edge", "flags", "address",
                "contact", "season_start", "season_end")


def season_dates(cfg: Config, label: str) -> tuple[date, date]:
    """The first and last local day of the season ``label`` (a UsageError names the flag)."""
    try:
        return season_of(cfg).season(label)
    except ValueError as exc:
        raise UsageError(f"--season: {exc}") from None


def season_plan(cfg: Config, registry: Registry, label: str, flags: dict[str, tuple[str, ...]] | None = None) -> list[VisitPlan]:
    """Plans for every residential community among the homes heated on the season's first day."""
    first, _ = season_dates(cfg, label)
    heated = heated_only(registry, status_on(registry, ServiceDb.open(cfg).status_changes(), first))
    if not heated.homes:
        raise UsageError("no heated homes in the registry: nothing to plan (set [registry] homes_csv)")
    return plan_season(heated, cfg.visits.per_community, flags, cfg.analytics.edge_share_min)


def write_plan(path: Path, label: str, first: date, last: date, plans: list[VisitPlan], registry: Registry) -> int:
    """The plan as CSV (UTF-8, one row per visit); returns the rows written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(PLAN_COLUMNS)
        for p in plans:
            for v in p.visits:
                home = registry.homes.get(v.home_id)
                w.writerow([label, p.community, v.home_id, v.building, v.entrance, v.floor, v.location, int(v.edge),
                            ";".join(v.reasons), v.address, home.contact if home else "", first.isoformat(), last.isoformat()])
                n += 1
    return n


@dataclass(frozen=True)
class LedgerRow:
    """A community's ledger average next to the sensors' means."""

    ledger: LedgerAverage
    sensor_weighted_c: float | None
    sensor_plain_c: float | None


def ledger_in(cfg: Config, registry: Registry, start: datetime, end: datetime) -> list[LedgerAverage]:
    """The ledger's community averages from the records in force measured in [start, end) (none without a service
    database: a report creates nothing)."""
    from heatwatch.infra.servicedb import db_path

    if not db_path(cfg).exists():
        return []
    recs = MeasurementBook.open(cfg).current(start, end)
    return ledger_averages(registry, [(r.m.home_id, r.m.mean_c) for r in recs])


def ledger(cfg: Config, registry: Registry, label: str, until: datetime, result: AnalysisResult | None) -> list[LedgerRow]:
    """The ledger's community averages from the records in force measured in the season up to ``until``."""
    first, last = season_dates(cfg, label)
    tz = cfg.general.tz
    start = datetime.combine(first, time(0), tz)
    end = min(datetime.combine(last + timedelta(days=1), time(0), tz), until + timedelta(microseconds=1))  # until included
    recs = MeasurementBook.open(cfg).current(start, end)
    sensors = {c.community: c for c in result.communities} if result is not None else {}
    out = []
    for a in ledger_averages(registry, [(r.m.home_id, r.m.mean_c) for r in recs]):
        cs = sensors.get(a.community)
        out.append(LedgerRow(a, cs.weighted_mean_c if cs else None, cs.plain_mean_c if cs else None))
    return out
