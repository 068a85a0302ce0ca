"""The ``heatwatch`` console command.

Each part (collector, simulators, analytics, control, service) adds its own sub-commands via a
``register(subparsers)`` function in its ``cli`` module, so this file stays small and a change
to one part's commands lives in that part's folder.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from heatwatch.config import ConfigError
from heatwatch.registry import RegistryError

COMMAND_MODULES = (
    "heatwatch.config_cli",
    "collector.cli",
    "collector.deadletter_cli",
    "simulators.cli",
    "analytics.cli",
    "control.cli",
    "heatwatch.service_cli",
    "heatwatch.demo",
)

Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """Bad command-line input, phrased for the operator."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heatwatch", description="District-heating telemetry, analytics and control.")
    parser.add_argument("--config", "-c", default=None, help="TOML config file (default: $HEATWATCH_CONFIG or ./heatwatch.toml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
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
