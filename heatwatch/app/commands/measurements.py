"""``heatwatch measurements import|list``: in-home measurement records (入户测温, seed 001 section 八).

A file is taken row by row: every good row is kept (append-only; a correction names the record it ``supersedes``),
every bad row is refused with its row number and reason, and the command says how many of each. A co-signed
measurement under the standard opens a not_warm order on the desk (or notes an open one of that home).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dispatch.measurements import CSV_COLUMNS, MeasurementBook, import_csv
from heatwatch.app.commands.analyze import table
from heatwatch.app.commands.homes import desk_for
from heatwatch.app.context import App
from heatwatch.core.timeutil import Clock, rfc3339, utc_now

CLOCK: Clock = utc_now  # tests replace it


def cmd_import(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    by = app.operator(args.by)
    rep = import_csv(Path(args.file), MeasurementBook.open(app.cfg), cfg=app.cfg, registry=app.registry, now=CLOCK(),
                     by=by, desk=None if args.no_order else desk_for(app))
    if args.json:
        sys.stdout.write(json.dumps({
            "kept": [{"record_id": r.record.record_id, "home_id": r.record.m.home_id, "mean_c": round(r.record.m.mean_c, 2),
                      "threshold_c": r.threshold_c, "below": r.below, "order_id": r.order_id, "action": r.action}
                     for r in rep.kept],
            "refused": [{"row": i, "reason": why} for i, why in rep.refused],
        }, ensure_ascii=False, indent=2) + "\n")
    else:
        for i, why in rep.refused:
            print(f"{args.file} row {i}: refused — {why}", file=sys.stderr)
        for r in rep.kept:
            if r.order_id or r.action:
                print(f"{r.record.record_id} {r.record.m.home_id}: {r.record.m.mean_c:.1f} °C under {r.threshold_c:.1f} °C, "
                      f"co-signed — order {r.order_id or '-'} {r.action}")
        print(f"kept {len(rep.kept)} record(s), refused {len(rep.refused)} row(s) of {args.file}")
    return 1 if rep.refused else 0


def cmd_list(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    rows = MeasurementBook.open(app.cfg).all(args.home)
    tz = app.cfg.general.tz
    if args.json:
        out: list[dict[str, Any]] = [{"record_id": r.record_id, "home_id": r.m.home_id, "measured_at": rfc3339(r.m.measured_at, tz),
                                      "rooms": dict(r.m.rooms), "mean_c": round(r.m.mean_c, 2), "staff": list(r.m.staff),
                                      "cosigned": r.m.cosigned, "cosigner": r.m.cosigner, "supersedes": r.m.supersedes}
                                     for r in rows]
        sys.stdout.write(json.dumps(out, ensure_ascii=False, indent=2) + "\n")
        return 0
    if not rows:
        print("no measurement records")
        return 0
    print(table([(r.record_id, r.m.home_id, rfc3339(r.m.measured_at, tz), f"{r.m.mean_c:.1f}",
                  "; ".join(f"{n} {t:g}" for n, t in r.m.rooms), "、".join(r.m.staff),
                  r.m.cosigner if r.m.cosigned else None, r.m.supersedes or None) for r in rows],
                ("record", "home", "measured", "mean °C", "rooms", "staff", "signed by", "corrects")))
    return 0


def register(sub: Any) -> None:
    m = sub.add_parser("measurements", help="in-home measurement records (入户测温): two staff, calibrated thermometer, co-signed")
    ms = m.add_subparsers(dest="measurements_command", metavar="ACTION", required=True)
    p = ms.add_parser("import", help=f"import a CSV (UTF-8): {', '.join(CSV_COLUMNS)}; rooms as 客厅=17.5;主卧=16.8")
    p.add_argument("file")
    p.add_argument("--by", required=True, help="who imports them (recorded with each record and on any order)")
    p.add_argument("--no-order", action="store_true", help="keep the records, open no desk order")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_import)
    p = ms.add_parser("list", help="every record (corrections included)")
    p.add_argument("--home", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_list)
