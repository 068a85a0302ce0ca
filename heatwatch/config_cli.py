"""``heatwatch config check``: validate a config and show the effective settings, secrets masked."""

from __future__ import annotations

import argparse
import json

from heatwatch.app import App
from heatwatch.config import effective_settings
from heatwatch.registry import load_registry


def _check(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    cfg = app.cfg
    # resolve secret files now so a missing file is reported here, not at 03:00 in production
    for section, key in (("mqtt", "password"), ("influxdb1", "password"), ("influxdb2", "token"), ("alerts", "webhook_secret")):
        cfg.secret(section, key)
    reg = load_registry(cfg.registry.homes_csv, cfg.registry.stations_csv)
    eff = effective_settings(cfg)
    if args.json:
        print(json.dumps({"source": cfg.source, "settings": eff}, ensure_ascii=False, indent=2))
    else:
        print(f"# configuration OK (from {cfg.source})")
        print(f"# registry: {len(reg.homes)} homes, {len(reg.stations)} stations, {len(reg.communities())} communities")
        for section, body in eff.items():
            print(f"[{section}]")
            for key, value in body.items():
                print(f"{key} = {json.dumps(value, ensure_ascii=False)}")
            print()
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    c = csub.add_parser("check", help="validate the config and print the effective settings (secrets masked)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(handler=_check)
