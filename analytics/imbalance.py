"""Spread inside a community: cold buildings beside warm ones point at hydraulic imbalance
(balance valves), a whole community under target points at a supply shortfall (raise supply).

Building and entrance means are plain means of the window temperatures of their reporting homes;
edge vs middle compares top/ground/gable homes with the others.
"""

from __future__ import annotations

import math

import pandas as pd

from analytics.results import Imbalance


def _opt(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def imbalance(
    homes: pd.DataFrame, target_c: float = 18.0, warm_margin_c: float = 2.0, min_homes: int = 1
) -> list[Imbalance]:
    """``homes``: one row per reporting home with community, building, entrance, edge (bool), mean_c.

    Buildings/entrances with fewer than ``min_homes`` reporting homes are left out of the spreads.
    """
    out: list[Imbalance] = []
    if homes.empty:
        return out
    df = homes.assign(entrance_key=homes["building"].astype(str) + "/" + homes["entrance"].astype(str))
    by_b = df.groupby(["community", "building"], sort=True)["mean_c"].agg(["mean", "count"])
    by_e = df.groupby(["community", "entrance_key"], sort=True)["mean_c"].agg(["mean", "count"])
    by_edge = df.groupby(["community", "edge"])["mean_c"].mean()
    for community in sorted(df["community"].unique()):
        b = by_b.loc[community]
        b = b[b["count"] >= min_homes]["mean"]
        e = by_e.loc[community]
        e = e[e["count"] >= min_homes]["mean"]
        bm = {str(k): float(v) for k, v in b.items()}
        em = {str(k): float(v) for k, v in e.items()}
        edge_mean = _opt(by_edge.get((community, True), float("nan")))
        mid_mean = _opt(by_edge.get((community, False), float("nan")))
        out.append(
            Imbalance(
                community=str(community),
                building_means_c=bm,
                entrance_means_c=em,
                building_spread_c=max(bm.values()) - min(bm.values()) if len(bm) >= 2 else None,
                entrance_spread_c=max(em.values()) - min(em.values()) if len(em) >= 2 else None,
                edge_mean_c=edge_mean,
                middle_mean_c=mid_mean,
                edge_middle_gap_c=mid_mean - edge_mean if edge_mean is not None and mid_mean is not None else None,
                cold_buildings=tuple(k for k, v in bm.items() if v < target_c),
                warm_buildings=tuple(k for k, v in bm.items() if v > target_c + warm_margin_c),
            )
        )
    return out
