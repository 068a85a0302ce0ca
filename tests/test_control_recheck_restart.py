"""A recheck survives SIGKILL: scheduled in the persistent job store, the process killed, restarted before
and after it is due → it runs exactly once (the scheduler's job, not the cycle's sweep)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from control.db import open_engine
from control.rechecks import stored_jobs
from control.repo import ProposalRepo
from heatwatch.core.config import load_config
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[1]
DUE_S = 6.0

CHILD = r'''
import json, sys, time
from datetime import timedelta
from analytics.results import AnalysisResult, CommunityStats
from control.proposal import Proposal, new_proposal_id
from control.service import ControlLoop
from heatwatch.core.config import load_config
from heatwatch.core.registry import Home, Registry, Station
from heatwatch.infra.storage.sqlite import SqliteStore
from heatwatch.core.timeutil import utc_now

mode, data = sys.argv[1], sys.argv[2]
cfg = load_config(environ={}, overrides={
    "general": {"data_dir": data},
    "control": {"recheck_after_h": float(sys.argv[3]) / 3600, "coldsnap_interval_min": 600},
    "alerts": {"mqtt": False},
})
st = Station("S1", "幸福换热站", ("幸福小区",), 35.0, 75.0)
reg = Registry({"H1": Home("H1", "幸福小区", "1号楼", "1", 1, 6, False, "residential", None, "S1")}, {"S1": st})

def analyze(store, registry, cfg, start, end, community=None, now=None):
    cs = CommunityStats("幸福小区", 10, 10, 5, 5, 0.5, 0.5, 18.6, 18.6, 0, "ok")
    return AnalysisResult(start, end, "Asia/Shanghai", [cs])

loop = ControlLoop(cfg, reg, SqliteStore(f"{data}/store.sqlite"), utc_now, None, analyze=analyze).start()
if mode == "schedule":
    now = utc_now()
    p = Proposal(proposal_id=new_proposal_id(), station_id="S1", kind="balancing", community="幸福小区", current_c=3.1,
                 proposed_c=None, delta_c=None, evidence={"window_h": 24.0}, reason="幸福小区: 3号楼 cold, 1号楼 warm",
                 created_at=now, effective_at=now, targets=("幸福小区",), before_c=17.2)
    loop.proposals.add(p)
    loop.approve(p.proposal_id)
    a = loop.apply(p.proposal_id)
    print("SCHEDULED", json.dumps({"id": p.proposal_id, "due": a.recheck_due_at.isoformat()}), flush=True)
else:
    print("STARTED", flush=True)
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    time.sleep(0.2)
'''


class Child:
    def __init__(self, script: Path, mode: str, data: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, str(script), mode, str(data), str(DUE_S)], cwd=str(ROOT), env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def first_line(self) -> str:
        """The one line the child prints when ready (the test's pytest timeout bounds the wait)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"child exited early: {err[-2000:]}")
        return line.strip()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        for fh in (self.proc.stdout, self.proc.stderr):
            if fh:
                fh.close()


def runs(data: Path) -> list[dict[str, object]]:
    engine = open_engine(data / "control.sqlite")
    try:
        return ProposalRepo(engine).recheck_runs()
    finally:
        engine.dispose()


def wait_runs(data: Path, n: int, until: float) -> list[dict[str, object]]:
    while time.monotonic() < until:
        got = runs(data)
        if len(got) >= n:
            return got
        time.sleep(0.2)
    return runs(data)


def wait_job_gone(data: Path, proposal_id: str) -> None:
    """Until the recheck's job has left the persistent job store: from then on no restart can run it again."""
    cfg = load_config(environ={}, overrides={"general": {"data_dir": str(data)}})
    wait_until(lambda: f"recheck:{proposal_id}" not in {j["job_id"] for j in stored_jobs(cfg)}, 30,
               f"the job of recheck {proposal_id} to leave the job store")


def schedule(script: Path, data: Path) -> tuple[str, datetime]:
    c = Child(script, "schedule", data)
    try:
        tag, body = c.first_line().split(" ", 1)
        assert tag == "SCHEDULED"
    finally:
        c.kill()  # SIGKILL: no shutdown, no cleanup
    info = json.loads(body)
    return info["id"], datetime.fromisoformat(info["due"])


@pytest.mark.timeout(180)
def test_recheck_restarted_before_due_runs_once_when_due(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    data = tmp_path / "data"
    pid, due = schedule(script, data)
    assert runs(data) == []
    b = Child(script, "run", data)
    try:
        assert b.first_line() == "STARTED"
        if datetime.now(UTC) < due - timedelta(seconds=0.5):
            assert runs(data) == []  # restarted before it is due: nothing yet
        got = wait_runs(data, 1, time.monotonic() + DUE_S + 30)
        assert len(got) == 1 and got[0]["proposal_id"] == pid and got[0]["outcome"] == "improved"
        assert json.loads(str(got[0]["detail"]))["by"] == "scheduler"
        ran_at = datetime.strptime(str(got[0]["ran_at"]), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert ran_at >= due
        wait_job_gone(data, pid)  # the scheduler is done with it
    finally:
        b.kill()
    c = Child(script, "run", data)
    try:
        assert c.first_line() == "STARTED"  # its scheduler started from a job store without the recheck
        assert len(runs(data)) == 1  # not again after another restart
    finally:
        c.kill()


@pytest.mark.timeout(180)
def test_recheck_due_while_down_runs_once_after_restart(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    data = tmp_path / "data"
    pid, due = schedule(script, data)
    while datetime.now(UTC) < due + timedelta(seconds=1):  # heatwatch is down when it falls due
        time.sleep(0.2)
    b = Child(script, "run", data)
    try:
        assert b.first_line() == "STARTED"
        got = wait_runs(data, 1, time.monotonic() + 30)
        assert [r["proposal_id"] for r in got] == [pid]
        wait_job_gone(data, pid)  # nothing left that could run it a second time
        assert len(runs(data)) == 1
    finally:
        b.kill()
    engine = open_engine(data / "control.sqlite")
    try:
        p = ProposalRepo(engine).get(pid)
        assert p.status == "rechecked" and p.outcome == "improved" and p.after_c == 18.6
    finally:
        engine.dispose()
