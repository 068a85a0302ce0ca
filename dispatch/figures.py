"""The desk's monthly figures (issue 16): per local month and handling unit, from the orders as they stand.

Pure functions over orders (pandas, no database, no wall clock: ``now`` is passed in). Every figure is by
the month an order was *received* (local time, ``general.timezone``): the month's cohort, so a month's
figures still move while its orders are open (docs/SERVICE_DESK.md, "Monthly figures"):

- ``received`` and ``received_<category>``: orders received.
- ``ontime_<clock>`` = met on time / decided, with ``ontime_<clock>_n`` = decided (met, late, or overdue at
  ``now``); a clock still running within its time is not decided yet and counts nowhere. ``respond`` is the
  order's first deadline (``Order.deadline``) against the first stage after ``received``; the standards'
  clocks (dispatch.deadlines) come in through ``clock_states``.
- ``median_contact_min``: minutes from received to ``contacted``, median over the orders contacted.
- ``median_repair_h``: hours from received to ``repaired`` (the reply that stands), median over those repaired.
- ``closure_rate`` = closed / received.
- ``satisfaction_rate`` = satisfied / callbacks made (``callbacks``).

A row with ``handling_unit`` = ``ALL`` sums every unit of the month.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import pandas as pd

from dispatch.model import CATEGORY_NAMES, STAGES, Order
from heatwatch.core import schema
from heatwatch.core.model import Point

ALL = "ALL"  # the handling unit of a month's total row
RESPOND = "respond"  # the order's own first deadline (Order.deadline) vs its first stage after received


class ClockLike(Protocol):
    """What figures need of a clock on an order (dispatch.deadlines.ClockState has it)."""

    @property
    def name(self) -> str: ...

    def state(self, now: datetime) -> str: ...


ClockStates = Callable[[Order], Sequence[ClockLike]]


def first_response(o: Order) -> datetime | None:
    """When the order first moved on from ``received`` (any later stage), or None."""
    later = [t for s, t in o.stage_at.items() if s in STAGES and s != "received"]
    return min(later) if later else None


def respond_state(o: Order, now: datetime) -> str:
    """``met`` / ``late`` / ``overdue`` / ``running`` for the order's first deadline."""
    at = first_response(o)
    if at is not None:
        return "met" if at <= o.deadline else "late"
    return "overdue" if now > o.deadline else "running"


def month_start(month: str, tz: ZoneInfo) -> datetime:
    """The local start of ``YYYY-MM``; ValueError naming the month otherwise."""
    try:
        return datetime.strptime(month, "%Y-%m").replace(tzinfo=tz)
    except ValueError:
        raise ValueError(f"month {month!r}: expected YYYY-MM, e.g. 2026-12") from None


def month_of(t: datetime, tz: ZoneInfo) -> str:
    """``YYYY-MM`` of ``t`` in local time."""
    return t.astimezone(tz).strftime("%Y-%m")


def order_rows(orders: Iterable[Order], tz: ZoneInfo, now: datetime, clock_states: ClockStates | None = None) -> pd.DataFrame:
    """One row per order with what the figures count (its month, unit, durations and clock states)."""
    rows: list[dict[str, Any]] = []
    for o in orders:
        rec = o.received_at
        contacted, repaired = o.stage_at.get("contacted"), o.stage_at.get("repaired")
        cb = o.evidence.get("callback") if isinstance(o.evidence.get("callback"), dict) else None
        row: dict[str, Any] = {
            "order_id": o.order_id, "month": month_of(rec, tz), "handling_unit": o.handling_unit or "(none)",
            "category": o.category, "closed": o.stage == "closed",
            "contact_min": (contacted - rec).total_seconds() / 60 if contacted else math.nan,
            "repair_h": (repaired - rec).total_seconds() / 3600 if repaired else math.nan,
            "callback": cb is not None, "satisfied": bool(cb and cb.get("satisfaction") == "satisfied"),
            f"clock_{RESPOND}": respond_state(o, now),
        }
        for c in clock_states(o) if clock_states else ():
            row[f"clock_{c.name}"] = c.state(now)
        rows.append(row)
    return pd.DataFrame(rows)


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def _figures(g: pd.DataFrame, clocks: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"received": len(g)}
    counts = g["category"].value_counts()
    for cat in CATEGORY_NAMES:
        out[f"received_{cat}"] = int(counts.get(cat, 0))
    for name in clocks:
        col = g.get(f"clock_{name}")
        states = col.dropna() if col is not None else pd.Series(dtype=object)
        decided = states.isin(["met", "late", "overdue"])
        out[f"ontime_{name}_n"] = int(decided.sum())
        out[f"ontime_{name}"] = _ratio(int((states == "met").sum()), int(decided.sum()))
    out["contacted"] = int(g["contact_min"].notna().sum())
    out["median_contact_min"] = float(g["contact_min"].median()) if out["contacted"] else math.nan
    out["repaired"] = int(g["repair_h"].notna().sum())
    out["median_repair_h"] = float(g["repair_h"].median()) if out["repaired"] else math.nan
    out["closed"] = int(g["closed"].sum())
    out["closure_rate"] = _ratio(out["closed"], len(g))
    out["callbacks"] = int(g["callback"].sum())
    out["satisfied"] = int(g["satisfied"].sum())
    out["satisfaction_rate"] = _ratio(out["satisfied"], out["callbacks"])
    return out


def monthly(
    orders: Iterable[Order], tz: ZoneInfo, now: datetime, clock_states: ClockStates | None = None,
    month: str | None = None,
) -> pd.DataFrame:
    """The figures, one row per (month, handling unit) plus an ``ALL`` row per month; only ``month`` when given."""
    if month is not None:
        month_start(month, tz)
    rows = order_rows(orders, tz, now, clock_states)
    if month is not None and not rows.empty:
        rows = rows[rows["month"] == month]
    if rows.empty:
        return pd.DataFrame(columns=["month", "handling_unit", "received"])
    clocks = [c[len("clock_"):] for c in rows.columns if c.startswith("clock_")]
    out = []
    for m, gm in rows.groupby("month", sort=True):
        for unit, gu in gm.groupby("handling_unit", sort=True):
            out.append({"month": m, "handling_unit": unit, **_figures(gu, clocks)})
        out.append({"month": m, "handling_unit": ALL, **_figures(gm, clocks)})
    return pd.DataFrame(out)


def overdue_counts(orders: Iterable[Order], now: datetime, clock_states: ClockStates | None = None) -> dict[str, int]:
    """Open orders overdue at ``now`` per handling unit (and ``ALL``): past any clock (or their first deadline)."""
    out: dict[str, int] = {ALL: 0}
    for o in orders:
        if o.closed:
            continue
        late = respond_state(o, now) == "overdue" or any(
            c.state(now) == "overdue" for c in (clock_states(o) if clock_states else ()))
        unit = o.handling_unit or "(none)"
        out.setdefault(unit, 0)
        if late:
            out[unit] += 1
            out[ALL] += 1
    return out


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows: NaN (no order to measure) becomes None, rates rounded to 4 places."""
    out = []
    for r in df.to_dict("records"):
        row: dict[str, Any] = {}
        for k, v in r.items():
            if isinstance(v, float):
                row[str(k)] = None if math.isnan(v) else round(v, 4)
            elif hasattr(v, "item"):
                row[str(k)] = v.item()
            else:
                row[str(k)] = v
        out.append(row)
    return out


def points(df: pd.DataFrame, tz: ZoneInfo) -> list[Point]:
    """One ``desk_figures`` point per (month, unit), at the local month's start; figures without orders are left out."""
    out: list[Point] = []
    for r in records(df):
        at = month_start(str(r["month"]), tz)
        fields = {k: v for k, v in r.items() if k not in ("month", "handling_unit") and isinstance(v, int | float)
                  and not isinstance(v, bool)}
        out.append(Point(schema.DESK_FIGURES, {"handling_unit": str(r["handling_unit"])}, fields,
                         int(at.timestamp()) * 1_000_000_000))
    return out


def overdue_points(counts: dict[str, int], now: datetime) -> list[Point]:
    """One ``desk_overdue`` point per handling unit (and ``ALL``) at ``now``: the open orders past a clock."""
    ts = int(now.timestamp()) * 1_000_000_000
    return [Point(schema.DESK_OVERDUE, {"handling_unit": unit}, {"count": n}, ts) for unit, n in counts.items()]
