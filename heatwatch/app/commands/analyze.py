"""``heatwatch analyze``, ``heatwatch plan-visits`` and ``heatwatch readings import``."""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from analytics.engine import analyze, default_window, result_to_json, write_results
from analytics.manual import ManualImportError, manual_points, read_manual_csv
from analytics.results import AnalysisResult
from analytics.visits import VisitPlan, flags_from, plan_visits
from heatwatch.app.context import App
from heatwatch.core.config import Config
from heatwatch.core.errors import UsageError
from heatwatch.core.timeutil import Clock, parse_cli_time, rfc3339, utc_now
from heatwatch.infra.storage.base import StoreError, StoreUnavailable

CLOCK: Clock = utc_now  # tests replace it to move time
IMPORT_CHUNK = 5_000  # readings per store write while importing (the live counter moves per chunk)


# --- helpers ---------------------------------------------------------------------------------------
def window(args: argparse.Namespace, cfg: Config, default: tuple[datetime, datetime]) -> tuple[datetime, datetime]:
    if args.start is None and args.end is None:
        return default
    if args.start is None:
        raise UsageError("--to needs --from")
    start = parse_cli_time(args.start, cfg.general.tz, "--from")
    end = parse_cli_time(args.end, cfg.general.tz, "--to") if args.end is not None else CLOCK()
    if start >= end:
        raise UsageError(f"--from {args.start} is not before --to {args.end or 'now'}")
    return start, end


def _width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """Plain-text table that lines up with Chinese names (wide characters count twice)."""
    cells = [[str(h) for h in header], *[["-" if v is None else str(v) for v in r] for r in rows]]
    widths = [max(_width(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c + " " * (w - _width(c)) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _f(x: float | None, fmt: str = ".2f") -> str | None:
    return None if x is None else format(x, fmt)


def render(result: AnalysisResult, cfg: Config) -> str:
    tz = cfg.general.tz
    out = [f"window {rfc3339(result.window_from, tz)} … {rfc3339(result.window_to, tz)} ({result.timezone})", ""]
    out.append(table(
        [(c.community, c.homes_registered, c.homes_reporting, c.edge_homes, c.middle_homes, _f(c.edge_share, ".0%"),
          _f(c.edge_weight, ".0%"), _f(c.weighted_mean_c), _f(c.plain_mean_c), c.homes_below_standard, c.status)
         for c in result.communities],
        ("community", "registered", "reporting", "edge", "middle", "edge share", "edge weight", "weighted °C", "plain °C",
         "below", "status"),
    ))
    out += ["", f"homes below standard: {len(result.homes_below_standard)}"]
    if result.homes_below_standard:
        out.append(table(
            [(h.home_id, h.community, h.building, h.rule, _f(h.threshold_c, ".1f"), h.hours_below, h.longest_run_h,
              _f(h.mean_c), _f(h.min_hourly_c), rfc3339(h.first_below, tz)) for h in result.homes_below_standard],
            ("home", "community", "building", "rule", "threshold", "hours", "longest", "mean °C", "min °C", "first below"),
        ))
    counts = Counter(f.finding for f in result.sensors)
    out += ["", "sensor findings: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none")]
    if result.sensors:
        out.append(table([(f.home_id, f.community, f.finding, f.detail) for f in result.sensors],
                         ("home", "community", "finding", "detail")))
    if result.imbalance:
        out += ["", "imbalance:"]
        out.append(table(
            [(i.community, _f(i.building_spread_c), _f(i.entrance_spread_c), _f(i.edge_middle_gap_c),
              ", ".join(i.cold_buildings) or None, ", ".join(i.warm_buildings) or None) for i in result.imbalance],
            ("community", "building spread", "entrance spread", "middle − edge", "cold buildings", "warm buildings"),
        ))
    return "\n".join(out)


def _run_analysis(app: App, start: datetime, end: datetime, community: str | None, write: bool = False) -> AnalysisResult:
    from heatwatch.app.servicestate import heated_registry

    reg = heated_registry(app.cfg, app.registry, end)  # homes stopped (报停), vacant or not paid on the day do not count
    if not reg.homes:
        raise UsageError("the registry has no homes; set [registry] homes_csv in the config")
    if community is not None and community not in reg.communities():
        raise UsageError(f"--community {community!r} is not in the registry (known: {', '.join(reg.communities())})")
    try:
        with app.open_store() as store:
            result = analyze(store, reg, app.cfg, start, end, community, now=CLOCK())
            if write:
                write_results(store, result)
    except (StoreUnavailable, StoreError) as exc:
        raise UsageError(f"store: {exc}") from None
    return result


# --- commands ---------------------------------------------------------------------------------------
def _analyze(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    start, end = window(args, app.cfg, default_window(app.cfg, CLOCK))
    result = _run_analysis(app, start, end, args.community, args.write)
    if args.json:
        print(json.dumps(result_to_json(result, app.cfg.general.tz), ensure_ascii=False, indent=2))
    else:
        print(render(result, app.cfg))
    return 0


def plan_json(plan: VisitPlan) -> dict[str, Any]:
    return {
        "community": plan.community,
        "size": plan.size,
        "edge_visits": plan.edge_visits,
        "edge_share": round(plan.edge_share, 4),
        "buildings": plan.buildings,
        "notes": plan.notes,
        "visits": [{**asdict(v), "reasons": list(v.reasons)} for v in plan.visits],
    }


def _plan(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    if args.season is not None or args.ledger:
        return _plan_season(args, app)
    if args.community is None or args.size is None:
        raise UsageError("plan-visits needs --community and --size, or --season (every residential community)")
    if args.size < 1:
        raise UsageError(f"--size must be at least 1, got {args.size}")
    now = CLOCK()
    start, end = window(args, app.cfg, (now - timedelta(hours=24), now))
    result = _run_analysis(app, start, end, args.community)
    try:
        plan = plan_visits(app.registry, args.community, args.size, flags_from(result), app.cfg.analytics.edge_share_min)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        print(json.dumps(plan_json(plan), ensure_ascii=False, indent=2))
        return 0
    print(f"visit plan for {plan.community}: {plan.size} homes, {plan.edge_visits} edge ({plan.edge_share:.0%}), "
          f"{plan.buildings} buildings; flags from {rfc3339(start, app.cfg.general.tz)} … {rfc3339(end, app.cfg.general.tz)}")
    for n in plan.notes:
        print(f"note: {n}")
    print(table([(v.home_id, v.building, v.entrance, v.floor, v.location, ", ".join(v.reasons) or None, v.address)
                 for v in plan.visits], ("home", "building", "entrance", "floor", "location", "flags", "address")))
    return 0


def _plan_season(args: argparse.Namespace, app: App) -> int:
    """``--season``: every residential community, written as CSV; ``--ledger``: the visits' averages beside the sensors'."""
    from heatwatch.app.servicestate import season_of
    from heatwatch.app.visits import ledger, season_dates, season_plan, write_plan

    now = CLOCK()
    label = args.season or season_of(app.cfg).label_of(now.astimezone(app.cfg.general.tz).date())
    start, end = window(args, app.cfg, (now - timedelta(hours=24), now))
    try:
        result: AnalysisResult | None = _run_analysis(app, start, end, None)
    except UsageError as exc:  # a plan before the season needs no readings: flags and sensor means are extras
        print(f"note: no analysis ({exc}); planning without cold/stale flags", file=sys.stderr)
        result = None
    if args.ledger:
        rows = ledger(app.cfg, app.registry, label, now, result)
        if args.json:
            print(json.dumps([{"community": r.ledger.community, "visited_homes": r.ledger.homes,
                               "ledger_mean_c": round(r.ledger.mean_c, 2), "edge_share": round(r.ledger.edge_share, 4),
                               "sensor_weighted_mean_c": _f(r.sensor_weighted_c), "sensor_plain_mean_c": _f(r.sensor_plain_c)}
                              for r in rows], ensure_ascii=False, indent=2))
            return 0
        print(f"visit ledger of season {label} (measurement records in force) beside the sensors "
              f"({rfc3339(start, app.cfg.general.tz)} … {rfc3339(end, app.cfg.general.tz)})")
        print(table([(r.ledger.community, r.ledger.homes, f"{r.ledger.edge_share:.0%}", f"{r.ledger.mean_c:.2f}",
                      _f(r.sensor_weighted_c), _f(r.sensor_plain_c)) for r in rows],
                    ("community", "visited", "edge", "ledger °C", "sensor weighted °C", "sensor plain °C"))
              if rows else "no measurement records in the season yet (heatwatch measurements import)")
        return 0
    plans = season_plan(app.cfg, app.registry, label, flags_from(result))
    first, last = season_dates(app.cfg, label)
    out = Path(args.out) if args.out else app.cfg.general.data_dir / f"visits-{label}.csv"
    n = write_plan(out, label, first, last, plans, app.registry)
    if args.json:
        print(json.dumps({"season": label, "file": str(out), "plans": [plan_json(p) for p in plans]}, ensure_ascii=False, indent=2))
        return 0
    for p in plans:
        print(f"{p.community}: {p.size} visits, {p.edge_visits} edge ({p.edge_share:.0%}), {p.buildings} buildings"
              + "".join(f"; note: {x}" for x in p.notes))
    print(f"season {label} ({first.isoformat()} … {last.isoformat()}): {n} visits in {len(plans)} communities written to {out}")
    return 0


def _import(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    reg = app.registry
    try:
        readings = read_manual_csv(Path(args.file), reg, app.cfg.limits, CLOCK, app.cfg.collector.future_tolerance_s)
    except ManualImportError as exc:
        raise UsageError(str(exc)) from None
    points = manual_points(readings, reg)
    if not args.dry_run:
        show = args.progress if args.progress is not None else sys.stderr.isatty()
        done = 0
        try:
            with app.open_store() as store:
                for i in range(0, len(points), IMPORT_CHUNK):
                    chunk = points[i : i + IMPORT_CHUNK]
                    store.write(chunk)
                    done += len(chunk)
                    if show:
                        print(f"\rstored {done:,} / {len(points):,} readings", end="", file=sys.stderr, flush=True)
        except (StoreUnavailable, StoreError) as exc:
            # writes are idempotent (same home, time and source), so importing the file again is safe
            raise UsageError(f"store: {exc} — {done:,} of {len(points):,} readings were stored; "
                             "import the same file again once the store is back") from None
        finally:
            if show and done:
                print(file=sys.stderr)
    homes = len({r.home_id for r in readings})
    verb = "checked (dry run, nothing stored)" if args.dry_run else "imported"
    print(f"{verb} {len(points)} manual reading(s) for {homes} home(s) from {args.file} (source=manual)")
    return 0


def _window_args(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--from", dest="start", metavar="T", help=f"window start: RFC 3339 or local time (default: {default})")
    p.add_argument("--to", dest="end", metavar="T", help="window end (default: now when --from is given)")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("analyze", help="community averages (edge homes ≥ 40 %%), homes below standard, sensor health")
    _window_args(p, "today 06:00–21:00 local")
    p.add_argument("--community", help="one community (default: all in the registry)")
    p.add_argument("--json", action="store_true", help="print one JSON object (docs/ANALYTICS.md)")
    p.add_argument("--write", action="store_true", help="also write the results to the store (for Grafana)")
    p.set_defaults(handler=_analyze)

    v = sub.add_parser("plan-visits", help="pick homes for manual temperature visits (访民问暖)")
    v.add_argument("--community", help="one community (with --size)")
    v.add_argument("--size", type=int, help="number of homes to visit")
    v.add_argument("--season", help="plan every residential community for a season, e.g. 2026-2027 ([visits] per_community)")
    v.add_argument("--out", help="with --season: the CSV to write (default: <data_dir>/visits-<season>.csv)")
    v.add_argument("--ledger", action="store_true",
                   help="the visit ledger's community averages (measurement records) beside the sensor averages")
    v.add_argument("--json", action="store_true")
    _window_args(v, "the last 24 hours, for the cold/stale/no-sensor flags")
    v.set_defaults(handler=_plan)

    r = sub.add_parser("readings", help="manual indoor measurements")
    rs = r.add_subparsers(dest="readings_command", metavar="ACTION", required=True)
    imp = rs.add_parser("import", help="import a CSV ledger: home_id, ts, temp_c[, rh, note] (UTF-8)")
    imp.add_argument("file")
    imp.add_argument("--dry-run", action="store_true", help="check the file, store nothing")
    imp.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="live count of stored readings on stderr (default: when stderr is a terminal)")
    imp.set_defaults(handler=_import)
