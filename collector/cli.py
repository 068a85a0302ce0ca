"""``heatwatch collect``: run the collector until SIGTERM/SIGINT, then shut down gracefully."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import threading
from types import FrameType

from collector.service import Collector
from heatwatch.app import App, setup_logging

log = logging.getLogger("heatwatch.collector")


def install_stop_signals(stop: threading.Event) -> None:
    def _handler(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)


def _collect(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    setup_logging(app.cfg)
    registry = app.registry
    store = app.open_store()
    collector = Collector(app.cfg, registry, store)
    # the registry and the imported libraries live as long as the process: keep them out of the cyclic GC's
    # full passes, which otherwise rescan them while readings stream through (docs/PERFORMANCE.md)
    gc.collect()
    gc.freeze()
    stop = threading.Event()
    install_stop_signals(stop)
    collector.start()
    log.info(
        "collecting from %s:%s (MQTT %s, %d homes, %d stations registered) into %s",
        app.cfg.mqtt.host, app.cfg.mqtt.port, app.cfg.mqtt.protocol, len(registry.homes), len(registry.stations), store.name,
    )
    while not stop.wait(1.0):
        pass
    collector.stop()
    store.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("collect", help="store MQTT readings (at-least-once: ack only after durable storage)")
    p.set_defaults(handler=_collect)
