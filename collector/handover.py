"""Bounded hand-over of messages from paho's network thread to the collector's worker, in batches.

``queue.Queue`` woke the worker for every message (a lock, a notify and a GIL switch per message);
the profile showed that ping-pong costing more than the decoding. Here paho's thread only appends
to a deque (atomic under the GIL) and sets an event when the worker sleeps; the worker takes what
has accumulated in bulk. Bounded: a full hand-over blocks paho's thread, so TCP pushes back on the
broker — together with Receive Maximum this keeps memory flat under any backlog.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")
FULL_POLL_S = 0.001


class Handover(Generic[T]):
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._ready = threading.Event()

    def put(self, item: T, stop: threading.Event) -> bool:
        """Append, waiting while full; False (item not taken) once ``stop`` is set."""
        items = self._items
        while len(items) >= self.maxsize:
            if stop.is_set():
                return False
            time.sleep(FULL_POLL_S)
        items.append(item)
        if not self._ready.is_set():
            self._ready.set()
        return True

    def wait(self, timeout: float) -> bool:
        """True as soon as something is waiting to be taken."""
        if self._items:
            return True
        self._ready.clear()
        if self._items:  # appended between the check and the clear
            return True
        return self._ready.wait(timeout)

    def take(self, limit: int) -> list[T]:
        """Up to ``limit`` items, oldest first, without waiting."""
        items = self._items
        n = min(limit, len(items))
        return [items.popleft() for _ in range(n)]

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items
