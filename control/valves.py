"""Inter-home balancing (户间平衡; 000 section 五 "调整阀门开度"): the home valve settings that bring the warm
homes of a station down to its cold ones, so the supply that keeps the cold homes at the standard stops
overheating the rest.

Why: one supply temperature serves every home of a station, and the edge homes (top floor, ground floor,
gable end) lose 1.5–3.5 °C more than the middle homes. Heating the edge homes to the standard puts the middle
homes at 20–21 °C: heat that no family asked for. A valve per home entry (the building's 户用平衡阀) can take
that heat back; a supply strategy alone cannot (docs/CONTROL.md).

What is advised: one flow setting per class of homes — a building's homes at the same position (``Home.location``:
top, ground, gable, their combinations, middle). The sensor homes of a class stand for the whole class (about
half the homes have no sensor, and they sit where their neighbours sit); the crew sets every home of it.

The reading of the store is ``read_window``; the arithmetic (``advise``, pure) is, per class over the last
``valve_window_h``:

- the reference: the station's coldest class, but never under the standard + the model's margin (the model
  keeps its cold homes there; a class is never throttled below what the standard needs); bungalows and contract
  homes: their own standard + the margin, as it must be now to still hold at the design outdoor temperature
  (``own_reference``);
- a class over the reference by more than ``valve_deadband_c`` needs less radiator output: the loss to outdoors
  falls from (T − To) to (T_ref − To), and each unit of conductance gives (Ts − T_ref) instead of (Ts − T) —
  internal gains are left out, which throttles less than needed (the safe side; the next round corrects);
- the radiator's output against flow is the design's: G(m) = m·(1 − e^(−NTU/m)), m the share of design flow, NTU
  from the design supply, return and indoor temperatures; the flow that gives the wanted G is solved for;
- anchored: of the classes at the reference (within the deadband), the one that needs most is opened fully and
  every class scaled with it — the rounds never walk a whole station shut while its supply climbs;
- bounded: never under ``valve_min_flow`` of design flow, never more than ``valve_max_cut`` of a class's flow
  taken in one round, never throttled on fewer than ``valve_min_homes`` measured homes (one wrong sensor must not
  chill a class; a flagged sensor does not count at all); a class under the reference that was throttled is
  opened again (opening is never limited); changes under ``valve_min_change`` are not advised.

In-home measurements (入户测温, the measurement book's records, handed in as ``Spot``) count as measurements: a
class that one sensor home measures is throttled once a crew's calibrated thermometer, read in one of its homes after
the class's valves last settled, confirms it is warm too — in another home (the neighbours run as warm) or in the
sensor home itself (the sensor is not on a radiator or in the sun: the wrong sensor ``valve_min_homes`` guards
against). Any such reading under the reference keeps the class from being throttled, however many sensors say
otherwise. A job asks for the readings it lacks (``measure_homes``): one home of each warm class one sensor home
measures — a home without a sensor where the registry knows one — to be measured while the crew is there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

import numpy as np
import pandas as pd

from control.curve import design_for
from control.proposal import Proposal, new_proposal_id
from control.telemetry import read_frames
from heatwatch.core.config import Config, ControlSettings, StationDesign
from heatwatch.core.registry import Registry, Station
from heatwatch.infra.storage.base import Store

ClassKey = tuple[str, str, str]  # community, building, location


class Measured(NamedTuple):
    """One class as its sensor homes measured it. Bungalows and contract homes are classes of their own, each held to
    its own standard (``standard_c``: its day standard; None: the residential one), never an anchor for the station."""

    key: ClassKey
    homes: tuple[str, ...]
    mean_c: float
    kind: str = "residential"
    standard_c: float | None = None
    spots: tuple[float, ...] = ()  # in-home measurements (°C) of its homes since its valves last settled


class Spot(NamedTuple):
    """An in-home measurement (入户测温): a home's room mean as a crew measured it."""

    home_id: str
    measured_at: datetime
    temp_c: float


@dataclass(frozen=True, slots=True)
class ValveClass:
    """One class of homes: what its sensor homes measured and the flow advised for every home of it."""

    community: str
    building: str
    location: str  # top, ground, gable, top+gable, ground+gable, middle
    sensor_homes: tuple[str, ...]
    mean_c: float  # the sensor homes' mean over the window
    flow_now: float  # share of design flow it was set to (1.0: never throttled)
    flow: float  # advised share of design flow

    @property
    def key(self) -> ClassKey:
        return (self.community, self.building, self.location)

    @property
    def changed(self) -> bool:
        return self.flow != self.flow_now

    def to_json(self) -> dict[str, object]:
        return {"community": self.community, "building": self.building, "location": self.location,
                "sensor_homes": list(self.sensor_homes), "mean_c": round(self.mean_c, 2),
                "flow_now_pct": round(100 * self.flow_now), "flow_pct": round(100 * self.flow)}


def design_ntu(design: StationDesign) -> float:
    """The radiators' NTU at design flow: −ln(1 − (Ts − Tr)/(Ts − Ti)) at the design point (0.44 at 60/45/18)."""
    eff = (design.supply_design_c - design.return_design_c) / (design.supply_design_c - design.indoor_c)
    return -math.log1p(-min(max(eff, 1e-6), 1 - 1e-6))


def conductance(flow: np.ndarray, ntu: float) -> np.ndarray:
    """Radiator output per °C of supply over indoor at ``flow`` (share of design flow), in design units."""
    m = np.maximum(flow, 1e-9)
    return m * -np.expm1(-ntu / m)


def flow_for(ratio: np.ndarray, flow_now: np.ndarray, ntu: float, lo: float, hi: float = 1.0) -> np.ndarray:
    """The flow whose conductance is ``ratio`` times that at ``flow_now``, within [lo, hi] (bisection: G rises with m)."""
    want = ratio * conductance(flow_now, ntu)
    a, b = np.full_like(flow_now, lo), np.full_like(flow_now, hi)
    for _ in range(40):
        mid = 0.5 * (a + b)
        low = conductance(mid, ntu) < want
        a, b = np.where(low, mid, a), np.where(low, b, mid)
    return 0.5 * (a + b)


def own_reference(floor_c: float, ref_c: float, outdoor_c: float, design_outdoor_c: float) -> float:
    """Where a class held to a lower standard than the flats (a bungalow at 16 °C) is set now, so that it still holds
    ``floor_c`` at the design outdoor temperature. A home's excess over outdoors is a fixed share of the flats' once its
    valve is set (T − To = a·(Ts − To) at a given flow), so a class set to its floor in mild weather would fall under it
    as the cold comes (16.5 °C at −2 °C is 15 °C at −15 °C); the share that holds the floor at the design point is
    kept instead (17.1 °C at −2 °C for a 16.5 °C floor beside flats at 19 °C, with −9 °C design)."""
    if floor_c >= ref_c or ref_c - design_outdoor_c <= 0:
        return floor_c
    share = (floor_c - design_outdoor_c) / (ref_c - design_outdoor_c)
    return max(floor_c, outdoor_c + share * (ref_c - outdoor_c))


def advise(classes: Sequence[Measured], flows_now: Mapping[ClassKey, float],
           supply_c: float, outdoor_c: float, standard_c: float, c: ControlSettings,
           design: StationDesign, margin_c: float | None = None) -> tuple[float, list[ValveClass]]:
    """Pure: one station's classes (key, sensor homes, mean °C over the window) → the reference and each class's advice.

    ``supply_c``, ``outdoor_c``: the station's means over the same window; ``standard_c``: the standard the homes
    must reach in it (``standard_over``). Every class is returned, changed or not; ``ValveClass.changed`` tells which to set.
    """
    margin = c.model_margin_c if margin_c is None else margin_c
    if not classes:
        return float("nan"), []
    means = np.array([m.mean_c for m in classes], dtype=float)
    now = np.array([min(max(flows_now.get(m.key, 1.0), c.valve_min_flow), 1.0) for m in classes])
    res = np.array([m.kind == "residential" for m in classes])
    ref = max(float(means[res].min()), standard_c + margin) if res.any() else standard_c + margin
    refs = np.array([ref if m.kind == "residential" else
                     own_reference((standard_c if m.standard_c is None else m.standard_c) + margin, ref,
                                   outdoor_c, design.outdoor_design_c) for m in classes])
    flow = now.copy()
    span_ok = (supply_c - means > 1.0) & (means - outdoor_c > 1.0) & (supply_c - refs > 1.0) & (refs - outdoor_c > 1.0)
    if span_ok.any():
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # only the span_ok classes' ratios are used
            ratio = ((refs - outdoor_c) / (means - outdoor_c)) * ((supply_c - means) / (supply_c - refs))
        want = flow_for(np.where(span_ok, ratio, 1.0), now, design_ntu(design), c.valve_min_flow, hi=4.0)
        # anchored: of the classes at the reference (within the deadband), the one that needs most opens fully,
        # so the crews' rounds never walk the whole station shut while its supply climbs; a colder class (short
        # of flow: a balancing job) does not scale the others down, nor do the warm ones being throttled
        anchors = span_ok & res & (np.abs(means - ref) <= c.valve_deadband_c)
        top = float(want[anchors].max()) if anchors.any() else 1.0
        want = np.where(res, want / top, want) if top < 1.0 else want
        enough = np.array([confirmed(m, float(r), c) for m, r in zip(classes, refs, strict=True)])
        over = span_ok & enough & (means > refs + c.valve_deadband_c)
        want = np.where(over, np.maximum(want, now * (1.0 - c.valve_max_cut)), want)
        want = np.clip(want, c.valve_min_flow, 1.0)
        moves = span_ok & (np.abs(want - now) >= c.valve_min_change) & (over | (want > now))
        flow = np.where(moves, np.clip(np.round(want, 2), c.valve_min_flow, 1.0), now)
    out = [ValveClass(m.key[0], m.key[1], m.key[2], m.homes, m.mean_c, float(n), float(f))
           for m, n, f in zip(classes, now, flow, strict=True)]
    return ref, out


def confirmed(m: Measured, ref_c: float, c: ControlSettings) -> bool:
    """Enough measurements to throttle ``m``: its sensor homes and the in-home measurements that find its homes warm
    (over the reference + the deadband) make ``valve_min_homes``, and no in-home measurement is under the reference."""
    if any(t < ref_c for t in m.spots):
        return False
    return len(m.homes) + sum(t > ref_c + c.valve_deadband_c for t in m.spots) >= c.valve_min_homes


def with_spots(classes: Sequence[Measured], spots: Iterable[Spot], registry: Registry,
               settled_at: Mapping[ClassKey, datetime]) -> list[Measured]:
    """Pure: each class with the in-home measurements of its homes (a sensor home's too: a calibrated thermometer
    checks its sensor) taken at or after ``settled_at`` of the class (when its valves last settled; none: any), the
    latest per home."""
    latest: dict[str, Spot] = {}
    for sp in spots:
        if sp.home_id in registry.homes and (sp.home_id not in latest or sp.measured_at > latest[sp.home_id].measured_at):
            latest[sp.home_id] = sp
    by_class: dict[ClassKey, list[Spot]] = {}
    for sp in latest.values():
        h = registry.homes[sp.home_id]
        by_class.setdefault((h.community, h.building, h.location), []).append(sp)
    out = []
    for m in classes:
        since = settled_at.get(m.key)
        temps = tuple(sp.temp_c for sp in sorted(by_class.get(m.key, []), key=lambda x: x.home_id)
                      if since is None or sp.measured_at >= since)
        out.append(m._replace(spots=temps))
    return out


def measure_requests(w: Window, ref_c: float, registry: Registry, c: ControlSettings, community: str) -> list[dict[str, Any]]:
    """Pure: the in-home measurements a job asks its crew for — one home of each warm residential class of ``community``
    that is not yet confirmed (``confirmed``) and has no reading under the reference (a home the registry knows without
    a sensor reading in the window, else its sensor home): measured warm, it may be throttled next round."""
    out = []
    for m in w.classes:
        if (m.key[0] != community or m.kind != "residential" or m.mean_c <= ref_c + c.valve_deadband_c
                or confirmed(m, ref_c, c) or any(t < ref_c for t in m.spots)):
            continue
        others = sorted(h.home_id for h in registry.homes.values()
                        if (h.community, h.building, h.location) == m.key and h.home_id not in m.homes)
        if others or m.homes:
            out.append({"home_id": others[0] if others else sorted(m.homes)[0], "community": m.key[0],
                        "building": m.key[1], "location": m.key[2], "sensor_homes": list(m.homes),
                        "mean_c": round(m.mean_c, 2)})
    return out


@dataclass(frozen=True, slots=True)
class Window:
    """What one station's homes measured over the window: the classes with their sensor homes and means."""

    classes: list[Measured]
    supply_c: float  # NaN when the station did not report
    outdoor_c: float
    standard_c: float  # the highest standard of its hours (the day's)


def standard_over(cfg: Config, start: datetime, hours: int) -> float:
    """The highest residential standard of the hours from ``start`` (by the local clock): the day's, once the
    window holds a day hour. A class's mean over day and night must not be throttled under it — the homes barely
    follow the night's lower standard (their time constant is about a day), so their mean is their day."""
    s = cfg.standard
    vals = [s.day_min_c if s.day_start_hour <= (start + timedelta(hours=i)).astimezone(cfg.general.tz).hour
            < s.day_end_hour else s.night_min_c for i in range(hours)]
    return float(max(vals)) if vals else s.day_min_c


def classes_from_frame(indoor: pd.DataFrame, registry: Registry, homes: Iterable[str], min_hours: int,
                       cfg: Config | None = None) -> list[Measured]:
    """Pure: hourly means per home (columns ``home_id``, ``mean``) → each class's sensor homes and mean: the mean of
    its homes' means, each home counted once it reported ``min_hours`` hours (a home that says little says nothing).
    Bungalows and contract homes carry their day standard (``cfg``'s bungalow standard, the contract's)."""
    want = set(homes)
    if indoor.empty:
        return []
    df = indoor[indoor["home_id"].isin(want)]
    per_home = df.groupby("home_id")["mean"].agg(["mean", "count"])
    per_home = per_home[per_home["count"] >= min_hours]
    groups: dict[ClassKey, list[tuple[str, float]]] = {}
    for hid, row in per_home.iterrows():
        h = registry.homes[str(hid)]
        groups.setdefault((h.community, h.building, h.location), []).append((str(hid), float(row["mean"])))
    out = []
    for k, v in sorted(groups.items()):
        kinds = [registry.homes[h] for h, _ in v]
        kind = kinds[0].kind if len({x.kind for x in kinds}) == 1 else "residential"
        std: float | None = None
        if kind == "bungalow" and cfg is not None:
            std = cfg.standard.bungalow_min_c
        elif kind == "non_residential":
            contracts = [x.min_temp_c for x in kinds if x.min_temp_c is not None]
            std = max(contracts) if contracts else None
        out.append(Measured(k, tuple(h for h, _ in v), float(np.mean([m for _, m in v])), kind, std))
    return out


def read_window(store: Store, registry: Registry, cfg: Config, st: Station, now: datetime,
                distrusted: Iterable[str] = (), spots: Iterable[Spot] = (),
                settled_at: Mapping[ClassKey, datetime] | None = None) -> Window:
    """The station's last ``valve_window_h`` whole hours from the store: its homes by class (not the ``distrusted``
    ones: sensors analytics flagged), its supply and outdoor means (implausible indoor hours left out, as analytics
    leaves them); each class with the in-home measurements ``spots`` of its homes since ``settled_at``
    (``with_spots``)."""
    c = cfg.control
    end = now.replace(minute=0, second=0, microsecond=0)
    hours = max(1, int(c.valve_window_h))
    start = end - timedelta(hours=hours)
    skip = set(distrusted)
    homes = [h.home_id for h in registry.homes.values() if h.station_id == st.station_id and h.home_id not in skip]
    indoor, supply, outdoor = read_frames(store, registry, cfg, st, homes, start, end)

    def mean(df: pd.DataFrame) -> float:
        return float(df["mean"].mean()) if not df.empty else float("nan")

    classes = with_spots(classes_from_frame(indoor, registry, homes, max(1, hours // 2), cfg), spots, registry,
                         settled_at or {})
    return Window(classes, mean(supply), mean(outdoor), standard_over(cfg, start, hours))


def flows_set(done: Iterable[Proposal]) -> dict[ClassKey, float]:
    """Each class's flow share as the crews last set it: from the home-valve jobs recorded done, oldest first."""
    out: dict[ClassKey, float] = {}
    for p in sorted(done, key=lambda q: q.applied_at or q.created_at):
        for v in p.evidence.get("classes", []):
            out[(str(v["community"]), str(v["building"]), str(v["location"]))] = float(v["flow_pct"]) / 100.0
    return out


def settled_times(done: Iterable[Proposal], settle: timedelta) -> dict[ClassKey, datetime]:
    """When each class's valves, as the crews last set them, had settled (recorded done + ``settle``): an in-home
    measurement from before says nothing of the flow it has now."""
    out: dict[ClassKey, datetime] = {}
    for p in done:
        at = p.applied_at or p.created_at
        for v in p.evidence.get("classes", []):
            k = (str(v["community"]), str(v["building"]), str(v["location"]))
            if k not in out or at + settle > out[k]:
                out[k] = at + settle
    return out


def proposals(cfg: Config, st: Station, w: Window, flows_now: Mapping[ClassKey, float], now: datetime,
              margin_c: float | None = None, registry: Registry | None = None) -> list[Proposal]:
    """Pure: one home-valve job per community of ``st`` with a class to change (none when the station's supply or
    outdoor temperature is unknown). ``margin_c``: the margin the station's model aims with (default
    ``model_margin_c``). With ``registry``, a job also asks its crew for the in-home measurements that would let
    the next round throttle the warm classes one sensor home measures (``measure_requests``)."""
    c = cfg.control
    margin = c.model_margin_c if margin_c is None else margin_c
    if not (math.isfinite(w.supply_c) and math.isfinite(w.outdoor_c)) or not w.classes:
        return []
    ref, advice = advise(w.classes, flows_now, w.supply_c, w.outdoor_c, w.standard_c, c, design_for(cfg, st.station_id),
                         margin)
    kinds = {m.key: m.kind for m in w.classes}
    coldest = min(advice, key=lambda v: (kinds[v.key] != "residential", v.mean_c))
    out = []
    for community in st.communities:
        changed = [v for v in advice if v.community == community and v.changed]
        if not changed:
            continue
        cut = [v for v in changed if v.flow < v.flow_now]
        homes = [h for v in cut for h in v.sensor_homes]
        judged = cut or changed  # a job that only opens classes is judged on the homes it opened
        before = float(np.mean([v.mean_c for v in judged]))
        spots = {m.key: len(m.spots) for m in w.classes}
        steps = "; ".join(f"{v.building} {v.location} ({len(v.sensor_homes)} measured"
                          + (f" + {spots[v.key]} in-home" if spots.get(v.key) else "")
                          + f", {v.mean_c:.1f} °C): {100 * v.flow_now:.0f} → {100 * v.flow:.0f} %" for v in changed)
        measure = measure_requests(w, ref, registry, c, community) if registry is not None else []
        asks = ("; measure (入户测温) " + ", ".join(f"{r['home_id']} ({r['building']} {r['location']})" for r in measure)
                + ": each stands for a warm class one sensor home measures, throttled once a reading confirms it"
                if measure else "")
        reason = (f"{community}: set the home valves of {len(changed)} classes of homes to a share of design flow — "
                  f"{steps}. The station's coldest class ({coldest.building} {coldest.location}) ran "
                  f"{coldest.mean_c:.1f} °C, the reference is {ref:.1f} °C (never under the standard + "
                  f"{margin:g} °C); set every home of a class, with or without a sensor, and keep "
                  f"{st.name or st.station_id}'s supply temperature{asks}.")
        evidence: dict[str, Any] = {
            "reference_c": round(ref, 2), "standard_c": round(w.standard_c, 2), "supply_mean_c": round(w.supply_c, 2),
            "outdoor_mean_c": round(w.outdoor_c, 2), "window_h": c.valve_window_h,
            "coldest_class": coldest.to_json(), "classes": [v.to_json() for v in changed],
            "throttled_homes": homes, "homes_set": [h for v in changed for h in v.sensor_homes],
            "deadband_c": c.valve_deadband_c, "measure_homes": measure,
            "in_home_readings": {f"{v.building} {v.location}": len(next(m.spots for m in w.classes if m.key == v.key))
                                 for v in changed if spots.get(v.key)},
        }
        out.append(Proposal(
            proposal_id=new_proposal_id(), station_id=st.station_id, kind="home_valves", community=community,
            current_c=round(max(v.mean_c for v in changed), 2), proposed_c=None, delta_c=None, evidence=evidence,
            reason=reason, created_at=now, effective_at=now, targets=(community,),
            before_c=round(before, 2),
        ))
    return out


class _Finds(Protocol):
    def find(self, statuses: Iterable[str] | None = None, station_id: str | None = None,
             kinds: Iterable[str] | None = None, limit: int = 1000) -> list[Proposal]: ...


def set_times(proposals: _Finds) -> dict[str, datetime]:
    """When each station's home valves were last set (a home-valve job recorded done): the model reads its homes'
    response from then on (``control.mpc.read_series``)."""
    out: dict[str, datetime] = {}
    for p in proposals.find(statuses=["applied", "rechecked"], kinds=["home_valves"], limit=100_000):
        if p.applied_at is not None and (p.station_id not in out or p.applied_at > out[p.station_id]):
            out[p.station_id] = p.applied_at
    return out


def settled(proposals: _Finds) -> set[str]:
    """Stations whose last rechecked home-valve job was judged improved: their throttled homes held the standard 48 h
    on, so the model may aim closer (``control.mpc.margin_for``). A job judged not improved takes that back."""
    last: dict[str, Proposal] = {}
    for p in proposals.find(statuses=["rechecked"], kinds=["home_valves"], limit=100_000):
        at = p.applied_at or p.created_at
        if p.station_id not in last or at > (last[p.station_id].applied_at or last[p.station_id].created_at):
            last[p.station_id] = p
    return {sid for sid, p in last.items() if p.outcome == "improved"}
