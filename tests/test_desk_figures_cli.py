"""``heatwatch orders figures`` end to end on a desk file and a SQLite store, and ``heatwatch run``'s desk doors."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dispatch.desk import Desk
from dispatch.figures import ALL
from dispatch.model import OrderInput
from dispatch.operators import Operator, Operators
from heatwatch.app.commands.desk_intake import add_actions
from heatwatch.app.deskintake import DeskDoors, DeskPortUnavailable, recent_months
from heatwatch.core import schema
from heatwatch.core.config import load_config
from heatwatch.core.errors import UsageError
from heatwatch.core.registry import Registry
from heatwatch.core.timeutil import SettableClock
from heatwatch.infra.storage.sqlite import SqliteStore
from tools.servers import free_port

OCT = datetime(2026, 10, 8, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai; long past, so every clock is decided
BASE = {"reporter": "赵敏", "phone": "13700000000", "address": "和平里 2号楼 301", "home_id": "H-301", "community": "和平里",
        "content": "暖气不热", "handling_unit": "和平站班组"}


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    od = parser.add_subparsers(dest="command").add_parser("orders")
    add_actions(od.add_subparsers(dest="action"))
    args = parser.parse_args(argv)
    return int(args.handler(args))


@pytest.fixture
def conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for k in [k for k in os.environ if k.startswith("HEATWATCH_")]:
        monkeypatch.delenv(k)
    path = tmp_path / "hw.toml"
    path.write_text(f'[general]\ndata_dir = "{tmp_path}"\n[sqlite]\npath = "{tmp_path / "hw.sqlite"}"\n'
                    '[desk.operators."lina"]\ntoken = "tok-lina-3b9e"\n', encoding="utf-8")
    return path


def test_figures_json_csv_and_points_in_the_store(conf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = load_config(conf, environ={})
    clock = SettableClock(OCT)
    desk = Desk.from_config(cfg, clock)
    a = desk.open(OrderInput.parse({**BASE, "category": "not_warm", "received_at": OCT.isoformat()}), "lina")
    desk.dispatch_to(a.order_id, "lina")  # 10 min after: within the 2 h respond deadline
    desk.open(OrderInput.parse({**BASE, "category": "leak", "received_at": OCT.isoformat(), "ref": "x2"}), "lina")
    assert len(desk.find(received_since=OCT)) == 2 and desk.find(received_since=OCT + timedelta(microseconds=1)) == []

    assert run(["--config", str(conf), "orders", "figures", "--month", "2026-10", "--json", "--write"]) == 0
    out = capsys.readouterr()
    body = json.loads(out.out)
    assert body["month"] == "2026-10" and "wrote" in out.err
    total = next(u for u in body["units"] if u["handling_unit"] == ALL)
    assert (total["received"], total["received_not_warm"], total["received_leak"]) == (2, 1, 1)
    assert (total["ontime_respond_n"], total["ontime_respond"]) == (2, 0.5)  # a dispatched in time, the leak never moved
    assert total["ontime_dispatch_n"] == 2 and total["closure_rate"] == 0.0 and total["satisfaction_rate"] is None
    store = SqliteStore(tmp_path / "hw.sqlite")
    try:
        got = store.query(schema.DESK_FIGURES, datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
        assert set(got["handling_unit"]) == {"和平站班组", ALL} and list(got["received"]) == [2, 2]
        assert got["time"].iloc[0] == datetime(2026, 9, 30, 16, 0, tzinfo=UTC)  # 1 Oct 00:00 in Shanghai
        overdue = store.query(schema.DESK_OVERDUE, datetime(2026, 9, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
        assert dict(zip(overdue["handling_unit"], overdue["count"], strict=True)) == {ALL: 2, "和平站班组": 2}
    finally:
        store.close()

    assert run(["--config", str(conf), "orders", "figures", "--month", "2026-10", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["handling_unit"] for r in rows] == ["和平站班组", ALL] and rows[1]["satisfaction_rate"] == ""
    assert run(["--config", str(conf), "orders", "figures", "--month", "2026-10"]) == 0
    text = capsys.readouterr().out
    assert "和平站班组" in text and "all units" in text and "ontime_respond" in text
    with pytest.raises(UsageError, match="--month: month '10/2026': expected YYYY-MM"):
        run(["--config", str(conf), "orders", "figures", "--month", "10/2026"])


def test_doors_from_the_config_and_a_taken_port(conf: Path, tmp_path: Path) -> None:
    cfg = load_config(conf, environ={}, overrides={"desk": {"http_port": free_port()}})
    assert DeskDoors.enabled(cfg) and not DeskDoors.enabled(load_config(conf, environ={}))
    desk = Desk.open_file(tmp_path / "d.sqlite", SettableClock(OCT), operators=Operators({"lina": Operator("lina", token="t-12345678")}))
    doors = DeskDoors.from_config(cfg, Registry({}, {}), SettableClock(OCT), desk=desk).start()
    try:
        assert doors.snapshot() == {"http_port": cfg.desk.http_port} and doors.http is not None
        assert doors.http.tokens == {"t-12345678": "lina"}
        with pytest.raises(DeskPortUnavailable, match=rf"\[desk\] http_port {cfg.desk.http_port} .* already in use"):
            DeskDoors.from_config(cfg, Registry({}, {}), SettableClock(OCT), desk=desk)
    finally:
        doors.stop()
    assert recent_months(datetime(2026, 11, 30, 16, 30, tzinfo=UTC), cfg) == ["2026-11", "2026-12"]  # 00:30 on 1 Dec local


def test_the_report_section_shows_the_months_of_the_period(conf: Path) -> None:
    from heatwatch.app.report.desk import desk_section, months_between

    cfg = load_config(conf, environ={})
    start, end = datetime(2026, 9, 30, 16, 0, tzinfo=UTC), datetime(2026, 11, 30, 16, 0, tzinfo=UTC)  # Oct + Nov local
    assert months_between(start, end, cfg) == ["2026-10", "2026-11"]
    assert months_between(start, start + timedelta(hours=1), cfg) == ["2026-10"]
    assert desk_section(cfg, start, end) == []  # no desk file: the desk was never used, no section
    desk = Desk.from_config(cfg, SettableClock(OCT))
    a = desk.open(OrderInput.parse({**BASE, "category": "not_warm", "received_at": OCT.isoformat()}), "lina")
    desk.dispatch_to(a.order_id, "lina")
    desk.open(OrderInput.parse({**BASE, "category": "leak", "received_at": OCT.isoformat(), "ref": "x2"}), "lina")
    text = "\n".join(desk_section(cfg, start, end, now=datetime(2026, 12, 1, tzinfo=UTC)))
    assert "Service desk (调度室): monthly figures" in text and "<h3>2026-10</h3>" in text
    assert "和平站班组" in text and "不热 not warm" in text and "50.0 %" in text  # first response: 1 of 2 in time
    assert "2 open orders are overdue now (和平站班组 2)" in text
    assert "2026-11: no orders received." in text


def test_orders_serve_takes_an_order_until_sigterm(conf: Path, tmp_path: Path) -> None:
    import http.client
    import signal
    import subprocess
    import sys

    with pytest.raises(UsageError, match="nothing to serve"):
        run(["--config", str(conf), "orders", "serve"])
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEATWATCH_")}
    proc = subprocess.Popen([sys.executable, "-m", "heatwatch", "--config", str(conf), "orders", "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", env=env)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()  # printed once the port is bound and served
        assert f"HTTP on 127.0.0.1:{port}" in line, proc.stderr.read() if proc.poll() is not None else line
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/orders", json.dumps({**BASE, "category": "other"}, ensure_ascii=False).encode(),
                     {"Authorization": "Bearer tok-lina-3b9e", "Content-Type": "application/json; charset=utf-8"})
        resp = conn.getresponse()
        made = json.loads(resp.read())
        assert resp.status == 201 and made["content"] == "暖气不热"
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    cfg = load_config(conf, environ={})
    assert Desk.from_config(cfg, SettableClock(OCT)).history(made["order_id"])[0]["by"] == "lina"
