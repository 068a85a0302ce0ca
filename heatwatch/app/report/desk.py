"""The report's service-desk section: the monthly figures of the months the period touches, read from the desk.

Read from the desk's own SQLite file (not the store's ``desk_figures`` points): the report then shows the
figures as they stand when it is built, whether or not the desk job has written them. No desk file, no section.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from html import escape
from typing import Any

from dispatch.desk import Desk, desk_path
from dispatch.figures import ALL, month_of, month_start, monthly, overdue_counts, records
from dispatch.model import CATEGORY_NAMES
from heatwatch.app.deskintake import ALL_ORDERS
from heatwatch.app.report import html
from heatwatch.core.config import Config
from heatwatch.core.timeutil import utc_now


def months_between(start: datetime, end: datetime, cfg: Config) -> list[str]:
    """The local months ``[start, end)`` touches, oldest first."""
    tz = cfg.general.tz
    out: list[str] = []
    t = start
    while t < end:
        m = month_of(t, tz)
        if m not in out:
            out.append(m)
        local = t.astimezone(tz)
        t = (local.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last = month_of(end - timedelta(microseconds=1), tz)
    if end > start and last not in out:
        out.append(last)
    return out


def _pct(v: Any) -> str:
    return "" if v is None else f"{100 * v:.1f} %"


def _num(v: Any, unit: str) -> str:
    return "" if v is None else f"{v:.1f} {unit}"


def desk_section(cfg: Config, start: datetime, end: datetime, now: datetime | None = None) -> list[str]:
    """``<h2>`` and tables for the desk's figures; empty when the desk has never been used."""
    path = desk_path(cfg)
    if not path.exists():
        return []
    now = now or utc_now()
    desk = Desk.from_config(cfg, lambda: now)
    tz = cfg.general.tz
    months = months_between(start, end, cfg)
    orders = desk.find(limit=ALL_ORDERS, received_since=month_start(months[0], tz)) if months else []
    out = ["<h2>Service desk (调度室): monthly figures</h2>",
           html.note(f"By the local month ({cfg.general.timezone}) an order was received, as the desk stands at "
                     f"{now.astimezone(tz):%Y-%m-%d %H:%M}. On time = met in time / decided (met, late, or overdue now); "
                     "closure = closed / received; satisfaction = satisfied / callbacks. Definitions: docs/SERVICE_DESK.md.")]
    late = overdue_counts(desk.find(open_only=True, limit=ALL_ORDERS), now, clock_states=desk.clocks)
    if late[ALL]:
        units = ", ".join(f"{u} {n}" for u, n in sorted(late.items()) if u != ALL and n)
        out.append(html.note(f"{late[ALL]} open orders are overdue now ({units}): heatwatch orders overdue lists them.",
                             warn=True))
    for month in months:
        df = monthly(orders, tz, now, clock_states=desk.clocks, month=month)
        if df.empty:
            out.append(html.note(f"{month}: no orders received."))
            continue
        rows = records(df)
        cats = [c for c in CATEGORY_NAMES if any(r.get(f"received_{c}") for r in rows)]
        headers = ["handling unit", "received", *(CATEGORY_NAMES[c] for c in cats), "first response on time",
                   "median to contact", "median to repair", "closure", "satisfaction"]
        table = [[("all units" if r["handling_unit"] == ALL else r["handling_unit"]), r["received"],
                  *(r[f"received_{c}"] for c in cats), _pct(r.get("ontime_respond")), _num(r.get("median_contact_min"), "min"),
                  _num(r.get("median_repair_h"), "h"), _pct(r.get("closure_rate")), _pct(r.get("satisfaction_rate"))]
                 for r in rows]
        out.append(f"<h3>{escape(month)}</h3>" + html.table(table, headers))
        total = next(r for r in rows if r["handling_unit"] == ALL)
        clocks = sorted({k[len("ontime_"):-2] for k in total if k.startswith("ontime_") and k.endswith("_n")})
        clock_rows = [[c, total[f"ontime_{c}_n"], _pct(total.get(f"ontime_{c}"))] for c in clocks if total[f"ontime_{c}_n"]]
        if clock_rows:
            out.append(f"<h3>{escape(month)}: each clock, all units</h3>"
                       + html.table(clock_rows, ["clock", "decided", "on time"]))
    return out

