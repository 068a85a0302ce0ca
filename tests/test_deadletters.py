"""Dead letters that survive: kept in the store before the ack (spooled when it is down), listed
and replayed by ``heatwatch deadletters``, deleted after their retention; the MQTT publish result is checked."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
import urllib3

from collector.codec import Reject
from collector.deadletter import deadletter_point, stored_letters
from collector.service import Collector
from heatwatch.app.cli import main
from heatwatch.app.commands import deadletters as deadletter_cli
from heatwatch.core import schema
from heatwatch.core.registry import Home, load_registry, write_homes
from heatwatch.core.timeutil import to_ns, utc_now
from heatwatch.infra.storage.base import Store
from heatwatch.infra.storage.influxdb1 import Influxdb1Store
from heatwatch.infra.storage.sqlite import SqliteStore
from tests.helpers import Publisher, config, make_homes, make_registry_files, registry_for
from tests.test_collector_mqtt import FlakyStore
from tests.test_storage_contract import INFLUX_BACKENDS, _influxdb2_store
from tools.servers import Influxd, Mosquitto

S = 1_000_000_000
NEW_HOME = "阳光花园-7-502"  # a home the registry does not know yet


def wait_until(cond: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def letters_in(store: Store, reason: str | None = None) -> list[Any]:
    return deadletter_cli.pending_letters(store, utc_now() - timedelta(days=60), utc_now() + timedelta(minutes=5), reason,
                                          include_replayed=True)


# --- every backend ------------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", *INFLUX_BACKENDS])
def dl_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s: Store = SqliteStore(tmp_path / "store.sqlite", "NORMAL")
        yield s
        s.close()
    elif request.param == "influxdb1":
        server: Influxd = request.getfixturevalue("influxd")
        db = f"dl_{uuid.uuid4().hex[:12]}"
        s = Influxdb1Store(server.url, db, timeout_s=30)
        yield s
        s.close()
        urllib3.PoolManager().request("POST", server.url + "/query", fields={"q": f'DROP DATABASE "{db}"'}, encode_multipart=False)
    else:
        yield from _influxdb2_store()


TRICKY_PAYLOADS = [
    '{"ts": 1795500000, "temp_c": "暖和"}',
    '{\n  "ts": "2026-11-24T08:00:00",\n  "temp_c": 20.5, "note": "a \\"quoted\\" \\\\ back\\\\slash, comma=1 tab\\t"\n}',
    "",
    "control characters: nul \x00 cr \r bell \x07 del \x7f, and 表情 🔥",
]


def test_dead_letters_round_trip_on_every_backend(dl_store: Store) -> None:
    now = to_ns(utc_now())
    topic = f"heat/indoor/{NEW_HOME}"
    pts = [deadletter_point(topic, p.encode(), Reject("unknown_home", f"home {NEW_HOME!r} is not in the registry"), now - S,
                            now - S + k, "采集-1", 256 * 1024) for k, p in enumerate(TRICKY_PAYLOADS)]
    pts.append(deadletter_point(topic, bytes(range(256)), Reject("invalid_json", "payload is not UTF-8"), now - S, now - S,
                                "采集-1", 256 * 1024))  # same time, another reason: another letter
    element = {"ts": 1795500000, "temp_c": 99.0}
    pts.append(deadletter_point(topic, b"[...]", Reject("out_of_range", "temp_c 99 °C", 3, element), now - S, now - S + 9,
                                "采集-1", 256 * 1024))
    pts.append(deadletter_point(topic, b"x" * 5000, Reject("too_large", "payload is 5000 bytes"), now - S, now - S + 10,
                                "采集-1", 1024))
    dl_store.write(pts)
    got = {(x.reason, x.ts_ns): x for x in letters_in(dl_store)}
    assert len(got) == len(pts)
    for k, payload in enumerate(TRICKY_PAYLOADS):
        x = got[("unknown_home", now - S + k)]
        assert (x.topic, x.payload, x.payload_encoding, x.collector_id) == (topic, payload, "utf-8", "采集-1")
        assert x.detail == f"home {NEW_HOME!r} is not in the registry" and x.pending and x.index is None
        assert x.raw == payload.encode()
    binary = got[("invalid_json", now - S)]
    assert binary.payload_encoding == "base64" and binary.raw == bytes(range(256))
    el = got[("out_of_range", now - S + 9)]
    assert el.index == 3 and orjson.loads(el.raw) == element
    cut = got[("too_large", now - S + 10)]
    assert cut.truncated and cut.payload_bytes == 5000 and len(cut.raw) == 1024
    # marking a letter replayed replaces it (same identity), it does not add one
    x = got[("unknown_home", now - S)]
    dl_store.write([x.point(status=schema.DEADLETTER_REPLAYED, note="replayed: 1 reading stored")])
    again = {(y.reason, y.ts_ns): y for y in letters_in(dl_store)}
    assert len(again) == len(pts)
    assert again[("unknown_home", now - S)].status == "replayed" and again[("unknown_home", now - S)].payload == TRICKY_PAYLOADS[0]


def test_delete_before_on_every_backend(dl_store: Store) -> None:
    now = utc_now()
    old, new = to_ns(now - timedelta(days=40)), to_ns(now - timedelta(days=1))
    rej = Reject("unknown_home", "not in the registry")
    dl_store.write([deadletter_point("heat/indoor/X", b"{}", rej, ts, ts, "c1", 1024) for ts in (old, old + 1, new)])
    reading = schema.INDOOR
    from tests.test_storage_contract import indoor

    dl_store.write([indoor("H1", now - timedelta(days=40), 20.0)])  # other measurements are not touched
    dl_store.delete_before(schema.DEADLETTER, now - timedelta(days=30))
    assert [x.ts_ns for x in letters_in(dl_store)] == [new]
    assert dl_store.count(reading, now - timedelta(days=41), now) == 1


def test_influxdb2_delete_before_sends_the_delete_api_request() -> None:
    """InfluxDB 2.x is not installed here: the request is checked against a stand-in (its /api/v2/delete)."""
    from heatwatch.infra.storage.influxdb2 import Influxdb2Store

    seen: list[tuple[str, dict[str, Any]]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            seen.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    store = Influxdb2Store(f"http://127.0.0.1:{server.server_address[1]}", "热力公司", "heat", "token")
    try:
        store.delete_before(schema.DEADLETTER, utc_now().replace(year=2026, month=1, day=1, hour=0, minute=0, second=0,
                                                                 microsecond=0))
    finally:
        store.close()
        server.shutdown()
    ((path, body),) = seen
    assert path.startswith("/api/v2/delete?") and "bucket=heat" in path
    assert body["predicate"] == '_measurement="deadletter"'
    assert body["start"].startswith("1970-01-01T00:00:00") and body["stop"].startswith("2026-01-01T00:00:00")


# --- the collector ------------------------------------------------------------------------------------
@pytest.mark.mosquitto
def test_dead_letters_are_stored_before_the_ack(tmp_path: Path, mosquitto: Mosquitto) -> None:
    prefix = f"dls{tmp_path.name[-6:]}"
    store = SqliteStore(tmp_path / "s.sqlite")
    col = Collector(config(tmp_path, mosquitto.port, mqtt={"topic_prefix": prefix}), registry_for(10), store).start()
    pub = Publisher(mosquitto.port, f"pub-{prefix}")
    try:
        assert col.wait_ready()
        t = utc_now().timestamp() - 60
        pub.publish(f"{prefix}/indoor/{NEW_HOME}", {"ts": t, "temp_c": 20.5})
        pub.publish(f"{prefix}/indoor/H000001", [{"ts": t, "temp_c": 20.0}, {"ts": t, "temp_c": "暖"}, {"ts": t, "temp_c": 85}])
        pub.wait_all(2)
        wait_until(lambda: col.snapshot()["acked"] == 2, what="both acknowledged")
        letters = letters_in(store)  # no waiting: acknowledged means the letters are durable
        assert sorted((x.reason, x.index) for x in letters) == [("out_of_range", 2), ("unknown_home", None), ("wrong_type", 1)]
        assert len({x.ts_ns for x in letters}) == 3 and {x.collector_id for x in letters} == {col.collector_id}
        (home,) = [x for x in letters if x.reason == "unknown_home"]
        assert home.topic == f"{prefix}/indoor/{NEW_HOME}" and orjson.loads(home.raw) == {"ts": t, "temp_c": 20.5}
    finally:
        pub.close()
        col.stop()
        store.close()


@pytest.mark.mosquitto
def test_dead_letters_survive_a_store_outage(tmp_path: Path, mosquitto: Mosquitto) -> None:
    prefix = f"dlo{tmp_path.name[-6:]}"
    store = FlakyStore(tmp_path / "s.sqlite")
    store.down.set()
    col = Collector(config(tmp_path, mosquitto.port, mqtt={"topic_prefix": prefix}), registry_for(10), store).start()
    pub = Publisher(mosquitto.port, f"pub-{prefix}")
    try:
        assert col.wait_ready()
        t = utc_now().timestamp() - 60
        for k in range(5):
            pub.publish(f"{prefix}/indoor/{NEW_HOME}", {"ts": t + k, "temp_c": 20.5})
        pub.publish(f"{prefix}/indoor/H000001", {"ts": t, "temp_c": 21.0})
        pub.wait_all(6)
        wait_until(lambda: col.snapshot()["acked"] == 6, what="acknowledged while the store is down")
        assert col.snapshot()["spool_points"] == 6  # 5 letters and 1 reading
        store.down.clear()
        wait_until(lambda: col.snapshot()["spool_points"] == 0, what="spool drained")
        assert [x.reason for x in letters_in(store)] == ["unknown_home"] * 5
        assert store.count(schema.INDOOR, utc_now() - timedelta(hours=1), utc_now()) == 1
    finally:
        pub.close()
        col.stop()
        store.close()


@pytest.mark.mosquitto
def test_a_refused_publish_is_counted_and_the_letter_is_still_stored(tmp_path: Path, mosquitto: Mosquitto) -> None:
    prefix = f"dlp{tmp_path.name[-6:]}"
    store = SqliteStore(tmp_path / "s.sqlite")
    col = Collector(config(tmp_path, mosquitto.port, mqtt={"topic_prefix": prefix}), registry_for(10), store).start()
    real = col.subscriber.client.publish

    def refuse_deadletters(topic: str, payload: Any = None, qos: int = 0, retain: bool = False, properties: Any = None) -> Any:
        if topic.endswith("/deadletter"):
            info = mqtt.MQTTMessageInfo(0)
            info.rc = mqtt.MQTT_ERR_NO_CONN
            return info
        return real(topic, payload, qos, retain, properties)

    col.subscriber.client.publish = refuse_deadletters  # type: ignore[method-assign]
    pub = Publisher(mosquitto.port, f"pub-{prefix}")
    try:
        assert col.wait_ready()
        pub.publish(f"{prefix}/indoor/{NEW_HOME}", {"ts": utc_now().timestamp() - 60, "temp_c": 20.5})
        pub.wait_all(1)
        wait_until(lambda: col.snapshot()["acked"] == 1, what="acknowledged")
        assert col.snapshot()["deadletters_unpublished"] == 1
        assert [x.reason for x in letters_in(store)] == ["unknown_home"]
    finally:
        pub.close()
        col.stop()
        store.close()


def test_old_dead_letters_are_deleted_after_the_retention(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite")
    now = utc_now()
    rej = Reject("unknown_home", "not in the registry")
    stamps = [to_ns(now - timedelta(days=d)) for d in (45, 31, 29, 1)]
    store.write([deadletter_point("heat/indoor/X", b"{}", rej, ts, ts, "c1", 1024) for ts in stamps])
    cfg = config(tmp_path, 1883, collector={"deadletter_retention_days": 30})
    col = Collector(cfg, registry_for(5), store)
    col._writer.start()  # the writer's periodic work alone: no broker needed
    try:
        wait_until(lambda: len(letters_in(store)) == 2, what="letters older than 30 days deleted")
        assert [x.ts_ns for x in letters_in(store)] == stamps[2:]
    finally:
        col._stop.set()
        col._decoded.put(None)
        col._writer.join(10)
        col.spool.close()
        store.close()


# --- heatwatch deadletters list / replay --------------------------------------------------------------
def _toml(tmp_path: Path, homes_csv: Path, stations_csv: Path, prefix: str) -> Path:
    path = tmp_path / "heatwatch.toml"
    path.write_text(
        f'[general]\ndata_dir = "{tmp_path / "data"}"\n[mqtt]\ntopic_prefix = "{prefix}"\n'
        f'[registry]\nhomes_csv = "{homes_csv}"\nstations_csv = "{stations_csv}"\n',
        encoding="utf-8",
    )
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


@pytest.mark.mosquitto
def test_unknown_home_is_listed_then_replayed_after_the_registry_learns_it(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    homes_csv, stations_csv = make_registry_files(tmp_path, 10)
    prefix = f"dlr{tmp_path.name[-6:]}"
    conf = _toml(tmp_path, homes_csv, stations_csv, prefix)
    cfg = config(tmp_path, mosquitto.port, mqtt={"topic_prefix": prefix},
                 registry={"homes_csv": str(homes_csv), "stations_csv": str(stations_csv)})
    assert cfg.sqlite_path == tmp_path / "data" / "heatwatch.sqlite"
    store = SqliteStore(cfg.sqlite_path)
    col = Collector(cfg, load_registry(homes_csv, stations_csv), store).start()
    pub = Publisher(mosquitto.port, f"pub-{prefix}")
    t = utc_now().timestamp() - 600
    try:
        assert col.wait_ready()
        pub.publish(f"{prefix}/indoor/{NEW_HOME}", [{"ts": t, "temp_c": 19.5}, {"ts": t + 60, "temp_c": 19.75},
                                                    {"ts": t + 120, "temp_c": 99.0}])
        pub.publish(f"{prefix}/indoor/还是不认识", {"ts": t, "temp_c": 18.0})
        pub.publish(f"{prefix}/indoor/H000001", {"ts": t, "temp_c": "暖"})
        pub.wait_all(3)
        wait_until(lambda: col.snapshot()["acked"] == 3, what="acknowledged")
    finally:
        pub.close()
        col.stop()
        store.close()

    code, out = _run(capsys, "--config", str(conf), "deadletters", "list")
    assert code == 0 and NEW_HOME in out and "还是不认识" in out and "unknown_home" in out and "wrong_type" in out
    assert "3 dead letters" in out
    code, out = _run(capsys, "--config", str(conf), "deadletters", "list", "--json", "--reason", "unknown_home")
    listed = json.loads(out)
    assert [x["topic"] for x in listed] == [f"{prefix}/indoor/{NEW_HOME}", f"{prefix}/indoor/还是不认识"]
    assert f'"{prefix}/indoor/{NEW_HOME}"' in out  # Chinese stays readable, not \\u escapes

    code, out = _run(capsys, "--config", str(conf), "deadletters", "replay")
    assert code == 0 and "0 dead letters replayed" in out and "3 still fail for the same reason" in out

    # the ledger catches up: the home is added to the registry
    homes = make_homes(10)
    homes.append(Home(NEW_HOME, "阳光花园", "7号楼", "1", 5, 6, False, "residential", None, "S2", "阳光花园 7号楼 502", ""))
    write_homes(homes_csv, homes)
    code, out = _run(capsys, "--config", str(conf), "deadletters", "replay", "--reason", "unknown_home", "--dry-run")
    assert code == 0 and "dry run" in out and "1 dead letters would be replayed: 2 readings would be stored" in out
    code, out = _run(capsys, "--config", str(conf), "deadletters", "list", "--reason", "unknown_home", "--json")
    assert len(json.loads(out)) == 2  # the dry run wrote nothing
    code, out = _run(capsys, "--config", str(conf), "deadletters", "replay", "--reason", "unknown_home")
    assert code == 0, out
    assert "1 dead letters replayed: 2 readings stored" in out
    assert "1 still fail for the same reason" in out and "out_of_range 1" in out

    with SqliteStore(cfg.sqlite_path) as check:
        df = check.query(schema.INDOOR, utc_now() - timedelta(hours=1), utc_now(), where={"home_id": NEW_HOME})
        assert df["temp_c"].tolist() == [19.5, 19.75] and set(df["community"]) == {"阳光花园"}
    code, out = _run(capsys, "--config", str(conf), "deadletters", "list", "--json")
    pending = {(x["reason"], x["topic"].rsplit("/", 1)[1]) for x in json.loads(out)}
    assert pending == {("unknown_home", "还是不认识"), ("wrong_type", "H000001"), ("out_of_range", NEW_HOME)}
    (moved,) = [x for x in json.loads(out) if x["reason"] == "out_of_range"]
    assert moved["collector_id"] == "replay" and moved["index"] == 2 and json.loads(moved["payload"])["temp_c"] == 99.0
    code, out = _run(capsys, "--config", str(conf), "deadletters", "list", "--all", "--json")
    (done,) = [x for x in json.loads(out) if x["status"] == "replayed"]
    assert done["topic"].endswith(NEW_HOME) and "2 readings stored" in done["note"] and "out_of_range" in done["note"]
    # a second replay changes nothing
    code, out = _run(capsys, "--config", str(conf), "deadletters", "replay")
    assert "0 dead letters replayed" in out and "3 still fail for the same reason" in out


def test_replay_of_a_point_the_store_refused(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.sqlite")
    now = to_ns(utc_now())
    element = {"measurement": "indoor", "tags": {"home_id": "H000001", "community": "幸福小区", "building": "1号楼",
                                                 "source": "sensor"}, "fields": {"temp_c": 20.25}, "ts_ns": now - 60 * S}
    store.write([deadletter_point("heat/indoor/H000001", b"", Reject("store_rejected", "field type conflict", 0, element),
                                  now, now, "c1", 1024)])
    result = deadletter_cli.replay(config(tmp_path, 1883), registry_for(5), store, letters_in(store))
    assert result.replayed == 1 and result.readings == 1
    assert store.query(schema.INDOOR, utc_now() - timedelta(hours=1), utc_now())["temp_c"].tolist() == [20.25]
    assert [x.status for x in letters_in(store)] == ["replayed"]
    store.close()


def test_stored_letters_reads_an_empty_answer() -> None:
    import pandas as pd

    assert list(stored_letters(pd.DataFrame({"time": pd.Series([], dtype="datetime64[ns, UTC]")}))) == []
