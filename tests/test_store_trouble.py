"""A full, limited or damaged store is not bad data: the readings are spooled and retried, never
dead-lettered, and the collector raises an alarm by code. A 1.x database dropped at runtime is created again."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import urllib3

from collector.codec import Reject
from collector.service import Collector
from heatwatch.core import schema
from heatwatch.core.model import Point
from heatwatch.core.timeutil import to_ns, utc_now
from heatwatch.infra.storage import StoreError, StoreUnavailable
from heatwatch.infra.storage.base import StoreAccessDenied, StoreCapacityError, StoreCorrupt, classify_http
from heatwatch.infra.storage.influxdb1 import Influxdb1Store
from heatwatch.infra.storage.sqlite import SqliteStore
from tests.helpers import Publisher, config, registry_for
from tools.servers import Influxd, Mosquitto


def wait_until(cond: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def readings(n: int, homes: int = 8, start_s: float | None = None) -> list[Point]:
    t0 = to_ns(utc_now() - timedelta(hours=1)) if start_s is None else int(start_s * 1e9)
    return [
        Point(schema.INDOOR, {"home_id": f"H{i % homes:06d}", "community": "幸福小区", "building": "1号楼", "source": "sensor"},
              {"temp_c": 18.0 + i / 100}, t0 + i * 1_000_000_000)
        for i in range(n)
    ]


# --- classification of InfluxDB answers -----------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "text", "kind", "alarm"),
    [
        (400, 'partial write: max-values-per-tag limit exceeded (3/3): measurement="indoor" tag="home_id" value="H9" dropped=1',
         StoreCapacityError, "max_values_per_tag"),
        (400, "partial write: max-series-per-database limit exceeded: (1000000) dropped=101", StoreCapacityError, "max_series"),
        (500, "max series per database exceeded: cpu,host=a", StoreCapacityError, "max_series"),  # 1.0-1.2 wording
        (500, "engine: error writing WAL entry: write /var/lib/influxdb/wal/_00001.wal: no space left on device",
         StoreCapacityError, "disk_full"),
        (503, "cache-max-memory-size exceeded: (1073741824/1073741824)", StoreCapacityError, "cache_full"),
        # InfluxDB 2.x / Cloud (JSON bodies)
        (429, '{"code":"too many requests","message":"org 0261d8287f4d6000 has exceeded limited_cardinality plan limit"}',
         StoreCapacityError, "max_series"),
        (429, '{"code":"too many requests","message":"org 0261d8287f4d6000 has exceeded limited_write plan limit"}',
         StoreCapacityError, "plan_limit"),
        (500, '{"code":"internal error","message":"write /var/lib/influxdb2/engine/wal/1/_00003.wal: no space left on device"}',
         StoreCapacityError, "disk_full"),
        (500, '{"code":"internal error","message":"tsm1: file /x/000001.tsm is corrupt: checksum mismatch"}',
         StoreCorrupt, "store_corrupt"),
        (401, "authorization failed", StoreAccessDenied, "access_denied"),
        # bad data stays bad data: the collector bisects and dead-letters only the refused points
        (400, 'partial write: field type conflict: input field "temp_c" on measurement "indoor" is type string, already '
              "exists as type float dropped=1", StoreError, None),
        (400, "partial write: points beyond retention policy dropped=1", StoreError, None),
        # a parse error echoes the line: words in the data must not pass for an alarm
        (400, "unable to parse 'deadletter payload=\"disk is full, corrupt\"': invalid field format", StoreError, None),
        (422, '{"code":"unprocessable entity","message":"failure writing points to database: partial write: field type conflict"}',
         StoreError, None),
    ],
)
def test_capacity_and_corruption_answers_are_unavailable_with_an_alarm(status: int, text: str, kind: type, alarm: str | None) -> None:
    exc = classify_http(status, "http://db:8086", text)
    assert type(exc) is kind
    assert getattr(exc, "alarm", None) == alarm
    assert isinstance(exc, StoreUnavailable) == (kind is not StoreError)


# --- SQLite: a damaged file, a full disk ------------------------------------------------------------
def damage_table(path: Path, table: str) -> None:
    """Overwrite the header of the root b-tree page of ``table`` and of its indexes in the closed file."""
    db = sqlite3.connect(path)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    roots = [r[0] for r in db.execute("SELECT rootpage FROM sqlite_master WHERE tbl_name = ? AND rootpage > 0", (table,))]
    db.close()
    with path.open("r+b") as f:
        for root in roots:
            f.seek((root - 1) * page_size)
            f.write(b"\x00" * 8)


def corrupt_sqlite(tmp_path: Path) -> SqliteStore:
    path = tmp_path / "store.sqlite"
    store = SqliteStore(path)
    store.write(readings(50))
    store.close()
    damage_table(path, schema.INDOOR)
    return SqliteStore(path)


def test_sqlite_malformed_file_is_store_corrupt(tmp_path: Path) -> None:
    store = corrupt_sqlite(tmp_path)
    with pytest.raises(StoreCorrupt, match="malformed") as info:
        store.write(readings(5))
    assert info.value.alarm == "store_corrupt"
    with pytest.raises(StoreCorrupt):
        store.count(schema.INDOOR, utc_now() - timedelta(days=1), utc_now())
    with pytest.raises(StoreCorrupt):
        store.query(schema.INDOOR, utc_now() - timedelta(days=1), utc_now())
    store.close()


def test_sqlite_full_disk_is_a_capacity_error(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.sqlite")
    store.write(readings(10))
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full: not one page more
    with pytest.raises(StoreCapacityError, match="full") as info:
        store.write(readings(5000, homes=500, start_s=1_700_000_000))
    assert info.value.alarm == "disk_full"
    store.close()


def test_collector_spools_and_alarms_on_a_damaged_store_instead_of_dead_lettering(tmp_path: Path) -> None:
    store = corrupt_sqlite(tmp_path)
    col = Collector(config(tmp_path, 1883), registry_for(8), store)
    pts = readings(40)
    dead: list[tuple[str, bytes, Reject]] = []
    assert col._store(pts, dead, to_ns(utc_now()))
    assert dead == []  # before: bisected down to 40 store_rejected dead letters
    assert col.spool.points == 40
    snap = col.snapshot()
    assert snap["spooled"] == 40 and snap["rejected"] == 0
    assert snap["store_alarms"] == {"store_corrupt": 1}
    col.spool.close()
    store.close()


# --- real influxd: a tag-value limit, a dropped database -------------------------------------------
@pytest.mark.influxd
@pytest.mark.mosquitto
def test_readings_beyond_max_values_per_tag_are_spooled_not_dead_lettered(tmp_path: Path, mosquitto: Mosquitto) -> None:
    limits = {"index-version": "inmem", "max-values-per-tag": 3}  # influxd 1.6 enforces the limit with inmem only
    server = Influxd(tmp_path / "influxd", data=limits).start()
    prefix = f"cap{tmp_path.name[-6:]}"
    cfg = config(tmp_path, mosquitto.port, mqtt={"topic_prefix": prefix}, collector={"metrics_interval_s": 3600})
    store = Influxdb1Store(server.url, "hw_cap")
    col = Collector(cfg, registry_for(8), store).start()
    pub = Publisher(mosquitto.port, f"pub-{prefix}")
    n = 80
    t0 = utc_now().timestamp() - 600
    window = (utc_now() - timedelta(hours=1), utc_now() + timedelta(minutes=1))
    try:
        assert col.wait_ready()
        for i in range(n):  # 3 homes: home_id takes 3 values, the limit
            pub.publish(f"{prefix}/indoor/H{i % 3:06d}", {"ts": t0 + i, "temp_c": 19.0 + i / 100})
        pub.wait_all(n)
        wait_until(lambda: store.count(schema.INDOOR, *window) == n, what="the first readings stored")
        # influxd checks the limit against the values it already has, so the next writes are refused
        for i in range(n, 2 * n):  # 8 homes now
            pub.publish(f"{prefix}/indoor/H{i % 8:06d}", {"ts": t0 + i, "temp_c": 19.0 + i / 100})
        n *= 2
        pub.wait_all(n)
        wait_until(lambda: col.snapshot()["acked"] == n, what="all acknowledged")
        snap = col.snapshot()
        assert snap["rejected"] == 0, snap["rejects_by_reason"]  # before: store_rejected dead letters
        assert snap["spooled"] > 0 and snap["store_alarms"].get("max_values_per_tag", 0) >= 1
        # the operator lifts the limit and restarts influxd: the spool drains, every reading is stored
        server.stop()
        server = Influxd(tmp_path / "influxd", port=server.port, data={"index-version": "inmem"}).start()
        wait_until(lambda: col.snapshot()["spool_points"] == 0, what="spool drained")
        assert store.count(schema.INDOOR, *window) == n
    finally:
        pub.close()
        col.stop()
        store.close()
        server.stop()


def _drop(server: Influxd, db: str) -> None:
    urllib3.PoolManager().request("POST", server.url + "/query", fields={"q": f'DROP DATABASE "{db}"'}, encode_multipart=False)


@pytest.mark.influxd
def test_a_dropped_database_is_created_again_on_write(influxd: Influxd) -> None:
    db = "hw_drop_" + uuid.uuid4().hex[:8]
    store = Influxdb1Store(influxd.url, db)
    window = (utc_now() - timedelta(hours=2), utc_now())
    store.write(readings(10))
    _drop(influxd, db)
    store.write(readings(10))  # before: StoreAccessDenied "database not found", the recreate branch never ran
    assert store.count(schema.INDOOR, *window) == 10
    _drop(influxd, db)
    store.close()


@pytest.mark.influxd
def test_a_dropped_database_is_not_created_when_creating_is_off(influxd: Influxd) -> None:
    db = "hw_drop_" + uuid.uuid4().hex[:8]
    Influxdb1Store(influxd.url, db).write(readings(1))
    store = Influxdb1Store(influxd.url, db, create_database=False)
    _drop(influxd, db)
    with pytest.raises(StoreAccessDenied, match="database not found"):
        store.write(readings(1))
    store.close()


@pytest.mark.influxd
@pytest.mark.mosquitto
def test_collector_stores_everything_after_the_database_is_dropped_mid_stream(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd
) -> None:
    db = "hw_drop_" + uuid.uuid4().hex[:8]
    prefix = f"drop{tmp_path.name[-6:]}"
    cfg = config(tmp_path, mosquitto.port, mqtt={"topic_prefix": prefix}, collector={"metrics_interval_s": 3600})
    store = Influxdb1Store(influxd.url, db)
    col = Collector(cfg, registry_for(8), store).start()
    pub = Publisher(mosquitto.port, f"pub-{prefix}")
    n = 200
    t0 = utc_now().timestamp() - 1200
    first = (utc_now() - timedelta(minutes=21), utc_now() - timedelta(minutes=15))
    second = (utc_now() - timedelta(minutes=15), utc_now())
    try:
        assert col.wait_ready()
        for i in range(n):
            pub.publish(f"{prefix}/indoor/H{i % 8:06d}", {"ts": t0 + i, "temp_c": 20.0})
        pub.wait_all(n)
        wait_until(lambda: store.count(schema.INDOOR, *first) == n, what="first half stored")
        _drop(influxd, db)  # an operator (or a retention accident) drops the database under a running collector
        for i in range(n):
            pub.publish(f"{prefix}/indoor/H{i % 8:06d}", {"ts": t0 + 600 + i, "temp_c": 21.0})
        pub.wait_all(2 * n)
        wait_until(lambda: store.count(schema.INDOOR, *second) == n, what="second half stored in the recreated database")
        assert col.snapshot()["rejected"] == 0
    finally:
        pub.close()
        col.stop()
        _drop(influxd, db)
        store.close()
