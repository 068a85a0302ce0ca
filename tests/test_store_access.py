"""A store that refuses access (wrong token, missing database) must not cost a reading: the collector spools and
retries; only data the store rejects as data (a field type conflict, unparsable) is dead-lettered."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from collector.service import Collector
from heatwatch.core import schema
from heatwatch.core.config import load_config
from heatwatch.core.model import Point
from heatwatch.core.registry import load_registry
from heatwatch.core.timeutil import to_ns, utc_now
from heatwatch.infra.storage import StoreAccessDenied, StoreError, StoreUnavailable
from heatwatch.infra.storage.base import classify_http
from heatwatch.infra.storage.influxdb1 import Influxdb1Store
from tests.helpers import Publisher, make_registry_files
from tools.servers import Influxd, Mosquitto


@pytest.mark.parametrize(
    ("status", "kind"),
    [(401, StoreAccessDenied), (403, StoreAccessDenied), (404, StoreAccessDenied), (429, StoreUnavailable),
     (500, StoreUnavailable), (503, StoreUnavailable), (400, StoreError), (413, StoreError), (422, StoreError)],
)
def test_http_answers_are_classified(status: int, kind: type[Exception]) -> None:
    exc = classify_http(status, "http://db:8086", "detail")
    assert type(exc) is kind
    # access problems are a kind of "unavailable": every caller that spools on unavailable spools on these too
    assert isinstance(exc, StoreUnavailable) == (kind is not StoreError)


@pytest.mark.influxd
def test_missing_database_is_access_denied_not_bad_data(influxd: Influxd) -> None:
    store = Influxdb1Store(influxd.url, "hw_missing_" + uuid.uuid4().hex[:8], create_database=False)
    p = Point(schema.INDOOR, {"home_id": "H1", "community": "幸福小区", "building": "1号楼", "source": "sensor"},
              {"temp_c": 19.5}, to_ns(utc_now()))
    with pytest.raises(StoreAccessDenied, match="database not found"):
        store.write([p])
    store.close()


@pytest.mark.influxd
@pytest.mark.mosquitto
def test_collector_spools_while_the_database_is_missing_and_stores_all_once_it_exists(
    tmp_path: Path, mosquitto: Mosquitto, influxd: Influxd
) -> None:
    db = "hw_late_" + uuid.uuid4().hex[:8]
    prefix = "acc" + uuid.uuid4().hex[:6]
    homes_csv, stations_csv = make_registry_files(tmp_path, 50)
    cfg = load_config(environ={}, overrides={
        "general": {"data_dir": str(tmp_path / "data")},
        "mqtt": {"port": mosquitto.port, "topic_prefix": prefix, "client_id": f"col-{prefix}"},
        "collector": {"batch_interval_s": 0.1, "store_retry_s": 0.5, "metrics_interval_s": 3600},
    })
    registry = load_registry(homes_csv, stations_csv)
    store = Influxdb1Store(influxd.url, db, create_database=False)  # as with a token that may not create databases
    col = Collector(cfg, registry, store).start()
    pub = Publisher(mosquitto.port, f"pub-{prefix}")
    t0 = utc_now() - timedelta(hours=1)
    n = 300
    try:
        assert col.wait_ready()
        for i in range(n):
            ts = (t0 + timedelta(seconds=i)).timestamp()
            pub.publish(f"{prefix}/indoor/H{i % 50:06d}", {"ts": ts, "temp_c": 18.0 + i / 1000})
        pub.wait_all(n)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and int(col.snapshot()["spooled"]) < n:  # type: ignore[call-overload]
            time.sleep(0.1)
        snap = col.snapshot()
        assert int(snap["spooled"]) == n and int(snap["rejected"]) == 0 and int(snap["stored"]) == 0  # type: ignore[call-overload]
        # the operator fixes it: the database appears; the spool drains into it
        admin = Influxdb1Store(influxd.url, db)
        admin._ensure_database()
        deadline = time.monotonic() + 30
        window = (t0 - timedelta(minutes=1), utc_now())
        while time.monotonic() < deadline and admin.count(schema.INDOOR, *window) < n:
            time.sleep(0.2)
        assert admin.count(schema.INDOOR, *window) == n
        assert int(col.snapshot()["rejected"]) == 0  # type: ignore[call-overload]
        admin.close()
    finally:
        pub.close()
        col.stop(timeout=30)
        store.close()
