"""The desk's lifecycle, operators, audit log, escalation outbox and CLI, on SQLite with an injected clock."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from control.alerts.sinks import SinkError
from dispatch.desk import Desk, UnknownOrder
from dispatch.escalation import Escalator
from dispatch.lifecycle import TransitionError
from dispatch.model import OrderInput
from dispatch.operators import Operators, UnknownOperator
from heatwatch.app.cli import main
from heatwatch.core.config import Config, load_config
from heatwatch.core.timeutil import SettableClock

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
USERS = {"lina": {"token": "token-of-lina-1"}, "wangwei": {"role": "supervisor", "token": "token-of-wangwei", "display_name": "王伟"}}


def make_cfg(tmp_path: Path, **desk: Any) -> Config:
    return load_config(environ={}, overrides={"general": {"data_dir": str(tmp_path / "data")},
                                              "desk": {"operators": USERS, **desk}})


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(T0)


@pytest.fixture
def desk(tmp_path: Path, clock: SettableClock) -> Desk:
    return Desk.from_config(make_cfg(tmp_path), clock)


def hotline(**kw: Any) -> OrderInput:
    base = {"category": "not_warm", "reporter": "张三", "phone": "13800000000", "address": "幸福小区3号楼501",
            "home_id": "H1", "content": "暖气不热", "handling_unit": "一号站"}
    return OrderInput.parse({**base, **kw})


def to_on_site(desk: Desk, oid: str, clock: SettableClock) -> None:
    desk.assign(oid, "lina", "李师傅", unit="一号站")
    clock.advance(minutes=3)
    desk.advance(oid, "lina", "contacted")
    clock.advance(minutes=30)
    desk.advance(oid, "lina", "on_site")


def test_steps_name_configured_users_and_the_audit_log_says_who_and_when(desk: Desk, clock: SettableClock) -> None:
    o = desk.open(hotline(), "lina")
    with pytest.raises(UnknownOperator, match=r"unknown operator 'zhao'.*lina, wangwei"):
        desk.assign(o.order_id, "zhao", "李师傅")
    with pytest.raises(UnknownOperator, match="system"):
        desk.assign(o.order_id, "system:sensors", "李师傅")
    with pytest.raises(UnknownOrder, match="no order 'W0'"):
        desk.assign("W0", "lina", "李师傅")
    clock.advance(minutes=2)
    desk.assign(o.order_id, "lina", "李师傅", unit="一号站")
    hist = desk.history(o.order_id)
    assert [(h["event"], h["by"]) for h in hist] == [("open", "lina"), ("dispatch", "lina"), ("accept", "lina")]
    assert hist[-1]["at"] == "2026-12-01T02:02:00.000000Z" and hist[-1]["detail"]["assignee"] == "李师傅"
    got = desk.get(o.order_id)
    assert got.stage == "accepted" and got.stage_at["dispatched"] == T0 + timedelta(minutes=2)


def test_a_reply_missing_an_element_is_refused_and_an_incomplete_one_is_sent_back(desk: Desk, clock: SettableClock) -> None:
    o = desk.open(hotline(), "lina")
    with pytest.raises(TransitionError, match="is received: a reply needs"):
        desk.reply(o.order_id, "lina", "a", "b", "c", "d")
    to_on_site(desk, o.order_id, clock)
    with pytest.raises(TransitionError, match=r"missing 现场情况与问题原因.*客户是否认可"):
        desk.reply(o.order_id, "lina", "", "开阀", "室温19度", " ")
    clock.advance(minutes=40)
    r = desk.reply(o.order_id, "lina", "阀门", "开阀", "室温19度", "认可")
    assert r.stage == "repaired" and r.evidence["reply"]["contacted_in_time"] == "yes"
    assert {c.name: c.state(clock()) for c in desk.clocks(r)}["review"] == "running"
    clock.advance(minutes=25)  # the review itself is late: the review clock is overdue until it happens
    assert "review" in {c.name for _, cs in desk.overdue() for c in cs}
    back = desk.review(o.order_id, "wangwei", ok=False, missing=["cause"], reason="原因不具体")
    assert back.stage == "on_site" and "repaired" not in back.stage_at and "reply" not in back.evidence
    assert back.evidence["sent_back"][0]["reply"]["cause"] == "阀门"
    with pytest.raises(TransitionError, match="a review needs it repaired"):
        desk.review(o.order_id, "wangwei", ok=True)
    clock.advance(minutes=10)
    again = desk.reply(o.order_id, "lina", "单元阀门误关", "开阀排气", "室温19度", "认可")
    review = {c.name: c for c in desk.clocks(again)}["review"]
    assert review.started_at == clock() and review.state(clock()) == "running"  # starts again with the new reply
    assert desk.review(o.order_id, "wangwei", ok=True).stage == "reviewed"
    events = [h["event"] for h in desk.history(o.order_id)]
    assert events[-4:] == ["reply", "send_back", "reply", "review"]


def test_closing_needs_the_callback_or_a_supervisor_with_a_reason(desk: Desk, clock: SettableClock) -> None:
    o = desk.open(hotline(), "lina")
    with pytest.raises(TransitionError, match="closing needs the callback first"):
        desk.close(o.order_id, "wangwei")
    with pytest.raises(TransitionError, match="needs a supervisor"):
        desk.close(o.order_id, "lina", reason="重复工单")
    closed = desk.close(o.order_id, "wangwei", reason="重复工单 duplicate of W1")
    assert closed.closed and closed.evidence["close"] == {"at": T0.isoformat(), "reason": "重复工单 duplicate of W1",
                                                          "after_callback": False}
    assert desk.history(o.order_id)[-1]["by"] == "wangwei"
    with pytest.raises(TransitionError, match="already closed"):
        desk.close(o.order_id, "wangwei", reason="again")
    assert desk.overdue(T0 + timedelta(days=30)) == []


def test_callback_then_close(desk: Desk, clock: SettableClock) -> None:
    o = desk.open(hotline(category="leak"), "lina")
    to_on_site(desk, o.order_id, clock)
    desk.reply(o.order_id, "lina", "暖气片漏水", "更换阀门", "不漏了", "认可")
    desk.review(o.order_id, "wangwei", ok=True)
    with pytest.raises(TransitionError, match="satisfied or unsatisfied"):
        desk.callback(o.order_id, "lina", "ok")  # type: ignore[arg-type]
    clock.advance(hours=47)
    cb = desk.callback(o.order_id, "lina", "satisfied", "不漏了")
    assert cb.evidence["callback"]["satisfaction"] == "satisfied"
    with pytest.raises(TransitionError, match="satisfied; close it instead"):
        desk.reopen(o.order_id, "lina", "客户又来电")
    done = desk.close(o.order_id, "lina")
    states = {c.name: c.state(clock()) for c in desk.clocks(done)}
    assert states["callback"] == "met" and states["leak_contact"] == "met" and states["leak_fixed"] == "met"


def test_an_unsatisfied_callback_reopens_the_order_or_a_supervisor_closes_it(desk: Desk, clock: SettableClock) -> None:
    o = desk.open(hotline(), "lina")
    to_on_site(desk, o.order_id, clock)
    desk.reply(o.order_id, "lina", "阀门", "开阀", "室温19度", "认可")
    desk.review(o.order_id, "wangwei", ok=True)
    clock.advance(hours=24)
    desk.callback(o.order_id, "lina", "unsatisfied", "晚上还是冷")
    with pytest.raises(TransitionError, match="unsatisfied at the callback"):
        desk.close(o.order_id, "lina")
    with pytest.raises(TransitionError, match="unsatisfied at the callback"):
        desk.close(o.order_id, "wangwei")  # a supervisor too must say why
    with pytest.raises(TransitionError, match="needs a reason"):
        desk.reopen(o.order_id, "lina", " ")
    clock.advance(minutes=5)
    back = desk.reopen(o.order_id, "lina", "晚上还是冷")
    assert back.stage == "dispatched" and back.assignee == "" and back.stage_at["dispatched"] == clock()
    assert "callback" not in back.evidence and back.evidence["reopened"][0]["callback"]["satisfaction"] == "unsatisfied"
    assert set(back.stage_at) == {"received", "dispatched"}
    # the unit's clocks run again from the reopening: an hour later with no one on it, the order is overdue again
    assert any(c.started_at == clock() for c in desk.clocks(back))
    clock.advance(hours=3)
    assert o.order_id in {x.order_id for x, _ in desk.overdue()}
    # the second time round the customer is still unhappy: a supervisor closes it, with the reason on record
    desk.assign(o.order_id, "lina", "李师傅")
    desk.advance(o.order_id, "lina", "contacted")
    desk.advance(o.order_id, "lina", "on_site")
    desk.reply(o.order_id, "lina", "户内管道堵塞", "清洗管道", "室温18.5度", "基本认可")
    desk.review(o.order_id, "wangwei", ok=True)
    desk.callback(o.order_id, "lina", "unsatisfied", "希望更暖")
    done = desk.close(o.order_id, "wangwei", reason="室温已达标18度以上，客户期望高于标准")
    assert done.closed and [h["event"] for h in desk.history(o.order_id)].count("reopen") == 1


def test_sensor_orders_need_no_phone_contact_or_opinion(desk: Desk, clock: SettableClock) -> None:
    o = desk.open(OrderInput.parse({"source": "sensor", "category": "not_warm", "address": "幸福小区", "home_id": "H2",
                                    "content": "室温不达标", "handling_unit": "一号站", "ref": "A1"}), "system:sensors")
    assert desk.open(OrderInput.parse({"source": "sensor", "category": "not_warm", "address": "x", "home_id": "H2",
                                       "content": "y", "handling_unit": "z", "ref": "A1"}), "system:sensors") == o
    desk.assign(o.order_id, "lina", "李师傅")
    desk.advance(o.order_id, "lina", "on_site")  # no phone: no call to make first
    r = desk.reply(o.order_id, "lina", "阀门", "开阀", "恢复", "")
    assert r.evidence["reply"]["contacted_in_time"].startswith("n/a")
    assert "contact" not in {c.name for c in desk.clocks(r)}


def test_tokens_match_in_constant_time_and_are_never_shown(tmp_path: Path) -> None:
    ops = Operators.from_config(make_cfg(tmp_path))
    assert ops.by_token("token-of-wangwei") is not None and ops.by_token("token-of-wangwei").name == "wangwei"  # type: ignore[union-attr]
    assert ops.by_token("nope") is None and ops.by_token("") is None
    assert "token-of" not in repr(ops.users)
    (tmp_path / "tok").write_text("from-a-file-123\n", encoding="utf-8")
    cfg = load_config(environ={}, overrides={"desk": {"operators": {"ma": {"token_file": str(tmp_path / "tok")}}}})
    assert Operators.from_config(cfg).by_token("from-a-file-123").name == "ma"  # type: ignore[union-attr]
    with pytest.raises(Exception, match="at least 8"):
        load_config(environ={}, overrides={"desk": {"operators": {"ma": {"token": "short"}}}})


class FlakySink:
    name = "flaky"

    def __init__(self) -> None:
        self.down = True
        self.got: list[tuple[str, dict[str, Any]]] = []

    def send(self, category: str, body: bytes, delivery_id: str) -> None:
        if self.down:
            raise SinkError("receiver down")
        self.got.append((category, json.loads(body)))


def test_an_overdue_clock_escalates_once_and_a_refused_message_waits(desk: Desk, clock: SettableClock) -> None:
    o = desk.open(hotline(), "lina")
    sink = FlakySink()
    esc = Escalator(desk, {"flaky": sink}, ["flaky"], retry_s=60)
    assert esc.tick() == ([], 0)
    clock.advance(minutes=5, seconds=1)
    queued, sent = esc.tick()
    assert [e.clock for e in queued] == ["dispatch"] and sent == 0 and esc.pending() == {"flaky": 1}
    assert esc.tick() == ([], 0)  # once per clock; the refused message backs off
    sink.down = False
    assert esc.deliver_due() == 0  # still waiting its turn
    clock.advance(seconds=61)
    assert esc.deliver_due() == 1 and esc.pending() == {}
    cat, msg = sink.got[0]
    assert cat == "dispatch" and msg["order"]["order_id"] == o.order_id and msg["supervisors"] == ["wangwei"]
    assert msg["clock"]["seed"] == "003" and msg["order"]["content"] == "暖气不热"
    clock.advance(minutes=6)  # 11 min: repair_call (10 min, 002) runs out too
    assert [e.clock for e in esc.check()] == ["repair_call"]
    escal = [h for h in desk.history(o.order_id) if h["event"] == "escalate"]
    assert [(h["by"], h["detail"]["clock"]) for h in escal] == [("system:desk", "dispatch"), ("system:desk", "repair_call")]


def test_cli_orders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "hw.toml"
    conf.write_text(f'[general]\ndata_dir = "{tmp_path / "data"}"\n[desk.operators."lina"]\ntoken = "token-of-lina-1"\n'
                    '[desk.operators."wangwei"]\nrole = "supervisor"\n', encoding="utf-8")
    base = ["--config", str(conf), "orders"]
    assert main([*base, "open", "--category", "leak", "--content", "厨房暖气漏水", "--as", "lina"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing reporter, phone, address, handling_unit" in err
    assert main([*base, "open", "--category", "leak", "--content", "厨房暖气漏水", "--reporter", "王芳", "--phone", "139",
                 "--address", "幸福小区1号楼", "--home", "H9", "--unit", "二号站", "--as", "nobody"]) == 2
    assert "unknown operator 'nobody'" in capsys.readouterr().err
    assert main([*base, "open", "--category", "leak", "--content", "厨房暖气漏水", "--reporter", "王芳", "--phone", "139",
                 "--address", "幸福小区1号楼", "--home", "H9", "--unit", "二号站", "--as", "lina", "--json"]) == 0
    opened = json.loads(capsys.readouterr().out)
    oid = opened["order_id"]
    assert opened["content"] == "厨房暖气漏水" and {c["clock"] for c in opened["clocks"]} >= {"leak_contact", "leak_fixed"}
    assert main([*base, "close", oid, "--as", "lina"]) == 2
    assert "closing needs the callback first" in capsys.readouterr().err
    assert main([*base, "assign", oid, "--unit", "二号站", "--to", "李师傅", "--as", "lina"]) == 0
    assert "assigned to 李师傅 — now accepted" in capsys.readouterr().out
    assert main([*base, "list", "--json"]) == 0
    assert [o["stage"] for o in json.loads(capsys.readouterr().out)] == ["accepted"]
    assert main([*base, "show", oid]) == 0
    out = capsys.readouterr().out
    assert "厨房暖气漏水" in out and "leak_contact" in out and "accept    by lina" in out
    assert main([*base, "close", oid, "--reason", "用户撤单", "--as", "wangwei"]) == 0
    assert main([*base, "overdue", "--json"]) == 0
    assert "[]" in capsys.readouterr().out


def test_sensor_categories_map_and_an_order_without_a_place_is_still_taken(desk: Desk, tmp_path: Path) -> None:
    from control.alerts.model import Candidate, WorkOrder
    from control.alerts.repo import AlertRepo
    from control.db import open_engine
    from dispatch.sensors import SensorBridge

    repo = AlertRepo(open_engine(tmp_path / "control.sqlite"), ["jsonl"])
    fault = WorkOrder.from_candidate(Candidate(key="station:S1", category="station_fault", content="一号站无流量",
                                               evidence={}, station_id="S1", severity="urgent"), T0)
    silent = WorkOrder.from_candidate(Candidate(key="telemetry_outage", category="telemetry_outage", content="数据中断",
                                                evidence={}), T0)
    repo.record(opened=[fault, silent], at=T0)
    got = {o.ref: o for o in SensorBridge(desk).sync(repo).opened}
    assert got[fault.alert_id].category == "no_heat" and got[fault.alert_id].station_id == "S1"
    assert got[silent.alert_id].category == "other" and got[silent.alert_id].station_id == "*"  # silence is not an outage
    assert got[silent.alert_id].handling_unit and got[silent.alert_id].source == "sensor"
    # resolved before the desk saw them: a recent one is still a case (opened, noted), history is not imported
    old = WorkOrder.from_candidate(Candidate(key="home:H8", category="home_below_standard", content="旧", evidence={},
                                             home_id="H8"), T0 - timedelta(days=3))
    new = WorkOrder.from_candidate(Candidate(key="home:H9", category="home_below_standard", content="新", evidence={},
                                             home_id="H9"), T0 - timedelta(minutes=30))
    repo.record(opened=[old, new], at=T0)
    repo.record(resolved=[replace(w, status="resolved", resolved_at=T0) for w in (old, new)], at=T0)
    [noted] = SensorBridge(desk).sync(repo).recovered
    assert noted.ref == new.alert_id and noted.stage == "received" and desk.by_ref(old.alert_id) is None


def test_cli_overdue_escalates_once_to_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "hw.toml"
    conf.write_text(f'[general]\ndata_dir = "{tmp_path / "data"}"\n[desk]\nescalate_mqtt = false\n'
                    '[desk.operators."lina"]\n', encoding="utf-8")
    base = ["--config", str(conf), "orders"]
    assert main([*base, "open", "--category", "other", "--content", "咨询收费标准", "--reporter", "刘", "--phone", "1",
                 "--address", "幸福小区", "--community", "幸福小区", "--unit", "客服", "--received", "2026-11-01 08:00",
                 "--as", "lina"]) == 0
    capsys.readouterr()
    assert main([*base, "overdue", "--escalate"]) == 0
    out = capsys.readouterr().out
    assert "OVERDUE" in out and "asap(" in out and "new escalation(s) queued" in out
    assert main([*base, "overdue", "--escalate"]) == 0
    assert "0 new escalation(s) queued" in capsys.readouterr().out
    lines = (tmp_path / "data" / "desk_escalations.jsonl").read_text(encoding="utf-8").splitlines()
    assert {json.loads(x)["clock"]["clock"] for x in lines} == {"asap", "dispatch", "station_opinion"}
