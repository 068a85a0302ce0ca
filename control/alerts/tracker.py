"""Dedupe, hysteresis and storm aggregation: pure planning of which work orders open, grow or resolve.

- One open work order per dedupe key (home + category, community, station, proposal).
- A temperature alert resolves only after the thing stayed above threshold + margin for the hold
  time (``recovering_since`` is the start of that run; any failing or unknown look restarts it).
- Storm: when ``storm_min_homes`` or more new cold homes appear in one community at once, or the
  community already has an open/new community incident, or its station has a fault, the homes go
  into that one incident. Sensors that need maintenance are grouped the same way, per community, with
  the homes listed per building.
- Escalation: an open order whose condition got worse (an outage past ``outage_notice_h`` now asks for a
  user notice, or it became urgent) is updated in place — an ``update`` event, a fresh deadline — not
  ignored because its key is taken.
- An ingestion stop (``telemetry_outage``) stands for every silent station and sensor: their own orders
  wait.
- New orders go out urgent first, deeper deficits first within a class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from control.alerts.model import HYSTERESIS, Candidate, WorkOrder
from control.alerts.rules import Observation, community_key, sensor_group_key, unit_of
from heatwatch.core.config import Config
from heatwatch.core.registry import Registry


@dataclass(frozen=True, slots=True)
class OpenAlert:
    order: WorkOrder
    recovering_since: datetime | None = None


@dataclass
class Plan:
    opened: list[WorkOrder] = field(default_factory=list)
    updated: list[WorkOrder] = field(default_factory=list)  # incidents that gained homes
    recovering: dict[str, datetime | None] = field(default_factory=dict)  # alert_id -> new recovering_since
    resolved: list[WorkOrder] = field(default_factory=list)
    escalated: list[WorkOrder] = field(default_factory=list)  # open orders whose condition got worse


def _deficit(c: Candidate | WorkOrder) -> float:
    return float(c.evidence.get("deficit_c") or 0.0)


def _sensor_group(community: str, members: list[Candidate], registry: Registry, cfg: Config) -> Candidate:
    """One maintenance order for many sensors of a community, with the homes per building."""
    sid = members[0].station_id
    st = registry.stations.get(sid)
    by_building = _buildings(members, registry)
    per = "; ".join(f"{b}: {len(hs)}" for b, hs in by_building.items())
    return Candidate(
        key=sensor_group_key(community), category="sensor_stale",
        content=(f"{community}: {len(members)} sensors need maintenance at once ({per}) — one visit plan; a building "
                 "whose sensors all went quiet points at its gateway or power: "
                 + "; ".join(f"{c.address or c.home_id} {c.evidence.get('finding')}" for c in members)),
        evidence={"buildings": by_building, "findings": {c.home_id: c.evidence.get("finding") for c in members}},
        station_id=sid, community=community, address=community, responsible_unit=unit_of(cfg, st, sid),
        deadline_h=cfg.alerts.home_check_h, homes=tuple(c.home_id for c in members), source="heatwatch sensor health",
    )


def _buildings(members: Sequence[Candidate] | Sequence[str], registry: Registry) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for m in members:
        hid = m if isinstance(m, str) else m.home_id
        home = registry.homes.get(hid)
        out.setdefault(home.building if home else "", []).append(hid)
    return {b: sorted(hs) for b, hs in sorted(out.items())}


def _storm_candidate(
    community: str, homes: list[Candidate], registry: Registry, cfg: Config, station_fault: bool
) -> Candidate:
    sid = homes[0].station_id
    st = registry.stations.get(sid)
    homes = sorted(homes, key=lambda c: -_deficit(c))  # deepest first
    listing = "; ".join(f"{c.address or c.home_id} {c.evidence.get('mean_c')} °C" for c in homes)
    first = f"station {st.name if st else sid} has a fault — fix it first" if station_fault else (
        "check the station and the network first"
    )
    return Candidate(
        key=community_key(community), category="community_cold",
        content=f"{community}: {len(homes)} homes cold at once — one incident, {first}: {listing}",
        evidence={"homes": {c.home_id: c.evidence for c in homes}, "storm": True, "station_fault": station_fault,
                  "deficit_c": max((_deficit(c) for c in homes), default=0.0)},
        station_id=sid, community=community, address=community, responsible_unit=unit_of(cfg, st, sid),
        deadline_h=cfg.alerts.urgent_response_h, severity="urgent", homes=tuple(c.home_id for c in homes),
    )


def plan(open_alerts: Sequence[OpenAlert], obs: Observation, registry: Registry, cfg: Config, now: datetime) -> Plan:
    out = Plan()
    by_key = {o.order.key: o for o in open_alerts}
    if any(c.category == "telemetry_outage" for c in obs.candidates):  # one order stands for every silent source
        silent = {c.key for c in obs.candidates if c.category == "telemetry_lost"}
        obs = Observation([c for c in obs.candidates if c.key not in silent],
                          {k: v for k, v in obs.healthy.items() if k not in silent})
    cands = {c.key: c for c in obs.candidates}
    # --- storm aggregation -------------------------------------------------------------------
    homes_by_comm: dict[str, list[Candidate]] = {}
    for c in obs.candidates:
        if c.category == "home_below_standard" and c.key not in by_key:
            homes_by_comm.setdefault(c.community, []).append(c)
    failing_comms = {c.community for c in obs.candidates if c.category == "home_below_standard"}
    faulty = {c.station_id for c in obs.candidates if c.category == "station_fault"} | {
        o.order.station_id for o in open_alerts if o.order.category == "station_fault"
    }
    for comm, homes in homes_by_comm.items():
        ckey = community_key(comm)
        incident = by_key.get(ckey)
        fault = homes[0].station_id in faulty
        if incident is None and ckey not in cands and len(homes) < cfg.alerts.storm_min_homes and not fault:
            continue
        for h in homes:
            cands.pop(h.key, None)
        ids = tuple(h.home_id for h in homes)
        if incident is not None:
            merged = tuple(dict.fromkeys([*incident.order.homes, *ids]))
            if merged != incident.order.homes:
                out.updated.append(replace(incident.order, homes=merged, updated_at=now))
        elif ckey in cands:
            c = cands[ckey]
            cands[ckey] = replace(c, homes=tuple(dict.fromkeys([*c.homes, *ids])))
        else:
            cands[ckey] = _storm_candidate(comm, homes, registry, cfg, fault)
    # --- sensors that need maintenance: grouped per community, like cold homes ------------------------
    sensors_by_comm: dict[str, list[Candidate]] = {}
    for c in obs.candidates:
        if c.category == "sensor_stale" and c.home_id and c.key not in by_key:
            sensors_by_comm.setdefault(c.community, []).append(c)
    for comm, members in sensors_by_comm.items():
        gkey = sensor_group_key(comm)
        group = by_key.get(gkey)
        if group is None and len(members) < cfg.alerts.storm_min_homes:
            continue
        for m in members:
            cands.pop(m.key, None)
        if group is not None:
            merged = tuple(dict.fromkeys([*group.order.homes, *(m.home_id for m in members)]))
            if merged != group.order.homes:
                ev = {**group.order.evidence, "buildings": _buildings(list(merged), registry),
                      "findings": {**group.order.evidence.get("findings", {}),
                                   **{m.home_id: m.evidence.get("finding") for m in members}}}
                out.updated.append(replace(group.order, homes=merged, evidence=ev, updated_at=now))
            cands[gkey] = replace(members[0], key=gkey)  # still failing: keeps the group open
        else:
            cands[gkey] = _sensor_group(comm, members, registry, cfg)
    # --- open new work orders; failing again restarts recovery; worse escalates ------------------
    for key, c in cands.items():
        existing = by_key.get(key)
        if existing is None:
            out.opened.append(WorkOrder.from_candidate(c, now))
            continue
        if existing.recovering_since is not None:
            out.recovering[existing.order.alert_id] = None
        order = existing.order
        if (c.notify_users and not order.notify_users) or (c.severity == "urgent" and order.severity != "urgent"):
            out.escalated.append(replace(
                order, notify_users=order.notify_users or c.notify_users, severity="urgent", content=c.content,
                evidence={**c.evidence, "escalated_at": now.isoformat()}, deadline=now + timedelta(hours=c.deadline_h),
                updated_at=now,
            ))
    out.opened.sort(key=lambda w: (w.severity != "urgent", -_deficit(w)))
    # --- recovery with hysteresis --------------------------------------------------------------
    hold = timedelta(hours=cfg.alerts.recover_hold_h)
    for key, o in by_key.items():
        if key in cands:
            continue
        healthy = obs.healthy.get(key)
        if o.order.category == "community_cold" and o.order.community in failing_comms:
            healthy = False  # member homes still cold
        if healthy is not True:
            if o.recovering_since is not None:
                out.recovering[o.order.alert_id] = None
            continue
        if o.order.category in HYSTERESIS and hold > timedelta(0):
            if o.recovering_since is None:
                out.recovering[o.order.alert_id] = now
                continue
            if now - o.recovering_since < hold:
                continue
        out.resolved.append(replace(o.order, status="resolved", resolved_at=now, updated_at=now))
    return out
