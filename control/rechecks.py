"""48-hour rechecks (and delayed setpoints) on APScheduler 3 with a persistent SQLAlchemy job store.

Jobs carry only the proposal id and name a module-level function, so they survive a restart:
the function finds the running ``ControlLoop`` through ``activate``. Job ids are explicit
(``recheck:<id>``, ``setpoint:<id>``), added with ``replace_existing``; ``misfire_grace_time=None``
and ``coalesce`` make a job that fell due while heatwatch was down run once when it is back.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import create_engine, text

from control.db import jobstore_url
from heatwatch.core.config import Config

log = logging.getLogger("heatwatch.control.rechecks")
JOB_TABLE = "heatwatch_jobs"


class _Loop(Protocol):
    def recheck(self, proposal_id: str, by: str = ...) -> Any: ...

    def publish_setpoint(self, proposal_id: str) -> Any: ...


_active: _Loop | None = None
_active_lock = threading.Lock()


def activate(loop: _Loop | None) -> None:
    """The loop that persistent jobs act on in this process (set by ControlLoop.start)."""
    global _active
    with _active_lock:
        _active = loop


def _loop() -> _Loop:
    with _active_lock:
        if _active is None:
            raise RuntimeError("no ControlLoop is running in this process; the job will be caught by the next sweep")
        return _active


def recheck_job(proposal_id: str) -> None:
    _loop().recheck(proposal_id, by="scheduler")


def setpoint_job(proposal_id: str) -> None:
    _loop().publish_setpoint(proposal_id)


def build_scheduler(cfg: Config) -> BackgroundScheduler:
    return BackgroundScheduler(
        jobstores={
            "default": SQLAlchemyJobStore(url=jobstore_url(cfg), tablename=JOB_TABLE),
            "memory": MemoryJobStore(),
        },
        job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
        timezone=UTC,
    )


def add_persistent(scheduler: BackgroundScheduler, kind: str, proposal_id: str, run_at: datetime) -> str:
    func = {"recheck": "control.rechecks:recheck_job", "setpoint": "control.rechecks:setpoint_job"}[kind]
    job_id = f"{kind}:{proposal_id}"
    scheduler.add_job(
        func, trigger="date", run_date=run_at, id=job_id, args=[proposal_id], replace_existing=True,
        misfire_grace_time=None, coalesce=True, jobstore="default", name=f"{kind} {proposal_id}",
    )
    return job_id


def schedule_offline(cfg: Config, kind: str, proposal_id: str, run_at: datetime) -> str:
    """Write a job into the persistent store from a process that runs no scheduler (the CLI)."""
    sched = build_scheduler(cfg)
    sched.start(paused=True)
    try:
        return add_persistent(sched, kind, proposal_id, run_at)
    finally:
        sched.shutdown(wait=False)


def stored_jobs(cfg: Config) -> list[dict[str, Any]]:
    """Jobs in the persistent store (id, next run), read without unpickling, for ``heatwatch rechecks list``."""
    url = jobstore_url(cfg)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return []  # nothing was ever scheduled; do not create the file just to look
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            try:
                rows = conn.execute(text(f"SELECT id, next_run_time FROM {JOB_TABLE} ORDER BY next_run_time")).all()
            except Exception:  # table not created yet: nothing scheduled
                return []
    finally:
        engine.dispose()
    return [
        {"job_id": r[0], "next_run": None if r[1] is None else datetime.fromtimestamp(float(r[1]), UTC)} for r in rows
    ]
