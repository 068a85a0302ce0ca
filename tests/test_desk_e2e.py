"""Issue 16, done when: a hotline order and a sensor order each run the whole lifecycle on real Mosquitto and
SQLite, the clocks driven by an injected clock — an overdue escalation fires (the test waits for the MQTT
message), an incomplete reply is sent back, a callback closes the order; the sensor's recovery is a note."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from control.alerts.model import Candidate, WorkOrder
from control.alerts.repo import AlertRepo
from control.db import db_path, open_engine
from control.publish import MqttPublisher
from dispatch.lifecycle import TransitionError
from dispatch.model import OrderInput
from dispatch.sensors import RECOVERED
from dispatch.tick import DeskTick
from tests.helpers import Listener, config
from tools.servers import Mosquitto

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
USERS = {"lina": {"token": "token-of-lina-1"}, "wangwei": {"role": "supervisor", "display_name": "王伟"}}


def messages(listener: Listener, n: int) -> list[tuple[str, dict]]:
    got = listener.wait_for(n, timeout=15)
    assert len(got) >= n, f"expected {n} escalation message(s), got {len(got)}"
    return [(t, json.loads(b)) for t, b in got]


@pytest.mark.mosquitto
def test_hotline_and_sensor_orders_run_the_whole_lifecycle(tmp_path: Path, mosquitto: Mosquitto) -> None:
    from heatwatch.core.timeutil import SettableClock

    prefix = f"t{tmp_path.name[-12:]}".replace("_", "")
    cfg = config(tmp_path, mosquitto.port, mqtt={"topic_prefix": prefix}, desk={"operators": USERS})
    clock = SettableClock(T0)
    listener = Listener(mosquitto.port, f"{prefix}/desk/alerts/#")
    publisher = MqttPublisher(cfg, f"desk-e2e-{tmp_path.name}"[:60])
    alerts = AlertRepo(open_engine(db_path(cfg)), ["jsonl"])  # control's work orders (control writes, the desk reads)
    tick = DeskTick.from_config(cfg, clock, publisher, alerts)
    desk = tick.desk
    try:
        # --- a hotline order: not warm, urgent within 2 h ------------------------------------------------
        hot = desk.open(OrderInput.parse({
            "category": "not_warm", "reporter": "张三", "phone": "13800000000", "address": "幸福小区3号楼2单元501",
            "home_id": "H1", "community": "幸福小区", "content": "暖气不热，室温15度", "handling_unit": "幸福换热站"}), "lina")
        # --- a sensor order: control opens a home_below_standard work order; the desk's tick takes it in --------
        w = WorkOrder.from_candidate(Candidate(
            key="home:H2", category="home_below_standard", content="H2 室温16.1 °C，低于18 °C", evidence={"mean_c": 16.1},
            station_id="S1", community="幸福小区", home_id="H2", address="幸福小区5号楼101", responsible_unit="幸福换热站",
            deadline_h=2.0, severity="urgent"), T0 + timedelta(minutes=1))
        alerts.record(opened=[w], at=T0 + timedelta(minutes=1))
        clock.advance(minutes=1)
        rep = tick()
        [sensor] = rep.synced.opened
        assert sensor.source == "sensor" and sensor.ref == w.alert_id and sensor.category == "not_warm"
        assert sensor.urgency == "urgent" and sensor.deadline == T0 + timedelta(minutes=1, hours=2)
        assert rep.escalated == [] and tick().synced.opened == []  # idempotent by ref

        # --- the hotline order is dispatched at once; the sensor order waits past its 5 minutes ----------
        desk.assign(hot.order_id, "lina", "李师傅", unit="幸福换热站", opinion="派维修班入户")
        clock.advance(minutes=5, seconds=30)  # T0 + 6:30: the sensor order (received T0+1) is past dispatch (5 min)
        rep = tick()
        assert [(e.order_id, e.clock) for e in rep.escalated] == [(sensor.order_id, "dispatch")]
        [(topic, msg)] = messages(listener, 1)
        assert topic == f"{prefix}/desk/alerts/dispatch"
        assert msg["event"] == "overdue" and msg["order"]["order_id"] == sensor.order_id
        assert msg["order"]["content"].startswith("[室温不达标") and msg["supervisors"] == ["wangwei"]
        assert msg["clock"]["seed"] == "003" and msg["clock"]["state"] == "overdue"
        assert tick().escalated == []  # once per clock
        # the hotline worker is 14 min late calling (contact: 10 min after accepting, 003) → escalates too
        clock.advance(minutes=8)
        rep = tick()
        assert {(e.order_id, e.clock) for e in rep.escalated} == {(hot.order_id, "contact"), (sensor.order_id, "repair_call")}
        assert len(messages(listener, 3)) == 3

        # --- hotline lifecycle -------------------------------------------------------------------------------
        desk.advance(hot.order_id, "lina", "contacted", "已电话联系，约11点上门")
        clock.advance(minutes=40)
        desk.advance(hot.order_id, "lina", "on_site")
        with pytest.raises(TransitionError, match="missing 客户是否认可"):
            desk.reply(hot.order_id, "lina", "户内阀门关闭", "打开阀门", "室温升至18.5度", "")
        clock.advance(minutes=30)
        desk.reply(hot.order_id, "lina", "阀门", "处理了", "好了", "认可")
        clock.advance(minutes=10)
        back = desk.review(hot.order_id, "wangwei", ok=False, missing=["cause", "result"], reason="原因和效果写得不具体")
        assert back.stage == "on_site" and back.evidence["sent_back"][0]["missing"] == ["cause", "result"]
        clock.advance(minutes=15)
        r = desk.reply(hot.order_id, "lina", "户内进户阀门被误关", "打开进户阀门并排气", "两小时后室温18.6度", "客户认可")
        assert r.evidence["reply"]["contacted_in_time"] == "no"  # the contact clock ran out: the reply says so
        clock.advance(minutes=12)
        desk.review(hot.order_id, "wangwei", ok=True)
        with pytest.raises(TransitionError, match="closing needs the callback first"):
            desk.close(hot.order_id, "lina")
        clock.advance(hours=24)
        desk.callback(hot.order_id, "wangwei", "satisfied", "客户表示满意")
        closed = desk.close(hot.order_id, "lina")
        assert closed.closed and closed.evidence["close"]["after_callback"] is True

        # --- sensor lifecycle: recovery is evidence, not a closure ------------------------------------------
        desk.assign(sensor.order_id, "lina", "赵师傅", unit="幸福换热站")
        desk.advance(sensor.order_id, "lina", "on_site")
        alerts.record(resolved=[replace(w, status="resolved", resolved_at=clock(), updated_at=clock())], at=clock())
        rep = tick()
        [noted] = rep.synced.recovered
        assert noted.stage == "on_site" and noted.evidence["notes"][-1]["evidence"]["event"] == RECOVERED
        assert tick().synced.recovered == []  # noted once
        desk.reply(sensor.order_id, "lina", "散热器堵塞", "清洗散热器", "室温18.4度", "")
        back = desk.review(sensor.order_id, "wangwei", ok=False, reason="没写清洗了哪几组散热器")
        assert back.stage == "on_site"
        desk.reply(sensor.order_id, "lina", "卧室两组散热器堵塞", "清洗两组散热器", "室温18.4度", "")
        desk.review(sensor.order_id, "wangwei", ok=True)
        desk.callback(sensor.order_id, "lina", "satisfied", "住户确认室温正常")
        assert desk.close(sensor.order_id, "wangwei").closed

        # --- the audit log: who and when, every step, and the escalations -------------------------------------
        for o in (hot, sensor):
            hist = desk.history(o.order_id)
            events = [h["event"] for h in hist]
            assert events[0] == "open" and events[-1] == "close" and "escalate" in events and "send_back" in events
            assert all(h["by"] and h["at"] for h in hist)
        assert [h["by"] for h in desk.history(sensor.order_id) if h["event"] in ("open", "note")] == [
            "system:sensors", "system:sensors"]
        assert tick.escalator.pending() == {}  # the MQTT and JSONL rows all delivered
        jsonl = (tmp_path / "data" / "desk_escalations.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(jsonl) == 3 and "暖气不热" in "".join(jsonl)
        assert desk.overdue() == []
    finally:
        listener.close()
        publisher.close()
