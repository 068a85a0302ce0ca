"""What is failing now, and what has visibly recovered: pure functions from analytics and station readings.

``Observation`` carries both: the candidates (failing conditions) and, per dedupe key, whether the
thing is *healthy* now (above threshold + margin for temperatures). A key in neither is unknown
(no data): an open alert neither resolves nor restarts its recovery clock on unknown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from analytics.results import AnalysisResult
from control.alerts.model import Candidate
from heatwatch.core.config import Config
from heatwatch.core.curve import design_for, heating_curve
from heatwatch.core.registry import Registry, Station


@dataclass(frozen=True, slots=True)
class StationReading:
    """A station's latest readings (None = not measured in the lookback)."""

    station_id: str
    last_time: datetime | None
    supply_c: float | None = None
    return_c: float | None = None
    supply_kpa: float | None = None
    return_kpa: float | None = None
    flow_m3h: float | None = None
    outdoor_c: float | None = None
    outage_since: datetime | None = None  # start of the current run of measured outage evidence (None: none now)


def outage_evidence(supply_c: float | None, return_c: float | None, flow_m3h: float | None, outdoor_c: float | None,
                    curve_c: float | None, cfg: Config) -> str | None:
    """What a measurement shows of a heat outage, or None. Only measurements count — silence is not evidence:
    the flow has stopped, or the supply has fallen to the return (no heat given off, well under the heating
    curve) or to the outdoor temperature."""
    a = cfg.alerts
    if flow_m3h is not None and flow_m3h <= a.no_flow_m3h:
        return f"no flow ({flow_m3h:g} m³/h)"
    if supply_c is None:
        return None
    if return_c is not None and supply_c - return_c < a.outage_spread_c and (curve_c is None or supply_c < curve_c - a.under_curve_c):
        return f"supply {supply_c:.1f} °C has fallen to the return {return_c:.1f} °C"
    if outdoor_c is not None and supply_c - outdoor_c < a.outage_spread_c:
        return f"supply {supply_c:.1f} °C has fallen to the outdoor temperature {outdoor_c:.1f} °C"
    return None


@dataclass
class Observation:
    candidates: list[Candidate] = field(default_factory=list)
    healthy: dict[str, bool] = field(default_factory=dict)  # key -> True healthy now / False failing


TELEMETRY_OUTAGE = "telemetry_outage"


def home_key(home_id: str) -> str:
    return f"home_below_standard:{home_id}"


def community_key(community: str) -> str:
    return f"community_cold:{community}"


def unit_of(cfg: Config, station: Station | None, station_id: str) -> str:
    if cfg.alerts.responsible_unit:
        return cfg.alerts.responsible_unit
    return station.name if station is not None and station.name else station_id


SENSOR_FINDINGS = ("no_sensor", "stale", "stuck", "jump", "warm", "implausible")  # each a maintenance job


def sensor_group_key(community: str) -> str:
    return f"sensor_stale:community:{community}"


def observe_analysis(result: AnalysisResult, registry: Registry, cfg: Config) -> Observation:
    """Homes below standard, cold communities, sensors that need maintenance, an ingestion stop; and which keys
    have recovered.

    Every home below standard is a "not warm" case (不热), urgent within ``urgent_response_h`` (004); its
    ``deficit_c`` (how far its coldest hour fell under its threshold) orders it among the others. When at
    least ``telemetry_outage_share`` of the sensors went silent at once (and ``storm_min_homes`` or more),
    readings stopped arriving — the collector or the store — which is one ``telemetry_outage`` order, not a
    ``sensor_stale`` order per home.
    """
    a = cfg.alerts
    obs = Observation()
    below = {hb.home_id: hb for hb in result.homes_below_standard}
    for hb in result.homes_below_standard:
        home = registry.homes.get(hb.home_id)
        sid = home.station_id if home else ""
        st = registry.stations.get(sid)
        deficit = round(hb.threshold_c - hb.min_hourly_c, 2)
        where = (home.address if home and home.address else f"{hb.community} {hb.building}")
        obs.candidates.append(
            Candidate(
                key=home_key(hb.home_id), category="home_below_standard",
                content=(
                    f"{where}: {hb.hours_below} h under {hb.threshold_c:.1f} °C ({hb.rule}), mean {hb.mean_c:.1f} °C, "
                    f"lowest hour {hb.min_hourly_c:.1f} °C ({deficit:.1f} °C under) since "
                    f"{hb.first_below.isoformat(timespec='minutes')}; not warm: respond within {a.urgent_response_h:g} h, "
                    f"measure at the home within {a.home_check_h:g} h (two staff, calibrated thermometer)."
                ),
                evidence={
                    "mean_c": round(hb.mean_c, 2), "min_hourly_c": round(hb.min_hourly_c, 2),
                    "threshold_c": hb.threshold_c, "hours_below": hb.hours_below, "longest_run_h": hb.longest_run_h,
                    "rule": hb.rule, "deficit_c": deficit, "deep": deficit >= a.urgent_below_c,
                },
                station_id=sid, community=hb.community, home_id=hb.home_id, address=where,
                contact=home.contact if home else "", responsible_unit=unit_of(cfg, st, sid),
                deadline_h=a.urgent_response_h, severity="urgent",
            )
        )
        obs.healthy[home_key(hb.home_id)] = False
    # recovery of homes not below: their window mean must clear the threshold by the margin
    for hid, mean in result.home_means_c.items():
        if hid in below:
            continue
        home = registry.homes.get(hid)
        threshold = home.min_temp_c if home and home.min_temp_c is not None else cfg.standard.day_min_c
        if home and home.kind == "bungalow" and home.min_temp_c is None:
            threshold = cfg.standard.bungalow_min_c
        obs.healthy[home_key(hid)] = mean >= threshold + a.recover_margin_c
    for cs in result.communities:
        key = community_key(cs.community)
        target = cs.target_c if cs.target_c is not None else cfg.standard.target_c
        if cs.status == "cold":
            st = next((s for s in registry.stations.values() if cs.community in s.communities), None)
            sid = st.station_id if st else ""
            mean_txt = (
                f"weighted mean {cs.weighted_mean_c:.1f} °C against {target:.1f} °C (edge homes carry "
                f"{(cs.edge_weight or 0) * 100:.0f} %)" if cs.weighted_mean_c is not None
                else "no residential homes (each held to its own standard)"
            )
            obs.candidates.append(
                Candidate(
                    key=key, category="community_cold",
                    content=(
                        f"{cs.community}: {mean_txt}, {cs.homes_below_standard} of {cs.homes_reporting} "
                        f"reporting homes below standard; check the station and the network."
                    ),
                    evidence={
                        "weighted_mean_c": None if cs.weighted_mean_c is None else round(cs.weighted_mean_c, 2),
                        "target_c": round(target, 2), "homes_below_standard": cs.homes_below_standard,
                        "homes_reporting": cs.homes_reporting, "edge_share": cs.edge_share,
                    },
                    station_id=sid, community=cs.community, address=cs.community,
                    responsible_unit=unit_of(cfg, st, sid), deadline_h=a.urgent_response_h, severity="urgent",
                )
            )
            obs.healthy[key] = False
        elif cs.weighted_mean_c is not None:
            obs.healthy[key] = cs.weighted_mean_c >= target + a.recover_margin_c
        elif cs.status == "ok":
            obs.healthy[key] = True
    # sensors: one ingestion stop, or maintenance per home (grouped per community by the tracker)
    scope = {c.community for c in result.communities}
    in_scope = [h for h in registry.homes.values() if h.community in scope] if scope else list(registry.homes.values())
    stale = {sf.home_id for sf in result.sensors if sf.finding == "stale"}
    never = {sf.home_id for sf in result.sensors if sf.finding == "no_sensor"}
    live = len({h.home_id for h in in_scope} - stale - never)
    if len(stale) >= a.storm_min_homes and len(stale) / max(len(stale) + live, 1) >= a.telemetry_outage_share:
        obs.candidates.append(Candidate(
            key=TELEMETRY_OUTAGE, category="telemetry_outage",
            content=(f"no readings from {len(stale)} of {len(stale) + live} sensors for at least "
                     f"{cfg.analytics.stale_after_h:g} h at once: readings stopped arriving — check the collector "
                     "(heatwatch status), the MQTT broker and the store. One order for all of them; the sensors "
                     "themselves are not the fault."),
            evidence={"silent_homes": len(stale), "homes_with_sensors": len(stale) + live,
                      "communities": sorted({sf.community for sf in result.sensors if sf.finding == "stale"})},
            responsible_unit=cfg.alerts.responsible_unit or "operations (collector and store)",
            deadline_h=a.station_response_h, severity="urgent", source="heatwatch sensor health",
        ))
        obs.healthy[TELEMETRY_OUTAGE] = False
        return obs  # the silent sensors' own orders neither open nor resolve meanwhile
    obs.healthy[TELEMETRY_OUTAGE] = True
    failing: dict[str, set[str]] = {}
    for sf in result.sensors:
        if sf.finding not in SENSOR_FINDINGS:
            continue
        key = f"sensor_stale:{sf.home_id}"
        if sf.home_id in failing.get(sf.community, ()):
            continue  # one order per home, naming its first finding
        failing.setdefault(sf.community, set()).add(sf.home_id)
        home = registry.homes.get(sf.home_id)
        sid = home.station_id if home else ""
        obs.candidates.append(
            Candidate(
                key=key, category="sensor_stale",
                content=f"{(home.address if home else '') or sf.home_id}: sensor {sf.finding} — {sf.detail}",
                evidence={"finding": sf.finding, "value": sf.value, "since": sf.since.isoformat() if sf.since else None,
                          "building": home.building if home else ""},
                station_id=sid, community=sf.community, home_id=sf.home_id, address=home.address if home else "",
                contact=home.contact if home else "", responsible_unit=unit_of(cfg, registry.stations.get(sid), sid),
                deadline_h=a.home_check_h, source="heatwatch sensor health",
            )
        )
        obs.healthy[key] = False
    bad = set().union(*failing.values()) if failing else set()
    for hid in result.home_means_c:
        if hid not in bad:
            obs.healthy[f"sensor_stale:{hid}"] = True
    for c in scope:
        obs.healthy[sensor_group_key(c)] = c not in failing
    return obs


def observe_stations(readings: Mapping[str, StationReading], registry: Registry, cfg: Config, now: datetime) -> Observation:
    """Station faults from what the stations measure; lost telemetry from their silence.

    - Silence (no reading for ``outage_after_min``) is ``telemetry_lost``: the link or the RTU, not a heat
      outage, and never a user notice; nothing else is judged from stale values.
    - A heat outage is measured evidence (``outage_evidence``) held for ``outage_after_min``; past
      ``outage_notice_h`` the order asks dispatch to announce it to the affected users.
    - Supply outside the station's range, far under the heating curve, or a pressure drop are faults too.
    """
    a = cfg.alerts
    obs = Observation()
    for sid, r in readings.items():
        st = registry.stations.get(sid)
        name = st.name if st and st.name else sid
        lost_key, key = f"telemetry_lost:{sid}", f"station_fault:{sid}"
        silent_min = None if r.last_time is None else (now - r.last_time).total_seconds() / 60
        if silent_min is None or silent_min > a.outage_after_min:
            last = "never" if r.last_time is None else r.last_time.isoformat(timespec="minutes")
            gone = "no telemetry received" if silent_min is None else f"no telemetry for {silent_min / 60:.1f} h"
            obs.candidates.append(Candidate(
                key=lost_key, category="telemetry_lost",
                content=(f"{name}: {gone} (last reading {last}) — the station's instruments, its RTU or the link are "
                         "down. Silence is not evidence of a heat outage: call the station, restore the link; no user "
                         "notice from this."),
                evidence={"last_reading": None if r.last_time is None else r.last_time.isoformat(),
                          "silent_h": None if silent_min is None else round(silent_min / 60, 2)},
                station_id=sid, address=name, responsible_unit=unit_of(cfg, st, sid), deadline_h=a.station_response_h,
                source="heatwatch station monitor",
            ))
            obs.healthy[lost_key] = False
            continue  # nothing known now: an open fault neither resolves nor grows on old values
        obs.healthy[lost_key] = True
        faults: list[str] = []
        evidence: dict[str, object] = {
            "supply_c": r.supply_c, "return_c": r.return_c, "supply_kpa": r.supply_kpa, "return_kpa": r.return_kpa,
            "flow_m3h": r.flow_m3h, "outdoor_c": r.outdoor_c, "last_reading": r.last_time.isoformat() if r.last_time else None,
        }
        curve = heating_curve(design_for(cfg, sid), r.outdoor_c).supply_c if r.outdoor_c is not None else None
        notify = False
        shown = outage_evidence(r.supply_c, r.return_c, r.flow_m3h, r.outdoor_c, curve, cfg)
        if shown is not None:
            since = r.outage_since or r.last_time
            hours = 0.0 if since is None else (now - since).total_seconds() / 3600
            if hours * 60 >= a.outage_after_min:
                notify = hours >= a.outage_notice_h
                faults.append(
                    f"heat outage: {shown} for {hours:.1f} h"
                    + (f" — over {a.outage_notice_h:g} h: announce to the affected users" if notify else "")
                )
                evidence["outage_h"] = round(hours, 2)
                evidence["outage_since"] = since.isoformat() if since else None
        if st is not None and r.supply_c is not None and not st.supply_min_c <= r.supply_c <= st.supply_max_c:
            faults.append(
                f"supply {r.supply_c:.1f} °C outside the station's range {st.supply_min_c:g}..{st.supply_max_c:g} °C — "
                "a sensor fault or a controller not holding its range: check on site; control makes no step from it"
            )
        if r.supply_c is not None and curve is not None:
            evidence["curve_supply_c"] = round(curve, 2)
            if r.supply_c < curve - a.under_curve_c:
                under = curve - r.supply_c
                faults.append(f"supply {r.supply_c:.1f} °C is {under:.1f} °C under the heating curve ({curve:.1f} °C)")
        if r.supply_kpa is not None and r.return_kpa is not None and r.supply_kpa - r.return_kpa < a.min_diff_kpa:
            faults.append(f"pressure drop: supply − return {r.supply_kpa - r.return_kpa:.0f} kPa < {a.min_diff_kpa:g} kPa")
        if faults:
            obs.candidates.append(
                Candidate(
                    key=key, category="station_fault", content=f"{name}: " + "; ".join(faults),
                    evidence=evidence, station_id=sid, address=name, responsible_unit=unit_of(cfg, st, sid),
                    deadline_h=a.station_response_h, severity="urgent", notify_users=notify,
                    homes=(), source="heatwatch station monitor",
                )
            )
            obs.healthy[key] = False
        else:
            obs.healthy[key] = True
    return obs


@dataclass(frozen=True, slots=True)
class Quiet:
    """Cold alerts that are not raised now, and why (issue 16): outside the heating season none at all; inside an
    announced outage none for the homes it was announced to (they know, and no heat is expected)."""

    season_off: bool = False
    homes: Mapping[str, str] = field(default_factory=dict)  # home_id -> why (the outage announced to it)
    stations: Mapping[str, str] = field(default_factory=dict)  # station_id -> why: down for announced work, no setpoint

    @property
    def active(self) -> bool:
        """Does this quiet any cold alert?"""
        return self.season_off or bool(self.homes)


COLD_CATEGORIES = ("home_below_standard", "community_cold")


def quieten(obs: Observation, quiet: Quiet | None, registry: Registry) -> Observation:
    """``obs`` without the cold candidates ``quiet`` covers. Their keys become unknown (neither failing nor healthy),
    so an order already open neither resolves nor restarts its recovery clock meanwhile. A community is quiet when
    every one of its registered homes is."""
    if quiet is None or not quiet.active:
        return obs
    quiet_comms: set[str] = set()
    if quiet.homes:
        by_comm: dict[str, list[str]] = {}
        for h in registry.homes.values():
            by_comm.setdefault(h.community, []).append(h.home_id)
        quiet_comms = {c for c, hs in by_comm.items() if all(hid in quiet.homes for hid in hs)}

    def hushed(c: Candidate) -> bool:
        if c.category not in COLD_CATEGORIES:
            return False
        if quiet.season_off:
            return True
        return c.home_id in quiet.homes if c.category == "home_below_standard" else c.community in quiet_comms

    gone = {c.key for c in obs.candidates if hushed(c)}
    if quiet.season_off:
        gone |= {k for k in obs.healthy if k.startswith(("home_below_standard:", "community_cold:"))}
    else:
        gone |= {home_key(h) for h in quiet.homes} | {community_key(c) for c in quiet_comms}
    return Observation([c for c in obs.candidates if c.key not in gone], {k: v for k, v in obs.healthy.items() if k not in gone})


def observe_collector_alarms(alarms: pd.DataFrame, cfg: Config) -> list[Candidate]:
    """One urgent order per alarm event a collector wrote (a lost broker session: readings may be lost).

    ``alarms``: the ``collector_alarms`` points (time, collector_id, alarm, count, detail). The key names the
    event's time, so each loss opens one order and an operator's resolution is not undone by the next cycle.
    """
    out: list[Candidate] = []
    if alarms.empty:
        return out
    for row in alarms.itertuples(index=False):
        if str(getattr(row, "alarm", "")) != "session_lost":
            continue
        cid = str(getattr(row, "collector_id", ""))
        at = pd.Timestamp(str(row.time)) if not isinstance(row.time, pd.Timestamp) else row.time
        out.append(Candidate(
            key=f"broker_session_lost:{cid}:{at.value}", category="broker_session_lost",
            content=(f"collector {cid}: the MQTT broker had lost its persistent session at {at.isoformat()} — readings "
                     "published while the collector was away may be lost. Check the broker's persistence "
                     "(persistence true, persistence_location writable by the broker user, autosave settings) and the "
                     "sensors' gaps for that time. " + str(getattr(row, "detail", "") or "")).strip(),
            evidence={"collector_id": cid, "at": at.isoformat(), "count": int(getattr(row, "count", 0) or 0)},
            responsible_unit=cfg.alerts.responsible_unit or "operations (MQTT broker)",
            deadline_h=cfg.alerts.station_response_h, severity="urgent", source="heatwatch collector",
        ))
    return out
