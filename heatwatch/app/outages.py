"""Heat outages told to the homes they affect (停热通知, issue 16; 001: an outage over 8 h is announced).

- Planned: an operator announces the window at least ``[outages] notice_ahead_h`` (24 h) ahead, with the expected
  restoration time; ``--unplanned`` takes a shorter notice. The homes are told through the alert sinks (one
  ``outage_notice`` message through control's outbox, so a sink that is down gets it later), cold alerts stay quiet
  for them during the window (``ServiceState``), and a ``no_heat`` order on the desk carries the notice.
- Unplanned: control escalates a station fault past ``alerts.outage_notice_h`` (8 h) with ``notify_users``; the
  cycle turns that into the same notice to the station's homes (restoration time not known yet), once per outage.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from control.alerts.model import WorkOrder
from control.alerts.repo import AlertRepo
from control.alerts.rules import unit_of
from heatwatch.core.config import Config
from heatwatch.core.errors import UsageError
from heatwatch.core.registry import Home, Registry
from heatwatch.core.timeutil import rfc3339
from heatwatch.infra.servicedb import Outage, ServiceDb, new_outage_id

if TYPE_CHECKING:
    from dispatch.desk import Desk

BY_SYSTEM = "heatwatch"


def affected_homes(registry: Registry, station_id: str) -> list[Home]:
    """The homes a station heats: its own, and every home of the communities it serves."""
    st = registry.stations.get(station_id)
    comms = set(st.communities) if st else set()
    return sorted((h for h in registry.homes.values() if h.station_id == station_id or h.community in comms),
                  key=lambda h: h.home_id)


def notice(outage: Outage, homes: Iterable[Home], registry: Registry, cfg: Config, now: datetime) -> WorkOrder:
    """The message every sink gets: who is affected, from when, until when (expected), and why. Recorded already
    resolved: it is a notice to the homes, nothing for a crew to work on (the desk's order is the work)."""
    st = registry.stations.get(outage.station_id)
    name = st.name if st and st.name else outage.station_id
    tz = cfg.general.tz
    homes = list(homes)
    until = (f"expected restoration {rfc3339(outage.end, tz)}" if outage.end is not None
             else "restoration time to be announced")
    kind = "planned" if outage.planned else "unplanned"
    content = (f"停热通知 {name}: heat off from {rfc3339(outage.start, tz)}, {until} ({kind}) — {outage.reason}. "
               f"{len(homes)} homes told.")
    return WorkOrder(
        alert_id="N" + outage.outage_id, key=f"outage_notice:{outage.outage_id}", category="outage_notice",
        source=f"heatwatch outages ({outage.by})", address=name, contact="", home_id="",
        community=";".join(sorted({h.community for h in homes})), station_id=outage.station_id, content=content,
        evidence={
            "outage_id": outage.outage_id, "planned": outage.planned, "start": rfc3339(outage.start, tz),
            "expected_restoration": None if outage.end is None else rfc3339(outage.end, tz), "reason": outage.reason,
            "recipients": [{"home_id": h.home_id, "address": h.address, "contact": h.contact} for h in homes],
        },
        fault_category="停热通知 heat outage notice to users", responsible_unit=unit_of(cfg, st, outage.station_id),
        deadline=now, severity="urgent" if not outage.planned else "normal", created_at=now, status="resolved",
        notify_users=True, homes=tuple(h.home_id for h in homes), updated_at=now, resolved_at=now,
    )


@dataclass(frozen=True)
class Announced:
    """What an announcement did."""

    outage: Outage
    notice: WorkOrder
    order_id: str  # the desk's order carrying the notice ("" without a desk)


def _record(db: ServiceDb, alerts: AlertRepo, registry: Registry, cfg: Config, desk: Desk | None, *, station_id: str,
            start: datetime, end: datetime | None, reason: str, planned: bool, by: str, now: datetime,
            ref: str) -> Announced:
    homes = affected_homes(registry, station_id)
    oid = new_outage_id()
    draft = Outage(oid, station_id, start, end, reason, planned, by, tuple(h.home_id for h in homes), now)
    msg = notice(draft, homes, registry, cfg, now)
    order_id = ""
    if desk is not None:
        order_id = _desk_order(desk, draft, msg, registry, cfg, by, ref)
    alerts.record(opened=[msg], at=now)  # queued for every sink in one transaction; delivered by the dispatcher
    outage = db.add_outage(station_id, start, end, reason, planned, by, draft.homes, now, order_id=order_id, outage_id=oid)
    return Announced(outage, msg, order_id)


def _desk_order(desk: Desk, outage: Outage, msg: WorkOrder, registry: Registry, cfg: Config, by: str, ref: str) -> str:
    from dispatch.model import OrderInput

    st = registry.stations.get(outage.station_id)
    inp = OrderInput(
        source="outage", category="no_heat", station_id=outage.station_id, address=msg.address,
        community=msg.community.split(";")[0] if msg.community else "", content=msg.content,
        handling_unit=unit_of(cfg, st, outage.station_id), urgency="normal" if outage.planned else "urgent",
        expected_at=outage.end, ref=ref,
        evidence={"outage_id": outage.outage_id, "planned": outage.planned, "homes": len(outage.homes)},
    )
    order = desk.open(inp, by)
    evidence: dict[str, Any] = {"outage_id": outage.outage_id, "notice": msg.alert_id, "homes": list(outage.homes)}
    desk.note(order.order_id, by, f"outage notice queued to {len(outage.homes)} homes through the alert sinks", evidence)
    return order.order_id


def announce(cfg: Config, registry: Registry, db: ServiceDb, alerts: AlertRepo, *, station_id: str, start: datetime,
             end: datetime, reason: str, by: str, now: datetime, unplanned: bool = False,
             desk: Desk | None = None) -> Announced:
    """An operator's announcement; refused (UsageError, one line) when it cannot be told in time or makes no sense."""
    if registry.stations and station_id not in registry.stations:
        raise UsageError(f"--station {station_id!r} is not in the stations file (known: {', '.join(sorted(registry.stations))})")
    if not reason.strip():
        raise UsageError("--reason is empty: users are told why the heat is off")
    if not by.strip():
        raise UsageError("--by is empty: name the operator who announces it")
    if end <= start:
        raise UsageError(f"--to {rfc3339(end, cfg.general.tz)} is not after --from {rfc3339(start, cfg.general.tz)}")
    ahead = timedelta(hours=cfg.outages.notice_ahead_h)
    if not unplanned and start - now < ahead:
        raise UsageError(
            f"--from {rfc3339(start, cfg.general.tz)} is {max((start - now).total_seconds(), 0) / 3600:.1f} h ahead; a "
            f"planned outage is announced at least {cfg.outages.notice_ahead_h:g} h ahead ([outages] notice_ahead_h) — "
            "use --unplanned for a fault"
        )
    if end <= now:
        raise UsageError(f"--to {rfc3339(end, cfg.general.tz)} is already past")
    if not affected_homes(registry, station_id):
        raise UsageError(f"station {station_id!r} heats no home of the registry: nobody to tell")
    return _record(db, alerts, registry, cfg, desk, station_id=station_id, start=start, end=end, reason=reason.strip(),
                   planned=not unplanned, by=by.strip(), now=now, ref="")


def notify_unplanned(cfg: Config, registry: Registry, db: ServiceDb, alerts: AlertRepo, orders: Iterable[WorkOrder],
                     now: datetime, desk: Desk | None = None) -> list[Announced]:
    """Control's station faults that ask for a user notice (an outage past the 8 h rule) told to their homes, once
    per outage (keyed by the station and the start of its outage evidence)."""
    out = []
    for o in orders:
        if o.category != "station_fault" or not o.notify_users or not o.station_id:
            continue
        since_txt = o.evidence.get("outage_since")
        since = datetime.fromisoformat(since_txt) if since_txt else o.created_at
        ref = f"outage:{o.station_id}:{rfc3339(since)}"
        if any(x.station_id == o.station_id and x.start == since and not x.planned for x in db.outages()):
            continue
        if not affected_homes(registry, o.station_id):
            continue
        out.append(_record(db, alerts, registry, cfg, desk, station_id=o.station_id, start=since, end=None,
                           reason=f"station fault ({o.alert_id}): {o.content}", planned=False, by=BY_SYSTEM, now=now,
                           ref=ref))
    return out
