"""The report's figures, drawn with matplotlib's object API (no pyplot state), returned as PNG bytes."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from heatwatch.app.report.data import StationData

DPI = 100
MAX_BUILDINGS = 12
MAX_STATIONS = 8
MAX_LINES = 8  # communities drawn as lines of their own; a city is summarised (community_band, community_grid)
MAX_GRID_ROWS = 30  # communities in the community × hour heat map (the coldest)
HIGHLIGHT = 5  # coldest communities named in the band plot
STATUS_COLORS = {
    "open": "#d62728", "acked": "#ff7f0e", "resolved": "#2ca02c", "proposed": "#1f77b4", "approved": "#17becf",
    "rejected": "#7f7f7f", "applied": "#9467bd", "improved": "#2ca02c", "not_improved": "#d62728",
}


@dataclass(frozen=True)
class Png:
    data: bytes
    width: int
    height: int
    alt: str


def _png(fig: Figure, alt: str) -> Png:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    w, h = fig.get_size_inches() * DPI
    return Png(buf.getvalue(), round(w), round(h), alt)


def _time_axis(ax: object, tz: ZoneInfo) -> None:
    loc = mdates.AutoDateLocator(tz=tz)
    ax.xaxis.set_major_locator(loc)  # type: ignore[attr-defined]
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc, tz=tz))  # type: ignore[attr-defined]


def _utc(times: pd.Series) -> pd.Series:
    """Aware UTC timestamps; the axis formatter shows them in local time (``_time_axis``)."""
    return pd.to_datetime(times, utc=True)


def community_means(df: pd.DataFrame, standard_c: float, tz: ZoneInfo, title: str) -> Png:
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for community, g in df.sort_values("time").groupby("community", sort=True):
        ax.plot(_utc(g["time"]), g["value"], marker=".", markersize=3, linewidth=1.4, label=str(community))
    ax.axhline(standard_c, color="#d62728", linestyle="--", linewidth=1.2, label=f"{standard_c:g} °C standard")
    ax.set_ylabel("°C")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _time_axis(ax, tz)
    ax.legend(loc="best", fontsize=8, ncols=2)
    return _png(fig, "weighted community mean temperature against the 18 °C standard")


def community_band(df: pd.DataFrame, standard_c: float, tz: ZoneInfo, title: str, highlight: list[str]) -> Png:
    """Many communities at once: the spread across them hour by hour (min–max, 10–90 %, median) and the coldest
    few as named lines, so 40 or 400 communities read as one picture instead of a tangle of lines."""
    wide = df.pivot_table(index="time", columns="community", values="value", aggfunc="mean").sort_index()
    t = _utc(pd.Series(wide.index))
    q = wide.quantile([0.0, 0.1, 0.5, 0.9, 1.0], axis=1).T
    fig = Figure(figsize=(10, 4.6), layout="constrained")
    ax = fig.add_subplot()
    ax.fill_between(t, q[0.0], q[1.0], color="#c6dbef", alpha=0.6, linewidth=0, label=f"all {wide.shape[1]} communities")
    ax.fill_between(t, q[0.1], q[0.9], color="#6baed6", alpha=0.6, linewidth=0, label="10–90 % of communities")
    ax.plot(t, q[0.5], color="#08519c", linewidth=1.6, label="median community")
    for name in highlight:
        if name in wide.columns:
            ax.plot(t, wide[name], linewidth=1.2, marker=".", markersize=3, label=f"{name} (among the coldest)")
    ax.axhline(standard_c, color="#d62728", linestyle="--", linewidth=1.2, label=f"{standard_c:g} °C standard")
    ax.set_ylabel("°C")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _time_axis(ax, tz)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return _png(fig, "spread of the community means hour by hour, with the coldest communities named")


def community_grid(df: pd.DataFrame, standard_c: float, tz: ZoneInfo, rows: list[str]) -> Png:
    """Communities (rows, in the given order: coldest first) × hours, colour = community mean, centred on the standard."""
    wide = df.pivot_table(index="community", columns="time", values="value", aggfunc="mean").reindex(rows)
    times = pd.DatetimeIndex(_utc(pd.Series(wide.columns)))
    vals = wide.to_numpy(dtype=float)
    finite = vals[np.isfinite(vals)]
    lo = min(standard_c - 3, float(finite.min()) if finite.size else standard_c - 3)
    hi = max(standard_c + 4, float(finite.max()) if finite.size else standard_c + 4)
    fig = Figure(figsize=(10, 1.2 + 0.26 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    step = (times[1] - times[0]) if len(times) > 1 else pd.Timedelta(hours=1)
    x0, x1 = mdates.date2num(times[0].to_pydatetime()), mdates.date2num((times[-1] + step).to_pydatetime())
    image = ax.imshow(vals, cmap="RdBu_r", norm=TwoSlopeNorm(vmin=lo, vcenter=standard_c, vmax=hi), aspect="auto",
                      interpolation="nearest", extent=(x0, x1, len(rows), 0))
    ax.set_yticks(np.arange(len(rows)) + 0.5, rows, fontsize=7)
    _time_axis(ax, tz)
    cb = fig.colorbar(image, ax=ax, shrink=0.9, label="community mean °C")
    cb.ax.axhline(standard_c, color="black", linewidth=1)
    ax.set_title(f"The {len(rows)} coldest communities hour by hour (blue: under {standard_c:g} °C)", fontsize=10)
    return _png(fig, "heat map of the coldest communities' means, hour by hour")


def _building_grid(homes: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[str], int]:
    """Matrix (floor rows, top first) × horizontal position, temperatures and a below-standard mask."""
    floors = int(max(homes["floors"].max(), homes["floor"].max()))
    h = homes.copy()
    h["entrance"] = h["entrance"].fillna("").astype(str)
    if h["position"].notna().all():
        h["pos"] = h["position"].astype(int)
    else:  # no position column: order homes on each floor of each entrance by id
        h["pos"] = h.sort_values("home_id").groupby(["entrance", "floor"]).cumcount() + 1
    cols = sorted({(e, int(p)) for e, p in zip(h["entrance"], h["pos"], strict=True)})
    index = {c: i for i, c in enumerate(cols)}
    temps = np.full((floors, len(cols)), np.nan)
    below = np.zeros((floors, len(cols)), dtype=bool)
    rec: dict[Any, Any]
    for rec in h.to_dict("records"):
        row, col = floors - int(rec["floor"]), index[(rec["entrance"], int(rec["pos"]))]
        mean, threshold = float(rec["mean_c"]), float(rec["threshold_c"])
        temps[row, col] = mean
        below[row, col] = not math.isnan(mean) and mean < threshold
    multi = len({e for e, _ in cols}) > 1
    labels = [f"{e}-{p}" if multi and e else str(p) for e, p in cols]
    return temps, below, labels, floors


def building_heatmap(homes: pd.DataFrame, standard_c: float) -> tuple[Png | None, int]:
    """One panel per building: floor × position, colour = mean indoor temperature; red frame = below standard.

    Returns the image (None without homes) and how many buildings were left out (coldest shown first).
    """
    data = homes.dropna(subset=["floor"])
    if data.empty:
        return None, 0
    groups: dict[tuple[str, str], pd.DataFrame] = {
        (str(c), str(b)): g for (c, b), g in data.groupby(["community", "building"])
    }
    order = sorted(groups, key=lambda k: (-int((groups[k]["mean_c"] < groups[k]["threshold_c"]).sum()), k))
    shown, omitted = order[:MAX_BUILDINGS], max(0, len(order) - MAX_BUILDINGS)
    vals = data["mean_c"].dropna()
    vmin = min(standard_c - 4, float(vals.min()) if len(vals) else standard_c - 4)
    vmax = max(standard_c + 6, float(vals.max()) if len(vals) else standard_c + 6)
    norm = TwoSlopeNorm(vmin=vmin, vcenter=standard_c, vmax=vmax)
    ncols = min(3, len(shown))
    nrows = math.ceil(len(shown) / ncols)
    fig = Figure(figsize=(4.3 * ncols + 1.2, 3.6 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    image = None
    for ax, key in zip(axes.flat, shown, strict=False):
        temps, below, labels, floors = _building_grid(groups[key])
        image = ax.imshow(temps, cmap="RdBu_r", norm=norm, aspect="auto")
        ax.set_title(f"{key[0]} · {key[1]}", fontsize=10)
        ax.set_yticks(range(floors), [f"{floors - i}F" for i in range(floors)], fontsize=7)
        ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=90 if len(labels) > 8 else 0)
        for (i, j), t in np.ndenumerate(temps):
            if np.isnan(t):
                ax.text(j, i, "—", ha="center", va="center", fontsize=7, color="#999999")
                continue
            dark = abs(t - standard_c) > 0.6 * (vmax - standard_c if t > standard_c else standard_c - vmin)
            ax.text(j, i, f"{t:.1f}", ha="center", va="center", fontsize=7, color="white" if dark else "black")
            if below[i, j]:
                ax.add_patch(Rectangle((j - 0.46, i - 0.46), 0.92, 0.92, fill=False, edgecolor="#b00000", linewidth=2))
    for ax in list(axes.flat)[len(shown):]:
        ax.set_axis_off()
    if image is not None:
        cb = fig.colorbar(image, ax=axes, shrink=0.8, label="mean indoor °C")
        cb.ax.axhline(standard_c, color="black", linewidth=1)
    fig.suptitle("Building heat map: floor × position (top floor up, gable ends left/right; red frame = below standard)",
                 fontsize=10)
    return _png(fig, "building heat map, floor by position, cold homes framed in red"), omitted


def station_supply(stations: list[StationData], proposals: pd.DataFrame, tz: ZoneInfo) -> Png | None:
    if not stations:
        return None
    shown = stations[:MAX_STATIONS]
    fig = Figure(figsize=(10, 3.4 * len(shown)), layout="constrained")
    axes = fig.subplots(len(shown), 1, squeeze=False)[:, 0]
    for ax, st in zip(axes, shown, strict=True):
        df = st.hourly
        t = _utc(df["hour"])
        ax.plot(t, df["supply_c"], color="#d62728", linewidth=1.4, label="supply")
        ax.plot(t, df["return_c"], color="#1f77b4", linewidth=1.4, label="return")
        if df["curve_c"].notna().any():
            ax.plot(t, df["curve_c"], color="#d62728", linestyle="--", linewidth=1.2, label="curve supply")
            ax.plot(t, df["curve_return_c"], color="#1f77b4", linestyle="--", linewidth=1.0, label="curve return")
        if not proposals.empty and "station_id" in proposals.columns and "proposed_c" in proposals.columns:
            p = proposals[(proposals["station_id"] == st.station_id) & proposals["proposed_c"].notna()]
            if not p.empty:
                ax.scatter(_utc(p["time"]), p["proposed_c"].astype(float), marker="D", s=40, color="#ff7f0e",
                           zorder=5, label="proposed supply")
        if df["outdoor_c"].notna().any():
            ax2 = ax.twinx()
            ax2.plot(t, df["outdoor_c"], color="#7f7f7f", linewidth=1, alpha=0.7, label="outdoor")
            ax2.set_ylabel("outdoor °C", color="#7f7f7f")
            ax2.tick_params(axis="y", colors="#7f7f7f")
        ax.set_ylabel("°C")
        ax.set_title(f"{st.name} ({st.station_id}): {st.curve_note}" if st.name != st.station_id
                     else f"{st.station_id}: {st.curve_note}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
        _time_axis(ax, tz)
    return _png(fig, "station supply and return temperature against the heating curve")


def timeline(alerts: pd.DataFrame, proposals: pd.DataFrame, tz: ZoneInfo, period: tuple[datetime, datetime] | None = None
             ) -> Png | None:
    rows: list[tuple[str, Any, str]] = []
    for df, prefix, key in ((alerts, "alert", "category"), (proposals, "proposal", "kind")):
        rec: dict[Any, Any]
        for rec in df.to_dict("records"):
            rows.append((f"{prefix}: {rec.get(key) or '?'}", rec["time"], str(rec.get("status") or "")))
    if not rows:
        return None
    ev = pd.DataFrame(rows, columns=["lane", "time", "status"])
    lanes = sorted(ev["lane"].unique(), key=lambda s: (not s.startswith("alert"), s))
    fig = Figure(figsize=(10, 1.2 + 0.45 * len(lanes)), layout="constrained")
    ax = fig.add_subplot()
    y = {lane: i for i, lane in enumerate(lanes)}
    for status, g in ev.groupby("status"):
        ax.scatter(_utc(g["time"]), [y[lane] for lane in g["lane"]], s=60, marker="o",
                   color=STATUS_COLORS.get(str(status), "#8c564b"), label=str(status) or "?", zorder=3, edgecolor="black",
                   linewidth=0.5)
    ax.set_yticks(range(len(lanes)), lanes, fontsize=8)
    ax.set_ylim(-0.7, len(lanes) - 0.3)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, title="status")
    ax.set_title("Alerts to dispatch and supply proposals")
    if period is not None:  # the whole report period, so quiet days are visible as quiet
        ax.set_xlim(mdates.date2num(period[0]), mdates.date2num(period[1]))
    _time_axis(ax, tz)
    return _png(fig, "timeline of alerts and proposals")
