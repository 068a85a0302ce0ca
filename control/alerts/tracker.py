"""Dedupe, hysteresis and storm aggregation: pure planning of which work orders open, grow or resolve.

- One open work order per dedupe key (home + category, community, station, proposal).
- A temperature alert resolves only after the thing stayed above threshold + margin for the hold
  time (``recovering_since`` is the start of that run; any failing or unknown look restarts it).
- Storm: when ``storm_min_homes`` or more new cold homes appear in one community at once, or the
  community already has an open/new community incident, or its station has a fault, the homes go
  into that one incident.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from control.alerts.model import HYSTERESIS, Candidate, WorkOrder
from control.alerts.rules import Observation, community_key, unit_of
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


def _storm_candidate(
    community: str, homes: list[Candidate], registry: Registry, cfg: Config, station_fault: bool
) -> Candidate:
    sid = homes[0].station_id
    st = registry.stations.get(sid)
    listing = "; ".join(f"{c.address or c.home_id} {c.evidence.get('mean_c')} °C" for c in homes)
    first = f"station {st.name if st else sid} has a fault — fix it first" if station_fault else (
        "check the station and the network first"
    )
    return Candidate(
        key=community_key(community), category="community_cold",
        content=f"{community}: {len(homes)} homes cold at once — one incident, {first}: {listing}",
        evidence={"homes": {c.home_id: c.evidence for c in homes}, "storm": True, "station_fault": station_fault},
        station_id=sid, community=community, address=community, responsible_unit=unit_of(cfg, st, sid),
        deadline_h=cfg.alerts.urgent_response_h, severity="urgent", homes=tuple(c.home_id for c in homes),
    )


def plan(open_alerts: Sequence[OpenAlert], obs: Observation, registry: Registry, cfg: Config, now: datetime) -> Plan:
    out = Plan()
    by_key = {o.order.key: o for o in open_alerts}
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
    # --- open new work orders; failing again restarts recovery ---------------------------------
    for key, c in cands.items():
        existing = by_key.get(key)
        if existing is None:
            out.opened.append(WorkOrder.from_candidate(c, now))
        elif existing.recovering_since is not None:
            out.recovering[existing.order.alert_id] = None
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
