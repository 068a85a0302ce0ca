"""Control's points in the store, for Grafana annotations: every proposal change and every work order change.

Best effort: control's SQLite file is the record, so a store that is down costs an annotation (logged),
never a change or a work order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime

from control.alerts.model import WorkOrder
from control.proposal import STATUSES, Proposal
from heatwatch.core import schema
from heatwatch.core.model import FieldValue, Point
from heatwatch.core.timeutil import to_ns
from heatwatch.infra.storage.base import Store, StoreError, StoreUnavailable

log = logging.getLogger("heatwatch.control")


def proposal_point(p: Proposal, at: datetime) -> Point:
    """One ``proposals`` point: tags station_id, kind; the numbers, status and reason as fields."""
    fields: dict[str, FieldValue] = {"proposal_id": p.proposal_id, "status": p.status, "reason": p.reason}
    for k in ("current_c", "proposed_c", "delta_c", "before_c", "after_c"):
        v = getattr(p, k)
        if v is not None:
            fields[k] = float(v)
    if p.outcome:
        fields["outcome"] = p.outcome
    # the nanosecond offset keeps same-instant events of one series apart (idempotent writes overwrite)
    ns = to_ns(at) + STATUSES.index(p.status) * 1000 + sum(p.proposal_id.encode()) % 997
    return Point(schema.PROPOSALS, {"station_id": p.station_id, "kind": p.kind}, fields, ns)


def alert_points(orders: Sequence[WorkOrder], at: datetime) -> list[Point]:
    """One ``alerts`` point per work order change, a nanosecond apart so that none overwrites another."""
    return [
        Point(
            schema.ALERTS,
            {"category": o.category, "community": o.community, "station_id": o.station_id},
            {"alert_id": o.alert_id, "home_id": o.home_id, "status": o.status, "content": o.content},
            to_ns(at) + i,
        )
        for i, o in enumerate(orders)
    ]


class PointWriter:
    """Writes control's points to the store; a failure is a warning, not an error."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def write(self, points: list[Point]) -> None:
        if not points:
            return
        try:
            self.store.write(points)
        except (StoreUnavailable, StoreError) as exc:
            log.warning("could not write %d control point(s) to the store: %s", len(points), exc)

    def proposals(self, ps: Iterable[Proposal], at: datetime | None = None) -> None:
        """The proposals' current status, at ``at`` (default: each one's creation) — one write."""
        self.write([proposal_point(p, at or p.created_at) for p in ps])

    def alerts(self, orders: Sequence[WorkOrder], at: datetime) -> None:
        self.write(alert_points(orders, at))
