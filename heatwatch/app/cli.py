"""The ``heatwatch`` console command.

Each group of sub-commands is one module in ``heatwatch.app.commands`` (collect, deadletters,
simulate, analyze, control, service, config) with a ``register(subparsers)`` function, so this file
stays small. The commands live in the application layer because they wire parts together (config,
registry, store, the parts); the parts themselves have no command line.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from heatwatch.core.errors import ConfigError, RegistryError, UsageError

COMMAND_MODULES = (
    "heatwatch.app.commands.config",
    "heatwatch.app.commands.collect",
    "heatwatch.app.commands.deadletters",
    "heatwatch.app.commands.simulate",
    "heatwatch.app.commands.analyze",
    "heatwatch.app.commands.homes",
    "heatwatch.app.commands.measurements",
    "heatwatch.app.commands.control",
    "heatwatch.app.commands.orders",
    "heatwatch.app.commands.energy",
    "heatwatch.app.commands.score",
    "heatwatch.app.commands.model",
    "heatwatch.app.commands.service",
    "heatwatch.app.demo",
)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heatwatch", description="District-heating telemetry, analytics and control.")
    parser.add_argument("--config", "-c", default=None, help="TOML config file (default: $HEATWATCH_CONFIG or ./heatwatch.toml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except (ConfigError, RegistryError, UsageError) as exc:
        print(f"heatwatch: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    finally:
        logging.shutdown()


if __name__ == "__main__":
    sys.exit(main())
