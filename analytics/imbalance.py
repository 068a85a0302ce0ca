"""Spread inside a community: cold buildings beside warm ones point at hydraulic imbalance
(balance valves), a whole community under target points at a supply shortfall (raise supply).

Building and entrance means are plain means of the window temperatures of their reporting homes;
edge vs middle compares top/ground/gable homes with the others. Spreads and the cold/warm verdicts
(and the edge/middle means) use each home's temperature relative to its own standard, shifted onto
the residential scale, so a row of bungalows at 16.5 °C (standard 16 °C) is not a "cold building"
that asks for balancing.
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
    """``homes``: one row per reporting home with community, building, entrance, edge (bool), mean_c and
    optionally standard_c (the home's own standard over the hours it reported — 18 °C by day, 16 °C at night
    for a flat; default ``target_c``).

    Buildings/entrances with fewer than ``min_homes`` reporting homes are left out of the spreads.
    """
    out: list[Imbalance] = []
    if homes.empty:
        return out
    std = homes["standard_c"] if "standard_c" in homes.columns else target_c
    df = homes.assign(
        entrance_key=homes["building"].astype(str) + "/" + homes["entrance"].astype(str),
        adj_c=homes["mean_c"] + (target_c - std),  # on the residential scale: cold means under target_c
    )
    by_b = df.groupby(["community", "building"], sort=True)[["mean_c", "adj_c"]].agg(["mean", "count"])
    by_e = df.groupby(["community", "entrance_key"], sort=True)[["mean_c", "adj_c"]].agg(["mean", "count"])
    by_edge = df.groupby(["community", "edge"])["adj_c"].mean()
    for community in sorted(df["community"].unique()):
        b = by_b.loc[community]
        b = b[b[("mean_c", "count")] >= min_homes]
        e = by_e.loc[community]
        e = e[e[("mean_c", "count")] >= min_homes]
        bm = {str(k): float(v) for k, v in b[("mean_c", "mean")].items()}
        em = {str(k): float(v) for k, v in e[("mean_c", "mean")].items()}
        ba = {str(k): float(v) for k, v in b[("adj_c", "mean")].items()}
        ea = [float(v) for v in e[("adj_c", "mean")]]
        edge_mean = _opt(by_edge.get((community, True), float("nan")))
        mid_mean = _opt(by_edge.get((community, False), float("nan")))
        out.append(
            Imbalance(
                community=str(community),
                building_means_c=bm,
                entrance_means_c=em,
                building_spread_c=max(ba.values()) - min(ba.values()) if len(ba) >= 2 else None,
                entrance_spread_c=max(ea) - min(ea) if len(ea) >= 2 else None,
                edge_mean_c=edge_mean,
                middle_mean_c=mid_mean,
                edge_middle_gap_c=mid_mean - edge_mean if edge_mean is not None and mid_mean is not None else None,
                cold_buildings=tuple(k for k, v in ba.items() if v < target_c),
                warm_buildings=tuple(k for k, v in ba.items() if v > target_c + warm_margin_c),
            )
        )
    return out
