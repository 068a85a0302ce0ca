"""Deliver queued alert messages to their sinks; what a sink refuses waits in the outbox with backoff."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from datetime import timedelta

from control.alerts.repo import AlertRepo
from control.alerts.sinks import Sink, SinkError
from heatwatch.core.timeutil import Clock
from heatwatch.infra.statedb import ts

log = logging.getLogger("heatwatch.alerts")
MAX_BACKOFF = timedelta(hours=1)


class Dispatcher:
    def __init__(self, repo: AlertRepo, sinks: Mapping[str, Sink], clock: Clock, retry_s: float = 60.0) -> None:
        self.repo = repo
        self.sinks = dict(sinks)
        self.clock = clock
        self.retry_s = retry_s
        self._lock = threading.Lock()

    def deliver_due(self) -> int:
        """Send due messages oldest first, per sink in order: a sink that fails, or whose oldest message
        is still backing off, is skipped for the rest of the round so nothing overtakes it."""
        sent = 0
        with self._lock:
            down: set[str] = set()
            now_txt = ts(self.clock())
            for row in self.repo.due():
                name = row["sink"]
                sink = self.sinks.get(name)
                if sink is None or name in down:
                    continue
                if row["next_attempt_at"] > now_txt:
                    down.add(name)
                    continue
                body = row["payload"].encode("utf-8")
                category = json.loads(row["payload"])["alert"]["category"]
                try:
                    sink.send(category, body, f"{row['alert_id']}-{row['id']}")
                except SinkError as exc:
                    down.add(name)
                    attempts = row["attempts"] + 1
                    wait = min(timedelta(seconds=self.retry_s * 2 ** min(attempts - 1, 10)), MAX_BACKOFF)
                    self.repo.failed(row["id"], attempts, self.clock() + wait, str(exc))
                    log.warning("alert sink %s is down (%s); %s kept in the outbox, retry in %s",
                                name, exc, row["alert_id"], wait)
                    continue
                self.repo.delivered(row["id"], self.clock())
                sent += 1
        return sent
