"""``heatwatch collect``: run the collector until SIGTERM/SIGINT, then shut down gracefully."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import threading
from types import FrameType

from heatwatch.app import App, setup_logging
from heatwatch.status import status_path

log = logging.getLogger("heatwatch.collector")


def install_stop_signals(stop: threading.Event) -> None:
    def _handler(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)


def _collect(args: argparse.Namespace) -> int:
    """``heatwatch run`` with only the collector part: the same shutdown, status file and health endpoint."""
    from heatwatch.service import Service

    app = App.from_args(args)
    cfg = app.cfg.model_copy(update={"run": app.cfg.run.model_copy(update={"parts": ("collector",)})})
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
    log.info(
        "collecting from %s:%s (MQTT %s, %d homes, %d stations registered) into %s; status in %s",
        cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.protocol, len(registry.homes), len(registry.stations), store.name,
        status_path(cfg),
    )
    try:
        while not stop.wait(1.0):
            pass
    finally:
        service.stop()
        store.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("collect", help="store MQTT readings (at-least-once: ack only after durable storage)")
    p.set_defaults(handler=_collect)
