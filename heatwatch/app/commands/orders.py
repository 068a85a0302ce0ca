"""``heatwatch orders``: the dispatcher's desk — open, list, show, overdue, and every lifecycle step.

Every command reads the desk's SQLite file (``[desk] db_path``). Steps name a configured user with
``--as NAME`` (``[desk.operators."NAME"]``); an unknown name, a missing element, a step the lifecycle does
not allow are one line and exit 2. ``--json`` keeps Chinese text as it is. docs/SERVICE_DESK.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from dispatch.deadlines import ClockState
from dispatch.desk import Desk, UnknownOrder, order_to_json
from dispatch.lifecycle import MARKS, REPLY_NAMES, Satisfaction, TransitionError
from dispatch.model import CATEGORY_NAMES, STAGES, Order, OrderInput, OrderRefused
from dispatch.operators import UnknownOperator
from heatwatch.app.commands.desk_intake import add_actions
from heatwatch.app.context import App
from heatwatch.core.errors import UsageError
from heatwatch.core.timeutil import parse_cli_time, rfc3339, utc_now


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")


def _guard(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (OrderRefused, TransitionError, UnknownOperator, UnknownOrder, ValueError) as exc:
            raise UsageError(str(exc).strip("'\"")) from None

    return run


def _desk(app: App) -> Desk:
    return Desk.from_config(app.cfg, utc_now)


def _local(dt: datetime | None, app: App) -> str:
    return "-" if dt is None else rfc3339(dt, app.cfg.general.tz)[:16].replace("T", " ")


def _where(o: Order) -> str:
    return o.home_id or o.community or o.station_id


def _line(o: Order, app: App, extra: str = "") -> str:
    return (f"{o.order_id}  {o.stage:<10} {o.category:<11} {o.urgency:<6} received {_local(o.received_at, app)}  "
            f"due {_local(o.deadline, app)}  {_where(o):<12} {extra}{o.content[:60]}")


def _clock_json(c: ClockState, now: datetime) -> dict[str, Any]:
    return c.to_json(now)


# --- commands --------------------------------------------------------------------------------------
def cmd_open(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    desk = _desk(app)
    op = desk.operators.require(args.as_)
    tz = app.cfg.general.tz
    data: dict[str, Any] = {
        "source": "hotline", "category": args.category, "content": args.content or "", "reporter": args.reporter or "",
        "phone": args.phone or "", "address": args.address or "", "home_id": args.home or "",
        "community": args.community or "", "station_id": args.station or "", "handling_unit": args.unit or "",
        "ref": args.ref or "",
    }
    if args.urgency:
        data["urgency"] = args.urgency
    if args.expected:
        data["expected_at"] = parse_cli_time(args.expected, tz, "--expected")
    if args.received:
        data["received_at"] = parse_cli_time(args.received, tz, "--received")
    if args.report:
        data["evidence"] = {"kind": "report"}
    o = desk.open(OrderInput.parse(data), op.name)
    if args.json:
        _print_json({**order_to_json(o), "clocks": [_clock_json(c, desk.clock()) for c in desk.clocks(o)]})
    else:
        print(f"opened {o.order_id} ({o.category_name}, {o.urgency}), respond by {_local(o.deadline, app)}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    desk = _desk(app)
    stages = None if args.stage in ("all", "open") else [args.stage]
    rows = desk.find(stages=stages, category=args.category, open_only=args.stage == "open", limit=args.limit)
    if args.json:
        _print_json([order_to_json(o) for o in rows])
        return 0
    if not rows:
        print("no orders")
    for o in rows:
        print(_line(o, app))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    desk = _desk(app)
    o = desk.get(args.id)
    now = desk.clock()
    states = desk.clocks(o)
    hist = desk.history(o.order_id)
    if args.json:
        _print_json({**order_to_json(o), "clocks": [_clock_json(c, now) for c in states], "history": hist})
        return 0
    body = order_to_json(o)
    for k, v in body.items():
        if k not in ("evidence", "stage_at"):
            print(f"{k:>14}: {v}")
    print(f"{'category_name':>14}: {o.category_name}")
    print(f"{'stages':>14}: " + ", ".join(f"{k} {_local(t, app)}" for k, t in sorted(o.stage_at.items(), key=lambda x: x[1])))
    print(f"{'evidence':>14}: {json.dumps(o.evidence, ensure_ascii=False)}")
    print("clocks:")
    for c in states:
        print(f"  {c.name:<17} [{c.rule.seed}] {c.rule.shown:<18} due {_local(c.due_at, app)}  {c.state(now)}"
              f"{'  met ' + _local(c.met_at, app) if c.met_at else ''}")
    print("history:")
    for h in hist:
        print(f"  {_local_text(h['at'], app)}  {h['event']:<9} by {h['by']:<16} {json.dumps(h['detail'], ensure_ascii=False)[:120]}")
    return 0


def _local_text(text: str, app: App) -> str:
    return _local(datetime.fromisoformat(text.replace("Z", "+00:00")), app)


def cmd_overdue(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    desk = _desk(app)
    now = desk.clock()
    late = desk.overdue(now)
    queued: list[Any] = []
    if args.escalate:  # queue and deliver what this process can reach; MQTT rows wait for `heatwatch run`
        from dispatch.escalation import Escalator

        queued, _ = Escalator.from_config(app.cfg, desk, None).tick(now)
    if args.json:
        _print_json([{**order_to_json(o), "overdue": [_clock_json(c, now) for c in cs]} for o, cs in late])
        return 0
    if not late:
        print("no overdue orders")
    for o, cs in late:
        print(_line(o, app, extra="OVERDUE " + ",".join(f"{c.name}({_local(c.due_at, app)})" for c in cs) + "  "))
    if args.escalate:
        print(f"{len(queued)} new escalation(s) queued")
    return 0


def _step(args: argparse.Namespace, fn: Callable[[Desk], Order], what: str) -> int:
    app = App.from_args(args)
    o = fn(_desk(app))
    if args.json:
        _print_json(order_to_json(o))
    else:
        print(f"{o.order_id}: {what} — now {o.stage}")
    return 0


def cmd_assign(args: argparse.Namespace) -> int:
    if not args.to and not args.unit:
        raise UsageError("orders assign needs --unit (dispatch to a handling unit) and/or --to (the first-line worker)")
    if args.to:
        return _step(args, lambda d: d.assign(args.id, args.as_, args.to, args.unit or "", args.opinion or ""),
                     f"assigned to {args.to}")
    return _step(args, lambda d: d.dispatch_to(args.id, args.as_, args.unit), f"dispatched to {args.unit}")


def cmd_advance(args: argparse.Namespace) -> int:
    if bool(args.stage) == bool(args.mark):
        raise UsageError("orders advance needs exactly one of --stage contacted|on_site or --mark late_notice")
    if args.mark:
        return _step(args, lambda d: d.mark(args.id, args.as_, args.mark, args.note or ""), f"marked {args.mark}")
    return _step(args, lambda d: d.advance(args.id, args.as_, args.stage, args.note or ""), args.stage)


def cmd_reply(args: argparse.Namespace) -> int:
    return _step(args, lambda d: d.reply(args.id, args.as_, args.cause or "", args.action or "", args.result or "",
                                         args.opinion or ""), "reply recorded")


def cmd_review(args: argparse.Namespace) -> int:
    missing = [m.strip() for m in (args.missing or "").split(",") if m.strip()]
    if args.ok and (missing or args.reason):
        raise UsageError("orders review: --ok, or --missing/--reason to send the reply back, not both")
    if not args.ok and not missing and not args.reason:
        raise UsageError("orders review needs --ok, or --missing ELEMENTS and/or --reason to send the reply back")
    return _step(args, lambda d: d.review(args.id, args.as_, args.ok, missing, args.reason or ""),
                 "reviewed" if args.ok else "reply sent back")


def cmd_callback(args: argparse.Namespace) -> int:
    sat: Satisfaction = "satisfied" if args.satisfied else "unsatisfied"
    return _step(args, lambda d: d.callback(args.id, args.as_, sat, args.note or ""), f"callback: {sat}")


def cmd_reopen(args: argparse.Namespace) -> int:
    return _step(args, lambda d: d.reopen(args.id, args.as_, args.reason), "reopened: back to the handling unit")


def cmd_close(args: argparse.Namespace) -> int:
    return _step(args, lambda d: d.close(args.id, args.as_, args.reason or ""), "closed")


def cmd_note(args: argparse.Namespace) -> int:
    def note(d: Desk) -> Order:
        op = d.operators.require(args.as_)
        return d.note(args.id, op.name, args.text)

    return _step(args, note, "note added")


def register(sub: Any) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="machine-readable output")

    def who(p: argparse.ArgumentParser) -> None:
        p.add_argument("--as", dest="as_", required=True, metavar="OPERATOR", help="the desk user acting ([desk.operators])")

    od = sub.add_parser("orders", help="the service desk: work orders on the standards' clocks (docs/SERVICE_DESK.md)")
    ods = od.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = ods.add_parser("open", help="take a hotline order down with its elements (003)")
    p.add_argument("--category", required=True, choices=list(CATEGORY_NAMES),
                   help="; ".join(f"{k}: {v}" for k, v in CATEGORY_NAMES.items()))
    p.add_argument("--content", help="what the caller reports (反映内容)")
    p.add_argument("--reporter", help="the caller's name (反映人)")
    p.add_argument("--phone", help="the caller's phone (联系方式)")
    p.add_argument("--address", help="地址")
    p.add_argument("--home", help="home id")
    p.add_argument("--community", help="小区")
    p.add_argument("--station", help="station id")
    p.add_argument("--unit", help="the handling unit (责任单位)")
    p.add_argument("--urgency", choices=["urgent", "normal"], help="default: the category's (不热 is urgent)")
    p.add_argument("--expected", help="the customer's expected time (local, e.g. '2026-12-01 14:00')")
    p.add_argument("--received", help="when the call came in (default: now)")
    p.add_argument("--ref", help="the call centre's own ticket id (opening twice returns the same order)")
    p.add_argument("--report", action="store_true", help="a complaint that is a report (举报): 10 working days")
    who(p)
    common(p)
    p.set_defaults(handler=_guard(cmd_open))

    p = ods.add_parser("list", help="orders, newest first (default: the open ones)")
    p.add_argument("--stage", choices=["open", "all", *STAGES], default="open")
    p.add_argument("--category", choices=list(CATEGORY_NAMES), default=None)
    p.add_argument("--limit", type=int, default=200)
    common(p)
    p.set_defaults(handler=_guard(cmd_list))

    p = ods.add_parser("show", help="one order with its clocks and its audit log")
    p.add_argument("id")
    common(p)
    p.set_defaults(handler=_guard(cmd_show))

    p = ods.add_parser("overdue", help="open orders past any of their clocks")
    p.add_argument("--escalate", action="store_true",
                   help="also queue the escalations now (and deliver to JSONL/webhook; MQTT waits for `heatwatch run`)")
    common(p)
    p.set_defaults(handler=_guard(cmd_overdue))

    p = ods.add_parser("assign", help="dispatch to a handling unit (--unit) and/or route to a first-line worker (--to)")
    p.add_argument("id")
    p.add_argument("--unit", help="the handling unit (责任单位)")
    p.add_argument("--to", help="the first-line worker")
    p.add_argument("--opinion", help="the station's handling opinion (处理意见)")
    who(p)
    common(p)
    p.set_defaults(handler=_guard(cmd_assign))

    p = ods.add_parser("advance", help="the customer contacted, staff on site, or a late visit announced")
    p.add_argument("id")
    p.add_argument("--stage", choices=["contacted", "on_site"])
    p.add_argument("--mark", choices=list(MARKS))
    p.add_argument("--note", help="what was said or found")
    who(p)
    common(p)
    p.set_defaults(handler=_guard(cmd_advance))

    p = ods.add_parser("reply", help="the reply (回单) with the four elements of 003")
    p.add_argument("id")
    p.add_argument("--cause", help=REPLY_NAMES["cause"])
    p.add_argument("--action", help=REPLY_NAMES["action"])
    p.add_argument("--result", help=REPLY_NAMES["result"])
    p.add_argument("--opinion", help=REPLY_NAMES["opinion"])
    who(p)
    common(p)
    p.set_defaults(handler=_guard(cmd_reply))

    p = ods.add_parser("review", help="review a reply: --ok, or send it back naming what is missing")
    p.add_argument("id")
    p.add_argument("--ok", action="store_true", help="the reply is complete")
    p.add_argument("--missing", help=f"comma-separated: {', '.join(REPLY_NAMES)}")
    p.add_argument("--reason", help="why it goes back")
    who(p)
    common(p)
    p.set_defaults(handler=_guard(cmd_review))

    p = ods.add_parser("callback", help="the return call (回访) and the customer's satisfaction")
    p.add_argument("id")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--satisfied", action="store_true")
    g.add_argument("--unsatisfied", action="store_true")
    p.add_argument("--note", help="what the customer said")
    who(p)
    common(p)
    p.set_defaults(handler=_guard(cmd_callback))

    p = ods.add_parser("reopen", help="after an unsatisfied callback: back to the handling unit, clocks running again")
    p.add_argument("id")
    p.add_argument("--reason", required=True, help="what the customer is still unhappy about")
    who(p)
    common(p)
    p.set_defaults(handler=_guard(cmd_reopen))

    p = ods.add_parser("close", help="close after the callback; before it a supervisor gives --reason")
    p.add_argument("id")
    p.add_argument("--reason", help="why it closes without a callback (supervisors only)")
    who(p)
    common(p)
    p.set_defaults(handler=_guard(cmd_close))

    p = ods.add_parser("note", help="add evidence to an order without moving it")
    p.add_argument("id")
    p.add_argument("--text", required=True)
    who(p)
    common(p)
    p.set_defaults(handler=_guard(cmd_note))

    add_actions(ods)  # serve, figures: heatwatch/app/commands/desk_intake.py
