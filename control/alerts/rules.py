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


@dataclass
class Observation:
    candidates: list[Candidate] = field(default_factory=list)
    healthy: dict[str, bool] = field(default_factory=dict)  # key -> True healthy now / False failing


def home_key(home_id: str) -> str:
    return f"home_below_standard:{home_id}"


def community_key(community: str) -> str:
    return f"community_cold:{community}"


def unit_of(cfg: Config, station: Station | None, station_id: str) -> str:
    if cfg.alerts.responsible_unit:
        return cfg.alerts.responsible_unit
    return station.name if station is not None and station.name else station_id


def observe_analysis(result: AnalysisResult, registry: Registry, cfg: Config) -> Observation:
    """Homes below standard, cold communities, stale sensors; and which keys have recovered."""
    a = cfg.alerts
    obs = Observation()
    below = {hb.home_id: hb for hb in result.homes_below_standard}
    for hb in result.homes_below_standard:
        home = registry.homes.get(hb.home_id)
        sid = home.station_id if home else ""
        st = registry.stations.get(sid)
        urgent = hb.min_hourly_c <= hb.threshold_c - a.urgent_below_c
        where = (home.address if home and home.address else f"{hb.community} {hb.building}")
        obs.candidates.append(
            Candidate(
                key=home_key(hb.home_id), category="home_below_standard",
                content=(
                    f"{where}: {hb.hours_below} h under {hb.threshold_c:.1f} °C ({hb.rule}), mean {hb.mean_c:.1f} °C, "
                    f"lowest hour {hb.min_hourly_c:.1f} °C since {hb.first_below.isoformat(timespec='minutes')}; "
                    "measure at the home (two staff, calibrated thermometer)."
                ),
                evidence={
                    "mean_c": round(hb.mean_c, 2), "min_hourly_c": round(hb.min_hourly_c, 2),
                    "threshold_c": hb.threshold_c, "hours_below": hb.hours_below, "longest_run_h": hb.longest_run_h,
                    "rule": hb.rule,
                },
                station_id=sid, community=hb.community, home_id=hb.home_id, address=where,
                contact=home.contact if home else "", responsible_unit=unit_of(cfg, st, sid),
                deadline_h=a.urgent_response_h if urgent else a.home_check_h, severity="urgent" if urgent else "normal",
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
    target = cfg.standard.target_c
    for cs in result.communities:
        key = community_key(cs.community)
        if cs.status == "cold" and cs.weighted_mean_c is not None:
            st = next((s for s in registry.stations.values() if cs.community in s.communities), None)
            sid = st.station_id if st else ""
            obs.candidates.append(
                Candidate(
                    key=key, category="community_cold",
                    content=(
                        f"{cs.community}: weighted mean {cs.weighted_mean_c:.1f} °C (edge homes carry "
                        f"{(cs.edge_weight or 0) * 100:.0f} %), {cs.homes_below_standard} of {cs.homes_reporting} "
                        f"reporting homes below standard; check the station and the network."
                    ),
                    evidence={
                        "weighted_mean_c": round(cs.weighted_mean_c, 2), "homes_below_standard": cs.homes_below_standard,
                        "homes_reporting": cs.homes_reporting, "edge_share": cs.edge_share,
                    },
                    station_id=sid, community=cs.community, address=cs.community,
                    responsible_unit=unit_of(cfg, st, sid), deadline_h=a.urgent_response_h, severity="urgent",
                )
            )
            obs.healthy[key] = False
        elif cs.weighted_mean_c is not None:
            obs.healthy[key] = cs.weighted_mean_c >= target + a.recover_margin_c
    stale_now = set()
    for sf in result.sensors:
        if sf.finding not in ("stale", "stuck", "no_sensor"):
            continue
        key = f"sensor_stale:{sf.home_id}"
        stale_now.add(sf.home_id)
        home = registry.homes.get(sf.home_id)
        sid = home.station_id if home else ""
        obs.candidates.append(
            Candidate(
                key=key, category="sensor_stale",
                content=f"{(home.address if home else '') or sf.home_id}: sensor {sf.finding} — {sf.detail}",
                evidence={"finding": sf.finding, "value": sf.value, "since": sf.since.isoformat() if sf.since else None},
                station_id=sid, community=sf.community, home_id=sf.home_id, address=home.address if home else "",
                contact=home.contact if home else "", responsible_unit=unit_of(cfg, registry.stations.get(sid), sid),
                deadline_h=a.home_check_h, source="heatwatch sensor health",
            )
        )
        obs.healthy[key] = False
    for hid in result.home_means_c:
        if hid not in stale_now:
            obs.healthy[f"sensor_stale:{hid}"] = True
    return obs


def observe_stations(readings: Mapping[str, StationReading], registry: Registry, cfg: Config, now: datetime) -> Observation:
    """Station faults: outage (no data / no flow), supply far under the curve, pressure drop."""
    a = cfg.alerts
    obs = Observation()
    for sid, r in readings.items():
        st = registry.stations.get(sid)
        name = st.name if st and st.name else sid
        faults: list[str] = []
        evidence: dict[str, object] = {
            "supply_c": r.supply_c, "return_c": r.return_c, "supply_kpa": r.supply_kpa, "return_kpa": r.return_kpa,
            "flow_m3h": r.flow_m3h, "outdoor_c": r.outdoor_c, "last_reading": r.last_time.isoformat() if r.last_time else None,
        }
        notify = False
        silent_min = None if r.last_time is None else (now - r.last_time).total_seconds() / 60
        if silent_min is None or silent_min > a.outage_after_min or (r.flow_m3h is not None and r.flow_m3h <= 0):
            hours = None if silent_min is None else silent_min / 60
            notify = hours is not None and hours >= a.outage_notice_h
            faults.append(
                "outage: " + ("no readings" if hours is None else f"no heat for {hours:.1f} h")
                + (f" — over {a.outage_notice_h:g} h, announce to the affected users" if notify else "")
            )
            evidence["outage_h"] = None if hours is None else round(hours, 2)
        if st is not None and r.supply_c is not None and not st.supply_min_c <= r.supply_c <= st.supply_max_c:
            faults.append(
                f"supply {r.supply_c:.1f} °C outside the station's range {st.supply_min_c:g}..{st.supply_max_c:g} °C — "
                "a sensor fault or a controller not holding its range: check on site; control makes no step from it"
            )
        if r.supply_c is not None and r.outdoor_c is not None:
            curve = heating_curve(design_for(cfg, sid), r.outdoor_c).supply_c
            evidence["curve_supply_c"] = round(curve, 2)
            if r.supply_c < curve - a.under_curve_c:
                under = curve - r.supply_c
                faults.append(f"supply {r.supply_c:.1f} °C is {under:.1f} °C under the heating curve ({curve:.1f} °C)")
        if r.supply_kpa is not None and r.return_kpa is not None and r.supply_kpa - r.return_kpa < a.min_diff_kpa:
            faults.append(f"pressure drop: supply − return {r.supply_kpa - r.return_kpa:.0f} kPa < {a.min_diff_kpa:g} kPa")
        key = f"station_fault:{sid}"
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
