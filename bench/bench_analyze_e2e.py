"""Benchmark: ``heatwatch analyze --json`` end to end against the store's own time for the same aggregation.

For each N (default 20,000 and 100,000 homes): N homes × 24 h of 10-minute readings (144 per home) are
written into a real influxd 1.6.7 (tools/servers.py ``Influxd``; line protocol built with numpy, POSTed in
batches of 500,000 lines) and into SQLite (the store's own schema, bulk-loaded). Then, per backend:

- **store time** — the aggregation the analysis needs, asked the way a person with curl would: one HTTP
  request for the whole city's hourly mean/min/max per home (``GROUP BY time(1h), home_id``) plus the last
  reading per home over the last 6 h (influxd, body read and discarded); the same two statements as SQL on
  one sqlite3 connection (rows fetched). ``store_mean_only_s`` is the issue's reference query (mean alone);
- **end to end** — ``heatwatch analyze --from … --to … --json`` as a subprocess (a fresh interpreter: imports,
  registry, queries, analysis, JSON on stdout), wall time and the peak RSS of that process (``wait4``);
- each measured ``--repeat`` times (best kept), store and end to end alternating so both see the same caches.

Also, once per N with influxd: ``heatwatch report`` over the same day (time, peak RSS, page size, figures)
and every InfluxQL panel query of deploy/grafana/dashboards/influxql/*.json, timed against the bench data
(``$timeFilter`` = the day, ``$__interval`` = 1m as Grafana picks for a day on a wide panel, ``$community`` /
``$station`` = one of each; derived measurements written by one untimed ``analyze --write`` first).

Goals: end to end ≤ 1.5× the store's time; peak RSS ≤ 2 × the hourly matrix (N × 24 × 8 bytes)
+ ~150 MB; 100,000 homes in ≤ 60 s with influxd. 1,000,000 homes (144 M points) is not run by default:
writing them into influxd alone takes ~6 minutes here and SQLite needs ~25 GB (``--homes 1000000`` works).

    .venv/bin/python -m bench.bench_analyze_e2e [--homes 20000 100000] [--backends influxdb1 sqlite]
        [--repeat 2] [--no-report] [--no-panels] [--keep DIR]

Progress goes to stderr; one JSON line per N to stdout, then a Markdown table (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import urllib3

from heatwatch.core.registry import Home, Station, write_homes, write_stations
from heatwatch.infra.storage.sqlite import SqliteStore
from tools.servers import Influxd

ROOT = Path(__file__).resolve().parents[1]  # the benchmarks run from here: python -m bench.<name>

TZ = "Asia/Shanghai"
DAY_START = datetime(2026, 1, 9, 16, 0, tzinfo=UTC)  # 2026-01-10 00:00 in Shanghai
HOURS = 24
STEP_S = 600
PER_COMMUNITY = 500
H_NS = 3600 * 10**9
LAST_RECENT = timedelta(hours=6)  # analytics.engine.RECENT_LAST
GOAL_RATIO = 1.5
GOAL_100K_S = 60.0
GOAL_RSS_BASE_MB = 150.0
DB = "bench"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- the city ----------------------------------------------------------------------------------------
def city(n: int, seed: int = 17) -> dict[str, Any]:
    """N homes in communities of 500: buildings of 6 floors × 2 entrances × 2 homes; per-home arrays for the readings."""
    i = np.arange(n)
    rng = np.random.default_rng(seed)
    k = i // PER_COMMUNITY
    within = i % PER_COMMUNITY
    entrance = (within % 24) // 12 + 1
    floor = (within % 12) // 2 + 1
    position = within % 2 + 1
    gable = ((entrance == 1) & (position == 1)) | ((entrance == 2) & (position == 2))
    edge = (floor == 1) | (floor == 6) | gable
    base = rng.normal(20.0, 1.0, n) - 0.8 * edge
    cold = rng.random(n) < 0.03
    base[cold] = rng.normal(16.0, 0.6, int(cold.sum()))  # 3 % of homes under the standard
    fate = rng.random(n)
    return {
        "n": n,
        "ids": np.array([f"H{x:07d}" for x in i], dtype=object),
        "community": np.array([f"小区{x:04d}" for x in k], dtype=object),
        "building": np.array([f"{x // 24 + 1}号楼" for x in within], dtype=object),
        "entrance": entrance, "floor": floor, "position": position, "gable": gable, "station": k,
        "base": base,
        "silent": fate < 0.005,  # never reported: no_sensor
        "stale": (fate >= 0.005) & (fate < 0.01),  # stopped 5 h before the end of the day: stale
        "phase_s": (i * 7919) % STEP_S,
    }


def write_registry(c: dict[str, Any], out: Path) -> tuple[Path, Path]:
    homes = [
        Home(str(c["ids"][x]), str(c["community"][x]), str(c["building"][x]), str(c["entrance"][x]), int(c["floor"][x]), 6,
             bool(c["gable"][x]), "residential", None, f"S{c['station'][x]:04d}", position=int(c["position"][x]))
        for x in range(c["n"])
    ]
    stations = [Station(f"S{k:04d}", f"{k:04d}号换热站", (f"小区{k:04d}",), 45.0, 85.0)
                for k in range(int(c["station"].max()) + 1)]
    hp, sp = out / "homes.csv", out / "stations.csv"
    write_homes(hp, homes)
    write_homes(out / "homes-100.csv", homes[:100])  # the process's own floor: imports, compiled kernels, no city
    write_stations(sp, stations)
    return hp, sp


def steps(c: dict[str, Any]) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Per 10-minute step: (step, rows reporting, their timestamps in ns, their temperatures in 0.01 °C)."""
    rng = np.random.default_rng(3)
    t0 = int(DAY_START.timestamp()) * 10**9
    n_steps = HOURS * 3600 // STEP_S
    stale_after = n_steps - 5 * 3600 // STEP_S
    for s in range(n_steps):
        local_h = (s * STEP_S // 3600) % 24
        swing = -0.6 if (local_h < 6 or local_h >= 21) else 0.0
        rows = np.flatnonzero(~c["silent"] & ~(c["stale"] & (s >= stale_after)))
        temp = c["base"][rows] + swing + rng.normal(0.0, 0.25, rows.size)
        cents = np.clip(np.round(temp * 100), 0, 4000).astype(np.int64)
        ts = t0 + s * STEP_S * 10**9 + c["phase_s"][rows].astype(np.int64) * 10**9
        yield s, rows, ts, cents


def write_influx(c: dict[str, Any], url: str, batch_lines: int = 500_000) -> tuple[int, float]:
    http = urllib3.PoolManager(maxsize=4, timeout=urllib3.Timeout(connect=5, read=600))
    http.request("POST", f"{url}/query", fields={"q": f'CREATE DATABASE "{DB}"'}, encode_multipart=False)
    prefix = np.array([f"indoor,building={b},community={m},home_id={h},source=sensor temp_c="
                       for h, m, b in zip(c["ids"], c["community"], c["building"], strict=True)], dtype=object)
    cents = np.array([f"{v // 100}.{v % 100:02d}" for v in range(4001)], dtype=object)

    def post(body: bytes) -> None:
        r = http.request("POST", f"{url}/write?db={DB}&precision=ns", body=body)
        if r.status != 204:
            raise RuntimeError(f"influxd refused a batch: {r.status} {r.data[:300]!r}")

    t = time.perf_counter()
    total, buf, size = 0, [], 0
    with ThreadPoolExecutor(2) as pool:
        futs: list[Any] = []
        for s, rows, ts, v in steps(c):
            lines = prefix[rows] + cents[v] + " " + ts.astype(str).astype(object)
            buf.append("\n".join(lines.tolist()))
            size += rows.size
            total += rows.size
            if size >= batch_lines:
                futs.append(pool.submit(post, "\n".join(buf).encode()))
                buf, size = [], 0
                while len(futs) > 2:
                    futs.pop(0).result()
                log(f"  influxd: {total:,} points written (step {s + 1}/{HOURS * 6})")
        if buf:
            futs.append(pool.submit(post, "\n".join(buf).encode()))
        for f in futs:
            f.result()
    # stations and weather, so the station panels and the report have something to draw
    other = []
    t0 = int(DAY_START.timestamp()) * 10**9
    for step in range(HOURS * 6):
        at = t0 + step * STEP_S * 10**9
        other.append(f"weather,site_id=default temp_c={-12 + 4 * np.sin(step / 23):.2f} {at}")
        for k in range(int(c["station"].max()) + 1):
            other.append(f"station,station_id=S{k:04d} supply_c={58 + k % 7:.1f},return_c={41 + k % 5:.1f},flow_m3h=120,"
                         f"supply_kpa=520,return_kpa=300,primary_supply_c=98,primary_return_c=55 {at}")
    post("\n".join(other).encode())
    return total, time.perf_counter() - t


def write_sqlite(c: dict[str, Any], path: Path) -> tuple[int, float]:
    """The store's own schema (SqliteStore creates it), bulk-loaded: indexes dropped, rows in key order, indexes rebuilt."""
    SqliteStore(path, "NORMAL").close()
    t = time.perf_counter()
    db = sqlite3.connect(str(path), isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    indexes = db.execute("SELECT name, sql FROM sqlite_master WHERE type='index' AND tbl_name='indoor' AND sql IS NOT NULL").fetchall()
    for name, _ in indexes:
        db.execute(f'DROP INDEX "{name}"')
    # rows per home (the primary key's order): collect per step, then sort once
    ids, comm, bld = c["ids"], c["community"], c["building"]
    parts_r, parts_t, parts_v = [], [], []
    for _, rows, ts, v in steps(c):
        parts_r.append(rows)
        parts_t.append(ts)
        parts_v.append(v)
    r, ts_all, v_all = np.concatenate(parts_r), np.concatenate(parts_t), np.concatenate(parts_v)
    order = np.lexsort((ts_all, r))
    r, ts_all, v_all = r[order], ts_all[order], v_all[order] / 100.0
    db.execute("BEGIN")
    chunk = 1_000_000
    for a in range(0, r.size, chunk):
        rr = r[a:a + chunk]
        db.executemany(
            'INSERT INTO indoor ("home_id", "community", "building", "source", "temp_c", "ts_ns") VALUES (?, ?, ?, ?, ?, ?)',
            zip(ids[rr].tolist(), comm[rr].tolist(), bld[rr].tolist(), ["sensor"] * rr.size, v_all[a:a + chunk].tolist(),
                ts_all[a:a + chunk].tolist(), strict=True),
        )
        log(f"  sqlite: {min(a + chunk, r.size):,} / {r.size:,} rows")
    db.execute("COMMIT")
    for _, sql in indexes:
        db.execute(sql)
    db.execute("ANALYZE")
    db.close()
    return int(r.size), time.perf_counter() - t


# --- the store's own time --------------------------------------------------------------------------
def influx_statements(start_ns: int, end_ns: int, ref_ns: int) -> dict[str, str]:
    w = f"time >= {start_ns} AND time < {end_ns}"
    return {
        "hourly": f'SELECT mean("temp_c"), min("temp_c"), max("temp_c") FROM "indoor" WHERE {w} '
                  'GROUP BY time(1h), "home_id" fill(none)',
        "last": f'SELECT last("temp_c") FROM "indoor" WHERE time >= {ref_ns - int(LAST_RECENT.total_seconds()) * 10**9} '
                f'AND time < {ref_ns} AND "source" = \'sensor\' GROUP BY "home_id"',
        "mean_only": f'SELECT mean("temp_c") FROM "indoor" WHERE {w} GROUP BY time(1h), "home_id" fill(none)',
    }


def influx_time(url: str, q: str) -> tuple[float, int]:
    """One /query as curl sends it (chunked JSON, epoch=ns), the whole body read; (seconds, bytes)."""
    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=900))
    t = time.perf_counter()
    r = http.request("POST", f"{url}/query", fields={"db": DB, "q": q, "epoch": "ns", "chunked": "true"},
                     encode_multipart=False, preload_content=False)
    size = sum(len(b) for b in r.stream(1 << 20))
    took = time.perf_counter() - t
    r.release_conn()
    if r.status != 200:
        raise RuntimeError(f"influxd answered {r.status}")
    return took, size


def sqlite_statements(start_ns: int, end_ns: int, ref_ns: int) -> dict[str, tuple[str, list[Any]]]:
    hourly = ('SELECT "home_id" AS k, ((ts_ns - 0) / 3600000000000) * 3600000000000 + 0 AS h, AVG("temp_c"), MIN("temp_c"), '
              'MAX("temp_c") FROM "indoor" WHERE ts_ns >= ? AND ts_ns < ? AND "temp_c" IS NOT NULL GROUP BY k, h')
    last = ('SELECT "home_id" AS k, MAX(ts_ns) AS t, "temp_c" AS v FROM "indoor" WHERE ts_ns >= ? AND ts_ns < ? AND '
            '"source" IN (?) AND "temp_c" IS NOT NULL GROUP BY k')
    mean = ('SELECT "home_id" AS k, ((ts_ns - 0) / 3600000000000) * 3600000000000 + 0 AS h, AVG("temp_c") FROM "indoor" '
            'WHERE ts_ns >= ? AND ts_ns < ? AND "temp_c" IS NOT NULL GROUP BY k, h')
    recent = ref_ns - int(LAST_RECENT.total_seconds()) * 10**9
    return {"hourly": (hourly, [start_ns, end_ns]), "last": (last, [recent, ref_ns, "sensor"]),
            "mean_only": (mean, [start_ns, end_ns])}


def sqlite_time(path: Path, sql: str, params: list[Any]) -> tuple[float, int]:
    db = sqlite3.connect(str(path))
    t = time.perf_counter()
    rows = db.execute(sql, params).fetchall()
    took = time.perf_counter() - t
    db.close()
    return took, len(rows)


# --- heatwatch as a user runs it ---------------------------------------------------------------------
def heatwatch_env(tmp: Path, homes_csv: Path, stations_csv: Path, backend: str, url: str, sqlite_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEATWATCH_")}
    env.update({
        "HEATWATCH_GENERAL_TIMEZONE": TZ, "HEATWATCH_GENERAL_DATA_DIR": str(tmp / "data"),
        "HEATWATCH_GENERAL_LOG_LEVEL": "WARNING",
        "HEATWATCH_REGISTRY_HOMES_CSV": str(homes_csv), "HEATWATCH_REGISTRY_STATIONS_CSV": str(stations_csv),
        "HEATWATCH_STORAGE_BACKEND": backend, "HEATWATCH_SQLITE_PATH": str(sqlite_path),
    })
    if url:
        env.update({"HEATWATCH_INFLUXDB1_URL": url, "HEATWATCH_INFLUXDB1_DATABASE": DB, "HEATWATCH_INFLUXDB1_TIMEOUT_S": "300"})
    return env


@dataclass
class Run:
    """One measured ``heatwatch`` process: wall seconds, peak RSS, its own CPU, and influxd's CPU meanwhile."""

    wall_s: float
    peak_rss_mb: float
    cpu_s: float
    server_cpu_s: float


def proc_cpu_s(pid: int | None) -> float:
    """utime + stime of a process (influxd), from /proc; 0 without one."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_measured(args: list[str], env: dict[str, str], out: Path, server_pid: int | None = None) -> Run:
    """Run ``heatwatch ARGS`` and measure it. Fails loudly on a non-zero exit.

    Peak RSS is the kernel's high-water mark of the child (``VmHWM``), read every 20 ms until it exits: wait4's
    ru_maxrss would count this bench's own memory, which a forked child carries until its exec. CPU is wait4's.
    """
    server0 = proc_cpu_s(server_pid)
    with out.open("wb") as fh, (out.with_suffix(".err")).open("wb") as err:
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "heatwatch", *args], env=env, stdout=fh, stderr=err, cwd=ROOT)
        peak_kb = 0
        status = Path(f"/proc/{proc.pid}/status")
        while True:
            try:
                hwm = re.search(r"VmHWM:\s+(\d+)", status.read_text())
            except OSError:
                hwm = None
            if hwm:
                peak_kb = max(peak_kb, int(hwm.group(1)))
            pid, code, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.02)
        took = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(code)
    if proc.returncode != 0:
        raise RuntimeError(f"heatwatch {' '.join(args)} exited {proc.returncode}: "
                           f"{out.with_suffix('.err').read_text(errors='replace')[-2000:]}")
    return Run(took, peak_kb / 1024, usage.ru_utime + usage.ru_stime, proc_cpu_s(server_pid) - server0)


def window_args() -> list[str]:
    end = DAY_START + timedelta(hours=HOURS)
    return ["--from", DAY_START.isoformat(), "--to", end.isoformat()]


# --- Grafana panels --------------------------------------------------------------------------------
def panel_queries() -> list[tuple[str, str, str]]:
    out = []
    for f in sorted(glob.glob(str(ROOT / "deploy/grafana/dashboards/influxql/*.json"))):
        d = json.loads(Path(f).read_text(encoding="utf-8"))
        for p in d.get("panels", []):
            for t in p.get("targets", []):
                if t.get("query"):
                    out.append((Path(f).stem, str(p.get("title")), str(t["query"])))
    return out


def time_panels(url: str, start_ns: int, end_ns: int, community: str, station: str, repeat: int) -> list[dict[str, Any]]:
    rows = []
    for dash, title, q in panel_queries():
        text = (q.replace("$timeFilter", f"time >= {start_ns} AND time < {end_ns}").replace("$__interval", "1m")
                .replace("$community", re.escape(community)).replace("$station", re.escape(station)))
        best, size = min(influx_time(url, text) for _ in range(repeat))
        rows.append({"dashboard": dash, "panel": title, "s": round(best, 3), "bytes": size, "query": q})
    return sorted(rows, key=lambda r: -float(r["s"]))


# --- one N -------------------------------------------------------------------------------------------
def bench_n(n: int, backends: list[str], repeat: int, report: bool, panels: bool, keep: Path | None) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"heatwatch-e2e-{n}-", dir=keep))
    influx: Influxd | None = None
    result: dict[str, Any] = {"bench": "analyze_e2e", "homes": n, "hours": HOURS, "readings_per_home": HOURS * 6,
                              "matrix_mb": round(n * HOURS * 8 / 2**20, 2)}
    try:
        c = city(n)
        log(f"N={n:,}: registry")
        homes_csv, stations_csv = write_registry(c, tmp)
        start_ns = int(DAY_START.timestamp()) * 10**9
        end_ns = start_ns + HOURS * H_NS
        ref_ns = end_ns
        sqlite_path = tmp / "heatwatch.sqlite"
        url = ""
        if "influxdb1" in backends:
            influx = Influxd(tmp / "influxd").start()
            url = influx.url
            log(f"N={n:,}: writing into influxd")
            points, took = write_influx(c, url)
            result["influxdb1_write"] = {"points": points, "s": round(took, 1), "points_per_s": round(points / took)}
        if "sqlite" in backends:
            log(f"N={n:,}: loading SQLite")
            n_rows, took = write_sqlite(c, sqlite_path)
            result["sqlite_load"] = {"rows": n_rows, "s": round(took, 1), "mb": round(sqlite_path.stat().st_size / 2**20)}
        env_base = {b: heatwatch_env(tmp, homes_csv, stations_csv, b, url, sqlite_path) for b in backends}
        for b in backends:
            log(f"N={n:,} {b}: store time and end to end, {repeat}× each")
            store_runs: list[float] = []
            e2e_runs: list[float] = []
            rss_runs: list[float] = []
            floor_rss: list[float] = []
            cpu: dict[str, float] = {}
            parts: dict[str, float] = {}
            server = influx.proc.pid if influx is not None and influx.proc is not None and b == "influxdb1" else None
            for _ in range(repeat):
                if b == "influxdb1":
                    stmts = influx_statements(start_ns, end_ns, ref_ns)
                    c0 = proc_cpu_s(server)
                    times = {k: influx_time(url, stmts[k])[0] for k in ("hourly", "last")}
                    cpu["store_server_cpu_s"] = min(cpu.get("store_server_cpu_s", float("inf")), proc_cpu_s(server) - c0)
                    times["mean_only"] = influx_time(url, stmts["mean_only"])[0]
                else:
                    sq = sqlite_statements(start_ns, end_ns, ref_ns)
                    times = {k: sqlite_time(sqlite_path, s, p)[0] for k, (s, p) in sq.items()}
                store_runs.append(times["hourly"] + times["last"])
                for k, v in times.items():
                    parts[k] = min(parts.get(k, float("inf")), v)
                run = run_measured(["analyze", *window_args(), "--json"], env_base[b], tmp / f"analyze-{b}.json", server)
                took, rss = run.wall_s, run.peak_rss_mb
                e2e_runs.append(took)
                rss_runs.append(rss)
                cpu["e2e_cpu_s"] = min(cpu.get("e2e_cpu_s", float("inf")), run.cpu_s)
                if server is not None:
                    cpu["e2e_server_cpu_s"] = min(cpu.get("e2e_server_cpu_s", float("inf")), run.server_cpu_s)
                if not floor_rss:
                    floor_env = {**env_base[b], "HEATWATCH_REGISTRY_HOMES_CSV": str(tmp / "homes-100.csv")}
                    floor = run_measured(["analyze", *window_args(), "--json"], floor_env, tmp / "floor.json")
                    floor_rss.append(floor.peak_rss_mb)
                    cpu["floor_wall_s"], cpu["floor_cpu_s"] = floor.wall_s, floor.cpu_s
                log(f"  store {store_runs[-1]:.2f} s (hourly {times['hourly']:.2f} + last {times['last']:.2f}; "
                    f"mean alone {times['mean_only']:.2f}), end to end {took:.2f} s, peak RSS {rss:.0f} MB")
            doc = json.loads((tmp / f"analyze-{b}.json").read_text(encoding="utf-8"))
            store_s, e2e_s = min(store_runs), min(e2e_runs)
            rss_goal = 2 * result["matrix_mb"] + GOAL_RSS_BASE_MB
            result[b] = {
                "store_s": round(store_s, 2), "store_hourly_s": round(parts["hourly"], 2), "store_last_s": round(parts["last"], 2),
                "store_mean_only_s": round(parts["mean_only"], 2), "e2e_s": round(e2e_s, 2),
                "ratio": round(e2e_s / store_s, 2), "ratio_vs_mean_only": round(e2e_s / parts["mean_only"], 2),
                "peak_rss_mb": round(max(rss_runs)), "rss_goal_mb": round(rss_goal),
                # the same command on a registry of 100 homes: interpreter, pandas, numba and the compiled kernels
                "floor_rss_mb": round(floor_rss[0]), "above_floor_mb": round(max(rss_runs) - floor_rss[0]),
                # CPU seconds (best run): the analyze process, influxd during it, influxd for the store's own queries
                **{k: round(v, 2) for k, v in cpu.items()},
                "runs": {"store_s": [round(x, 2) for x in store_runs], "e2e_s": [round(x, 2) for x in e2e_runs],
                         "rss_mb": [round(x) for x in rss_runs]},
                "result": {"communities": len(doc["communities"]), "homes_below": len(doc["homes_below_standard"]),
                           "sensor_findings": len(doc["sensors"]),
                           "reporting": sum(x["homes_reporting"] for x in doc["communities"])},
                "goals": {f"ratio<={GOAL_RATIO}": e2e_s / store_s <= GOAL_RATIO, "rss": max(rss_runs) <= rss_goal,
                          **({f"<= {GOAL_100K_S:.0f} s": e2e_s <= GOAL_100K_S} if b == "influxdb1" and n >= 100_000 else {})},
            }
        if influx is not None and (panels or report):
            log(f"N={n:,}: analyze --write (untimed) for the derived measurements")
            run_measured(["analyze", *window_args(), "--write", "--json"], env_base["influxdb1"], tmp / "write.json")
        if influx is not None and report:
            log(f"N={n:,}: heatwatch report")
            rep = run_measured(["report", *window_args(), "--out", str(tmp / "report")], env_base["influxdb1"],
                               tmp / "report.out")
            took, rss = rep.wall_s, rep.peak_rss_mb
            page = (tmp / "report" / "report.html").read_text(encoding="utf-8")
            result["report"] = {"s": round(took, 2), "peak_rss_mb": round(rss), "html_kb": round(len(page) / 1024),
                                "figures": page.count("<img "), "tables": page.count("<table>")}
            log(f"  report {took:.1f} s, peak RSS {rss:.0f} MB, {len(page) / 1024:.0f} KB, {page.count('<img ')} figures")
        if influx is not None and panels:
            log(f"N={n:,}: Grafana panel queries")
            # to the end of the day and a minute past it: analyze --write stamps its results at the window's end
            rows = time_panels(url, start_ns, end_ns + 60 * 10**9, "小区0000", "S0000", repeat)
            result["panels"] = rows
            log(f"  slowest: {rows[0]['dashboard']} / {rows[0]['panel']}: {rows[0]['s']} s")
        return result
    finally:
        if influx is not None:
            influx.stop()
        if keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| N homes | store | store time | end to end | ratio (≤ 1.5) | vs mean alone | peak RSS (goal) | above the 100-home run "
             "(2 × matrix) | goals met |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        for b in ("influxdb1", "sqlite"):
            if b not in r:
                continue
            x = r[b]
            met = "yes" if all(x["goals"].values()) else "**no** (" + ", ".join(k for k, v in x["goals"].items() if not v) + ")"
            lines.append(f"| {r['homes']:,} | {b} | {x['store_s']} s (hourly {x['store_hourly_s']} + last {x['store_last_s']}) "
                         f"| {x['e2e_s']} s | {x['ratio']}× | {x['ratio_vs_mean_only']}× ({x['store_mean_only_s']} s) "
                         f"| {x['peak_rss_mb']} MB ({x['rss_goal_mb']} MB) | {x['above_floor_mb']} MB ({2 * r['matrix_mb']:.0f} MB) "
                         f"| {met} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--homes", type=int, nargs="+", default=[20_000, 100_000])
    p.add_argument("--backends", nargs="+", default=["influxdb1", "sqlite"], choices=["influxdb1", "sqlite"])
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--no-report", action="store_true", help="skip heatwatch report")
    p.add_argument("--no-panels", action="store_true", help="skip the Grafana panel queries")
    p.add_argument("--report-max-homes", type=int, default=20_000, help="run the report only up to this N")
    p.add_argument("--keep", type=Path, help="keep the data under this directory")
    a = p.parse_args()
    if a.keep:
        a.keep.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    results = []
    for n in a.homes:
        r = bench_n(n, a.backends, a.repeat, not a.no_report and n <= a.report_max_homes, not a.no_panels, a.keep)
        r["load_1m"] = round(os.getloadavg()[0], 2)
        results.append(r)
        print(json.dumps(r, ensure_ascii=False), flush=True)
    log(f"done in {time.perf_counter() - t:.0f} s")
    print(table(results))


if __name__ == "__main__":
    main()
