"""Run every benchmark (``make bench``) and print their JSON lines and a Markdown summary table.

    .venv/bin/python bench/run_all.py [--quick]

``--quick`` uses smaller sizes (a smoke run, not numbers for docs/PERFORMANCE.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

FULL = [
    ["bench_sim_step.py"],
    ["bench_analytics.py"],
    ["bench_ingest.py"],
    ["bench_scaleout.py"],
    ["bench_latency.py"],
    ["bench_memory.py"],
]
QUICK = [
    ["bench_sim_step.py", "--homes", "10000"],
    ["bench_analytics.py", "--homes", "100000", "--repeat", "1"],
    ["bench_ingest.py", "--messages", "10000", "--batch-readings", "50000"],
    ["bench_scaleout.py", "--messages", "10000"],
    ["bench_latency.py", "--seconds", "5"],
    ["bench_memory.py", "--messages", "50000"],
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rows = []
    failed = 0
    for cmd in QUICK if args.quick else FULL:
        print(f"$ {sys.executable} bench/{' '.join(cmd)}", file=sys.stderr, flush=True)
        r = subprocess.run([sys.executable, str(HERE / cmd[0]), *cmd[1:]], capture_output=True, text=True)
        if r.returncode != 0:
            failed += 1
            print(r.stderr[-2000:], file=sys.stderr)
            continue
        line = r.stdout.strip().splitlines()[-1]
        print(line, flush=True)
        rows.append((" ".join(cmd), json.loads(line)))
    print("\n| benchmark | result |\n| --- | --- |")
    for name, res in rows:
        keep = {k: v for k, v in res.items() if k not in ("machine", "bench")}
        print(f"| `{name}` | {json.dumps(keep, ensure_ascii=False)} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
