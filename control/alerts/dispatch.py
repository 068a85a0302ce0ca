"""Deliver queued alert messages to their sinks; what a sink refuses waits in the outbox with backoff."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from control.alerts.repo import AlertRepo
from control.alerts.sinks import Sink, SinkError
from heatwatch.core.timeutil import Backoff, Clock
from heatwatch.infra.statedb import ts

log = logging.getLogger("heatwatch.alerts")
MAX_BACKOFF = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One undelivered message as an outbox hands it to ``deliver_rows``."""

    row_id: int
    sink: str
    next_attempt_at: str  # statedb.ts text: lexical order is time order
    attempts: int
    category: str
    body: bytes
    key: str  # the idempotency key a receiver may deduplicate on
    what: str  # for the log line: which alert / order


def deliver_rows(rows: Iterable[OutboxRow], sinks: Mapping[str, Sink], now: datetime, retry_s: float,
                 failed: Callable[[int, int, datetime, str], None], delivered: Callable[[int], None],
                 log_name: str = "alert") -> int:
    """Send due rows oldest first, per sink in order: a sink that fails, or whose oldest row is still backing
    off, is skipped for the rest of the round so nothing overtakes it. Shared by the alerts' outbox and the
    desk's escalations, so both retry the same way (doubling waits up to an hour)."""
    sent = 0
    down: set[str] = set()
    now_txt = ts(now) or ""
    backoff = Backoff(retry_s, MAX_BACKOFF.total_seconds(), jitter=0.0)  # the row keeps its attempts count
    for row in rows:
        sink = sinks.get(row.sink)
        if sink is None or row.sink in down:
            continue
        if row.next_attempt_at > now_txt:
            down.add(row.sink)
            continue
        try:
            sink.send(row.category, row.body, row.key)
        except SinkError as exc:
            down.add(row.sink)
            attempts = row.attempts + 1
            wait = timedelta(seconds=backoff.delay(attempts - 1))
            failed(row.row_id, attempts, now + wait, str(exc))
            log.warning("%s sink %s is down (%s); %s kept in the outbox, retry in %s", log_name, row.sink, exc, row.what, wait)
            continue
        delivered(row.row_id)
        sent += 1
    return sent


class Dispatcher:
    def __init__(self, repo: AlertRepo, sinks: Mapping[str, Sink], clock: Clock, retry_s: float = 60.0) -> None:
        self.repo = repo
        self.sinks = dict(sinks)
        self.clock = clock
        self.retry_s = retry_s
        self._lock = threading.Lock()

    def deliver_due(self) -> int:
        """Send due messages (``deliver_rows``); what a sink refuses waits with backoff."""
        with self._lock:
            now = self.clock()
            rows = (OutboxRow(r["id"], r["sink"], r["next_attempt_at"], r["attempts"],
                              json.loads(r["payload"])["alert"]["category"], r["payload"].encode("utf-8"),
                              f"{r['alert_id']}-{r['id']}", r["alert_id"]) for r in self.repo.due())
            return deliver_rows(rows, self.sinks, now, self.retry_s,
                                failed=lambda rid, n, at, err: self.repo.failed(rid, n, at, err),
                                delivered=lambda rid: self.repo.delivered(rid, self.clock()))
