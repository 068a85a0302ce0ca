"""Setpoint commands from control, scheduled in simulated time.

A command (``heatwatch.infra.mqtt.setpoint``: the message control sends) takes effect at ``effective_at``
in simulated time; one that lies ahead waits. A newer command for the same station replaces a pending one
(the topic is retained: last one wins).
"""

from __future__ import annotations

from datetime import datetime

from heatwatch.infra.mqtt.setpoint import SetpointCommand


class SetpointSchedule:
    """Pending commands per station; ``due(now)`` hands back those whose time has come."""

    def __init__(self) -> None:
        self._pending: dict[str, SetpointCommand] = {}

    def add(self, cmd: SetpointCommand) -> None:
        self._pending[cmd.station_id] = cmd

    def due(self, now: datetime) -> list[SetpointCommand]:
        ready = [c for c in self._pending.values() if c.effective_at <= now]
        for c in ready:
            del self._pending[c.station_id]
        return sorted(ready, key=lambda c: (c.effective_at, c.station_id))

    def pending(self) -> list[SetpointCommand]:
        return list(self._pending.values())
