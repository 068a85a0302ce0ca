"""Visit plan (访民问暖, DOMAIN.md 000 section 五): which homes staff visit to measure by hand.

Rules: top, ground and gable homes make up at least ``edge_share_min`` (40 %) of the visits (about
that share unless flagged edge homes push it up); the visits spread over buildings and over
top / ground / gable / middle; homes flagged cold, stale or without a sensor come first. Edge homes are
residential ones: a bungalow or a shop is top and ground at once, but it does not fill the 40 % of
flats under the roof, over the basement and at the gables (it can still be visited, like a middle home).
Deterministic: the same registry and flags give the same plan (ties broken by home id), so a plan can be
re-printed and checked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from analytics.results import AnalysisResult
from heatwatch.core.registry import Home, Registry

# how strongly a flag pulls a home into the plan
FLAG_PRIORITY = {"cold": 3, "no_sensor": 2, "stale": 2}


@dataclass(frozen=True, slots=True)
class Visit:
    home_id: str
    building: str
    entrance: str
    floor: int
    location: str  # top / ground / gable / middle (or a combination such as top+gable)
    edge: bool
    reasons: tuple[str, ...]
    address: str = ""


@dataclass(frozen=True)
class VisitPlan:
    community: str
    size: int
    visits: list[Visit]
    edge_visits: int
    edge_share: float
    buildings: int  # buildings covered
    notes: list[str] = field(default_factory=list)


def flags_from(result: AnalysisResult | None) -> dict[str, tuple[str, ...]]:
    """cold (below standard), stale and no_sensor flags per home from an analysis."""
    out: dict[str, set[str]] = {}
    if result is None:
        return {}
    for h in result.homes_below_standard:
        out.setdefault(h.home_id, set()).add("cold")
    for f in result.sensors:
        if f.finding in ("stale", "no_sensor"):
            out.setdefault(f.home_id, set()).add(f.finding)
    return {k: tuple(sorted(v, key=lambda x: -FLAG_PRIORITY[x])) for k, v in out.items()}


def _edge(h: Home) -> bool:
    """An edge home for the 40 % rule: a residential top, ground or gable home."""
    return h.kind == "residential" and h.edge


def _location(h: Home) -> str:
    return h.location if h.kind == "residential" else h.kind


def _pick(homes: Sequence[Home], quota: int, prio: np.ndarray, taken_b: dict[str, int], taken_l: dict[str, int]) -> list[int]:
    """Greedy: highest flag priority, then the least-visited building, then the least-visited location, then id."""
    chosen: list[int] = []
    free = np.ones(len(homes), dtype=bool)
    b_names = [h.building for h in homes]
    l_names = [_location(h) for h in homes]
    ids = np.argsort(np.array([h.home_id for h in homes], dtype=object), kind="stable")
    rank_id = np.empty(len(homes), dtype=np.int64)
    rank_id[ids] = np.arange(len(homes))
    for _ in range(min(quota, len(homes))):
        nb = np.array([taken_b.get(b, 0) for b in b_names])
        nl = np.array([taken_l.get(x, 0) for x in l_names])
        key = np.lexsort((rank_id, nl, nb, -prio))  # last key sorts first
        i = int(next(k for k in key if free[k]))
        free[i] = False
        chosen.append(i)
        taken_b[b_names[i]] = taken_b.get(b_names[i], 0) + 1
        taken_l[l_names[i]] = taken_l.get(l_names[i], 0) + 1
    return chosen


def plan_visits(
    registry: Registry,
    community: str,
    size: int,
    flags: Mapping[str, Sequence[str]] | None = None,
    edge_share_min: float = 0.40,
) -> VisitPlan:
    homes = sorted(registry.homes_in(community), key=lambda h: h.home_id)
    if not homes:
        known = ", ".join(registry.communities()) or "none: the registry is empty"
        raise ValueError(f"community {community!r} is not in the registry (known: {known})")
    if size < 1:
        raise ValueError(f"--size must be at least 1, got {size}")
    if size > len(homes):
        raise ValueError(f"--size {size} is more than the {len(homes)} registered homes of {community}")
    flags = flags or {}
    edge = [h for h in homes if _edge(h)]
    middle = [h for h in homes if not _edge(h)]
    notes: list[str] = []
    want_edge = math.ceil(round(edge_share_min * size, 9))
    n_edge = min(len(edge), max(want_edge, size - len(middle)))
    if n_edge < want_edge:
        notes.append(f"only {len(edge)} edge homes registered: {n_edge} of {size} visits are edge homes "
                     f"(under {edge_share_min:.0%})")
    taken_b: dict[str, int] = {}
    taken_l: dict[str, int] = {}

    def prio(hs: Sequence[Home]) -> np.ndarray:
        return np.array([sum(FLAG_PRIORITY.get(f, 0) for f in flags.get(h.home_id, ())) for h in hs], dtype=np.int64)

    # 1. the edge minimum, from edge homes; 2. the rest from middle homes and flagged edge homes,
    #    flagged first, spread over buildings; 3. other edge homes only when middle homes run out
    picked_edge = [edge[i] for i in _pick(edge, n_edge, prio(edge), taken_b, taken_l)]
    first = {h.home_id for h in picked_edge}
    pool = [h for h in homes if h.home_id not in first and (not _edge(h) or flags.get(h.home_id))]
    picked_rest = [pool[i] for i in _pick(pool, size - n_edge, prio(pool), taken_b, taken_l)]
    first |= {h.home_id for h in picked_rest}
    if len(first) < size:
        last = [h for h in homes if h.home_id not in first]
        picked_rest += [last[i] for i in _pick(last, size - len(first), prio(last), taken_b, taken_l)]
    chosen = sorted([*picked_edge, *picked_rest], key=lambda h: (h.building, h.entrance, h.floor, h.home_id))
    visits = [
        Visit(h.home_id, h.building, h.entrance, h.floor, _location(h), _edge(h), tuple(flags.get(h.home_id, ())), h.address)
        for h in chosen
    ]
    n_e = sum(v.edge for v in visits)
    return VisitPlan(community, size, visits, n_e, n_e / size, len({v.building for v in visits}), notes)


def residential_communities(registry: Registry) -> list[str]:
    """Communities with at least one residential home: the season's plan covers every one (000 section 五)."""
    return sorted({h.community for h in registry.homes.values() if h.kind == "residential"})


def plan_season(
    registry: Registry,
    per_community: int,
    flags: Mapping[str, Sequence[str]] | None = None,
    edge_share_min: float = 0.40,
) -> list[VisitPlan]:
    """One plan per residential community, ``per_community`` visits each (all its homes when it has fewer)."""
    return [plan_visits(registry, c, min(per_community, len(registry.homes_in(c))), flags, edge_share_min)
            for c in residential_communities(registry)]


@dataclass(frozen=True, slots=True)
class LedgerAverage:
    """A community's average from the visit ledger (回访台账): the mean of its visited homes' temperatures."""

    community: str
    homes: int  # homes visited (each counted once: the mean of its records)
    mean_c: float
    edge_homes: int  # of them residential edge homes (the plan keeps these ≥ 40 %)

    @property
    def edge_share(self) -> float:
        return self.edge_homes / self.homes


def ledger_averages(registry: Registry, readings: Sequence[tuple[str, float]]) -> list[LedgerAverage]:
    """Per community: ``readings`` (home id, °C measured by hand) averaged per home, then over the homes."""
    per_home: dict[str, list[float]] = {}
    for hid, t in readings:
        if hid in registry.homes:
            per_home.setdefault(hid, []).append(t)
    by_comm: dict[str, list[str]] = {}
    for hid in per_home:
        by_comm.setdefault(registry.homes[hid].community, []).append(hid)
    out = []
    for comm, hids in sorted(by_comm.items()):
        means = [sum(per_home[h]) / len(per_home[h]) for h in hids]
        out.append(LedgerAverage(comm, len(hids), sum(means) / len(means), sum(_edge(registry.homes[h]) for h in hids)))
    return out
