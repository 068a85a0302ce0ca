"""``heatwatch orders serve`` and ``heatwatch orders figures``: the desk's doors and its monthly figures.

Added to the ``orders`` command group (heatwatch/app/commands/orders.py calls ``add_actions``).
``serve`` runs the HTTP JSON intake and/or the MQTT intake in the foreground (``heatwatch run`` runs them
too when ``[desk] http_port`` / ``mqtt_intake`` are set). ``figures`` prints a month's figures per handling
unit (docs/SERVICE_DESK.md, "Monthly figures") and, with ``--write``, puts them into the store for Grafana.
"""

from __future__ import annotations

import argparse
import csv
import json
import signal
import sys
import threading
from typing import Any

from dispatch.desk import Desk
from dispatch.figures import ALL, month_of, month_start, monthly, records
from heatwatch.app.context import App
from heatwatch.app.deskintake import ALL_ORDERS, DeskDoors, write_points
from heatwatch.core.errors import UsageError
from heatwatch.core.timeutil import utc_now

# the columns the text table shows (--json / --csv carry every figure, the clocks' included)
SHOWN = ("received", "ontime_respond", "median_contact_min", "median_repair_h", "closure_rate", "satisfaction_rate")


def cmd_serve(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    cfg = app.cfg
    port = cfg.desk.http_port if args.port is None else args.port
    mqtt = cfg.desk.mqtt_intake if args.mqtt is None else args.mqtt
    if not port and not mqtt:
        raise UsageError("nothing to serve: give --port (or [desk] http_port) and/or --mqtt (or [desk] mqtt_intake)")
    doors = DeskDoors(cfg, app.registry, Desk.from_config(cfg, utc_now), http_port=port,
                      http_host=args.host or cfg.desk.http_host, mqtt=mqtt).start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    where = []
    if doors.http is not None:
        where.append(f"HTTP on {args.host or cfg.desk.http_host}:{doors.http.port} (POST /orders, GET /orders, POST /measurements)")
    if doors.mqtt is not None:
        where.append(f"MQTT {doors.mqtt.topic} on {cfg.mqtt.host}:{cfg.mqtt.port}")
    print("desk intake: " + "; ".join(where), flush=True)
    try:
        stop.wait()
    finally:
        doors.stop()
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    cfg = app.cfg
    tz = cfg.general.tz
    now = utc_now()
    month = args.month or month_of(now, tz)
    try:
        since = month_start(month, tz)
    except ValueError as exc:
        raise UsageError(f"--month: {exc}") from None
    desk = Desk.from_config(cfg, utc_now)
    df = monthly(desk.find(limit=ALL_ORDERS, received_since=since), tz, now, clock_states=desk.clocks, month=month)
    if args.write:
        with app.open_store() as store:
            n = write_points(desk, store, cfg, now, months=[month])
        print(f"wrote {n} points (desk_figures {month}, desk_overdue now) to {cfg.storage.backend}", file=sys.stderr)
    rows = records(df)
    if args.json:
        sys.stdout.write(json.dumps({"month": month, "timezone": cfg.general.timezone, "units": rows}, ensure_ascii=False,
                                    indent=2) + "\n")
        return 0
    if args.csv:
        cols = list(df.columns)
        w = csv.DictWriter(sys.stdout, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r[k] for k in cols})
        return 0
    if not rows:
        print(f"no orders received in {month} ({cfg.general.timezone})")
        return 0
    print(f"{month} ({cfg.general.timezone}), by the month an order was received; rates 0..1, '-' = nothing to measure")
    width = max(len(str(r["handling_unit"])) for r in rows) + 2
    print("handling unit".ljust(width) + "  ".join(f"{c:>18}" for c in SHOWN))
    for r in rows:
        unit = "all units" if r["handling_unit"] == ALL else str(r["handling_unit"])
        print(unit.ljust(width) + "  ".join(f"{_cell(r.get(c)):>18}" for c in SHOWN))
    return 0


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:g}" if isinstance(v, float) else str(v)


def add_actions(ods: Any) -> None:
    """Add ``serve`` and ``figures`` to the ``orders`` group's sub-commands."""
    p = ods.add_parser("serve", help="run the HTTP JSON intake and/or the MQTT intake (docs/SERVICE_DESK.md)")
    p.add_argument("--port", type=int, default=None, help="HTTP port (default: [desk] http_port; 0 = no HTTP)")
    p.add_argument("--host", default=None, help="HTTP address (default: [desk] http_host)")
    mq = p.add_mutually_exclusive_group()
    mq.add_argument("--mqtt", dest="mqtt", action="store_true", default=None,
                    help="also take orders from <topic_prefix>/orders/new (default: [desk] mqtt_intake)")
    mq.add_argument("--no-mqtt", dest="mqtt", action="store_false")
    p.set_defaults(handler=cmd_serve)

    p = ods.add_parser("figures", help="a month's figures per handling unit: received, on time, medians, closure, satisfaction")
    p.add_argument("--month", default=None, help="YYYY-MM, local time (default: this month)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="machine-readable, every figure")
    fmt.add_argument("--csv", action="store_true", help="CSV (UTF-8), every figure")
    p.add_argument("--write", action="store_true", help="also write desk_figures/desk_overdue points to the store (Grafana)")
    p.set_defaults(handler=cmd_figures)
