"""Chaos benchmark: every fault the collector promises to survive, repeated, on real servers.

A benchmark, not a test: each fault runs ``--reps`` times (default 5), because one lucky run proves
little, and it *measures* — readings lost, duplicates, recovery time — instead of asserting. A
broker SIGKILL does lose readings (what Mosquitto acknowledged since its last save of the
persistence file); the sweep measures how many against the broker's save settings.

One run: a fresh Mosquitto (persistence on) and a fresh database on a shared influxd;
``heatwatch collect`` as a subprocess (MQTT 3.1.1 as deploy/ pins it: Mosquitto 2.0.11 does not
restore MQTT 5 sessions), published to only once its status.json says it subscribed; then a QoS 1
persistent-session publisher sends ``--readings`` one-reading messages at ``--rate``/s. At 30 % of
the stream the fault starts; it ends after ``--outage`` s ("fault end" = the moment the restart
that ends it is issued: start-up time counts as recovery). Then the store is polled until
it holds every published reading, and read back: distinct (home, ts) keys, exact values.

Faults: collector SIGKILL + restart; influxd SIGKILL + restart; broker SIGTERM + start on the same
port and data; broker SIGKILL + start; store refusing writes (influxd restarted with HTTP auth on,
which the collector has no credentials for: every write answers 401 until auth is off again); spool
full (the collector runs with a 0.25 MB spool and influxd is stopped: it stops acknowledging, the
broker holds the backlog). Sweep: broker SIGKILL while a backlog waits at the broker for a stopped
collector, per save setting.

    .venv/bin/python -m bench.chaos [--reps 5] [--quick] [--only FAULT ...] [--no-sweep] [--json out.json]

Prints a progress line per run (stderr), then two Markdown tables; ``--json`` writes every run.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench._common import HOMES, ROOT, collector_env, machine, start_collector
from heatwatch.core import schema
from heatwatch.core.config import load_config
from heatwatch.core.timeutil import utc_now
from heatwatch.infra.mqtt.topics import indoor_topic
from heatwatch.infra.storage import open_store
from tools.fixtures import Publisher
from tools.servers import Influxd, Mosquitto

FAULTS = ("collector-kill", "influxd-kill", "broker-restart", "broker-kill", "store-refuses", "spool-full")
# broker save settings for the sweep: label -> (autosave_interval, extra mosquitto.conf lines)
SWEEP: dict[str, tuple[int, str]] = {
    "autosave_interval 1": (1, ""),
    "autosave_interval 5": (5, ""),
    "autosave_interval 30": (30, ""),
    "autosave_on_changes true + autosave_interval 100": (100, "autosave_on_changes true"),
}
ADMIN, ADMIN_PW = "chaos-admin", "chaos-admin-pw"  # for the bench's own queries while auth is on
FAULT_AT = 0.3  # share of the stream sent when the fault starts
BACKLOG = (0.1, 0.9)  # sweep: the collector stops at 10 % of the stream, the broker is SIGKILLed at 90 %
SPOOL_MB = "0.25"  # spool-full: ~2,000 readings fit, the rest of the stream waits at the broker


class Admin:
    """InfluxQL as the admin user (with auth off, influxd ignores the credentials)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.auth = "Basic " + base64.b64encode(f"{ADMIN}:{ADMIN_PW}".encode()).decode()

    def q(self, query: str, db: str = "", auth: bool = True) -> dict[str, Any]:
        data = urllib.parse.urlencode({"q": query, "db": db}).encode()
        req = urllib.request.Request(f"{self.url}/query", data=data, headers={"Authorization": self.auth} if auth else {})
        with urllib.request.urlopen(req, timeout=30) as r:
            doc: dict[str, Any] = json.loads(r.read())
        err = doc.get("error") or next((x["error"] for x in doc.get("results", []) if "error" in x), None)
        if err:
            raise RuntimeError(f"InfluxQL {query!r}: {err}")
        return doc

    def setup(self) -> None:
        self.q(f"CREATE USER \"{ADMIN}\" WITH PASSWORD '{ADMIN_PW}' WITH ALL PRIVILEGES", auth=False)

    def count(self, db: str) -> int | None:
        """Readings stored (InfluxDB keeps one point per series and timestamp); None while influxd is down."""
        try:
            doc = self.q(f'SELECT count("temp_c") FROM "{schema.INDOOR}"', db)
        except (urllib.error.URLError, OSError, RuntimeError):
            return None
        series = doc["results"][0].get("series")
        return int(series[0]["values"][0][1]) if series else 0


def set_auth(db: Influxd, on: bool) -> None:
    """Turn influxd's HTTP auth on or off in tools.servers.Influxd's config (read at the next start).

    With auth on, a collector that has no credentials gets 401 on every write while influxd is up: the store
    refusing, which the collector must spool through exactly like an outage (an operator's fault, not bad data)."""
    conf = db.conf.read_text()
    off, auth = "[http]\n  enabled = true\n", "[http]\n  enabled = true\n  auth-enabled = true\n"
    assert off in conf
    db.conf.write_text(conf.replace(auth, off).replace(off, auth if on else off))


class StampedPublisher(Publisher):
    """tools.fixtures.Publisher that notes when each PUBACK came: what a broker SIGKILL can lose is
    what it acknowledged after its last save. Message ids identify messages (runs stay under 65,535)."""

    def __init__(self, port: int, client_id: str) -> None:
        self.acks: list[tuple[int, float]] = []  # (mid, time.time()); appended on paho's thread
        self.mids: list[int] = []  # mid of message i
        self.disconnects: list[float] = []  # PUBACKs read before a disconnect came on that connection
        super().__init__(port, client_id, max_inflight=500)
        self.client.on_disconnect = lambda *a: self.disconnects.append(time.time())

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        self.acks.append((mid, time.time()))
        super()._on_publish(client, userdata, mid, rc, props)

    def send(self, topic: str, payload: bytes) -> None:
        self.mids.append(self.client.publish(topic, payload, qos=1).mid)

    def ack_times(self) -> list[float]:
        first: dict[int, float] = {}
        for mid, t in self.acks:
            first.setdefault(mid, t)
        return [first.get(mid, float("nan")) for mid in self.mids]


def reading(i: int, t0: float) -> tuple[str, float, float]:
    """Message i (as tests/test_lossless.py): home, epoch seconds, temperature."""
    return f"H{i % HOMES:06d}", t0 + (i // HOMES) * 60 + (i % HOMES) * 0.001, round(12.0 + (i * 7919 % 1300) / 100, 2)


class Collector:
    """``heatwatch collect`` as a subprocess that can be SIGKILLed and started again with the same session."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.status = Path(env["HEATWATCH_GENERAL_DATA_DIR"]) / "status.json"
        self.seen: dict[int, dict[str, int]] = {}  # pid -> counters of its last status.json

    def start(self) -> None:
        self.proc = start_collector(self.env, self.log)

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(60)

    def snapshot(self) -> dict[str, Any]:
        try:
            snap: dict[str, Any] = json.loads(self.status.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if "pid" in snap and "ingest" in snap:
            broker = snap.get("broker", {})
            self.seen[int(snap["pid"])] = {
                "received": int(snap["ingest"].get("received_messages", 0)),
                "session_lost": int(broker.get("session_lost", 0) or 0),
                "stalls_recovered": int(broker.get("stalls_recovered", 0) or 0),
            }
        return snap

    def total(self, key: str) -> int:
        """Summed over every process of the run (a SIGKILLed one counts up to its last status.json)."""
        return sum(c.get(key, 0) for c in self.seen.values())

    def wait_ready(self, timeout: float = 60.0) -> str:
        """Until status.json (this process's) says SUBACK arrived: ``broker.subscribed``, or ``broker.connected``
        where the collector does not report ``subscribed`` yet (then a publish may precede the subscription)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"collector exited with {self.proc.returncode}; see {self.log}")
            snap = self.snapshot()
            broker = snap.get("broker", {}) if snap.get("pid") == self.proc.pid else {}
            if broker.get("subscribed"):
                return "subscribed"
            if "subscribed" not in broker and broker.get("connected"):
                return "connected (status.json has no broker.subscribed)"
            time.sleep(0.05)
        raise TimeoutError(f"collector not ready after {timeout} s; see {self.log}")


def broker_held(port: int) -> int | None:
    """Messages Mosquitto holds beyond retained ones (queued or in flight to the collector), from $SYS."""
    r = subprocess.run(["mosquitto_sub", "-p", str(port), "-C", "2", "-W", "4", "-v",
                        "-t", "$SYS/broker/store/messages/count", "-t", "$SYS/broker/retained messages/count"],
                       capture_output=True, text=True)
    vals = dict(line.rsplit(" ", 1) for line in r.stdout.splitlines() if " " in line)
    try:
        return int(vals["$SYS/broker/store/messages/count"]) - int(vals["$SYS/broker/retained messages/count"])
    except (KeyError, ValueError):
        return None


@dataclass
class Run:
    """One run's servers, processes and timeline (time.time() seconds)."""

    fault: str
    setting: str
    n: int
    broker: Mosquitto
    influx: Influxd
    admin: Admin
    db: str
    col: Collector
    outage: float
    sent: list[int] = field(default_factory=lambda: [0])
    t_fault: float = 0.0
    t_fault_end: float = 0.0
    t_kill: float = 0.0  # broker SIGKILL
    t_col_stop: float = 0.0  # sweep: SIGTERM to the collector (it stops consuming at once)
    last_save: float | None = None  # mtime of mosquitto.db at the broker SIGKILL (None: never saved)
    db_bytes: int = 0  # its size then: what every save rewrites
    broker_started: float = 0.0

    def wait_sent(self, share: float) -> None:
        while self.sent[0] < share * self.n:
            time.sleep(0.005)

    def kill_broker(self) -> None:
        db_file = self.broker.workdir / "mosquitto.db"
        self.t_kill = time.time()
        st = db_file.stat() if db_file.exists() else None
        self.last_save, self.db_bytes = (st.st_mtime, st.st_size) if st else (None, 0)
        self.broker.stop(signal.SIGKILL)

    def save_broker(self) -> None:
        """SIGUSR1: Mosquitto writes its persistence file now — the collector's session is on disk, as on a
        broker that has run for a while (else a SIGKILL before the first autosave loses the session too)."""
        assert self.broker.proc is not None
        db_file = self.broker.workdir / "mosquitto.db"
        self.broker.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while not db_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)


# --- the faults: each returns when the fault has ended (t_fault .. t_fault_end) --------------------------
def collector_kill(r: Run) -> None:
    r.col.kill()
    time.sleep(r.outage)
    r.t_fault_end = time.time()
    r.col.start()


def influxd_kill(r: Run) -> None:
    r.influx.stop(signal.SIGKILL)
    time.sleep(r.outage)
    r.t_fault_end = time.time()
    r.influx.start()


def broker_restart(r: Run) -> None:
    r.broker.stop(signal.SIGTERM)  # Mosquitto saves its persistence file on the way out
    r.t_fault_end = time.time()
    r.broker.start()


def broker_kill(r: Run) -> None:
    r.kill_broker()
    r.t_fault_end = time.time()
    r.broker.start()


def store_refuses(r: Run) -> None:
    """influxd up but refusing: restarted with auth on (a fraction of a second down), writes answer 401."""
    r.influx.stop()
    set_auth(r.influx, True)
    r.influx.start()
    time.sleep(r.outage)
    r.t_fault_end = time.time()
    r.influx.stop()
    set_auth(r.influx, False)
    r.influx.start()


def spool_full(r: Run) -> None:
    r.influx.stop(signal.SIGTERM)  # the collector runs with a 0.25 MB spool: full within a second
    time.sleep(r.outage)
    r.t_fault_end = time.time()
    r.influx.start()


def broker_kill_backlog(r: Run) -> None:
    """Sweep: the collector stops (gracefully) at 10 %, a backlog queues for it at the broker, the broker
    is SIGKILLed at 90 % and started again, then the collector."""
    r.t_col_stop = time.time()
    r.col.kill(signal.SIGTERM)
    r.wait_sent(BACKLOG[1])
    r.kill_broker()
    r.t_fault_end = time.time()
    r.broker.start()
    r.col.start()


ACTIONS: dict[str, Callable[[Run], None]] = {
    "collector-kill": collector_kill, "influxd-kill": influxd_kill, "broker-restart": broker_restart,
    "broker-kill": broker_kill, "store-refuses": store_refuses, "spool-full": spool_full,
    "broker-kill-backlog": broker_kill_backlog,
}
EVIDENCE = {  # collector log lines that show the fault did what it says (log level WARNING)
    "spooling": "spooling to", "spool_full": "SPOOL FULL", "denied_401": "denied the request (401)",
    "session_lost": "MQTT SESSION LOST",
}


def run_once(idx: int, fault: str, setting: str, args: argparse.Namespace, base: Path, influx: Influxd, admin: Admin,
             rng: random.Random) -> dict[str, Any]:
    tmp = base / f"run{idx:03d}"
    tmp.mkdir()
    db = f"chaos_{idx:03d}"
    admin.q(f'CREATE DATABASE "{db}"')
    autosave, extra = SWEEP.get(setting, (5, ""))
    broker = Mosquitto(tmp / "mosquitto", autosave_interval=autosave, extra_conf=f"sys_interval 1\n{extra}").start()
    env = collector_env(tmp, broker, influx, f"chaos-col-{idx}", **{
        "HEATWATCH_INFLUXDB1_DATABASE": db, "HEATWATCH_INFLUXDB1_CREATE_DATABASE": "false", "HEATWATCH_MQTT_PROTOCOL": "3.1.1",
        "HEATWATCH_MQTT_RECONNECT_MIN_S": "1", "HEATWATCH_MQTT_RECONNECT_MAX_S": "2",
        "HEATWATCH_COLLECTOR_STORE_RETRY_S": "1", "HEATWATCH_RUN_STATUS_INTERVAL_S": "0.5",
        **({"HEATWATCH_COLLECTOR_SPOOL_MAX_MB": SPOOL_MB} if fault == "spool-full" else {}),
    })
    col = Collector(env, tmp / "collector.log")
    r = Run(fault, setting, args.readings, broker, influx, admin, db, col, args.outage, broker_started=time.time())
    col.start()
    ready = col.wait_ready()
    if fault in ("broker-kill", "broker-kill-backlog"):
        r.save_broker()
        if "on_changes" not in setting:
            time.sleep(rng.uniform(0, autosave))  # a random phase in the save cycle at the SIGKILL
    pub = StampedPublisher(broker.port, f"chaos-pub-{idx}")
    t0 = utc_now().timestamp() - 2 * 3600
    expected: dict[tuple[str, int], float] = {}

    def stream() -> None:
        start = time.perf_counter()
        for i in range(r.n):
            if i % 50 == 0 and (ahead := start + i / args.rate - time.perf_counter()) > 0:
                time.sleep(ahead)
            home, ts, temp = reading(i, t0)
            expected[(home, round(ts * 1e6) * 1000)] = temp
            pub.send(indoor_topic("heat", home), json.dumps({"ts": ts, "temp_c": temp}).encode())
            r.sent[0] = i + 1

    t_stream = time.time()
    th = threading.Thread(target=stream, daemon=True)
    th.start()
    r.wait_sent(BACKLOG[0] if fault == "broker-kill-backlog" else FAULT_AT)
    r.t_fault = time.time()
    ACTIONS[fault](r)
    th.join()
    pub.wait_all(r.n, timeout=300)
    t_pub_done = max(t for t in pub.ack_times() if t == t)  # NaN: never acknowledged (wait_all says otherwise)
    publish_rate = round(r.n / (t_pub_done - t_stream))

    # poll until every reading is stored; "lost" once nothing changes and nothing waits anywhere; "stalled" at the timeout
    status, n_last, t_change = "stalled", -1, time.time()
    deadline = max(r.t_fault_end, t_pub_done) + args.timeout
    held: int | None = None
    snap: dict[str, Any] = {}
    while True:
        n = admin.count(db)
        snap = col.snapshot()
        now = time.time()
        if n is not None and n != n_last:
            n_last, t_change = n, now
        if n_last >= r.n:
            status = "ok"
            break
        ingest = snap.get("ingest", {})
        pending = snap.get("spool", {}).get("readings", 1) or ingest.get("queue_depth", 1) or ingest.get("unacked", 0)
        if now - t_change >= args.settle and not pending:
            held = broker_held(broker.port)
            if held == 0:
                status = "lost"
                break
        if now >= deadline:
            held = broker_held(broker.port)
            break
        time.sleep(0.2)
    t_final = t_change
    if status == "stalled":
        held = broker_held(broker.port) if held is None else held

    # read back through the product's own read path
    cfg = load_config(environ=env)
    store = open_store(cfg)
    df = store.query(schema.INDOOR, utc_now() - timedelta(hours=3), utc_now())
    store.close()
    got: dict[tuple[str, int], float] = {}
    for h, t, v in zip(df["home_id"], df["time"], df["temp_c"], strict=True):
        got[(str(h), int(t.value))] = float(v)
    lost_keys = expected.keys() - got.keys()
    acks = pub.ack_times()
    pub.close()
    rc = col.kill(signal.SIGTERM) if col.proc is not None and col.proc.poll() is None else None
    col.snapshot()  # the last process's final counters (written on the way out)
    broker.stop()
    admin.q(f'DROP DATABASE "{db}"')
    log = col.log.read_text(encoding="utf-8", errors="replace")
    res: dict[str, Any] = {
        "fault": fault, "setting": setting or None, "run": idx, "readiness": ready, "status": status,
        "published": len(expected), "stored": len(got), "rows": len(df), "lost": len(lost_keys),
        "duplicates": len(df) - len(got), "extra": len(got.keys() - expected.keys()),
        "wrong_value": sum(1 for k, v in expected.items() if k in got and got[k] != v),
        "recovery_s": round(t_final - r.t_fault_end, 2) if status != "stalled" else None,
        "after_last_puback_s": round(max(0.0, t_final - t_pub_done), 2) if status != "stalled" else None,
        "fault_s": round(r.t_fault_end - r.t_fault, 2), "publish_rate_per_s": publish_rate,
        "broker_held_at_end": held, "collector_exit": rc,
        "delivered_msgs_at_least": col.total("received"), "session_lost": col.total("session_lost"),
        "stalls_recovered": col.total("stalls_recovered"),
        "evidence": {k: log.count(v) for k, v in EVIDENCE.items() if v in log},
    }
    if r.t_kill:
        since = r.last_save if r.last_save is not None else r.broker_started
        gone = min((t for t in pub.disconnects if t >= r.t_kill), default=r.t_kill)  # last PUBACK of the old broker read
        res["unsaved_window_s"] = round(r.t_kill - since, 2)
        res["saved_before_kill"] = r.last_save is not None
        res["persistence_file_bytes"] = r.db_bytes
        # what the broker accepted after its last save (PUBACKs timed when the publisher reads them: an upper bound);
        # with the collector online most of it was stored before the kill
        res["acked_since_last_save"] = sum(1 for t in acks if since < t <= gone)
        if r.t_col_stop:  # sweep: queued for the stopped collector, and of those, accepted after the last save
            res["backlog_at_kill"] = sum(1 for t in acks if r.t_col_stop < t <= gone)
            res["queued_since_last_save"] = sum(1 for t in acks if max(since, r.t_col_stop) < t <= gone)
    return res


def summarize(runs: list[dict[str, Any]]) -> tuple[str, str]:
    med = statistics.median
    lines = ["| fault | runs | published per run | lost: total (runs with loss) | duplicates | wrong or extra | "
             "recovery s: median (min–max) | all stored after the last PUBACK s: median (max) | stalled runs |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for fault in [f for f in FAULTS if any(r["fault"] == f for r in runs)]:
        rs = [r for r in runs if r["fault"] == fault]
        rec = [r["recovery_s"] for r in rs if r["recovery_s"] is not None]
        tail = [r["after_last_puback_s"] for r in rs if r["after_last_puback_s"] is not None]
        stalled = [r for r in rs if r["status"] == "stalled"]
        rec_txt = f"{med(rec):.1f} ({min(rec):.1f}–{max(rec):.1f})" if rec else "—"
        tail_txt = f"{med(tail):.1f} ({max(tail):.1f})" if tail else "—"
        stall_txt = "; ".join(f"{r['stored']:,}/{r['published']:,} stored, {r['broker_held_at_end']} held at broker"
                              for r in stalled) or "0"
        recovered = sum(r["stalls_recovered"] for r in rs)
        stall_txt += f" ({recovered} recovered by the collector)" if recovered else ""
        lines.append(f"| {fault} | {len(rs)} | {rs[0]['published']:,} | {sum(r['lost'] for r in rs):,} "
                     f"({sum(1 for r in rs if r['lost'])}) | {sum(r['duplicates'] for r in rs)} | "
                     f"{sum(r['wrong_value'] + r['extra'] for r in rs)} | {rec_txt} | {tail_txt} | {stall_txt} |")
    sweep = ["| broker setting (SIGKILL, backlog queued for a stopped collector) | runs | lost per run: median (max) | "
             "queued since the last save: median (max) | backlog at the kill: median | time since the last save s: "
             "median (max) | publish rate /s: median |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for setting in SWEEP:
        rs = [r for r in runs if r.get("setting") == setting]
        if not rs:
            continue
        lost = [r["lost"] for r in rs]
        risk = [r["queued_since_last_save"] for r in rs]
        win = [r["unsaved_window_s"] for r in rs]
        sweep.append(f"| `{setting}` | {len(rs)} | {med(lost):,.0f} ({max(lost):,}) | {med(risk):,.0f} ({max(risk):,}) | "
                     f"{med(r['backlog_at_kill'] for r in rs):,.0f} | {med(win):.1f} ({max(win):.1f}) | "
                     f"{med(r['publish_rate_per_s'] for r in rs):,.0f} |")
    return "\n".join(lines) if len(lines) > 2 else "", "\n".join(sweep) if len(sweep) > 2 else ""


def git_rev() -> str:
    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + ("+uncommitted" if git("status", "--porcelain", "--untracked-files=no") else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--reps", type=int, default=5, help="runs per fault and per sweep setting")
    ap.add_argument("--readings", type=int, default=20_000, help="one-reading messages per run (≤ 65,000: message ids)")
    ap.add_argument("--rate", type=float, default=4_000, help="messages/s the publisher aims for")
    ap.add_argument("--outage", type=float, default=5.0, help="seconds a fault lasts (collector/influxd down, 403s)")
    ap.add_argument("--timeout", type=float, default=60.0, help="per run, after fault end and last PUBACK: then 'stalled'")
    ap.add_argument("--settle", type=float, default=5.0, help="no change for this long, nothing queued anywhere: 'lost'")
    ap.add_argument("--quick", action="store_true", help="1 rep, 5,000 readings, 3 s outages: a smoke run")
    ap.add_argument("--only", nargs="*", choices=[*FAULTS, "sweep"], help="faults to run (and/or 'sweep')")
    ap.add_argument("--no-sweep", action="store_true", help="skip the broker-SIGKILL save-setting sweep")
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--json", type=Path, help="write every run and the tables here")
    ap.add_argument("--keep", type=Path, help="work (and leave logs and data) in this new directory instead of a temp dir")
    ap.add_argument("--render", type=Path, help="only print the tables of a --json file written before")
    args = ap.parse_args()
    if args.render:
        print("\n\n".join(t for t in summarize(json.loads(args.render.read_text(encoding="utf-8"))["runs"]) if t))
        return 0
    if args.quick:
        args.reps, args.readings, args.outage = 1, 5_000, 3.0
    if not 0 < args.readings <= 65_000:
        ap.error("--readings must be 1..65,000 (QoS 1 message ids identify the messages)")
    plan = [(f, "") for f in FAULTS if not args.only or f in args.only]
    if not args.no_sweep and (not args.only or "sweep" in args.only):
        plan += [("broker-kill-backlog", s) for s in SWEEP]
    rng = random.Random(args.seed)
    runs: list[dict[str, Any]] = []
    t_begin = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="heatwatch-chaos-") as d:
        base = Path(d) if args.keep is None else args.keep
        base.mkdir(parents=True, exist_ok=args.keep is None)
        influx = Influxd(base / "influxd").start()
        admin = Admin(influx.url)
        admin.setup()
        try:
            idx = 0
            for rep in range(args.reps):  # round-robin: machine noise spreads over every fault alike
                for fault, setting in plan:
                    idx += 1
                    res = run_once(idx, fault, setting, args, base, influx, admin, rng)
                    res["rep"] = rep + 1
                    runs.append(res)
                    print(json.dumps(res, ensure_ascii=False), file=sys.stderr, flush=True)
        finally:
            influx.stop()
    faults_md, sweep_md = summarize(runs)
    out = {"bench": "chaos", "commit": git_rev(), "machine": machine(), "duration_s": round(time.monotonic() - t_begin),
           "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "runs": runs,
           "faults_table": faults_md, "sweep_table": sweep_md}
    print("\n\n".join(t for t in (faults_md, sweep_md) if t))
    print(f"\n({len(runs)} runs in {out['duration_s']} s, commit {out['commit']}, load_1m {machine()['load_1m']})")
    if args.json:
        args.json.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
