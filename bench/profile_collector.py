"""Profile a ``heatwatch collect`` process with py-spy while it drains a backlog: where the time goes, before optimising.

    .venv/bin/python -m bench.profile_collector [--messages 50000] [--batch 1] [--raw OUT.txt]

Sampling (``py-spy record --nonblocking``, so the collector is not paused) from its start to the last
reading stored. Prints one JSON line: the busiest threads and the functions with the most inclusive
and self samples per thread, so the hot path is read off the numbers, not guessed. ``--raw`` keeps
py-spy's collapsed stacks (flamegraph input).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench._common import (
    CpuMeter,
    collector_env,
    create_session,
    emit,
    influx_count,
    machine,
    publish_backlog,
    servers,
    start_collector,
    stop,
    wait_count,
)

_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = m["file"]
    for marker in ("site-packages/", "/main/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m['func']} ({path})"


def summarise(raw: str, top: int = 12) -> dict[str, object]:
    """Collapsed stacks → per thread: samples, top inclusive and top self functions (share of the thread)."""
    threads: Counter[str] = Counter()
    incl: dict[str, Counter[str]] = {}
    self_: dict[str, Counter[str]] = {}
    for line in raw.splitlines():
        stack, _, n_text = line.rpartition(" ")
        if not stack or not n_text.isdigit():
            continue
        n = int(n_text)
        frames = stack.split(";")
        thread = frames[0].split(" ")[0] if frames[0].startswith(("thread", "process")) else "main"
        frames = [_short(f) for f in frames if not f.startswith(("thread", "process"))]
        if not frames:
            continue
        threads[thread] += n
        incl.setdefault(thread, Counter()).update({f: n for f in set(frames)})
        self_.setdefault(thread, Counter())[frames[-1]] += n
    out: dict[str, object] = {}
    for thread, total in threads.most_common(4):
        out[thread] = {
            "samples": total,
            "inclusive": {f: round(c / total, 3) for f, c in incl[thread].most_common(top)},
            "self": {f: round(c / total, 3) for f, c in self_[thread].most_common(top)},
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=1, help="readings per message (gateway batches)")
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--raw", type=Path, help="keep py-spy's collapsed stacks here")
    ap.add_argument("--idle", action="store_true", help="also sample threads that wait (where the time goes, not the CPU)")
    ap.add_argument("--gil", action="store_true", help="only the thread holding the GIL (what the one usable core is spent on)")
    args = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        sys.exit("py-spy not found: .venv/bin/pip install -e '.[bench]'")
    with servers() as (tmp, broker, influx), tempfile.TemporaryDirectory() as d:
        assert influx is not None
        env = collector_env(tmp, broker, influx, "bench-prof", HEATWATCH_INFLUXDB1_DATABASE="prof")
        log = tmp / "prof.log"
        create_session(env, log)
        publish_backlog(broker.port, args.messages, time.time() - 3600, batch=args.batch, client_id="pub-prof")
        proc = start_collector(env, log)
        assert broker.proc is not None and influx.proc is not None
        meter = CpuMeter(collector=proc.pid, mosquitto=broker.proc.pid, influxd=influx.proc.pid)
        raw = Path(d) / "raw.txt"
        rec = subprocess.Popen([spy, "record", "--nonblocking", "--threads", "--format", "raw", "-r", str(args.rate),
                                "-o", str(raw), "-p", str(proc.pid), *(["--idle"] if args.idle else []),
                                *(["--gil"] if args.gil else [])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            t_first, t_done, n_first = wait_count(lambda: influx_count(influx, "prof"), args.messages * args.batch, poll_s=0.2)
            cores = meter.cores()
        finally:
            rec.send_signal(2)  # SIGINT: py-spy writes its output and exits
            rec.wait(60)
            stop(proc)
        text = raw.read_text() if raw.exists() else ""
        if args.raw:
            args.raw.write_text(text)
    emit({"bench": "profile_collector", "messages": args.messages, "batch": args.batch,
          "per_s": round((args.messages * args.batch - n_first) / max(t_done - t_first, 1e-9)),
          "cores": cores, "threads": summarise(text), "machine": machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
