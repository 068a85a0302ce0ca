"""``heatwatch config check``: validate a config and show the effective settings, secrets masked."""

from __future__ import annotations

import argparse
import json
import re

from heatwatch.app.context import App
from heatwatch.core.config import effective_settings
from heatwatch.core.config_example import example_toml, toml_value
from heatwatch.core.registry import load_registry

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")  # TOML keys that need no quotes


def _check(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    cfg = app.cfg
    # resolve secret files now so a missing file is reported here, not at 03:00 in production
    for section, key in (("mqtt", "password"), ("influxdb1", "password"), ("influxdb2", "token"), ("alerts", "webhook_secret")):
        cfg.secret(section, key)
    from dispatch.operators import Operators

    Operators.from_config(cfg)  # the desk users' token files
    reg = load_registry(cfg.registry.homes_csv, cfg.registry.stations_csv)
    eff = effective_settings(cfg)
    if args.json:
        print(json.dumps({"source": cfg.source, "settings": eff}, ensure_ascii=False, indent=2))
    else:
        print(f"# configuration OK (from {cfg.source})")
        print(f"# registry: {len(reg.homes)} homes, {len(reg.stations)} stations, {len(reg.communities())} communities")
        for section, body in eff.items():
            print(f"[{section}]")
            _print_table(body, f"{section}.")
    return 0


def _print_table(body: dict[str, object], prefix: str) -> None:
    """Valid TOML: unset keys commented out, nested tables (quoted names: station ids may be Chinese) after the keys."""
    for key, value in body.items():
        if not isinstance(value, dict):
            print(f"# {key} = (unset)" if value is None else f"{key} = {toml_value(value)}")
    print()
    for key, value in body.items():
        if isinstance(value, dict):
            name = prefix + (key if BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False))
            print(f"[{name}]")
            _print_table(value, name + ".")


def _example(args: argparse.Namespace) -> int:
    print(example_toml(), end="")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    c = csub.add_parser("check", help="validate the config and print the effective settings (secrets masked)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(handler=_check)
    e = csub.add_parser("example", help="print every setting with its default as TOML (heatwatch.example.toml)")
    e.set_defaults(handler=_example)
