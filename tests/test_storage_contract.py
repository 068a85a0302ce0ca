"""One storage contract, the same cases on every backend present.

sqlite always; influxdb1 against the real influxd of the session (a fresh database per test);
influxdb2 is one of the backends only when HEATWATCH_TEST_INFLUXDB2_URL/_TOKEN/_ORG point at a real InfluxDB 2.x.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import urllib3

from heatwatch.core import schema
from heatwatch.core.config import load_config
from heatwatch.core.model import Point
from heatwatch.core.timeutil import to_ns
from heatwatch.infra.storage import open_store
from heatwatch.infra.storage.base import Store, StoreError, StoreUnavailable
from heatwatch.infra.storage.influxdb1 import Influxdb1Store
from tools.servers import Influxd

SHANGHAI = ZoneInfo("Asia/Shanghai")
KOLKATA = ZoneInfo("Asia/Kolkata")
T0 = datetime(2026, 1, 10, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)
S = 1_000_000_000
INFLUX2_ENV = ("HEATWATCH_TEST_INFLUXDB2_URL", "HEATWATCH_TEST_INFLUXDB2_TOKEN", "HEATWATCH_TEST_INFLUXDB2_ORG")
# InfluxDB 2.x cannot be installed on these machines (Debian has 1.6.7 only): it is a backend of the contract
# when a real one is configured, not a server the tests start — so it is collected or not, never skipped.
# Its HTTP exchange is tested without a server below (test_influxdb2_wire_*).
INFLUX2_PRESENT = all(os.environ.get(k) for k in INFLUX2_ENV)
INFLUX_BACKENDS = ["influxdb1", "influxdb2"] if INFLUX2_PRESENT else ["influxdb1"]
TRICKY = ("阳光小区", 'a,b=c "d" \\e f', "东 区,=", "Riverside")


def ns(dt: datetime) -> int:
    return to_ns(dt)


def indoor(
    home: str, at: datetime, temp: float, community: str = "阳光小区", rh: float | None = None, battery_v: float | None = None
) -> Point:
    tags = {"home_id": home, "community": community, "building": "1号楼", "source": "sensor"}
    fields = {"temp_c": temp, "rh": rh, "battery_v": battery_v}
    return Point(schema.INDOOR, tags, {k: v for k, v in fields.items() if v is not None}, ns(at))


# --- backends -------------------------------------------------------------------------------
def _influxdb2_store() -> Iterator[Store]:
    from influxdb_client import InfluxDBClient

    from heatwatch.infra.storage.influxdb2 import Influxdb2Store

    url, token, org = (os.environ[k] for k in INFLUX2_ENV)
    bucket = f"heatwatch_test_{uuid.uuid4().hex[:10]}"
    with InfluxDBClient(url=url, token=token, org=org) as admin:
        created = admin.buckets_api().create_bucket(bucket_name=bucket, org=org)
        store = Influxdb2Store(url, org, bucket, token, timeout_s=20)
        try:
            yield store
        finally:
            store.close()
            admin.buckets_api().delete_bucket(created)


@pytest.fixture(params=["sqlite", *INFLUX_BACKENDS])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        from heatwatch.infra.storage.sqlite import SqliteStore

        s: Store = SqliteStore(tmp_path / "store.sqlite", "NORMAL")
        yield s
        s.close()
    elif request.param == "influxdb1":
        server: Influxd = request.getfixturevalue("influxd")
        db = f"contract_{uuid.uuid4().hex[:12]}"
        s = Influxdb1Store(server.url, db, timeout_s=30)
        yield s
        s.close()
        urllib3.PoolManager().request("POST", server.url + "/query", fields={"q": f'DROP DATABASE "{db}"'},
                                      encode_multipart=False)
    else:
        yield from _influxdb2_store()


@pytest.fixture(params=INFLUX_BACKENDS)
def influx_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Only the InfluxDB backends: typed fields and line-protocol limits are theirs."""
    if request.param == "influxdb1":
        server: Influxd = request.getfixturevalue("influxd")
        db = f"contract_{uuid.uuid4().hex[:12]}"
        s = Influxdb1Store(server.url, db, timeout_s=30)
        yield s
        s.close()
    else:
        yield from _influxdb2_store()


# --- raw round trips ------------------------------------------------------------------------
def test_round_trip_every_input_measurement(store: Store) -> None:
    at = T0 + timedelta(hours=3)
    pts = [
        indoor("H1", at, 18.37, rh=41.5, battery_v=3.01),
        indoor("H2", at + timedelta(seconds=1, microseconds=123), 0.1 + 0.2),
        Point(schema.STATION, {"station_id": "站1"}, {
            "supply_c": 61.25, "return_c": 44.0, "supply_kpa": 512.5, "return_kpa": 300.0, "flow_m3h": 123.456,
            "primary_supply_c": 98.5, "primary_return_c": 55.125,
        }, ns(at)),
        Point(schema.WEATHER, {"site_id": "沈阳"}, {"temp_c": -17.3}, ns(at)),
        Point(schema.FORECAST, {"site_id": "沈阳"}, {"temp_c": -21.0, "issued_s": 1_768_000_000}, ns(at + DAY)),
    ]
    store.write(pts)
    df = store.query(schema.INDOOR, T0, T0 + DAY)
    assert list(df.columns) == ["time", *schema.INDOOR_TAGS, *schema.INDOOR_FIELDS]
    assert str(df["time"].dtype) == "datetime64[ns, UTC]"
    assert all(df[c].dtype == "float64" for c in schema.INDOOR_FIELDS)
    assert df["time"].tolist() == [pd.Timestamp(at), pd.Timestamp(at + timedelta(seconds=1, microseconds=123))]
    assert df["temp_c"].tolist() == [18.37, 0.1 + 0.2]  # exact, not rounded
    assert df.loc[0, "rh"] == 41.5 and df.loc[0, "battery_v"] == 3.01
    assert df["rh"].isna().tolist() == [False, True]
    assert df["building"].tolist() == ["1号楼", "1号楼"]

    st = store.query(schema.STATION, T0, T0 + DAY)
    assert list(st.columns) == ["time", "station_id", *schema.STATION_FIELDS]
    assert st.iloc[0].to_dict() == {"time": pd.Timestamp(at), "station_id": "站1", **pts[2].fields}

    w = store.query(schema.WEATHER, T0, T0 + DAY)
    assert w[["site_id", "temp_c"]].values.tolist() == [["沈阳", -17.3]]
    fc = store.query(schema.FORECAST, T0, T0 + 2 * DAY, where={"site_id": "沈阳"})
    assert fc["temp_c"].tolist() == [-21.0] and fc["issued_s"].tolist() == [1_768_000_000]
    assert fc["time"].tolist() == [pd.Timestamp(at + DAY)]


def test_same_series_and_time_overwrites(store: Store) -> None:
    at = T0 + timedelta(hours=1)
    store.write([indoor("H1", at, 17.0)])
    store.write([indoor("H1", at, 19.5)])  # an MQTT redelivery with a corrected value
    store.write([indoor("H1", at, 19.5), indoor("H1", at + timedelta(minutes=1), 20.0)])
    df = store.query(schema.INDOOR, T0, T0 + DAY)
    assert df["temp_c"].tolist() == [19.5, 20.0]
    assert store.count(schema.INDOOR, T0, T0 + DAY) == 2


def test_chinese_and_separator_characters_in_tags(store: Store) -> None:
    at = T0 + timedelta(hours=2)
    store.write([indoor(f"户 {i},={i}", at, 18.0 + i, community=c) for i, c in enumerate(TRICKY)])
    df = store.query(schema.INDOOR, T0, T0 + DAY)
    assert sorted(df["community"]) == sorted(TRICKY)
    for i, c in enumerate(TRICKY):
        one = store.query(schema.INDOOR, T0, T0 + DAY, where={"community": c})
        assert one[["home_id", "temp_c"]].values.tolist() == [[f"户 {i},={i}", 18.0 + i]], c
        assert store.count(schema.INDOOR, T0, T0 + DAY, where={"home_id": f"户 {i},={i}"}) == 1


def test_derived_measurement_strings_ints_and_field_selection(store: Store) -> None:
    at = T0 + timedelta(hours=5)
    content = '小区 "幸福" 3号楼 \\ 供暖不热,\n第二行 = ok'
    store.write([
        Point(schema.ALERTS, {"category": "cold_home", "community": "幸福小区", "station_id": "S1"},
              {"alert_id": "A-1", "home_id": "H1", "status": "open", "content": content}, ns(at)),
        Point(schema.COLLECTOR, {"collector_id": "c1"}, {"received": 12, "batch_latency_ms": 3.0}, ns(at)),
        Point("派生 m,x", {"k": "v"}, {"value": 1.0}, ns(at)),
    ])
    a = store.query(schema.ALERTS, T0, T0 + DAY)
    row = a.iloc[0]
    assert row["content"] == content and row["alert_id"] == "A-1" and row["community"] == "幸福小区"
    assert row["time"] == pd.Timestamp(at)
    c = store.query(schema.COLLECTOR, T0, T0 + DAY)
    assert c.loc[0, "received"] == 12 and c["received"].dtype.kind == "i"  # an integer field stays an integer
    assert c["batch_latency_ms"].dtype == "float64" and c.loc[0, "batch_latency_ms"] == 3.0
    only = store.query(schema.ALERTS, T0, T0 + DAY, fields=["status"])
    assert "status" in only.columns and "content" not in only.columns and "community" in only.columns
    assert store.query("派生 m,x", T0, T0 + DAY)["value"].tolist() == [1.0]
    filtered = store.query(schema.ALERTS, T0, T0 + DAY, where={"community": ["幸福小区", "x"]})
    assert len(filtered) == 1
    assert store.query(schema.ALERTS, T0, T0 + DAY, where={"community": "别的"}).empty


def test_where_single_values_and_lists(store: Store) -> None:
    at = T0 + timedelta(hours=4)
    store.write([indoor(f"H{i}", at + timedelta(minutes=i), 15.0 + i, community=TRICKY[i % 3]) for i in range(9)])
    one = store.query(schema.INDOOR, T0, T0 + DAY, where={"home_id": "H4"})
    assert one["temp_c"].tolist() == [19.0]
    lst = store.query(schema.INDOOR, T0, T0 + DAY, where={"home_id": ["H1", "H7", "nope"]})
    assert lst["home_id"].tolist() == ["H1", "H7"]  # sorted by time
    both = store.query(schema.INDOOR, T0, T0 + DAY, where={"community": [TRICKY[0], TRICKY[1]], "home_id": ["H0", "H1", "H2"]})
    assert both["home_id"].tolist() == ["H0", "H1"]
    assert store.query(schema.INDOOR, T0, T0 + DAY, where={"home_id": []}).empty
    assert store.count(schema.INDOOR, T0, T0 + DAY, where={"community": TRICKY[2]}) == 3
    # time range is [start, end)
    assert store.count(schema.INDOOR, at + timedelta(minutes=2), at + timedelta(minutes=5)) == 3
    with pytest.raises(StoreError, match="no tag 'floor'"):
        store.query(schema.INDOOR, T0, T0 + DAY, where={"floor": "3"})
    with pytest.raises(StoreError, match="no field"):
        store.query(schema.INDOOR, T0, T0 + DAY, fields=["pressure"])


# --- aggregates -----------------------------------------------------------------------------
def test_hourly_uses_local_clock_hours_shanghai(store: Store) -> None:
    day = datetime(2026, 1, 12, tzinfo=SHANGHAI)
    t_0559 = day.replace(hour=5, minute=59, second=59)
    t_0600 = day.replace(hour=6)
    t_0630 = day.replace(hour=6, minute=30)
    store.write([
        indoor("H1", t_0559, 15.0), indoor("H1", t_0600, 18.0), indoor("H1", t_0630, 19.0),
        indoor("H2", t_0600, 21.0, community="幸福小区"),
    ])
    start, end = day.astimezone(UTC), (day + DAY).astimezone(UTC)
    h = store.hourly(schema.INDOOR, "temp_c", start, end, SHANGHAI, "community")
    assert list(h.columns) == ["community", "hour", "mean", "min", "max", "count"]
    assert str(h["hour"].dtype) == "datetime64[ns, UTC]" and h["count"].dtype == "int64"
    local_hour = h["hour"].dt.tz_convert(SHANGHAI).dt.hour
    rows = list(zip(h["community"], local_hour, h["mean"], h["min"], h["max"], h["count"], strict=True))
    assert rows == [
        ("幸福小区", 6, 21.0, 21.0, 21.0, 1),
        ("阳光小区", 5, 15.0, 15.0, 15.0, 1),  # 05:59:59 is still night
        ("阳光小区", 6, 18.5, 18.0, 19.0, 2),
    ]
    assert h.loc[2, "hour"] == pd.Timestamp(datetime(2026, 1, 11, 22, tzinfo=UTC))  # 06:00 CST = 22:00 UTC
    by_home = store.hourly(schema.INDOOR, "temp_c", start, end, SHANGHAI, "home_id", where={"community": "阳光小区"})
    assert by_home["home_id"].tolist() == ["H1", "H1"] and by_home["count"].tolist() == [1, 2]


def test_hourly_half_hour_zone(store: Store) -> None:
    base = datetime(2026, 1, 12, 10, 30, tzinfo=UTC)  # 16:00 IST (+05:30): local hours start at :30 UTC
    store.write([
        indoor("H1", base - timedelta(seconds=1), 10.0),  # 15:59:59 IST
        indoor("H1", base, 20.0),  # 16:00 IST
        indoor("H1", base + timedelta(minutes=59), 25.0),  # 16:59 IST
        indoor("H1", base + timedelta(hours=1), 30.0),  # 17:00 IST
    ])
    h = store.hourly(schema.INDOOR, "temp_c", base - timedelta(hours=3), base + timedelta(hours=3), KOLKATA, "home_id")
    assert h["hour"].tolist() == [pd.Timestamp("2026-01-12 09:30Z"), pd.Timestamp("2026-01-12 10:30Z"),
                                  pd.Timestamp("2026-01-12 11:30Z")]
    assert h["mean"].tolist() == [10.0, 22.5, 30.0] and h["count"].tolist() == [1, 2, 1]
    assert [t.tz_convert(KOLKATA).hour for t in h["hour"]] == [15, 16, 17]


def test_hourly_of_a_derived_measurement(store: Store) -> None:
    start = T0 + timedelta(hours=16)  # 00:00 CST
    store.write([
        Point(schema.COMMUNITY_STATS, {"community": c}, {"weighted_mean_c": v, "status": "ok", "homes_reporting": 5},
              ns(start + timedelta(minutes=m)))
        for c, m, v in [("幸福小区", 0, 18.0), ("幸福小区", 15, 19.0), ("幸福小区", 75, 17.0), ("阳光小区", 5, 20.5)]
    ])
    h = store.hourly(schema.COMMUNITY_STATS, "weighted_mean_c", start, start + DAY, SHANGHAI, "community")
    assert [(r.community, r.hour, r.mean, r.count) for r in h.itertuples()] == [
        ("幸福小区", pd.Timestamp(start), 18.5, 2),
        ("幸福小区", pd.Timestamp(start + timedelta(hours=1)), 17.0, 1),
        ("阳光小区", pd.Timestamp(start), 20.5, 1),
    ]
    assert h["min"].dtype == "float64"


def test_last_value_per_tag(store: Store) -> None:
    at = T0 + timedelta(hours=6)
    store.write([
        indoor("H1", at, 18.0), indoor("H1", at + timedelta(minutes=10), 18.5),
        indoor("H2", at + timedelta(minutes=5), 21.0, community="幸福小区"),
        indoor("H1", at + timedelta(hours=2), 30.0),  # after `before`
    ])
    last = store.last(schema.INDOOR, "temp_c", "home_id", before=at + timedelta(hours=1))
    assert list(last.columns) == ["home_id", "time", "value"]
    assert last.values.tolist() == [["H1", pd.Timestamp(at + timedelta(minutes=10)), 18.5],
                                    ["H2", pd.Timestamp(at + timedelta(minutes=5)), 21.0]]
    by_comm = store.last(schema.INDOOR, "temp_c", "community", where={"community": "幸福小区"}, before=at + DAY)
    assert by_comm["value"].tolist() == [21.0]
    old = store.last(schema.INDOOR, "temp_c", "home_id", before=at + DAY, lookback=timedelta(hours=1))
    assert old.empty and list(old.columns) == ["home_id", "time", "value"]


def test_count(store: Store) -> None:
    at = T0 + timedelta(hours=7)
    store.write([indoor(f"H{i}", at + timedelta(seconds=i), 19.0, rh=40.0 if i % 2 else None) for i in range(10)])
    store.write([Point(schema.SENSOR_HEALTH, {"home_id": f"H{i}", "community": "c", "finding": "stale"},
                       {"value": float(i)} if i % 2 else {"detail": "no data"}, ns(at)) for i in range(4)])
    assert store.count(schema.INDOOR, T0, T0 + DAY) == 10
    assert store.count(schema.INDOOR, T0, T0 + DAY, field="rh") == 5
    assert store.count(schema.INDOOR, T0, T0 + DAY, where={"home_id": ["H1", "H2"]}) == 2
    assert store.count(schema.INDOOR, T0 + DAY, T0 + 2 * DAY) == 0
    assert store.count(schema.SENSOR_HEALTH, T0, T0 + DAY, field="value") == 2
    assert store.count(schema.SENSOR_HEALTH, T0, T0 + DAY, where={"home_id": "H3"}) == 1


def test_empty_results_keep_their_columns(store: Store) -> None:
    q = store.query(schema.INDOOR, T0, T0 + DAY)
    assert q.empty and list(q.columns) == ["time", *schema.INDOOR_TAGS, *schema.INDOOR_FIELDS]
    assert str(q["time"].dtype) == "datetime64[ns, UTC]" and q["temp_c"].dtype == "float64"
    sq = store.query(schema.STATION, T0, T0 + DAY, fields=["supply_c"])
    assert list(sq.columns) == ["time", "station_id", "supply_c"]
    h = store.hourly(schema.INDOOR, "temp_c", T0, T0 + DAY, SHANGHAI, "community")
    assert h.empty and list(h.columns) == ["community", "hour", "mean", "min", "max", "count"]
    hd = store.hourly(schema.COMMUNITY_STATS, "weighted_mean_c", T0, T0 + DAY, SHANGHAI, "community")
    assert hd.empty and list(hd.columns) == ["community", "hour", "mean", "min", "max", "count"]
    d = store.query(schema.ALERTS, T0, T0 + DAY)
    assert d.empty and "time" in d.columns and str(d["time"].dtype) == "datetime64[ns, UTC]"
    assert store.count(schema.ALERTS, T0, T0 + DAY) == 0


def test_large_batch_round_trip(store: Store) -> None:
    n, homes = 50_000, 1000
    pts = [
        indoor(f"H{i % homes:04d}", T0 + timedelta(seconds=i // homes * 60 + i % homes / 1000),
               round(15 + (i * 7919 % 1000) / 100, 2), community=f"小区{i % 7}")
        for i in range(n)
    ]
    store.write(pts)
    assert store.count(schema.INDOOR, T0, T0 + DAY) == n
    df = store.query(schema.INDOOR, T0, T0 + DAY)
    assert len(df) == n
    got = dict(zip(zip(df["home_id"], df["time"].astype("int64"), strict=True), df["temp_c"], strict=True))
    want = {(p.tags["home_id"], p.ts_ns): p.fields["temp_c"] for p in pts}
    assert got == want
    assert df["time"].is_monotonic_increasing


def test_answers_read_a_chunk_at_a_time_are_whole(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large answer is converted chunk by chunk as it arrives; the chunks must add up to the same frames."""
    pts = [indoor(f"户{h:03d}", T0 + timedelta(minutes=7 * k + h % 7), 15.0 + (h * 31 + k * 17) % 97 / 10,
                  community=TRICKY[h % 4]) for h in range(60) for k in range(40)]
    pts.append(indoor("户999", T0 + timedelta(hours=5), 21.0, rh=40.0))
    store.write(pts)
    args = (schema.INDOOR, "temp_c", T0, T0 + DAY, SHANGHAI, "home_id")
    whole = (store.hourly(*args), store.last(schema.INDOOR, "temp_c", "home_id", before=T0 + DAY),
             store.query(schema.INDOOR, T0, T0 + DAY))
    from heatwatch.infra.storage.influxdb1 import _Answer
    from heatwatch.infra.storage.sqlite import SqliteStore

    monkeypatch.setattr(_Answer, "CHUNK_ROWS", 7)
    monkeypatch.setattr(SqliteStore, "FETCH_ROWS", 7)
    chunked = (store.hourly(*args), store.last(schema.INDOOR, "temp_c", "home_id", before=T0 + DAY),
               store.query(schema.INDOOR, T0, T0 + DAY))
    assert len(whole[0]) == 60 * 5 + 1 and len(whole[2]) == len(pts)  # 40 readings 7 min apart: 5 clock hours
    for a, b in zip(whole, chunked, strict=True):
        pd.testing.assert_frame_equal(a, b)
    assert whole[2]["rh"].notna().sum() == 1


# --- InfluxDB specifics ---------------------------------------------------------------------
def test_field_type_conflict_is_a_store_error(influx_store: Store) -> None:
    at = T0 + timedelta(hours=8)
    influx_store.write([Point(schema.COLLECTOR_REJECTS, {"collector_id": "c", "reason": "x"}, {"count": 3}, ns(at))])
    with pytest.raises(StoreError, match="conflict") as err:
        influx_store.write([Point(schema.COLLECTOR_REJECTS, {"collector_id": "c", "reason": "x"}, {"count": "three"},
                                  ns(at + timedelta(seconds=1)))])
    assert not isinstance(err.value, StoreUnavailable)


def test_whole_floats_stay_float_fields(influx_store: Store) -> None:
    at = T0 + timedelta(hours=9)
    influx_store.write([indoor("H1", at, 21.0)])  # encoded "temp_c=21": a float in line protocol
    influx_store.write([indoor("H1", at + timedelta(minutes=1), 21.5)])  # no type conflict
    assert influx_store.query(schema.INDOOR, T0, T0 + DAY)["temp_c"].tolist() == [21.0, 21.5]


@pytest.mark.parametrize("bad", ["a\nb", "x\r", "tab\there", "ends with \\"])
def test_unrepresentable_tag_value_is_refused_with_its_name(influx_store: Store, bad: str) -> None:
    with pytest.raises(StoreError, match="tag 'home_id'"):
        influx_store.write([indoor(bad, T0, 20.0)])


def test_influxdb1_from_config_and_escaped_database_name(influxd: Influxd, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("unused-without-auth\n")
    cfg = load_config(environ={
        "HEATWATCH_STORAGE_BACKEND": "influxdb1",
        "HEATWATCH_INFLUXDB1_URL": influxd.url,
        "HEATWATCH_INFLUXDB1_DATABASE": "热 数据-1",
        "HEATWATCH_INFLUXDB1_PASSWORD_FILE": str(pw),
        "HEATWATCH_INFLUXDB1_USERNAME": "reader",
    })
    with open_store(cfg) as st:
        assert isinstance(st, Influxdb1Store)
        st.ping()
        st.write([indoor("H1", T0, 18.0)])
        assert st.count(schema.INDOOR, T0, T0 + DAY) == 1


def test_influxdb1_bad_url_is_a_config_error() -> None:
    """The settings refuse it, naming the key, before any store is built from them."""
    from heatwatch.core.config import ConfigError

    with pytest.raises(ConfigError, match=r"influxdb1\.url"):
        open_store(load_config(environ={"HEATWATCH_STORAGE_BACKEND": "influxdb1", "HEATWATCH_INFLUXDB1_URL": "localhost:8086"}))


def test_influxdb2_settings_name_the_bad_key() -> None:
    from heatwatch.core.config import ConfigError

    base = {"HEATWATCH_STORAGE_BACKEND": "influxdb2", "HEATWATCH_INFLUXDB2_TOKEN": "t"}
    with pytest.raises(ConfigError, match=r"influxdb2\.url"):
        load_config(environ={**base, "HEATWATCH_INFLUXDB2_URL": "influxdb:8086"})
    with pytest.raises(ConfigError, match=r"influxdb2\.bucket"):
        load_config(environ={**base, "HEATWATCH_INFLUXDB2_BUCKET": ""})
    with pytest.raises(ConfigError, match=r"influxdb2\.token"):
        open_store(load_config(environ={"HEATWATCH_STORAGE_BACKEND": "influxdb2"}))  # no token, no token_file


def test_influxdb1_unavailable_while_down_then_recovers(own_influxd: Influxd) -> None:
    st = Influxdb1Store(own_influxd.url, "outage", timeout_s=3)
    st.write([indoor("H1", T0, 18.0)])
    own_influxd.stop()
    with pytest.raises(StoreUnavailable, match="unreachable"):
        st.write([indoor("H1", T0 + timedelta(minutes=1), 18.5)])
    with pytest.raises(StoreUnavailable):
        st.query(schema.INDOOR, T0, T0 + DAY)
    with pytest.raises(StoreUnavailable):
        st.ping()
    own_influxd.start()
    st.ping()
    st.write([indoor("H1", T0 + timedelta(minutes=1), 18.5)])
    assert st.query(schema.INDOOR, T0, T0 + DAY)["temp_c"].tolist() == [18.0, 18.5]
    st.close()


def test_influxdb1_query_error_is_a_store_error(influxd: Influxd) -> None:
    st = Influxdb1Store(influxd.url, f"err_{uuid.uuid4().hex[:8]}")
    st.write([Point(schema.ALERTS, {"community": "c"}, {"content": "text"}, ns(T0))])
    with pytest.raises(StoreError, match="InfluxDB query failed") as err:
        st.hourly(schema.ALERTS, "content", T0, T0 + DAY, SHANGHAI, "community")  # mean of a string
    assert not isinstance(err.value, StoreUnavailable)
    st.close()


# --- influxdb2 without a server: the HTTP exchange, against a stand-in speaking 2.x's wire format ------
_RAW_CSV = (
    "#datatype,string,long,dateTime:RFC3339Nano,dateTime:RFC3339Nano,dateTime:RFC3339Nano,double,string,string,string,string,string,string\r\n"
    "#group,false,false,true,true,false,false,true,true,true,true,true,true\r\n"
    "#default,_result,,,,,,,,,,,\r\n"
    ",result,table,_start,_stop,_time,_value,_field,_measurement,building,community,home_id,source\r\n"
    ',,0,2026-01-10T00:00:00Z,2026-01-11T00:00:00Z,2026-01-10T03:00:00.000000123Z,18.37,temp_c,indoor,1号楼,"a,b=c ""d""",H1,sensor\r\n'
    ",,1,2026-01-10T00:00:00Z,2026-01-11T00:00:00Z,2026-01-10T03:00:00.000000123Z,41.5,rh,indoor,1号楼,\"a,b=c \"\"d\"\"\",H1,sensor\r\n"
    ",,2,2026-01-10T00:00:00Z,2026-01-11T00:00:00Z,2026-01-10T03:01:00Z,21,temp_c,indoor,1号楼,阳光小区,H2,sensor\r\n"
    "\r\n"
)
_ALERTS_CSV = (
    "#datatype,string,long,dateTime:RFC3339Nano,dateTime:RFC3339Nano,dateTime:RFC3339Nano,string,string,string,string\r\n"
    "#group,false,false,true,true,false,false,true,true,true\r\n"
    "#default,_result,,,,,,,,\r\n"
    ",result,table,_start,_stop,_time,_value,_field,_measurement,community\r\n"
    ',,0,2026-01-10T00:00:00Z,2026-01-11T00:00:00Z,2026-01-10T05:00:00Z,"说 ""冷""\r\n第二行, ok",content,alerts,幸福小区\r\n'
    "\r\n"
    "#datatype,string,long,dateTime:RFC3339Nano,dateTime:RFC3339Nano,dateTime:RFC3339Nano,long,string,string,string\r\n"
    "#group,false,false,true,true,false,false,true,true,true\r\n"
    "#default,_result,,,,,,,,\r\n"
    ",result,table,_start,_stop,_time,_value,_field,_measurement,community\r\n"
    ",,1,2026-01-10T00:00:00Z,2026-01-11T00:00:00Z,2026-01-10T05:00:00Z,7,n,alerts,幸福小区\r\n"
    "\r\n"
)


def _hourly_csv() -> str:
    out = []
    for i, (name, dtype, vals) in enumerate([("mean", "double", ("18.5", "21")), ("min", "double", ("18", "21")),
                                             ("max", "double", ("19", "21")), ("count", "long", ("2", "1"))]):
        out.append(
            f"#datatype,string,long,string,dateTime:RFC3339Nano,dateTime:RFC3339Nano,dateTime:RFC3339Nano,{dtype}\r\n"
            "#group,false,false,true,false,false,false,false\r\n"
            f"#default,{name},,,,,,\r\n"
            ",result,table,community,_start,_stop,_time,_value\r\n"
            f",,{i},阳光小区,2026-01-11T00:00:00Z,2026-01-12T00:00:00Z,2026-01-11T22:00:00Z,{vals[0]}\r\n"
            f",,{i + 4},幸福小区,2026-01-11T00:00:00Z,2026-01-12T00:00:00Z,2026-01-11T21:00:00Z,{vals[1]}\r\n"
            "\r\n"
        )
    return "".join(out)


class _Fake2x:
    """Answers like InfluxDB 2.x and records what the client sent."""

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.writes: list[tuple[str, bytes]] = []
        self.queries: list[dict[str, object]] = []
        self.write_status = 204
        self.missing_buckets: set[str] = set()  # answered 404 "could not find bucket", as 2.x does
        self.empty_buckets: set[str] = set()  # answered with no tables
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: bytes = b"", ctype: str = "text/csv; charset=utf-8") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._send(204)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.startswith("/api/v2/write"):
                    fake.writes.append((self.path, body))
                    if fake.write_status != 204:
                        err = {"code": "unprocessable entity", "message": "failure writing points to database: "
                               "partial write: field type conflict"}
                        self._send(fake.write_status, json.dumps(err).encode(), "application/json")
                    else:
                        self._send(204)
                    return
                req = json.loads(body)
                fake.queries.append(req)
                q = str(req["query"])
                bucket = _extern(req).get("_bucket", {}).get("value")  # type: ignore[attr-defined]
                if bucket in fake.missing_buckets:
                    err = {"code": "not found", "message": f'failed to initialize execute state: could not find bucket "{bucket}"'}
                    self._send(404, json.dumps(err).encode(), "application/json")
                    return
                if bucket in fake.empty_buckets:
                    self._send(200, b"\r\n")
                    return
                if 'yield(name: "mean")' in q:
                    csv_text = _hourly_csv()
                elif "|> max()" in q:
                    csv_text = ("#datatype,string,long,long\r\n#group,false,false,false\r\n#default,_result,,\r\n"
                                ",result,table,_value\r\n,,0,42\r\n\r\n")
                elif "|> last()" in q:
                    csv_text = ("#datatype,string,long,string,dateTime:RFC3339Nano,double\r\n#group,false,false,true,false,false\r\n"
                                "#default,_result,,,,\r\n,result,table,home_id,_time,_value\r\n"
                                ",,0,H2,2026-01-10T06:05:00Z,21\r\n,,1,H1,2026-01-10T06:10:00Z,18.5\r\n\r\n")
                elif '"alerts"' in json.dumps(req.get("extern")):
                    csv_text = _ALERTS_CSV
                else:
                    csv_text = _RAW_CSV
                self._send(200, csv_text.encode("utf-8"))

        from tools.servers import free_port

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake2x() -> Iterator[_Fake2x]:
    fake = _Fake2x()
    yield fake
    fake.close()


def _extern(req: dict[str, object]) -> dict[str, object]:
    body = req["extern"]["body"]  # type: ignore[index]
    return {s["assignment"]["id"]["name"]: s["assignment"]["init"] for s in body}


def test_influxdb2_wire_writes_and_errors(fake2x: _Fake2x) -> None:
    from heatwatch.infra.storage.influxdb2 import Influxdb2Store
    from heatwatch.infra.storage.lineproto import encode_lines

    st = Influxdb2Store(f"http://127.0.0.1:{fake2x.port}", "供热公司", "heat", "tok", timeout_s=5)
    pts = [indoor("H1", T0, 21.0, community='a,b=c "d"'), indoor("H2", T0, 18.25)]
    st.write(pts)
    path, body = fake2x.writes[0]
    assert body == encode_lines(pts)
    assert "precision=ns" in path and "bucket=heat" in path
    fake2x.write_status = 422
    with pytest.raises(StoreError, match="field type conflict") as err:
        st.write(pts)
    assert not isinstance(err.value, StoreUnavailable)
    fake2x.write_status = 503
    with pytest.raises(StoreUnavailable, match="503"):
        st.write(pts)
    st.ping()
    st.close()
    down = Influxdb2Store("http://127.0.0.1:1", "o", "b", "t", timeout_s=2)
    with pytest.raises(StoreUnavailable, match="unreachable"):
        down.write(pts)
    with pytest.raises(StoreUnavailable):
        down.query(schema.INDOOR, T0, T0 + DAY)
    with pytest.raises(StoreUnavailable):
        down.ping()


def test_influxdb2_wire_queries_use_params_and_parse_annotated_csv(fake2x: _Fake2x) -> None:
    from heatwatch.infra.storage.influxdb2 import Influxdb2Store

    st = Influxdb2Store(f"http://127.0.0.1:{fake2x.port}", "o", "heat", "tok", timeout_s=5)
    tricky = 'a,b=c "d" ${x} \\'
    df = st.query(schema.INDOOR, T0, T0 + DAY, where={"community": [tricky, "阳光小区"]})
    q = fake2x.queries[-1]
    assert tricky not in str(q["query"]) and "阳光小区" not in str(q["query"])  # values only as parameters
    ext = _extern(q)
    assert {"type": "StringLiteral", "value": tricky} in ext.values() and ext["_bucket"]["value"] == "heat"  # type: ignore[index]
    assert list(df.columns) == ["time", *schema.INDOOR_TAGS, *schema.INDOOR_FIELDS]
    assert df["time"].astype("int64").tolist() == [ns(T0 + timedelta(hours=3)) + 123, ns(T0 + timedelta(hours=3, minutes=1))]
    assert df["temp_c"].tolist() == [18.37, 21.0] and df["temp_c"].dtype == "float64"
    assert df["rh"].tolist()[0] == 41.5 and df["community"].tolist() == ['a,b=c "d"', "阳光小区"]

    a = st.query(schema.ALERTS, T0, T0 + DAY)
    assert a.loc[0, "content"] == '说 "冷"\r\n第二行, ok' and a.loc[0, "n"] == 7 and a.loc[0, "community"] == "幸福小区"

    h = st.hourly(schema.INDOOR, "temp_c", T0, T0 + DAY, KOLKATA, "community")
    q = fake2x.queries[-1]
    assert any(v == {"type": "DurationLiteral", "values": [{"magnitude": 1_800_000_000, "unit": "us"}]}
               for v in _extern(q).values())  # the +05:30 zone's half-hour offset
    assert list(h.columns) == ["community", "hour", "mean", "min", "max", "count"]
    assert h.values.tolist() == [
        ["幸福小区", pd.Timestamp("2026-01-11T21:00Z"), 21.0, 21.0, 21.0, 1],
        ["阳光小区", pd.Timestamp("2026-01-11T22:00Z"), 18.5, 18.0, 19.0, 2],
    ]
    assert h["count"].dtype == "int64" and h["mean"].dtype == "float64"

    last = st.last(schema.INDOOR, "temp_c", "home_id", before=T0 + DAY)
    assert last.values.tolist() == [["H1", pd.Timestamp("2026-01-10T06:10Z"), 18.5], ["H2", pd.Timestamp("2026-01-10T06:05Z"), 21.0]]
    assert st.count(schema.INDOOR, T0, T0 + DAY) == 42
    assert st.query(schema.INDOOR, T0, T0 + DAY, where={"home_id": []}).empty
    st.close()


def test_influxdb2_hourly_means_come_from_the_downsampled_bucket_where_it_has_them(fake2x: _Fake2x) -> None:
    """deploy/influxdb's task writes hourly means into <bucket>_hourly: mean-only answers over whole hours it has
    written are read there (24 points a day per series instead of every reading); the rest from the raw bucket."""
    from heatwatch.infra.storage.influxdb2 import Influxdb2Store

    st = Influxdb2Store(f"http://127.0.0.1:{fake2x.port}", "o", "heat", "tok", timeout_s=5, hourly_bucket="heat_hourly")

    def buckets(*args: object, **kw: object) -> list[object]:
        fake2x.queries.clear()
        h = st.hourly(*args, **kw)  # type: ignore[arg-type]
        assert list(h.columns) == [args[5], "hour", *kw.get("stats", ("mean", "min", "max", "count"))]  # type: ignore[misc]
        return [_extern(q)["_bucket"]["value"] for q in fake2x.queries]  # type: ignore[index]

    args = (schema.INDOOR, "temp_c", T0, T0 + DAY, SHANGHAI, "community")
    assert buckets(*args, stats=("mean",)) == ["heat_hourly"]
    h = st.hourly(*args, stats=("mean",))
    assert h["mean"].tolist() == [21.0, 18.5]  # the stand-in's answer, read the same way
    assert buckets(*args) == ["heat"]  # min, max, count: only the readings have them
    assert buckets(*args[:-1], "community", stats=("mean", "max")) == ["heat"]
    assert buckets(schema.INDOOR, "temp_c", T0, T0 + DAY, KOLKATA, "community", stats=("mean",)) == ["heat"]  # :30 hours
    assert buckets(schema.FORECAST, "temp_c", T0, T0 + DAY, SHANGHAI, "site_id", stats=("mean",)) == ["heat"]
    # a window that starts inside an hour: that hour from the readings, whole hours from the bucket
    assert buckets(schema.INDOOR, "temp_c", T0 + timedelta(minutes=30), T0 + DAY, SHANGHAI, "community",
                   stats=("mean",)) == ["heat", "heat_hourly"]
    # up to now: the hours the task has not written yet come from the readings
    from heatwatch.core.timeutil import utc_now

    now = utc_now()
    assert buckets(schema.INDOOR, "temp_c", now - DAY, now, SHANGHAI, "community", stats=("mean",))[-1] == "heat"
    fake2x.empty_buckets.add("heat_hourly")  # the bucket exists, its task never ran: the readings
    assert buckets(*args, stats=("mean",)) == ["heat_hourly", "heat"]
    fake2x.missing_buckets.add("heat_hourly")  # a deployment without it: the readings, and never asked again
    assert buckets(*args, stats=("mean",)) == ["heat_hourly", "heat"]
    assert buckets(*args, stats=("mean",)) == ["heat"]
    st.close()
