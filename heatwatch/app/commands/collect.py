"""``heatwatch collect``: run the collector until SIGTERM/SIGINT, then shut down gracefully."""

from __future__ import annotations

import argparse

from heatwatch.app.commands.service import serve
from heatwatch.app.context import App


def _collect(args: argparse.Namespace) -> int:
    """``heatwatch run`` with only the collector part: the same shutdown, status file and health endpoint."""
    app = App.from_args(args)
    return serve(app, app.cfg.model_copy(update={"run": app.cfg.run.model_copy(update={"parts": ("collector",)})}))


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("collect", help="store MQTT readings (at-least-once: ack only after durable storage)")
    p.set_defaults(handler=_collect)
