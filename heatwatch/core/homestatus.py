"""Whether a home is heated on a given day: the registry's status, then its dated changes (a stop-heating request).

Only heated homes count in the community averages, the below-standard flags and the cold alerts
(issue 16): a home that stopped heating (报停), stands vacant or has not paid is not cold by the
company's fault. The changes are kept append-only (``heatwatch.infra.servicedb``); this module only
resolves them, so the rule is one pure function.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from heatwatch.core.registry import HOME_STATUSES, HomeStatus, Registry

__all__ = ["HOME_STATUSES", "STATUS_NAMES", "HomeStatus", "StatusChange", "heated_only", "status_on"]
STATUS_NAMES: dict[str, str] = {
    "heated": "供热 heated",
    "stopped": "报停 stopped",
    "vacant": "空置 vacant",
    "not_paid": "欠费 not paid",
}


@dataclass(frozen=True, slots=True)
class StatusChange:
    """From ``effective`` (a local date) on, ``home_id`` has ``status``; who recorded it and why."""

    home_id: str
    status: HomeStatus
    effective: date
    by: str
    reason: str = ""
    order_id: str = ""
    recorded_at: datetime | None = None
    seq: int = 0  # the table's row number: of two changes for the same day, the later recorded wins


def status_on(registry: Registry, changes: Iterable[StatusChange], day: date) -> dict[str, str]:
    """Every home's status on the local date ``day``: the latest change in effect by then, else the registry's."""
    out: dict[str, str] = {hid: h.status for hid, h in registry.homes.items()}
    latest: dict[str, StatusChange] = {}
    for c in changes:
        if c.effective > day or c.home_id not in out:
            continue
        prev = latest.get(c.home_id)
        if prev is None or (c.effective, c.seq) > (prev.effective, prev.seq):
            latest[c.home_id] = c
    out.update({hid: c.status for hid, c in latest.items()})
    return out


def heated_only(registry: Registry, statuses: Mapping[str, str]) -> Registry:
    """The registry with only the homes heated per ``statuses`` (stations kept): what analytics and alerts see."""
    if all(statuses.get(hid, "heated") == "heated" for hid in registry.homes):
        return registry
    return Registry({hid: h for hid, h in registry.homes.items() if statuses.get(hid, "heated") == "heated"}, registry.stations)
