"""Run every benchmark (``make bench``): print each one's JSON line, then a Markdown summary table.

    .venv/bin/python -m bench.run_all [--quick] [--only NAME ...]

``--quick`` uses smaller sizes (a smoke run, not numbers for docs/PERFORMANCE.md). The benchmarks
run one after another, never side by side: on 2 cores they would measure each other.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]  # python -m bench.<name> runs from the repository root

FULL = [
    ["bench_sim_step"],
    ["bench_analytics"],
    ["bench_ingest"],
    ["bench_scaleout"],
    ["bench_latency"],
    ["bench_memory"],
]
QUICK = [
    ["bench_sim_step", "--homes", "10000"],
    ["bench_analytics", "--homes", "100000", "--repeat", "1"],
    ["bench_ingest", "--messages", "30000", "--batch-readings", "200000"],
    ["bench_scaleout", "--messages", "40000"],
    ["bench_latency", "--seconds", "5"],
    ["bench_memory", "--messages", "50000"],
]

Row = tuple[str, str, str]  # measured, goal, met


def _ingest(r: dict[str, Any]) -> list[Row]:
    return [
        (f"collector 1 reading/msg {r['collector_single_per_s']:,}/s = {r['collector_single_vs_paho_count_v5']}× stock paho "
         f"counter MQTT 5 ({r['paho_count_v5_qos1_per_s']:,}/s; 3.1.1: {r['paho_count_311_qos1_per_s']:,}/s; "
         f"mosquitto_sub {r['mosquitto_sub_qos1_per_s']:,}/s)", "≥ 0.8×", _yes(r["goals"]["single_vs_paho_v5>=0.8"])),
        (f"collector 100 readings/msg {r['collector_batch100_readings_per_s']:,} readings/s = {r['collector_batch100_vs_influxd']}× "
         f"influxd's own ceiling ({r['influxd_ceiling_readings_per_s']:,}/s)", "≥ 100,000/s",
         _yes(r["goals"]["batch100>=100k/s"])),
    ]


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


SUMMARY: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "sim_step": lambda r: [(f"{r['homes']:,} homes: median {r['median_ms']} ms, p95 {r['p95_ms']} ms", f"≤ {r['goal_ms']} ms",
                            _yes(r["meets_goal"]))],
    "analytics": lambda r: [(f"{r['homes']:,} homes × {r['hours']} h: {r['analytics_median_ms']} ms = {r['ratio']}× numpy lower bound",
                             f"≤ {r['goal_ratio']}×", _yes(r["meets_goal"]))],
    "ingest": _ingest,
    "scaleout": lambda r: [(f"2 collectors {r['two_collectors_per_s']:,}/s vs 1 {r['one_collector_per_s']:,}/s = {r['ratio']}× "
                            f"(machine busy {r['two_cores'].get('machine_busy')} of 2 cores; "
                            f"estimated machine bound {r.get('machine_bound_ratio')}× at the 1-collector run's cost per reading)",
                            "≥ 1.7×", _yes(r["goal_ratio>=1.7"]))],
    "latency": lambda r: [(f"at {r['actual_rate_per_s']:,} readings/s: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms", "report", "—")],
    "memory": lambda r: [(f"RSS idle {r.get('rss_idle_before_mb')} MB; {r['backlog_messages']:,}-message backlog: "
                          f"max {r['rss_max_mb']} MB, "
                          f"idle after {r['rss_idle_after_mb']} MB",
                          "≤ 150 MB, bounded", _yes(r["goal_rss<=150mb"]))],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="*", help="bench names, e.g. ingest scaleout")
    args = ap.parse_args()
    rows: list[tuple[str, dict[str, Any]]] = []
    failed = 0
    for cmd in QUICK if args.quick else FULL:
        if args.only and cmd[0].removeprefix("bench_") not in args.only:
            continue
        module = f"bench.{cmd[0]}"
        print(f"$ {sys.executable} -m {module} {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        r = subprocess.run([sys.executable, "-m", module, *cmd[1:]], capture_output=True, text=True, cwd=ROOT)
        if r.returncode != 0:
            failed += 1
            print(r.stderr[-2000:], file=sys.stderr)
            continue
        line = r.stdout.strip().splitlines()[-1]
        print(line, flush=True)
        rows.append((" ".join(cmd), json.loads(line)))
    if args.quick:
        print("\n(--quick: smoke-test sizes; drains this short include process start-up — not numbers to record)")
    print("\n| benchmark | measured | goal | met |\n| --- | --- | --- | --- |")
    for name, res in rows:
        summarise = SUMMARY.get(str(res.get("bench")))
        if summarise is None:
            print(f"| `{name}` | {json.dumps(res, ensure_ascii=False)} | | |")
            continue
        for measured, goal, met in summarise(res):
            print(f"| `{name}` | {measured} | {goal} | {met} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
