"""Sensor work orders (control.alerts) on the desk: each becomes a desk order, its recovery a note on it.

The bridge reads control's alert repository and never writes to it (control knows nothing of the desk). It
pulls rather than hooks the tracker, so every path that opens a work order (a cycle, a recheck, a store that
does not answer) reaches the desk, and a restart misses nothing: ``Desk.open`` is idempotent by ``ref`` (the
alert id). Recovery is evidence: the order stays on its lifecycle until a person closes it (issue 16).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from control.alerts.model import WorkOrder
from control.alerts.repo import AlertRepo
from dispatch.desk import Desk
from dispatch.model import Category, Order, OrderInput

ACTOR = "system:sensors"
# the alert's category → the desk's (silence is not an outage: telemetry goes to "other", 004's 24 h)
CATEGORY_MAP: dict[str, Category] = {
    "home_below_standard": "not_warm",
    "community_cold": "not_warm",
    "recheck_not_improved": "not_warm",
    "station_fault": "no_heat",
    "sensor_stale": "other",
    "telemetry_lost": "other",
    "telemetry_outage": "other",
    "broker_session_lost": "other",
}
RECOVERED = "sensor_recovered"
HISTORY = timedelta(hours=48)  # resolved work orders older than this that the desk never saw are not imported


def to_input(w: WorkOrder) -> OrderInput:
    return OrderInput(
        source="sensor", ref=w.alert_id, category=CATEGORY_MAP.get(w.category, "other"),
        address=w.address or w.community or w.station_id or "-", home_id=w.home_id, community=w.community,
        station_id=w.station_id or ("*" if not (w.home_id or w.community) else ""),  # "*": every station
        content=f"[{w.fault_category}] {w.content}", urgency="urgent" if w.severity == "urgent" else "normal",
        handling_unit=w.responsible_unit or w.station_id or "调度室 dispatch", phone=w.contact, received_at=w.created_at,
        evidence={"alert": {"alert_id": w.alert_id, "category": w.category, "key": w.key, "homes": list(w.homes),
                            "evidence": w.evidence, "deadline": w.deadline.isoformat()}},
    )


@dataclass
class SyncReport:
    opened: list[Order] = field(default_factory=list)
    recovered: list[Order] = field(default_factory=list)


class SensorBridge:
    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    def open(self, orders: Iterable[WorkOrder]) -> list[Order]:
        """A desk order per work order (the existing one when it was bridged before)."""
        out = []
        for w in orders:
            if self.desk.by_ref(w.alert_id) is None:
                out.append(self.desk.open(to_input(w), ACTOR))
        return out

    def recovered(self, orders: Iterable[WorkOrder], since: datetime | None = None) -> list[Order]:
        """A note on the desk order of each resolved work order, once; the order does not move. One resolved
        before the desk saw it is still a case to close — when it was opened after ``since`` (a first start
        does not import the history)."""
        out = []
        for w in orders:
            o = self.desk.by_ref(w.alert_id)
            if o is None:
                if since is not None and w.created_at < since:
                    continue
                o = self.desk.open(to_input(w), ACTOR)
            if any(n.get("evidence", {}).get("event") == RECOVERED for n in o.evidence.get("notes", [])):
                continue
            at = w.resolved_at.isoformat() if w.resolved_at else ""
            out.append(self.desk.note(o.order_id, ACTOR, f"sensor recovered ({w.fault_category}) at {at}: evidence only, "
                                      "the order stays open until it is reviewed, called back and closed",
                                      {"event": RECOVERED, "alert_id": w.alert_id, "resolved_at": at}))
        return out

    def sync(self, repo: AlertRepo, recent: int = 200) -> SyncReport:
        """Bridge every open work order and the ``recent`` latest resolved ones."""
        rep = SyncReport()
        rep.opened = self.open(a.order for a in repo.open_alerts())
        rep.recovered = self.recovered(repo.find(statuses=["resolved"], limit=recent), self.desk.clock() - HISTORY)
        return rep
