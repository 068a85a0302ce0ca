"""The collector watches its own session: readiness, progress-based liveness, stalled sessions, lost sessions.

Against a real Mosquitto. A stalled session is made the way it happens in production: messages the
broker counts as in flight to us that we will never acknowledge on this connection (here: batches whose
store write hit an unexpected error), filling the in-flight window until the broker sends nothing more.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pandas as pd

from collector.service import Collector
from collector.session import SessionMarker
from collector.transport import Inbound
from heatwatch.app.service import Service
from heatwatch.app.status import healthy, metrics_text, ready
from heatwatch.core import schema
from heatwatch.core.model import Point
from heatwatch.core.timeutil import utc_now
from heatwatch.infra.storage.sqlite import SqliteStore
from tests.helpers import Publisher, config, registry_for
from tests.test_collector_mqtt import all_indoor, wait_until
from tools.servers import Mosquitto, free_port

REG = registry_for(60)


class FlakyStore(SqliteStore):
    """Raises an unexpected (non-store) error for the first ``fail`` writes of readings: a bug, not an outage."""

    def __init__(self, path: Path, fail: int) -> None:
        super().__init__(path)
        self.fail = fail

    def write(self, points: Sequence[Point]) -> None:
        if self.fail > 0 and any(p.measurement == schema.INDOOR for p in points):
            self.fail -= 1
            raise RuntimeError("simulated bug in the store driver")
        super().write(points)


def _small_window(broker: Mosquitto, n: int = 20) -> None:
    """MQTT 3.1.1 clients get the broker's max_inflight_messages as their window: a few lost acks fill it."""
    broker.conf.write_text(broker.conf.read_text().replace("max_inflight_messages 1000", f"max_inflight_messages {n}"))
    broker.restart()


def _publish(port: int, n: int, client_id: str) -> Publisher:
    pub = Publisher(port, client_id)
    t = utc_now().timestamp() - 600
    for i in range(n):
        pub.publish(f"heat/indoor/H{i % 60:06d}", {"ts": t + i, "temp_c": 20.0 + i / 100})
    pub.wait_all(n)
    return pub


def test_messages_left_unacknowledged_after_an_error_are_redelivered(tmp_path: Path, own_mosquitto: Mosquitto) -> None:
    _small_window(own_mosquitto)
    cfg = config(tmp_path, own_mosquitto.port, mqtt={"protocol": "3.1.1"},
                 collector={"probe_idle_s": 0.5, "probe_timeout_s": 1.5, "store_retry_s": 0.1, "batch_size": 5})
    store = FlakyStore(tmp_path / "s.sqlite", fail=6)
    col = Collector(cfg, REG, store).start()
    assert col.wait_ready()
    n = 200
    pub = _publish(own_mosquitto.port, n, "pub-strand")
    # without recovery these stay in the broker's in-flight window, never resent on this connection
    wait_until(lambda: len(all_indoor(store)) == n, timeout=60, what="every reading stored after the errors")
    snap = col.snapshot()
    assert snap.writer_errors == 6
    assert snap.redeliveries >= 1
    assert snap.live
    col.stop()
    pub.close()


def test_stalled_session_is_detected_by_the_probe_and_recovered(tmp_path: Path, own_mosquitto: Mosquitto) -> None:
    _small_window(own_mosquitto)
    cfg = config(tmp_path, own_mosquitto.port, mqtt={"protocol": "3.1.1"},
                 collector={"probe_idle_s": 0.5, "probe_timeout_s": 1.5, "batch_size": 5})
    store = SqliteStore(tmp_path / "s.sqlite")
    col = Collector(cfg, REG, store)
    sub = col.subscriber
    real_ack_many = sub.ack_many
    lost = {"n": 0}

    def ack_many_losing_the_first_20(messages: Sequence[Inbound]) -> tuple[int, int]:
        # PUBACKs that never reach the broker (or a broker that miscounts them): it believes them in flight
        keep = [m for m in messages if lost["n"] >= 20 or m.qos == 0]
        drop = len(messages) - len(keep)
        lost["n"] += drop
        with sub._lock:
            sub.settled += drop
        acked, skipped = real_ack_many(keep)
        return acked + drop, skipped

    sub.ack_many = ack_many_losing_the_first_20  # type: ignore[method-assign]
    col.start()
    assert col.wait_ready()
    n = 100
    pub = _publish(own_mosquitto.port, n, "pub-stall")
    wait_until(lambda: len(all_indoor(store)) == n, timeout=60, what="every reading stored after the stall")
    snap = col.snapshot()
    assert lost["n"] == 20
    assert snap.stalls >= 1, "the stall was not detected"
    assert snap.probes >= 1
    col.stop()
    pub.close()


def test_writer_survives_an_error_while_replaying(tmp_path: Path, mosquitto: Mosquitto) -> None:
    cfg = config(tmp_path, mosquitto.port, mqtt={"client_id": "hw-replay-error", "topic_prefix": "rperr"})
    store = SqliteStore(tmp_path / "s.sqlite")
    col = Collector(cfg, REG, store)
    col.spool.append([Point(schema.INDOOR, {"home_id": "H000001"}, {"temp_c": 20.0}, 1)])
    real = col.spool.oldest
    calls = {"n": 0}

    def broken_once() -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("simulated spool read error")
        return real()

    col.spool.oldest = broken_once  # type: ignore[method-assign]
    col.start()
    assert col.wait_ready()
    wait_until(lambda: col.snapshot().replayed == 1, timeout=20, what="replay after the error")
    assert col.snapshot().writer_errors == 1
    assert col._writer.is_alive()
    col.stop()


def test_session_lost_is_an_alarm_in_status_metrics_and_store(tmp_path: Path, own_mosquitto: Mosquitto) -> None:
    cfg = config(tmp_path, own_mosquitto.port, mqtt={"client_id": "hw-lost-session"}, run={"status_interval_s": 0.5})
    store = SqliteStore(tmp_path / "s.sqlite")
    svc = Service(cfg.model_copy(update={"run": cfg.run.model_copy(update={"parts": ("collector",)})}), REG, store).start()
    assert svc.collector is not None
    assert svc.collector.wait_ready()
    wait_until(lambda: ready(json.loads((tmp_path / "data" / "status.json").read_text())), what="status says ready")
    # the broker loses its persistence: stop it, delete its database, start it again
    own_mosquitto.stop()
    for f in own_mosquitto.workdir.glob("*.db"):
        f.unlink()
    own_mosquitto.start()
    wait_until(lambda: svc.collector is not None and svc.collector.snapshot().session_lost == 1, what="session loss seen")
    wait_until(lambda: svc.collector is not None and svc.collector.wait_ready(0.1), what="resubscribed")
    svc.write_status()
    snap = json.loads((tmp_path / "data" / "status.json").read_text())
    assert snap["broker"]["session_lost"] == 1 and snap["broker"]["session_lost_at"]
    text = metrics_text(snap).decode()
    assert 'heatwatch_collector_sessions_lost_total{collector_id="hw-lost-session"} 1.0' in text
    # the alarm reaches the store, where control turns it into a work order
    wait_until(lambda: not store.query(schema.COLLECTOR_ALARMS, utc_now() - timedelta(hours=1), utc_now() + timedelta(minutes=1)).empty,
               what="alarm point stored")
    df = store.query(schema.COLLECTOR_ALARMS, utc_now() - timedelta(hours=1), utc_now() + timedelta(minutes=1))
    assert list(df["alarm"]) == ["session_lost"]
    svc.stop()


def test_a_restarted_collector_notices_a_session_the_broker_forgot(tmp_path: Path) -> None:
    cfg = config(tmp_path, 1883, mqtt={"client_id": "hw-marker"})
    marker = SessionMarker(tmp_path / "m.json", cfg)
    assert not marker.expects_session()  # first start ever: "no session" is normal
    marker.seen(force=True)
    assert SessionMarker(tmp_path / "m.json", cfg).expects_session()
    other = config(tmp_path, 1884, mqtt={"client_id": "hw-marker"})
    assert not SessionMarker(tmp_path / "m.json", other).expects_session()  # another broker: no session expected
    later = SessionMarker(tmp_path / "m.json", cfg, now=utc_now().timestamp() + cfg.mqtt.session_expiry_s + 10)
    assert not later.expects_session()  # past the session expiry the broker may rightly have dropped it


def test_collector_alarm_becomes_one_urgent_work_order(tmp_path: Path) -> None:
    from control.alerts.rules import observe_collector_alarms

    cfg = config(tmp_path, 1883)
    now = utc_now()
    df = pd.DataFrame({"time": [pd.Timestamp(now)], "collector_id": ["采集器-1"], "alarm": ["session_lost"],
                       "count": [1], "detail": ["broker lost it"]})
    cands = observe_collector_alarms(df, cfg)
    assert len(cands) == 1 and cands[0].category == "broker_session_lost" and cands[0].severity == "urgent"
    assert "采集器-1" in cands[0].content and "persistence" in cands[0].content
    assert observe_collector_alarms(df.assign(alarm=["other"]), cfg) == []


def test_readiness_liveness_and_metrics_over_http(tmp_path: Path, own_mosquitto: Mosquitto) -> None:
    port = free_port()
    cfg = config(tmp_path, own_mosquitto.port, mqtt={"client_id": "hw-http-live"},
                 run={"status_interval_s": 0.5, "http_port": port, "parts": ["collector"]})
    store = SqliteStore(tmp_path / "s.sqlite")
    svc = Service(cfg, REG, store).start()

    def get(path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    wait_until(lambda: get("/readyz")[0] == 200, what="ready over HTTP")
    pub = Publisher(own_mosquitto.port, "pub-http-live")
    t = utc_now().timestamp() - 60
    for i in range(30):
        pub.publish(f"heat/indoor/H{i:06d}", {"ts": t + i, "temp_c": 21.0})
    pub.wait_all(30)
    wait_until(lambda: svc.collector is not None and svc.collector.snapshot().acked == 30, what="acked")
    svc.write_status()
    code, body = get("/metrics")
    assert code == 200
    text = body.decode()
    assert 'heatwatch_collector_readings_stored_total{collector_id="hw-http-live"} 30.0' in text
    assert 'heatwatch_collector_subscribed{collector_id="hw-http-live"} 1.0' in text
    assert (tmp_path / "data" / "metrics.prom").read_text() .count("heatwatch_collector_readings_stored_total") >= 1
    assert get("/healthz")[0] == 200
    # the broker goes away: not healthy, not ready
    own_mosquitto.stop()
    wait_until(lambda: svc.collector is not None and not svc.collector.snapshot().connected, what="disconnect seen")
    svc.write_status()
    assert get("/healthz")[0] == 503 and get("/readyz")[0] == 503
    own_mosquitto.start()
    pub.close()
    svc.stop()


def test_not_live_when_unacknowledged_work_makes_no_progress() -> None:
    snap = {"parts": ["collector"], "state": "running", "broker": {"connected": True, "subscribed": True},
            "store": {"reachable": True}, "ingest": {"live": False, "not_live_reason": "no progress for 61 s"}}
    assert not healthy(snap)
    assert healthy({**snap, "ingest": {"live": True}})
    assert ready(snap)
    assert not ready({**snap, "broker": {"connected": True, "subscribed": False}})


def test_status_wait_ready_blocks_until_subscribed(tmp_path: Path, own_mosquitto: Mosquitto) -> None:
    import os
    import subprocess
    import sys

    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEATWATCH_")}
    env.update({"HEATWATCH_MQTT_PORT": str(own_mosquitto.port), "HEATWATCH_GENERAL_DATA_DIR": str(data),
                "HEATWATCH_MQTT_CLIENT_ID": "hw-wait-ready", "HEATWATCH_RUN_STATUS_INTERVAL_S": "1"})
    # nothing running: the wait times out with exit 1 and says why
    r = subprocess.run([sys.executable, "-m", "heatwatch", "status", "--wait", "ready", "--timeout", "1"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "not ready" in r.stderr
    proc = subprocess.Popen([sys.executable, "-m", "heatwatch", "collect"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        r = subprocess.run([sys.executable, "-m", "heatwatch", "status", "--wait", "ready", "--timeout", "120"], env=env,
                           capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stderr
        snap = json.loads((data / "status.json").read_text())
        assert snap["broker"]["subscribed"] is True
    finally:
        proc.terminate()
        assert proc.wait(60) == 0
    shutil.rmtree(data, ignore_errors=True)
