"""``heatwatch homes status`` and ``heatwatch outages``: homes that are not heated, and heat outages told to users.

A status change (a stop-heating request, 报停) is a dated row, never an edit: the latest change in effect on a
day wins. An outage announcement is refused when it comes too late for a planned one (``[outages]
notice_ahead_h``); it tells the station's homes through the alert sinks and opens a ``no_heat`` order on the desk.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from typing import TYPE_CHECKING, Any

from heatwatch.app.commands.analyze import table
from heatwatch.app.context import App
from heatwatch.app.servicestate import in_season
from heatwatch.core.errors import UsageError
from heatwatch.core.homestatus import HOME_STATUSES, STATUS_NAMES, StatusChange, status_on
from heatwatch.core.timeutil import Clock, parse_cli_time, rfc3339, utc_now
from heatwatch.infra.servicedb import ServiceDb

if TYPE_CHECKING:
    from dispatch.desk import Desk

CLOCK: Clock = utc_now  # tests replace it


def desk_for(app: App) -> Desk:
    """The service desk of the configuration (``[desk] db_path``, its operators and clocks)."""
    from dispatch.desk import Desk

    return Desk.from_config(app.cfg, CLOCK)


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")


def _day(text: str, flag: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected a local date YYYY-MM-DD such as 2026-12-01") from None


def _change_json(c: StatusChange) -> dict[str, Any]:
    return {"home_id": c.home_id, "status": c.status, "effective": c.effective.isoformat(), "by": c.by, "reason": c.reason,
            "order_id": c.order_id, "recorded_at": c.recorded_at}


def cmd_status(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    db = ServiceDb.open(app.cfg)
    reg = app.registry
    now = CLOCK()
    today = now.astimezone(app.cfg.general.tz).date()
    if args.list or args.home is None:
        day = _day(args.on, "--on") if args.on else today
        changes = db.status_changes()
        current = status_on(reg, changes, day)
        off = sorted((hid, s) for hid, s in current.items() if s != "heated")
        if args.json:
            _print_json({"on": day.isoformat(), "in_season": in_season(app.cfg, now) if not args.on else None,
                         "not_heated": dict(off), "changes": [_change_json(c) for c in changes]})
            return 0
        print(f"{len(off)} of {len(reg.homes)} homes not heated on {day.isoformat()}"
              + ("" if reg.homes else " (no registry: statuses are recorded but not checked)"))
        if changes:
            print(table([(c.home_id, c.status, c.effective.isoformat(), c.by, c.order_id or None, c.reason or None)
                         for c in changes], ("home", "status", "from", "by", "order", "reason")))
        return 0
    hid = args.home
    if reg.homes and hid not in reg.homes:
        raise UsageError(f"home {hid!r} is not in the registry ({app.cfg.registry.homes_csv})")
    if args.status is None:  # one home's history
        hist = db.status_changes(hid)
        base = reg.homes[hid].status if hid in reg.homes else "heated"
        print(f"{hid}: {STATUS_NAMES[status_on(reg, hist, today).get(hid, base)]} today; registry: {base}")
        for c in hist:
            print(f"  from {c.effective.isoformat()}: {c.status} (by {c.by}{', order ' + c.order_id if c.order_id else ''})"
                  f"{' — ' + c.reason if c.reason else ''}")
        return 0
    if args.status not in HOME_STATUSES:
        raise UsageError(f"status {args.status!r}: expected one of {', '.join(HOME_STATUSES)}")
    by = app.operator(args.by)
    change = db.add_status(StatusChange(hid, args.status, _day(args.start, "--from") if args.start else today,
                                        by, args.reason.strip(), args.order.strip()), now)
    if args.json:
        _print_json(_change_json(change))
    else:
        print(f"{hid}: {STATUS_NAMES[change.status]} from {change.effective.isoformat()} (recorded by {change.by}; "
              "left out of averages, flags and cold alerts while not heated)" if change.status != "heated" else
              f"{hid}: heated again from {change.effective.isoformat()} (recorded by {change.by})")
    return 0


def cmd_announce(args: argparse.Namespace) -> int:
    from control.alerting import configured_sinks
    from control.alerts.repo import AlertRepo
    from control.db import db_path, open_engine
    from heatwatch.app.outages import announce

    app = App.from_args(args)
    tz = app.cfg.general.tz
    start = parse_cli_time(args.start, tz, "--from")
    end = parse_cli_time(args.end, tz, "--to")
    alerts = AlertRepo(open_engine(db_path(app.cfg)), configured_sinks(app.cfg))
    out = announce(app.cfg, app.registry, ServiceDb.open(app.cfg), alerts, station_id=args.station, start=start, end=end,
                   reason=args.reason, by=app.operator(args.by), now=CLOCK(), unplanned=args.unplanned,
                   desk=None if args.no_order else desk_for(app))
    o = out.outage
    if args.json:
        _print_json({"outage_id": o.outage_id, "station_id": o.station_id, "start": rfc3339(o.start, tz),
                     "end": rfc3339(o.end, tz) if o.end else None, "planned": o.planned, "homes": list(o.homes),
                     "order_id": out.order_id, "notice": out.notice.alert_id})
        return 0
    print(f"outage {o.outage_id} at {o.station_id}: {rfc3339(o.start, tz)} … {rfc3339(o.end, tz) if o.end else '?'} "
          f"({'planned' if o.planned else 'unplanned'}); notice {out.notice.alert_id} to {len(o.homes)} homes queued for "
          f"the alert sinks ({', '.join(configured_sinks(app.cfg))}); cold alerts of these homes stay quiet in the window"
          + (f"; desk order {out.order_id}" if out.order_id else ""))
    return 0


def cmd_outages_list(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    tz = app.cfg.general.tz
    rows = ServiceDb.open(app.cfg).outages()
    if args.json:
        _print_json([{"outage_id": o.outage_id, "station_id": o.station_id, "start": rfc3339(o.start, tz),
                      "end": rfc3339(o.end, tz) if o.end else None, "planned": o.planned, "reason": o.reason,
                      "by": o.by, "homes": len(o.homes), "order_id": o.order_id} for o in rows])
        return 0
    if not rows:
        print("no outages announced")
        return 0
    print(table([(o.outage_id, o.station_id, rfc3339(o.start, tz), rfc3339(o.end, tz) if o.end else "?",
                  "planned" if o.planned else "unplanned", len(o.homes), o.order_id or None, o.reason[:60])
                 for o in rows], ("outage", "station", "from", "to (expected)", "kind", "homes", "order", "reason")))
    return 0


def register(sub: Any) -> None:
    h = sub.add_parser("homes", help="home statuses: heated, stopped (报停), vacant, not_paid")
    hs = h.add_subparsers(dest="homes_command", metavar="ACTION", required=True)
    p = hs.add_parser("status", help="record a dated status change (HOME STATUS --from DATE --by NAME), show one home, "
                                     "or --list")
    p.add_argument("home", nargs="?", help="home id")
    p.add_argument("status", nargs="?", help=f"new status: {', '.join(HOME_STATUSES)}")
    p.add_argument("--from", dest="start", metavar="DATE", help="local date the status takes effect (default: today)")
    p.add_argument("--by", default="", help="who records it (required for a change)")
    p.add_argument("--reason", default="", help="why (e.g. 报停 request by phone)")
    p.add_argument("--order", default="", help="the desk order behind it (a billing / stop-heating request)")
    p.add_argument("--list", action="store_true", help="every change and the homes not heated on --on")
    p.add_argument("--on", metavar="DATE", help="with --list: the day to resolve (default: today)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_status)

    o = sub.add_parser("outages", help="heat outages told to the homes of a station (停热通知)")
    os_ = o.add_subparsers(dest="outages_command", metavar="ACTION", required=True)
    p = os_.add_parser("announce", help="announce an outage window to the station's homes (≥ 24 h ahead unless --unplanned)")
    p.add_argument("--station", required=True)
    p.add_argument("--from", dest="start", required=True, metavar="T", help="start: RFC 3339 or local time")
    p.add_argument("--to", dest="end", required=True, metavar="T", help="expected restoration: RFC 3339 or local time")
    p.add_argument("--reason", required=True)
    p.add_argument("--by", required=True, help="the operator who announces it")
    p.add_argument("--unplanned", action="store_true", help="a fault: no minimum notice")
    p.add_argument("--no-order", action="store_true", help="do not open a desk order for it")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_announce)
    p = os_.add_parser("list", help="every announced outage")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_outages_list)
