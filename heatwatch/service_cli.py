"""Service-level commands: ``heatwatch report`` (and, later, ``run`` and ``status``).

Each command is a ``_<name>(args)`` handler plus a ``_add_<name>(sub)`` parser builder; ``register``
lists them, so adding ``run``/``status`` is two functions and one line.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta
from pathlib import Path

from heatwatch.app import App, setup_logging
from heatwatch.cli import UsageError
from heatwatch.timeutil import parse_cli_time, rfc3339, utc_now

DEFAULT_REPORT_DAYS = 7


def _time_arg(text: str | None, app: App, flag: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_cli_time(text, app.cfg.general.tz)
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected a time such as 2026-01-10, '2026-01-10 08:00' (local, "
                         f"{app.cfg.general.timezone}) or 2026-01-10T00:00Z") from None


def _report(args: argparse.Namespace) -> int:
    from heatwatch.report import build_report  # matplotlib is imported only when a report is asked for

    app = App.from_args(args)
    setup_logging(app.cfg)
    end = _time_arg(args.to, app, "--to") or utc_now()
    start = _time_arg(args.from_, app, "--from") or end - timedelta(days=DEFAULT_REPORT_DAYS)
    if start >= end:
        raise UsageError(f"--from must be before --to (got {args.from_} .. {args.to})")
    with app.open_store() as store:
        path = build_report(store, app.registry, app.cfg, start, end, Path(args.out),
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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _add_report(sub)
