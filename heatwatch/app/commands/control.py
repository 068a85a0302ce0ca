"""``heatwatch proposals|rechecks|alerts``: what operators and dispatchers type.

Every command reads control's SQLite file; only ``proposals apply`` talks to MQTT (the setpoint).
Errors are one line (UsageError → exit 2); ``--json`` output keeps Chinese names as they are.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from control.alerts.model import CATEGORIES
from control.alerts.repo import AlertRepo, UnknownAlert
from control.db import db_path, open_engine
from control.proposal import STATUSES, Proposal, TransitionError
from control.rechecks import stored_jobs
from control.repo import ProposalRepo, UnknownProposal
from heatwatch.app.context import App
from heatwatch.core.errors import UsageError
from heatwatch.core.timeutil import rfc3339, utc_now


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")


def _local(dt: datetime | None, app: App) -> str:
    return "-" if dt is None else rfc3339(dt, app.cfg.general.tz)


def _guard(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (UnknownProposal, UnknownAlert, TransitionError, ValueError) as exc:
            raise UsageError(str(exc).strip("'\"")) from None

    return run


# --- proposals -----------------------------------------------------------------------------------
def _proposals(app: App) -> ProposalRepo:
    return ProposalRepo(open_engine(db_path(app.cfg)))


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def cmd_proposals_list(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    statuses = None if args.status == "all" else [args.status] if args.status else ["proposed", "approved", "applied"]
    rows = _proposals(app).find(statuses=statuses, station_id=args.station, limit=args.limit)
    if args.json:
        _print_json([p.to_json() for p in rows])
        return 0
    if not rows:
        print("no proposals")
        return 0
    for p in rows:
        what = f"{_fmt(p.current_c)} → {_fmt(p.proposed_c)} °C" if p.proposed_c is not None else (p.home_id or p.community)
        out = f" {p.outcome}" if p.outcome else ""
        print(f"{p.proposal_id}  {p.status}{out:<13} {p.kind:<12} {p.station_id:<10} {what:<22} "
              f"effective {_local(p.effective_at, app)}  {p.reason[:90]}")
    return 0


def cmd_proposals_show(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    repo = _proposals(app)
    p = repo.get(args.id)
    hist = repo.history(args.id)
    if args.json:
        _print_json({**p.to_json(), "history": hist})
        return 0
    for k, v in p.to_json().items():
        if k in ("evidence",):
            continue
        print(f"{k:>15}: {v}")
    print(f"{'evidence':>15}: {json.dumps(p.evidence, ensure_ascii=False)}")
    print("history:")
    for h in hist:
        print(f"  {h['at']}  {h['from_status'] or '-'} → {h['to_status']}  by {h['actor']}  {h['note'][:100]}")
    return 0


def _act(args: argparse.Namespace, action: str) -> int:
    """approve / reject / apply through the proposal lifecycle alone: no scheduler, no alert sinks; an MQTT
    connection only to apply a setpoint, and the recheck written straight into the persistent job store."""
    from control.lifecycle import Lifecycle
    from control.points import PointWriter
    from control.rechecks import Jobs
    from control.setpoints import ApplyError, Setpoints

    app = App.from_args(args)
    by = app.operator(args.by)
    engine = open_engine(db_path(app.cfg))
    repo = ProposalRepo(engine)
    p: Proposal = repo.get(args.id)
    publisher = None
    if action == "apply" and p.is_setpoint:
        from control.publish import MqttPublisher

        publisher = MqttPublisher(app.cfg, f"{app.cfg.mqtt.client_id}-cli"[:64])
    store = app.open_store()
    lifecycle = Lifecycle(app.cfg, repo, utc_now, PointWriter(store), Setpoints(app.cfg, repo, utc_now, publisher),
                          Jobs(app.cfg, utc_now))
    try:
        fn = {"approve": lifecycle.approve, "reject": lifecycle.reject, "apply": lifecycle.apply}[action]
        try:
            new = fn(args.id, actor=by, note=args.note)
        except ApplyError as exc:
            raise UsageError(str(exc)) from None
    finally:
        if publisher is not None:
            publisher.close()
        engine.dispose()
        store.close()
    if args.json:
        _print_json(new.to_json())
    else:
        extra = f"; recheck due {_local(new.recheck_due_at, app)}" if new.recheck_due_at and action == "apply" else ""
        print(f"{new.proposal_id}: {p.status} → {new.status}{extra}")
    return 0


# --- rechecks ------------------------------------------------------------------------------------
def cmd_rechecks_list(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    repo = _proposals(app)
    jobs = {j["job_id"]: j["next_run"] for j in stored_jobs(app.cfg)}
    rows: list[dict[str, Any]] = []
    now = utc_now()
    for p in repo.pending_rechecks():
        due = p.recheck_due_at
        rows.append({
            "proposal_id": p.proposal_id, "station_id": p.station_id, "kind": p.kind, "targets": list(p.targets),
            "applied_at": rfc3339(p.applied_at) if p.applied_at else None, "due": rfc3339(due) if due else None,
            "overdue": bool(due and due <= now), "scheduled": f"recheck:{p.proposal_id}" in jobs,
        })
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no rechecks pending")
    for r in rows:
        flag = "OVERDUE" if r["overdue"] else "due"
        sched = "" if r["scheduled"] else "  (no scheduler job: the next cycle sweeps it)"
        targets = ", ".join(map(str, r["targets"]))
        print(f"{r['proposal_id']}  {flag} {r['due']}  {r['kind']:<12} {r['station_id']}  {targets}{sched}")
    return 0


# --- alerts --------------------------------------------------------------------------------------
def _alerts(app: App) -> AlertRepo:
    from control.alerting import configured_sinks

    return AlertRepo(open_engine(db_path(app.cfg)), configured_sinks(app.cfg))


def cmd_alerts_list(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    statuses = None if args.status == "all" else [args.status] if args.status else ["open", "acked"]
    rows = _alerts(app).find(statuses=statuses, category=args.category, limit=args.limit)
    if args.json:
        _print_json([o.to_json() for o in rows])
        return 0
    if not rows:
        print("no alerts")
    for o in rows:
        homes = f" [{len(o.homes)} homes]" if o.homes else ""
        print(f"{o.alert_id}  {o.status:<8} {o.severity:<6} {o.category:<21} {o.address or o.station_id}{homes}  "
              f"deadline {_local(o.deadline, app)}  → {o.responsible_unit}  {o.content[:80]}")
    return 0


def _alert_set(args: argparse.Namespace, status: str) -> int:
    app = App.from_args(args)
    by = app.operator(args.by)
    o = _alerts(app).set_status(args.id, status, utc_now(), f"{by}: {args.note}" if args.note else by)
    if args.json:
        _print_json(o.to_json())
    else:
        print(f"{o.alert_id}: {o.status} (message queued for the alert sinks)")
    return 0


def register(sub: Any) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="machine-readable output")

    pr = sub.add_parser("proposals", help="supply, balancing and home-visit proposals")
    prs = pr.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = prs.add_parser("list", help="open proposals (default) or by --status")
    p.add_argument("--status", choices=[*STATUSES, "all"], default=None)
    p.add_argument("--station", default=None)
    p.add_argument("--limit", type=int, default=200)
    common(p)
    p.set_defaults(handler=_guard(cmd_proposals_list))
    p = prs.add_parser("show", help="one proposal with its evidence and history")
    p.add_argument("id")
    common(p)
    p.set_defaults(handler=_guard(cmd_proposals_show))
    for action, text in (("approve", "approve a proposal"), ("reject", "reject a proposal"),
                         ("apply", "apply an approved proposal: publish the setpoint, schedule the 48 h recheck")):
        p = prs.add_parser(action, help=text)
        p.add_argument("id")
        p.add_argument("--note", default="")
        p.add_argument("--by", required=True, help="the configured desk user who does it ([desk.operators]; recorded in the history)")
        common(p)
        p.set_defaults(handler=_guard(functools.partial(_act, action=action)))

    rc = sub.add_parser("rechecks", help="48 h rechecks of applied changes")
    rcs = rc.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = rcs.add_parser("list", help="pending rechecks and when they are due")
    common(p)
    p.set_defaults(handler=_guard(cmd_rechecks_list))

    al = sub.add_parser("alerts", help="work orders for dispatch")
    als = al.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = als.add_parser("list", help="open and acknowledged alerts (default) or by --status")
    p.add_argument("--status", choices=["open", "acked", "resolved", "all"], default=None)
    p.add_argument("--category", choices=CATEGORIES, default=None)
    p.add_argument("--limit", type=int, default=500)
    common(p)
    p.set_defaults(handler=_guard(cmd_alerts_list))
    for action, status in (("ack", "acked"), ("resolve", "resolved")):
        p = als.add_parser(action, help=f"mark an alert {status}")
        p.add_argument("id")
        p.add_argument("--note", default="")
        p.add_argument("--by", required=True, help="the configured desk user who does it (recorded with the note)")
        common(p)
        p.set_defaults(handler=_guard(functools.partial(_alert_set, status=status)))
