"""Assemble the report: read the store, draw the plots, write ``report.html`` into the output directory."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from html import escape
from pathlib import Path

import pandas as pd

from heatwatch.app.report import fonts, html, plots
from heatwatch.app.report.data import ReportData, load_report_data
from heatwatch.app.report.desk import desk_section
from heatwatch.app.report.energy import energy_section
from heatwatch.app.servicestate import season_note
from heatwatch.core.config import Config
from heatwatch.core.registry import Registry
from heatwatch.core.timeutil import rfc3339, utc_now
from heatwatch.infra.storage.base import Store

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
MAX_TABLE_ROWS = 60


def _latest_by(df: pd.DataFrame, key: str) -> pd.DataFrame:
    """The last state of each alert / proposal (status updates are later points of the same id)."""
    if df.empty:
        return df
    if key not in df.columns:
        return df.sort_values("time", ascending=False)
    return df.sort_values("time").groupby(key, dropna=False).tail(1).sort_values("time", ascending=False)


def _local(ts: object, cfg: Config) -> str:
    return rfc3339(pd.Timestamp(ts).floor("us").to_pydatetime(), cfg.general.tz).replace("T", " ")  # type: ignore[arg-type]


def _community_section(d: ReportData, cfg: Config) -> list[str]:
    out = ["<h2>Community averages (小区平均温度)</h2>", html.note("Source: " + d.community_source)]
    if d.community_means.empty:
        out.append(html.note("No community temperatures in this period."))
        return out
    standard, tz = cfg.standard.day_min_c, cfg.general.tz
    # coldest first: by the latest analytics result when there is one, else by the mean over the period
    period = d.community_means.groupby("community")["value"].mean()
    order = [str(c) for c in period.sort_values(kind="stable").index]
    caption = (f"dashed line: {standard:g} °C (06:00–21:00 standard). Times in {cfg.general.timezone}.")
    if len(order) <= plots.MAX_LINES:
        png = plots.community_means(d.community_means, standard, tz, "Weighted community mean vs the 18 °C standard")
        out.append(html.img(png, "Per-community weighted mean; " + caption, "community-means"))
    else:
        png = plots.community_band(d.community_means, standard, tz, "Weighted community means vs the 18 °C standard",
                                   order[: plots.HIGHLIGHT])
        out.append(html.img(png, f"{len(order)} communities: the band is their spread hour by hour, the lines the "
                                 f"{min(len(order), plots.HIGHLIGHT)} coldest over the period; " + caption, "community-means"))
        rows = order[: plots.MAX_GRID_ROWS]
        out.append(html.img(plots.community_grid(d.community_means, standard, tz, rows),
                            "Each row a community (coldest at the top), each column an hour.", "community-grid"))
        if len(order) > len(rows):
            out.append(html.note(f"{len(order) - len(rows)} warmer communities are not in the heat map; every community "
                                 "is in the table below."))
    if not d.community_latest.empty:
        cols = [c for c in ("community", "weighted_mean_c", "plain_mean_c", "homes_reporting", "homes_registered",
                            "homes_below_standard", "edge_share", "status") if c in d.community_latest.columns]
        latest = d.community_latest
        if len(latest) > MAX_TABLE_ROWS and "weighted_mean_c" in latest.columns:
            latest = latest.sort_values("weighted_mean_c", kind="stable")
        shown = latest.head(MAX_TABLE_ROWS)
        cold = list(shown.get("status", pd.Series(dtype=object)) == "cold")
        out.append(table_note(_capped("Latest analytics result per community", len(latest)),
                              html.table(shown[cols].itertuples(index=False), cols, cold)))
    else:
        g = d.community_means.sort_values("time").groupby("community")
        summary = [(c, float(v.iloc[-1]), float(v.min()), float(v.mean())) for c, v in g["value"]]
        if len(summary) > MAX_TABLE_ROWS:
            summary.sort(key=lambda s: s[3])
        shown_s = summary[:MAX_TABLE_ROWS]
        out.append(table_note(_capped("Per community over the period", len(summary)),
                              html.table(shown_s, ["community", "last °C", "lowest °C", "mean °C"],
                                         [s[1] < standard for s in shown_s])))
    return out


def _capped(caption: str, n: int) -> str:
    return caption if n <= MAX_TABLE_ROWS else f"{caption}: the {MAX_TABLE_ROWS} coldest of {n}"


def table_note(caption: str, table_html: str) -> str:
    return f"<h3>{escape(caption)}</h3>{table_html}"


def _ledger_section(d: ReportData, cfg: Config, registry: Registry) -> list[str]:
    """The visit ledger's community averages (回访台账: measurement records of the period) beside the sensors'."""
    from heatwatch.app.visits import ledger_in

    rows = ledger_in(cfg, registry, d.start, d.end)
    if not rows:
        return []
    sensor = d.community_means.groupby("community")["value"].mean() if not d.community_means.empty else None
    out = [(r.community, r.homes, f"{r.edge_share:.0%}", round(r.mean_c, 2),
            None if sensor is None or r.community not in sensor.index else round(float(sensor[r.community]), 2)) for r in rows]
    return ["<h2>Visit ledger vs sensors (回访台账)</h2>",
            html.note("Community average of the homes measured by hand in this period (measurement records in force: "
                      "each home's records averaged, then the homes) beside the sensors' weighted mean over the period."),
            html.table(out, ["community", "visited homes", "edge share", "ledger °C", "sensor weighted °C"],
                       [row[3] < cfg.standard.day_min_c for row in out])]


def _heatmap_section(d: ReportData, cfg: Config) -> list[str]:
    out = ["<h2>Building heat map (楼栋热力图)</h2>"]
    if d.homes.empty:
        out.append(html.note("No registry of homes (registry.homes_csv): the heat map needs floor and position of each home."))
        return out
    png, omitted = plots.building_heatmap(d.homes, cfg.standard.day_min_c)
    if png is None:
        out.append(html.note("No homes to draw."))
        return out
    out.append(html.img(png, "Mean indoor temperature of each home over the period. Rows are floors (top floor at the "
                             "top, ground floor at the bottom), columns positions along the building (gable ends at the "
                             "left and right). Red frame: below the home's standard.", "heatmap"))
    if omitted:
        out.append(html.note(f"{omitted} more building(s) not drawn; the coldest are shown first."))
        out.append(_buildings_table(d))
    below = d.homes[d.homes["mean_c"] < d.homes["threshold_c"]].sort_values("mean_c")
    if not below.empty:
        edge_share = float(below["edge"].mean())
        out.append(table_note(
            f"Homes below standard: {len(below)} ({edge_share:.0%} of them top/ground/gable homes)",
            html.table(below[["home_id", "community", "building", "entrance", "floor", "location", "mean_c",
                              "threshold_c"]].head(MAX_TABLE_ROWS).itertuples(index=False),
                       ["home", "community", "building", "entrance", "floor", "location", "mean °C", "standard °C"]),
        ))
    no_data = int(d.homes["mean_c"].isna().sum())
    if no_data:
        out.append(html.note(f"{no_data} registered home(s) sent no readings in this period (shown as —)."))
    return out


def _buildings_table(d: ReportData) -> str:
    """Every building summarised in one row (the heat map draws only the coldest): homes below standard first."""
    h = d.homes.assign(below=d.homes["mean_c"] < d.homes["threshold_c"], reporting=d.homes["mean_c"].notna())
    b = h.groupby(["community", "building"], sort=True).agg(
        homes=("home_id", "size"), reporting=("reporting", "sum"), below=("below", "sum"), mean_c=("mean_c", "mean"),
        coldest_c=("mean_c", "min"))
    b["share"] = (b["below"] / b["reporting"].where(b["reporting"] > 0)).fillna(0.0)
    b = b.reset_index().sort_values(["below", "mean_c"], ascending=[False, True], kind="stable")
    top = b.head(MAX_TABLE_ROWS)
    rows = [(c, bld, int(n), int(k), f"{sh:.0%}", float(m), float(lo)) for c, bld, n, k, sh, m, lo in zip(
        top["community"], top["building"], top["homes"].to_numpy(), top["below"].to_numpy(), top["share"].to_numpy(),
        top["mean_c"].to_numpy(), top["coldest_c"].to_numpy(), strict=True)]
    return table_note(_capped("Buildings by homes below standard", len(b)),
                      html.table(rows, ["community", "building", "homes", "below standard", "share", "mean °C",
                                        "coldest home °C"], [r[3] > 0 for r in rows]))


def _station_section(d: ReportData, cfg: Config) -> list[str]:
    out = ["<h2>Stations: supply vs heating curve (换热站供水温度)</h2>"]
    png = plots.station_supply(d.stations, d.proposals, cfg.general.tz)
    if png is None:
        out.append(html.note("No station readings in this period."))
        return out
    notes = sorted({s.curve_note for s in d.stations})
    out.append(html.img(png, "Hourly mean secondary supply and return; " + "; ".join(notes) + ".", "stations"))
    if any(s.hourly["curve_c"].isna().all() for s in d.stations):
        out.append(html.note("Heating curve not drawn for some stations: " + "; ".join(notes)))
    return out


def _timeline_section(d: ReportData, cfg: Config) -> list[str]:
    out = ["<h2>Alerts and proposals (告警与调节建议)</h2>"]
    png = plots.timeline(d.alerts, d.proposals, cfg.general.tz, (d.start, d.end))
    if png is None:
        out.append(html.note("No alerts or proposals in this period."))
        return out
    out.append(html.img(png, "Each point is an alert or a proposal state change, coloured by status.", "timeline"))
    alerts = _latest_by(d.alerts, "alert_id")
    if not alerts.empty:
        cols = [c for c in ("time", "category", "community", "station_id", "home_id", "status", "content") if c in alerts]
        shown = alerts[cols].head(MAX_TABLE_ROWS)
        rows = [[_local(r[0], cfg), *r[1:]] for r in shown.itertuples(index=False)]
        is_open = list(shown["status"] == "open") if "status" in cols else None
        out.append(table_note(f"Alerts ({len(alerts)})", html.table(rows, cols, is_open)))
    props = _latest_by(d.proposals, "proposal_id")
    if not props.empty:
        cols = [c for c in ("time", "proposal_id", "station_id", "kind", "status", "current_c", "proposed_c", "delta_c",
                            "reason") if c in props]
        rows = [[_local(r[0], cfg), *r[1:]] for r in props[cols].head(MAX_TABLE_ROWS).itertuples(index=False)]
        out.append(table_note(f"Proposals ({len(props)})", html.table(rows, cols)))
    return out


def _names(d: ReportData) -> str:
    parts = [*d.communities, *d.homes.get("building", pd.Series(dtype=object)).astype(str).tolist()]
    for df, col in ((d.alerts, "content"), (d.proposals, "reason")):
        if col in df.columns:
            parts += df[col].astype(str).tolist()
    return "".join(parts)


def build_report(store: Store, registry: Registry, cfg: Config, start: datetime, end: datetime, out_dir: Path,
                 communities: Sequence[str] | None = None, title: str = "heatwatch report") -> Path:
    """Write ``out_dir/report.html`` for [start, end) and return its path."""
    family = fonts.use_cjk_font()
    d = load_report_data(store, registry, cfg, start, end, communities)
    body: list[str] = []
    if family is None and fonts.needs_cjk(_names(d)):
        body.append(html.note("No Chinese (CJK) font is installed: Chinese names in the plots are drawn as empty boxes. "
                              + fonts.INSTALL_HINT + ".", warn=True))
    season = season_note(cfg, start, end)
    if season is not None:
        body.append(html.note(season, warn=True))
    body += [html.note(n) for n in d.notes]
    body += _community_section(d, cfg)
    body += _ledger_section(d, cfg, registry)
    body += _heatmap_section(d, cfg)
    body += _station_section(d, cfg)
    body += energy_section(store, registry, cfg, start, end)
    body += _timeline_section(d, cfg)
    body += desk_section(cfg, start, end)  # the service desk's monthly figures (no desk file: nothing)
    tz = cfg.general.tz
    scope = ", ".join(d.communities) if communities else f"all communities ({len(d.communities)})"
    meta = (f"Period {escape(rfc3339(start, tz))} – {escape(rfc3339(end, tz))} ({escape(cfg.general.timezone)}); "
            f"{escape(scope)}; generated {escape(rfc3339(utc_now(), tz))} from the {escape(store.name)} store.")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / REPORT_FILE
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html.page(title, meta, body), encoding="utf-8")
    tmp.replace(path)
    log.info("report written to %s", path)
    return path
