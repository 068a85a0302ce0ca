"""Service-level commands: ``heatwatch run``, ``heatwatch status`` and ``heatwatch report``.

Each command is a ``_<name>(args)`` handler plus a ``_add_<name>(sub)`` parser builder; ``register``
lists them, so adding ``run``/``status`` is two functions and one line.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import signal
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from heatwatch.app.context import App, setup_logging
from heatwatch.app.status import status_path
from heatwatch.core.config import Config
from heatwatch.core.errors import UsageError
from heatwatch.core.timeutil import parse_cli_time, rfc3339, utc_now

log = logging.getLogger("heatwatch.run")

DEFAULT_REPORT_DAYS = 7


def _time_arg(text: str | None, app: App, flag: str) -> datetime | None:
    if text is None:
        return None
    return parse_cli_time(text, app.cfg.general.tz, flag)


def _report(args: argparse.Namespace) -> int:
    from heatwatch.app.report import build_report  # matplotlib is imported only when a report is asked for
    from heatwatch.app.servicestate import heated_registry  # only the homes heated at the end of the period count

    app = App.from_args(args)
    setup_logging(app.cfg)
    end = _time_arg(args.to, app, "--to") or utc_now()
    start = _time_arg(args.from_, app, "--from") or end - timedelta(days=DEFAULT_REPORT_DAYS)
    if start >= end:
        raise UsageError(f"--from must be before --to (got {args.from_} .. {args.to})")
    with app.open_store() as store:
        path = build_report(store, heated_registry(app.cfg, app.registry, end), app.cfg, start, end, Path(args.out),
                            communities=args.community or None, title=args.title)
    tz = app.cfg.general.tz
    print(f"report for {rfc3339(start, tz)} .. {rfc3339(end, tz)} written to {path.resolve()}")
    return 0


def _add_report(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report with plots",
                       description="Community averages vs 18 °C, building heat maps, station supply vs the heating "
                                   "curve, alerts and proposals, as one HTML file (plots embedded).")
    p.add_argument("--from", dest="from_", metavar="TIME",
                   help=f"start (RFC 3339, or local time in general.timezone); default: {DEFAULT_REPORT_DAYS} days before --to")
    p.add_argument("--to", metavar="TIME", help="end (exclusive); default: now")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory; the page is DIR/report.html")
    p.add_argument("--community", action="append", metavar="NAME", help="only this community (repeatable)")
    p.add_argument("--title", default="heatwatch report")
    p.set_defaults(handler=_report)


def install_stop_signals(stop: threading.Event) -> None:
    def _handler(signum: int, frame: FrameType | None) -> None:
        logging.getLogger("heatwatch.run").info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)


def serve(app: App, cfg: Config) -> int:
    """Run the service with ``cfg`` (its [run] parts) until SIGTERM/SIGINT, then stop it cleanly."""
    from heatwatch.app.service import Service

    setup_logging(cfg)
    registry = app.registry
    store = app.open_store()
    # the registry and the imported libraries live as long as the process: keep them out of the cyclic GC's
    # full passes, which otherwise rescan them while readings stream through (docs/PERFORMANCE.md)
    gc.collect()
    gc.freeze()
    stop = threading.Event()
    install_stop_signals(stop)
    service = Service(cfg, registry, store).start()
    log.info("status in %s", status_path(cfg))
    try:
        while not stop.wait(1.0):
            pass
    finally:
        log.info("stopping: flushing, acknowledging, shutting the scheduler down")
        service.stop()
        store.close()
    return 0


def _run(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    if not app.registry.homes and ("analytics" in app.cfg.run.parts or "collector" in app.cfg.run.parts):
        raise UsageError("the registry has no homes; set [registry] homes_csv (and stations_csv) in the config")
    return serve(app, app.cfg)


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run", help="collector + scheduled analytics + control + alerts in one process",
        description="Runs the parts in [run] parts (collector, analytics, control) until SIGTERM/SIGINT, then stops "
                    "cleanly: stop consuming, store and acknowledge what was received, shut the scheduler down. "
                    "Health: <data_dir>/status.json, and /healthz + /status when [run] http_port is set.",
    )
    p.set_defaults(handler=_run)


def _fmt_status(snap: dict[str, Any] | None, source: str, stale: bool, probes: dict[str, tuple[bool, str]]) -> list[str]:
    lines = []
    if snap is None:
        lines.append(f"service      not running (no status at {source})")
    else:
        state = "STALE — not updated for a while; the service may have died" if stale and snap.get("state") == "running" \
            else snap.get("state", "?")
        lines.append(f"service      {state} (pid {snap.get('pid')}, since {snap.get('started_at')}, updated {snap.get('updated_at')})")
        lines.append(f"parts        {', '.join(snap.get('parts', []))}")
        if "ingest" in snap:
            i, sp = snap["ingest"], snap.get("spool", {})
            lines.append(f"ingest       {i['rate_per_s']} readings/s; {i['stored']} stored, {i['rejected']} rejected, "
                         f"queue {i['queue_depth']}")
            lines.append(f"spool        {sp.get('batches', 0)} batches, {sp.get('readings', 0)} readings waiting for the store")
            if not i.get("live", True):
                lines.append(f"LIVENESS     NOT LIVE: {i.get('not_live_reason')}")
        b = snap.get("broker") or {}
        if b:
            lines.append(f"broker       {'connected' if b.get('connected') else 'DISCONNECTED'}, "
                         f"{'subscribed' if b.get('subscribed') else 'NOT subscribed yet'}; "
                         f"{b.get('stalls_recovered', 0)} stalled sessions recovered")
            if b.get("session_lost"):
                lines.append(f"WARNING      the broker lost our persistent session {b['session_lost']} time(s), last at "
                             f"{b.get('session_lost_at')}: readings published meanwhile may be lost — check the broker's "
                             "persistence (docs/OPERATIONS.md, 'Broker sessions')")
            if b.get("probe_refused"):
                lines.append("WARNING      the broker refused the collector's liveness probe (ACL): stalls go undetected")
        la = snap.get("last_analysis")
        if la:
            lines.append(f"analysis     {la['at']}: {la['communities']} communities ({la['cold_communities']} cold), "
                         f"{la['homes_below_standard']} homes below standard, {la['duration_s']} s")
        for j in snap.get("next_jobs", [])[:8]:
            lines.append(f"next job     {j['next_run']}  {j['name']}")
        if "rechecks_pending" in snap:
            lines.append(f"rechecks     {len(snap['rechecks_pending'])} pending; proposals open {snap.get('proposals_open')}, "
                         f"alerts open {snap.get('alerts_open')}")
        if snap.get("job_errors"):
            lines.append(f"job errors   {snap['job_errors']}")
    for name, (ok, detail) in probes.items():
        lines.append(f"{name:<12} {'OK  ' if ok else 'DOWN'} {detail}")
    return lines


def _wait_ready(cfg: Any, timeout: float) -> int:
    """Block until the running service says it is ready (collector subscribed); 0 when it did, 1 on timeout."""
    from heatwatch.app.status import is_stale, read_snapshot, ready

    deadline = time.monotonic() + timeout
    while True:
        snap, source = read_snapshot(cfg)
        fresh = snap is not None and not is_stale(snap, utc_now(), float(snap.get("status_interval_s", cfg.run.status_interval_s)))
        if snap is not None and fresh and ready(snap):
            print(f"ready ({source})")
            return 0
        if time.monotonic() >= deadline:
            why = "no running service" if snap is None else ("stale status" if not fresh else "not subscribed yet")
            print(f"heatwatch: not ready after {timeout:g} s ({why}; {source})", file=sys.stderr)
            return 1
        time.sleep(0.1)


def _status(args: argparse.Namespace) -> int:
    from heatwatch.app.status import is_stale, probe_broker, probe_store, read_snapshot

    app = App.from_args(args)
    if args.wait == "ready":
        return _wait_ready(app.cfg, args.timeout)
    snap, source = read_snapshot(app.cfg)
    stale = snap is not None and is_stale(snap, utc_now(), float(snap.get("status_interval_s", app.cfg.run.status_interval_s)))
    probes = {"broker": probe_broker(app.cfg), "store": probe_store(app.cfg)}
    running = snap is not None and snap.get("state") == "running" and not stale
    ok = running and all(p[0] for p in probes.values())
    if args.json:
        print(json.dumps({"ok": ok, "running": running, "stale": stale, "source": source, "service": snap,
                          "probes": {k: {"ok": v[0], "detail": v[1]} for k, v in probes.items()}}, ensure_ascii=False))
    else:
        print("\n".join(_fmt_status(snap, source, stale, probes)))
    if not ok:
        print("heatwatch: not healthy" + ("" if running else " (no running service)"), file=sys.stderr)
    return 0 if ok else 1


def _add_status(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="is the service running; broker and store connectivity, ingest rate, spool, next jobs",
                       description="Reads the running service's status (HTTP when [run] http_port is set, else "
                                   "<data_dir>/status.json) and probes the broker and the store. Exit 0 when healthy, 1 when not.")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--wait", choices=["ready"], default=None,
                   help="block until the service is ready (the collector has subscribed), then exit 0; 1 on timeout")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds --wait waits (default 60)")
    p.set_defaults(handler=_status)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_run(sub)
    _add_status(sub)
    _add_report(sub)
