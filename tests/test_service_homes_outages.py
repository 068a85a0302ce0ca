"""Homes that are not heated, the heating season and announced outages, through the real cycle (analytics, the
alert rules, control's SQLite outbox, a JSONL sink) with an injected clock: a stopped home raises no cold alert,
no cold alert is raised outside the season, an announced outage quiets its homes and tells them (issue 16)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from control.alerts.sinks import JsonlSink
from control.service import ControlLoop
from dispatch.desk import Desk
from heatwatch.app.cycle import Cycle
from heatwatch.app.outages import announce
from heatwatch.app.servicestate import ServiceState
from heatwatch.core import schema
from heatwatch.core.config import Config, load_config
from heatwatch.core.errors import UsageError
from heatwatch.core.homestatus import StatusChange
from heatwatch.core.model import Point
from heatwatch.core.registry import Home, Registry, Station
from heatwatch.core.timeutil import SettableClock, to_ns
from heatwatch.infra.storage.sqlite import SqliteStore
from tools.servers import Mosquitto

SH = ZoneInfo("Asia/Shanghai")
C, C2 = "幸福小区", "和平小区"
T = datetime(2026, 1, 10, 10, 0, tzinfo=SH).astimezone(UTC)  # in the season, 10:00 local
H = timedelta(hours=1)


def home(hid: str, comm: str, sid: str, floor: int) -> Home:
    return Home(hid, comm, "1号楼", "1", floor, 6, floor in (1, 6), "residential", None, sid, f"{comm}1号楼{hid}室", "138")


REG = Registry(
    {f"{p}{f}{x}": home(f"{p}{f}{x}", comm, sid, f) for p, comm, sid in (("H", C, "S1"), ("K", C2, "S2"))
     for f in range(1, 7) for x in "ab"},
    {"S1": Station("S1", "幸福换热站", (C,), 35.0, 75.0), "S2": Station("S2", "和平换热站", (C2,), 35.0, 75.0)},
)
COLD = {"H3a", "H4a", "K3a"}  # 14 °C all window, middle homes (their communities stay warm); the rest 20 °C


def readings(end: datetime, hours: int = 8) -> list[Point]:
    out = []
    for h in REG.homes.values():
        t = end - hours * H
        i = 0
        while t <= end:
            v = (14.0 if h.home_id in COLD else 20.0) + (0.1 if i % 2 else 0.0)  # never flat: a flat sensor is 'stuck'
            out.append(Point(schema.INDOOR, {"home_id": h.home_id, "community": h.community, "building": h.building,
                                             "source": "sensor"}, {"temp_c": v}, to_ns(t)))
            t += timedelta(minutes=15)
            i += 1
    return out


class Rig:
    def __init__(self, tmp: Path, at: datetime, **sections: dict[str, Any]) -> None:
        self.cfg: Config = load_config(environ={}, overrides={"general": {"data_dir": str(tmp / "data")},
                                                              "alerts": {"mqtt": False}, **sections})
        self.store = SqliteStore(tmp / "store.sqlite")
        self.store.write(readings(at))
        self.clock = SettableClock(at)
        self.jsonl = tmp / "alerts.jsonl"
        self.loop = ControlLoop(self.cfg, REG, self.store, self.clock, None, sinks={"jsonl": JsonlSink(self.jsonl)})
        self.state = ServiceState.from_config(self.cfg)
        self.cycle = Cycle(self.store, REG, self.cfg, self.loop, window_h=6.0, service=self.state)

    def cold_orders(self, at: datetime) -> set[str]:
        self.clock.set(at)
        rep = self.cycle.run(at).report
        assert rep is not None
        return {o.home_id or o.community for o in rep.opened if o.category in ("home_below_standard", "community_cold")}

    def messages(self) -> list[dict[str, Any]]:
        if not self.jsonl.exists():
            return []
        return [json.loads(x) for x in self.jsonl.read_text(encoding="utf-8").splitlines()]

    def close(self) -> None:
        self.loop.shutdown()
        self.store.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path, T)
    yield r
    r.close()


def test_a_stopped_home_raises_no_cold_alert(rig: Rig) -> None:
    rig.state.db.add_status(StatusChange("H3a", "stopped", date(2026, 1, 10), "张三", "报停 request"), T)
    rig.state.db.add_status(StatusChange("K3a", "stopped", date(2026, 1, 11), "张三", "from tomorrow"), T)
    assert rig.cold_orders(T) == {"H4a", "K3a"}  # H1 stopped today; K1 only from tomorrow


def test_without_a_change_every_cold_home_is_an_order(rig: Rig) -> None:  # the control for the test above
    assert rig.cold_orders(T) == {"H3a", "H4a", "K3a"}


def test_outside_the_season_no_cold_alert_is_raised(tmp_path: Path) -> None:
    at = datetime(2026, 4, 10, 10, 0, tzinfo=SH).astimezone(UTC)
    r = Rig(tmp_path, at)
    try:
        assert r.cold_orders(at) == set()
    finally:
        r.close()
    r = Rig(tmp_path / "b", at, season={"start": "10-01", "end": "04-30"})  # a longer season: the same homes are cold
    try:
        assert r.cold_orders(at) == {"H3a", "H4a", "K3a"}
    finally:
        r.close()


def test_an_announced_outage_quiets_its_homes_and_tells_them(rig: Rig) -> None:
    now = T - 30 * H
    desk = Desk.open_file(rig.cfg.general.data_dir / "desk.sqlite", rig.clock)
    out = announce(rig.cfg, REG, rig.state.db, rig.loop.alerts, station_id="S1", start=T - 2 * H, end=T + 6 * H,
                   reason="管网抢修 network repair", by="李四", now=now, desk=desk)
    order = desk.get(out.order_id)  # the notice is recorded on a no_heat order
    assert order.category == "no_heat" and order.station_id == "S1" and order.expected_at == T + 6 * H
    assert order.evidence["notes"][0]["evidence"]["homes"] == list(out.outage.homes)
    assert rig.state.db.outages()[0].order_id == order.order_id
    assert out.outage.homes == tuple(sorted(h for h in REG.homes if h.startswith("H")))
    assert rig.cold_orders(T) == {"K3a"}  # S1's homes are quiet during the window; S2's are not
    [msg] = [m for m in rig.messages() if m["alert"]["category"] == "outage_notice"]
    a = msg["alert"]
    assert a["notify_users"] and a["homes"] == list(out.outage.homes) and a["station_id"] == "S1"
    assert "expected restoration 2026-01-10T16:00:00+08:00" in a["content"] and "管网抢修" in a["content"]
    assert {r["home_id"] for r in a["evidence"]["recipients"]} == set(out.outage.homes)
    # after the window the homes count again
    assert rig.state.at(REG, T + 6 * H)[1].homes == {} and "H3a" in rig.state.at(REG, T + 6 * H - timedelta(seconds=1))[1].homes
    # and control hears which station is down for the work (no setpoint for it meanwhile: test_control_outage_quiet)
    assert set(rig.state.at(REG, T)[1].stations) == {"S1"} and rig.state.at(REG, T + 6 * H)[1].stations == {}


def test_a_planned_outage_is_announced_24_h_ahead(rig: Rig) -> None:
    kw: dict[str, Any] = {"station_id": "S1", "start": T + 10 * H, "end": T + 20 * H, "reason": "检修", "by": "李四", "now": T}
    with pytest.raises(UsageError, match=r"10.0 h ahead.*at least 24 h ahead.*--unplanned"):
        announce(rig.cfg, REG, rig.state.db, rig.loop.alerts, **kw)
    assert rig.state.db.outages() == []
    out = announce(rig.cfg, REG, rig.state.db, rig.loop.alerts, unplanned=True, **kw)
    assert not out.outage.planned and rig.state.db.outages()[0].outage_id == out.outage.outage_id
    with pytest.raises(UsageError, match="not after"):
        announce(rig.cfg, REG, rig.state.db, rig.loop.alerts, **{**kw, "end": kw["start"]}, unplanned=True)
    with pytest.raises(UsageError, match="not in the stations file"):
        announce(rig.cfg, REG, rig.state.db, rig.loop.alerts, **{**kw, "station_id": "S9"}, unplanned=True)


def station(t0: datetime, t1: datetime, flow: float) -> list[Point]:
    out, t = [], t0
    while t <= t1:
        out.append(Point(schema.STATION, {"station_id": "S1"}, {"supply_c": 52.0, "return_c": 40.0, "supply_kpa": 450.0,
                                                               "return_kpa": 300.0, "flow_m3h": flow}, to_ns(t)))
        t += timedelta(minutes=15)
    return out


def test_an_unplanned_outage_past_8_hours_tells_the_station_homes_once(rig: Rig) -> None:
    rig.store.write(station(T - 12 * H, T - 9 * H, 80.0) + station(T - 9 * H + timedelta(minutes=15), T, 0.0))
    rig.cold_orders(T)
    [o] = rig.state.db.outages()
    assert not o.planned and o.end is None and o.station_id == "S1" and o.homes == tuple(h for h in sorted(REG.homes) if h[0] == "H")
    [msg] = [m for m in rig.messages() if m["alert"]["category"] == "outage_notice"]
    assert "restoration time to be announced" in msg["alert"]["content"] and msg["alert"]["notify_users"]
    assert rig.state.at(REG, T)[1].homes == {}  # an open-ended outage quiets nothing: the station fault groups the homes
    rig.cold_orders(T + timedelta(minutes=15))  # the next cycle: the same outage is not told again
    assert len(rig.state.db.outages()) == 1


@pytest.mark.mosquitto
def test_an_announced_outage_reaches_the_mqtt_alert_sink(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """The same notice on real Mosquitto: control's MQTT sink publishes it on <prefix>/alerts/outage_notice."""
    import threading
    import uuid

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from control.alerting import build_sinks, configured_sinks
    from control.alerts.dispatch import Dispatcher
    from control.alerts.repo import AlertRepo
    from control.db import db_path, open_engine
    from control.publish import MqttPublisher

    prefix = f"o{uuid.uuid4().hex[:6]}"
    cfg = load_config(environ={}, overrides={"general": {"data_dir": str(tmp_path / "data")},
                                             "mqtt": {"port": mosquitto.port, "topic_prefix": prefix}})
    got: list[mqtt.MQTTMessage] = []
    arrived, subscribed = threading.Event(), threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{prefix}", protocol=mqtt.MQTTv5)

    def on_message(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        got.append(m)
        arrived.set()

    def on_connect(c: mqtt.Client, *a: object) -> None:
        c.subscribe(f"{prefix}/alerts/#", qos=1)

    def on_subscribe(*a: object) -> None:
        subscribed.set()

    sub.on_subscribe, sub.on_message, sub.on_connect = on_subscribe, on_message, on_connect
    sub.connect("127.0.0.1", mosquitto.port)
    sub.loop_start()
    pub = MqttPublisher(cfg, f"ctl-{prefix}")
    try:
        assert subscribed.wait(10)
        repo = AlertRepo(open_engine(db_path(cfg)), configured_sinks(cfg))
        out = announce(cfg, REG, ServiceState.from_config(cfg).db, repo, station_id="S2", start=T + 30 * H, end=T + 40 * H,
                       reason="换热器检修", by="李四", now=T)
        assert Dispatcher(repo, build_sinks(cfg, pub), SettableClock(T)).deliver_due() == 2  # jsonl + mqtt
        assert arrived.wait(10)
    finally:
        pub.close()
        sub.loop_stop()
        sub.disconnect()
    [m] = got
    body = json.loads(m.payload)
    assert m.topic == f"{prefix}/alerts/outage_notice" and body["alert"]["homes"] == list(out.outage.homes)
    assert "和平换热站" in body["alert"]["content"] and "2026-01-12T02:00:00+08:00" in body["alert"]["content"]
