"""``heatwatch energy``: heat delivered per station from the station telemetry (kW, GJ, per degree-day, per m²)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from datetime import datetime, time, timedelta
from typing import Any

import pandas as pd

from analytics.energy import DEFAULT_MAX_GAP, EnergySummary, summarize
from heatwatch.app.commands.analyze import table
from heatwatch.app.context import App
from heatwatch.core import schema
from heatwatch.core.errors import UsageError
from heatwatch.core.model import Point
from heatwatch.core.registry import Registry
from heatwatch.core.timeutil import parse_cli_time, rfc3339, utc_now

VALUES = ("kwh", "gj", "mean_kw", "hours_covered", "hdd", "gj_per_hdd", "area_m2", "kwh_per_m2")


def station_areas(registry: Registry) -> dict[str, float]:
    """Heated area per station: the sum over its registered homes that have one."""
    out: dict[str, float] = defaultdict(float)
    for h in registry.homes.values():
        if h.heated_area_m2 is not None:
            out[h.station_id] += h.heated_area_m2
    return dict(out)


def _num(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


def points(summary: EnergySummary, tz: Any, start: datetime) -> list[Point]:
    """One ``station_energy`` point per station and local day (at the day's start) and one per window."""
    out: list[Point] = []
    for row in summary.daily.to_dict("records"):
        at = datetime.combine(row["day"], time(0), tz)
        fields = {k: v for k in VALUES if (v := _num(row[k])) is not None}
        out.append(Point(schema.STATION_ENERGY, {"station_id": row["station_id"], "period": "day"}, fields,
                         int(at.timestamp()) * 1_000_000_000))
    for row in summary.season.to_dict("records"):
        fields = {k: v for k in VALUES if (v := _num(row[k])) is not None}
        out.append(Point(schema.STATION_ENERGY, {"station_id": row["station_id"], "period": "season"}, fields,
                         int(start.timestamp()) * 1_000_000_000))
    return out


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): (str(v) if k == "day" else v if k == "station_id" else _num(v)) for k, v in r.items()}
            for r in df.to_dict("records")]


def cmd_energy(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    cfg = app.cfg
    tz = cfg.general.tz
    end = parse_cli_time(args.end, tz, "--to") if args.end else utc_now()
    start = parse_cli_time(args.start, tz, "--from")
    if start >= end:
        raise UsageError(f"--from {args.start} is not before --to {args.end or 'now'}")
    max_gap = timedelta(minutes=args.max_gap_min)
    with app.open_store() as store:
        # readings up to max_gap past the end close the window's last interval; summarize cuts at the end
        readings = store.query(schema.STATION, start, end + max_gap, fields=["supply_c", "return_c", "flow_m3h"])
        outdoor = store.query(schema.WEATHER, start, end, fields=["temp_c"])
        summary = summarize(readings, outdoor, cfg.general.timezone, station_areas(app.registry), max_gap, until=end)
        if not args.no_write:
            store.write(points(summary, tz, start))
    if args.json:
        body = {"from": rfc3339(start, tz), "to": rfc3339(end, tz), "max_gap_min": args.max_gap_min,
                "season": _records(summary.season), "daily": _records(summary.daily)}
        print(json.dumps(body, ensure_ascii=False))
        return 0
    cols = ("kwh", "gj", "mean_kw", "hours_covered", "hdd", "gj_per_hdd", "kwh_per_m2")
    print(f"window {rfc3339(start, tz)} … {rfc3339(end, tz)}")
    print(table([(r["station_id"], str(r["day"]), *(_fmt(r[c]) for c in cols)) for r in summary.daily.to_dict("records")],
                ("station", "day", "kWh", "GJ", "mean kW", "hours", "HDD", "GJ/HDD", "kWh/m²")))
    print()
    print(table([(r["station_id"], *(_fmt(r[c]) for c in cols)) for r in summary.season.to_dict("records")],
                ("station", "kWh", "GJ", "mean kW", "hours", "HDD", "GJ/HDD", "kWh/m²")))
    sys.stdout.flush()
    return 0


def _fmt(x: Any) -> str | None:
    v = _num(x)
    return None if v is None else f"{v:.2f}"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("energy", help="heat delivered per station from telemetry (kW, GJ, per degree-day, per m²)")
    p.add_argument("--from", dest="start", required=True, help="window start (RFC 3339 or local time/date)")
    p.add_argument("--to", dest="end", default=None, help="window end (default: now)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of tables")
    p.add_argument("--max-gap-min", type=float, default=DEFAULT_MAX_GAP.total_seconds() / 60,
                   help="readings further apart than this are not bridged (default 60)")
    p.add_argument("--no-write", action="store_true", help="do not store the station_energy results")
    p.set_defaults(handler=cmd_energy)
