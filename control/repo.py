"""Proposals and their history in control's SQLite file; every status change is a history row.

A transition is a compare-and-set on the old status, so the CLI and the service (two processes)
cannot both apply, or both recheck, the same proposal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from control import db
from control.proposal import OPEN, SETPOINT_KINDS, Proposal, TransitionError
from heatwatch.infra import statedb


class UnknownProposal(LookupError):
    def __init__(self, proposal_id: str) -> None:
        super().__init__(f"no proposal with id {proposal_id!r} (see `heatwatch proposals list`)")


def _row(p: Proposal) -> dict[str, Any]:
    return {
        "proposal_id": p.proposal_id,
        "station_id": p.station_id,
        "kind": p.kind,
        "community": p.community,
        "home_id": p.home_id,
        "status": p.status,
        "origin": p.origin,
        "outcome": p.outcome,
        "current_c": p.current_c,
        "proposed_c": p.proposed_c,
        "delta_c": p.delta_c,
        "before_c": p.before_c,
        "after_c": p.after_c,
        "evidence": statedb.dumps(p.evidence),
        "targets": statedb.dumps(list(p.targets)),
        "reason": p.reason,
        "note": p.note,
        "created_at": statedb.ts(p.created_at),
        "effective_at": statedb.ts(p.effective_at),
        "applied_at": statedb.ts(p.applied_at),
        "published_at": statedb.ts(p.published_at),
        "recheck_due_at": statedb.ts(p.recheck_due_at),
        "updated_at": statedb.ts(p.updated_at),
    }


def _from_row(r: Any) -> Proposal:
    m = r._mapping
    created = statedb.parse_ts(m["created_at"])
    effective = statedb.parse_ts(m["effective_at"])
    assert created is not None and effective is not None
    return Proposal(
        proposal_id=m["proposal_id"],
        station_id=m["station_id"],
        kind=m["kind"],
        community=m["community"],
        current_c=m["current_c"],
        proposed_c=m["proposed_c"],
        delta_c=m["delta_c"],
        evidence=json.loads(m["evidence"]),
        reason=m["reason"],
        created_at=created,
        effective_at=effective,
        status=m["status"],
        home_id=m["home_id"],
        origin=m["origin"],
        outcome=m["outcome"],
        applied_at=statedb.parse_ts(m["applied_at"]),
        published_at=statedb.parse_ts(m["published_at"]),
        recheck_due_at=statedb.parse_ts(m["recheck_due_at"]),
        before_c=m["before_c"],
        after_c=m["after_c"],
        updated_at=statedb.parse_ts(m["updated_at"]),
        note=m["note"],
        targets=tuple(json.loads(m["targets"])),
    )


class ProposalRepo:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, p: Proposal, actor: str = "heatwatch") -> None:
        self.add_many([p], actor)

    def add_many(self, ps: Sequence[Proposal], actor: str = "heatwatch") -> None:
        """One transaction for a cycle's proposals (one fsync, not one per home visit)."""
        if not ps:
            return
        with self.engine.begin() as conn:
            conn.execute(insert(db.proposals), [_row(p) for p in ps])
            conn.execute(
                insert(db.proposal_history),
                [
                    {"proposal_id": p.proposal_id, "at": statedb.ts(p.created_at), "from_status": None, "to_status": p.status,
                     "actor": actor, "note": p.reason}
                    for p in ps
                ],
            )

    def get(self, proposal_id: str) -> Proposal:
        with self.engine.connect() as conn:
            r = conn.execute(select(db.proposals).where(db.proposals.c.proposal_id == proposal_id)).first()
        if r is None:
            raise UnknownProposal(proposal_id)
        return _from_row(r)

    def find(
        self,
        statuses: Iterable[str] | None = None,
        station_id: str | None = None,
        kinds: Iterable[str] | None = None,
        limit: int = 1000,
    ) -> list[Proposal]:
        q = select(db.proposals).order_by(db.proposals.c.created_at.desc()).limit(limit)
        if statuses is not None:
            q = q.where(db.proposals.c.status.in_(list(statuses)))
        if station_id is not None:
            q = q.where(db.proposals.c.station_id == station_id)
        if kinds is not None:
            q = q.where(db.proposals.c.kind.in_(list(kinds)))
        with self.engine.connect() as conn:
            return [_from_row(r) for r in conn.execute(q)]

    def transition(self, new: Proposal, from_status: str, actor: str, note: str = "") -> Proposal:
        """Store ``new`` only if the row is still ``from_status``; raise TransitionError otherwise."""
        with self.engine.begin() as conn:
            res = conn.execute(
                update(db.proposals)
                .where(db.proposals.c.proposal_id == new.proposal_id, db.proposals.c.status == from_status)
                .values(**_row(new))
            )
            if res.rowcount != 1:
                raise TransitionError(f"proposal {new.proposal_id} is no longer {from_status} (changed meanwhile)")
            conn.execute(
                insert(db.proposal_history).values(
                    proposal_id=new.proposal_id, at=statedb.ts(new.updated_at), from_status=from_status,
                    to_status=new.status, actor=actor, note=note,
                )
            )
        return new

    def move(self, proposal_id: str, to: str, at: datetime, actor: str, note: str = "", **changes: Any) -> Proposal:
        old = self.get(proposal_id)
        old.check_transition(to)
        new = replace(old, status=to, updated_at=at, note=note or old.note, **changes)  # type: ignore[arg-type]
        return self.transition(new, old.status, actor, note)

    def history(self, proposal_id: str) -> list[dict[str, Any]]:
        q = select(db.proposal_history).where(db.proposal_history.c.proposal_id == proposal_id).order_by(db.proposal_history.c.id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    # --- queries the control loop needs -----------------------------------------------------
    def open_for(self, station_id: str, kinds: Sequence[str], home_id: str = "", community: str | None = None) -> list[Proposal]:
        """Proposals not yet decided or applied-but-not-rechecked, to avoid proposing the same thing twice."""
        out = []
        for p in self.find(statuses=[*OPEN, "applied"], station_id=station_id, kinds=kinds):
            if home_id and p.home_id != home_id:
                continue
            if community is not None and p.community != community:
                continue
            out.append(p)
        return out

    def mark_published(self, proposal_id: str, at: datetime) -> bool:
        """Record when the setpoint went out. Strictly after the station's previous one (1 µs later on a tie:
        a simulated clock publishes a due step and a new change at one instant), so the newest is the reference."""
        with self.engine.begin() as conn:
            sid = conn.execute(select(db.proposals.c.station_id).where(db.proposals.c.proposal_id == proposal_id)).scalar()
            latest = conn.execute(
                select(func.max(db.proposals.c.published_at)).where(db.proposals.c.station_id == sid)
            ).scalar()
            prev = statedb.parse_ts(latest)
            if prev is not None and prev >= at:
                at = prev + timedelta(microseconds=1)
            res = conn.execute(
                update(db.proposals)
                .where(db.proposals.c.proposal_id == proposal_id, db.proposals.c.published_at.is_(None))
                .values(published_at=statedb.ts(at))
            )
        return res.rowcount == 1

    def last_published(self, station_id: str | None = None, exclude: str = "") -> dict[str, Proposal]:
        """Per station, the setpoint it was sent last (the newest ``published_at``): every step's reference."""
        q = (
            select(db.proposals)
            .where(db.proposals.c.published_at.is_not(None), db.proposals.c.kind.in_(sorted(SETPOINT_KINDS)),
                   db.proposals.c.proposal_id != exclude)
            .order_by(db.proposals.c.published_at.desc(), db.proposals.c.effective_at.desc())
        )
        if station_id is not None:
            q = q.where(db.proposals.c.station_id == station_id).limit(1)
        out: dict[str, Proposal] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(q):
                p = _from_row(r)
                out.setdefault(p.station_id, p)
        return out

    def unpublished(self) -> list[Proposal]:
        """Applied setpoint changes whose message has not gone out yet (effective later, or the broker was down)."""
        return [p for p in self.find(statuses=["applied", "rechecked"]) if p.is_setpoint and p.published_at is None]

    def pending_rechecks(self) -> list[Proposal]:
        return sorted(self.find(statuses=["applied"]), key=lambda p: p.recheck_due_at or p.created_at)

    def record_recheck(
        self,
        p: Proposal,
        outcome: str,
        after_c: float | None,
        window: tuple[datetime, datetime],
        at: datetime,
        detail: dict[str, Any],
    ) -> Proposal | None:
        """Claim and finish the recheck in one transaction; None if it already ran (exactly once)."""
        new = replace(p, status="rechecked", outcome=outcome, after_c=after_c, updated_at=at)  # type: ignore[arg-type]
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(db.recheck_runs).values(
                        proposal_id=p.proposal_id, ran_at=statedb.ts(at), outcome=outcome, before_c=p.before_c, after_c=after_c,
                        window_from=statedb.ts(window[0]), window_to=statedb.ts(window[1]), detail=statedb.dumps(detail),
                    )
                )
                res = conn.execute(
                    update(db.proposals)
                    .where(db.proposals.c.proposal_id == p.proposal_id, db.proposals.c.status == "applied")
                    .values(**_row(new))
                )
                if res.rowcount != 1:
                    raise IntegrityError("proposal not applied", None, Exception("status"))
                conn.execute(
                    insert(db.proposal_history).values(
                        proposal_id=p.proposal_id, at=statedb.ts(at), from_status="applied", to_status="rechecked",
                        actor="recheck", note=f"{outcome}: before {p.before_c} °C, after {after_c} °C",
                    )
                )
        except IntegrityError:
            return None
        return new

    def recheck_runs(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(db.recheck_runs).order_by(db.recheck_runs.c.ran_at))]
