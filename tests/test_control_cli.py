"""`heatwatch proposals|rechecks|alerts`: JSON with Chinese intact, one-line errors with exit 2, apply over MQTT."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from control.alerts.model import Candidate, WorkOrder
from control.alerts.repo import AlertRepo
from control.db import open_engine
from control.proposal import Proposal, new_proposal_id
from control.repo import ProposalRepo
from heatwatch.app.cli import main
from heatwatch.core import schema
from heatwatch.core.config import load_config
from heatwatch.core.timeutil import utc_now
from heatwatch.infra.storage import open_store
from tests.helpers import Listener
from tools.servers import Mosquitto

NOW = datetime.now(UTC).replace(microsecond=0)


def write_config(tmp: Path, port: int = 1883) -> Path:
    p = tmp / "heatwatch.toml"
    p.write_text(
        f'[general]\ndata_dir = "{tmp / "data"}"\n'
        f'[mqtt]\nport = {port}\ntopic_prefix = "cli{tmp.name[-6:]}"\nclient_id = "cli-{tmp.name[-20:]}"\n'
        '[alerts]\nmqtt = false\n'
        '[desk.operators."王工"]\nrole = "supervisor"\n[desk.operators.lina]\n',
        encoding="utf-8",
    )
    return p


def seed(tmp: Path, kind: str = "supply") -> Proposal:
    p = Proposal(
        proposal_id=new_proposal_id(), station_id="S1", kind=kind, community="幸福小区",  # type: ignore[arg-type]
        current_c=45.0, proposed_c=48.0 if kind == "supply" else None, delta_c=3.0 if kind == "supply" else None,
        evidence={"weighted_mean_c": {"幸福小区": 16.9}},
        reason="幸福小区: weighted mean 16.9 °C; raise 幸福换热站 supply from 45.0 to 48.0 °C", created_at=NOW, effective_at=NOW,
        targets=("幸福小区",), before_c=16.9,
    )
    ProposalRepo(open_engine(tmp / "data" / "control.sqlite")).add(p)
    return p


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_proposals_list_show_approve_reject(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(write_config(tmp_path))
    rc, out, _ = run(capsys, "-c", cfg, "proposals", "list")
    assert rc == 0 and "no proposals" in out
    p = seed(tmp_path)
    q = seed(tmp_path, "balancing")
    rc, out, _ = run(capsys, "-c", cfg, "proposals", "list", "--json")
    rows = json.loads(out)
    assert rc == 0 and {r["proposal_id"] for r in rows} == {p.proposal_id, q.proposal_id}
    assert "幸福小区" in out and "\\u" not in out  # ensure_ascii=False
    rc, out, _ = run(capsys, "-c", cfg, "proposals", "show", p.proposal_id, "--json")
    shown = json.loads(out)
    assert shown["proposed_c"] == 48.0 and shown["history"][0]["to_status"] == "proposed"
    rc, out, _ = run(capsys, "-c", cfg, "proposals", "approve", p.proposal_id, "--by", "王工", "--note", "同意")
    assert rc == 0 and "proposed → approved" in out
    rc, out, err = run(capsys, "-c", cfg, "proposals", "approve", p.proposal_id, "--by", "lina")
    assert rc == 2 and err.count("\n") == 1 and "is approved; it can move to applied, rejected" in err
    # approvals name a configured desk user, never free text
    rc, out, err = run(capsys, "-c", cfg, "proposals", "reject", q.proposal_id, "--by", "someone")
    assert rc == 2 and err.count("\n") == 1 and "unknown operator 'someone'" in err and "lina" in err
    rc, out, _ = run(capsys, "-c", cfg, "proposals", "show", q.proposal_id, "--json")
    assert json.loads(out)["status"] == "proposed"
    rc, out, _ = run(capsys, "-c", cfg, "proposals", "reject", q.proposal_id, "--by", "lina", "--json")
    assert rc == 0 and json.loads(out)["status"] == "rejected"
    rc, out, err = run(capsys, "-c", cfg, "proposals", "show", "Pnope")
    assert rc == 2 and "no proposal with id 'Pnope'" in err and "Traceback" not in err
    rc, out, _ = run(capsys, "-c", cfg, "proposals", "list", "--status", "all")
    assert rc == 0 and "rejected" in out and "approved" in out
    rc, out, _ = run(capsys, "-c", cfg, "proposals", "show", p.proposal_id)
    assert "王工" in out and "同意" in out


def test_approve_and_reject_use_the_lifecycle_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No control loop, no alert sinks, no MQTT for a decision; the Grafana annotation is still written."""
    import control.alerting
    import control.service

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an operator's decision built the control loop or its alert sinks")

    monkeypatch.setattr(control.service.ControlLoop, "__init__", refuse)
    monkeypatch.setattr(control.alerting, "build_sinks", refuse)
    cfg_path = write_config(tmp_path)
    p, q = seed(tmp_path), seed(tmp_path, "balancing")
    rc, out, err = run(capsys, "-c", str(cfg_path), "proposals", "approve", p.proposal_id, "--by", "王工")
    assert rc == 0 and "proposed → approved" in out, err
    rc, out, err = run(capsys, "-c", str(cfg_path), "proposals", "reject", q.proposal_id, "--by", "lina")
    assert rc == 0 and "proposed → rejected" in out, err
    store = open_store(load_config(cfg_path))
    try:
        df = store.query(schema.PROPOSALS, NOW - timedelta(minutes=5), utc_now() + timedelta(minutes=5))
    finally:
        store.close()
    assert set(zip(df["proposal_id"], df["status"], strict=True)) == {(p.proposal_id, "approved"), (q.proposal_id, "rejected")}


@pytest.mark.mosquitto
def test_apply_publishes_retained_setpoint_and_lists_recheck(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mosquitto: Mosquitto
) -> None:
    cfg = str(write_config(tmp_path, mosquitto.port))
    p = seed(tmp_path)
    assert run(capsys, "-c", cfg, "proposals", "approve", p.proposal_id, "--by", "王工")[0] == 0
    rc, out, err = run(capsys, "-c", cfg, "proposals", "apply", p.proposal_id, "--by", "王工", "--json")
    assert rc == 0, err
    applied = json.loads(out)
    assert applied["status"] == "applied" and applied["published_at"] is not None
    sp = Listener(mosquitto.port, f"cli{tmp_path.name[-6:]}/control/setpoint/S1")
    try:
        [(_, body)] = sp.wait_for(1)
    finally:
        sp.close()
    msg = json.loads(body)
    assert msg["proposal_id"] == p.proposal_id and msg["supply_c"] == 48.0 and "幸福换热站" in msg["reason"]
    rc, out, _ = run(capsys, "-c", cfg, "rechecks", "list", "--json")
    [r] = json.loads(out)
    assert r["proposal_id"] == p.proposal_id and r["scheduled"] is True and r["overdue"] is False
    due = datetime.fromisoformat(r["due"])
    assert abs(due - (NOW + timedelta(hours=48))) < timedelta(minutes=5)
    rc, out, _ = run(capsys, "-c", cfg, "rechecks", "list")
    assert rc == 0 and p.proposal_id in out and "幸福小区" in out


def test_apply_without_broker_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tools.servers import free_port

    cfg = write_config(tmp_path, free_port())  # nothing listens there
    p = seed(tmp_path)
    run(capsys, "-c", str(cfg), "proposals", "approve", p.proposal_id, "--by", "王工")
    import control.publish as publish_mod

    orig = publish_mod.MqttPublisher.publish

    def quick(self: publish_mod.MqttPublisher, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
              timeout: float = 10.0) -> None:
        orig(self, topic, payload, qos, retain, timeout=1.0)

    monkeypatch.setattr(publish_mod.MqttPublisher, "publish", quick)  # wait 1 s for the broker, not 10
    rc, out, err = run(capsys, "-c", str(cfg), "proposals", "apply", p.proposal_id, "--by", "王工")
    assert rc == 2 and "not acknowledged" in err and err.count("\n") == 1
    rc, out, _ = run(capsys, "-c", str(cfg), "proposals", "show", p.proposal_id, "--json")
    assert json.loads(out)["status"] == "approved"


def test_alerts_list_ack_resolve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(write_config(tmp_path))
    repo = AlertRepo(open_engine(tmp_path / "data" / "control.sqlite"), ["jsonl"])
    o = WorkOrder.from_candidate(
        Candidate("home_below_standard:H1", "home_below_standard", "幸福小区1号楼101: 15.9 °C", {"mean_c": 15.9},
                  "S1", "幸福小区", "H1", "幸福小区1号楼101", "138", "幸福换热站", 2.0, "urgent"),
        NOW,
    )
    repo.record(opened=[o], at=NOW)
    rc, out, _ = run(capsys, "-c", cfg, "alerts", "list", "--json")
    [a] = json.loads(out)
    assert a["alert_id"] == o.alert_id and a["address"] == "幸福小区1号楼101" and a["fault_category"].startswith("室温不达标")
    rc, out, err = run(capsys, "-c", cfg, "alerts", "ack", o.alert_id, "--note", "已派单", "--by", "")
    assert rc == 2 and "--by: name the desk user" in err
    rc, out, _ = run(capsys, "-c", cfg, "alerts", "ack", o.alert_id, "--note", "已派单", "--by", "lina")
    assert rc == 0 and "acked" in out
    rc, out, _ = run(capsys, "-c", cfg, "alerts", "resolve", o.alert_id, "--by", "王工", "--json")
    assert rc == 0 and json.loads(out)["status"] == "resolved" and json.loads(out)["note"] == "王工"
    rc, out, _ = run(capsys, "-c", cfg, "alerts", "list")
    assert "no alerts" in out
    rc, out, _ = run(capsys, "-c", cfg, "alerts", "list", "--status", "resolved")
    assert o.alert_id in out and "幸福小区1号楼101" in out
    rc, out, err = run(capsys, "-c", cfg, "alerts", "resolve", o.alert_id, "--by", "lina")
    assert rc == 2 and "already resolved" in err
    rc, out, err = run(capsys, "-c", cfg, "alerts", "ack", "Anope", "--by", "lina")
    assert rc == 2 and "no alert with id" in err
