"""An in-process MQTT broker (amqtt, MQTT 3.1.1 only) for the zero-setup run.

Production uses a real broker (Mosquitto, EMQX, HiveMQ); this exists so ``make run`` needs
nothing installed. It runs its own asyncio loop in a daemon thread.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

from amqtt.broker import Broker


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the demo's broker binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """amqtt in a daemon thread with its own event loop: the demo's broker, in memory (no persistence)."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="amqtt-broker", daemon=True)
        self._broker: Broker | None = None
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}", "max_connections": 1000}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        """Listen, then return: clients may connect at once."""
        self._thread.start()

        async def _start() -> None:
            self._broker = Broker(self._config(), loop=self._loop)
            await self._broker.start()

        asyncio.run_coroutine_threadsafe(_start(), self._loop).result(timeout)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Shut the broker down and end its thread; a broker that does not stop in time is logged, not raised."""
        if self._broker is not None:
            broker = self._broker

            async def _stop() -> None:
                await broker.shutdown()

            try:
                asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(timeout)
            except Exception:
                logging.getLogger("heatwatch.broker").warning("embedded broker did not shut down cleanly", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
