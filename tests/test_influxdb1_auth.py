"""InfluxDB 1.x with authentication on: a configured user's writes and queries carry the credentials.

(Writes once sent their own headers, which replaced the connection pool's Authorization header: every write
got 401 and the collector spooled forever while queries worked.)
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from heatwatch.core import schema
from heatwatch.core.model import Point
from heatwatch.core.timeutil import to_ns, utc_now
from heatwatch.infra.storage import StoreUnavailable
from heatwatch.infra.storage.base import StoreAccessDenied
from heatwatch.infra.storage.influxdb1 import Influxdb1Store
from tools.servers import Influxd

USER, PASSWORD = "heatwatch-collector", "口令-pw"


@pytest.fixture
def influxd_with_auth(tmp_path: Path) -> Iterator[Influxd]:
    server = Influxd(tmp_path / "influx")
    server.conf.write_text(server.conf.read_text().replace("[http]\n  enabled = true", "[http]\n  enabled = true\n  auth-enabled = true"))
    server.start()
    # with auth on and no users yet, influxd accepts exactly one thing: creating the first admin
    q = urllib.parse.urlencode({"q": f"CREATE USER \"{USER}\" WITH PASSWORD '{PASSWORD}' WITH ALL PRIVILEGES"})
    with urllib.request.urlopen(urllib.request.Request(f"{server.url}/query", data=q.encode(), method="POST"), timeout=10) as r:
        assert r.status == 200
    yield server
    server.stop()


def test_writes_and_queries_carry_the_credentials(influxd_with_auth: Influxd) -> None:
    store = Influxdb1Store(influxd_with_auth.url, "auth_db", username=USER, password=PASSWORD)
    now = utc_now()
    pts = [Point(schema.INDOOR, {"home_id": f"H{i:06d}", "community": "幸福小区"}, {"temp_c": 20.0 + i}, to_ns(now) - i * 10**9)
           for i in range(5)]
    store.write(pts)
    assert store.count(schema.INDOOR, now - timedelta(hours=1), now + timedelta(minutes=1)) == 5
    store.close()


def test_a_wrong_password_is_access_denied_not_bad_data(influxd_with_auth: Influxd) -> None:
    store = Influxdb1Store(influxd_with_auth.url, "auth_db", username=USER, password="wrong", create_database=False)
    with pytest.raises(StoreAccessDenied):
        store.write([Point(schema.INDOOR, {"home_id": "H000001"}, {"temp_c": 20.0}, to_ns(utc_now()))])
    assert issubclass(StoreAccessDenied, StoreUnavailable)  # spooled and retried by the collector, never dead-lettered
    store.close()
