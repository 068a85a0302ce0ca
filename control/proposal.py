"""A proposal: one change heatwatch asks a station operator or a dispatcher to make, with its evidence.

Lifecycle ``proposed → approved | rejected → applied → rechecked`` (outcome improved | not_improved |
confounded); a setpoint not yet sent can be ``withdrawn`` (unsafe when it was due, or its cold snap was
cancelled by a newer forecast).
Records are frozen; a status change is a new record via ``dataclasses.replace`` plus a history row.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from heatwatch.core.timeutil import rfc3339

Kind = Literal["supply", "balancing", "home_visit", "lower_supply", "home_valves"]
Status = Literal["proposed", "approved", "rejected", "applied", "rechecked", "withdrawn"]
Outcome = Literal["improved", "not_improved", "confounded"]
OUTCOMES: tuple[str, ...] = ("improved", "not_improved", "confounded")
KINDS: tuple[str, ...] = ("supply", "balancing", "home_visit", "lower_supply", "home_valves")
STATUSES: tuple[str, ...] = ("proposed", "approved", "rejected", "applied", "rechecked", "withdrawn")
SETPOINT_KINDS = frozenset({"supply", "lower_supply"})  # applying these publishes a setpoint
OPEN = frozenset({"proposed", "approved"})

# allowed transitions: operator actions, the recheck, and heatwatch withdrawing a setpoint not yet sent
# (applied → withdrawn only while unpublished: ``Setpoints.withdraw`` checks that)
TRANSITIONS: dict[str, frozenset[str]] = {
    "proposed": frozenset({"approved", "rejected", "withdrawn"}),
    "approved": frozenset({"applied", "rejected", "withdrawn"}),
    "applied": frozenset({"rechecked", "withdrawn"}),
    "rejected": frozenset(),
    "rechecked": frozenset(),
    "withdrawn": frozenset(),
}


class TransitionError(ValueError):
    """An action that the proposal's current status does not allow."""


def new_proposal_id() -> str:
    return "P" + secrets.token_hex(5)


@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal:
    """Built by keyword only: twelve fields, several of them floats, are too easy to swap by position."""

    proposal_id: str
    station_id: str
    kind: Kind
    community: str  # "" when the proposal covers the whole station
    current_c: float | None  # supply now (supply kinds); building spread (balancing); home mean (home_visit);
    # the warmest throttled class's mean (home_valves)
    proposed_c: float | None  # the new supply setpoint; None for on-site work
    delta_c: float | None
    evidence: dict[str, Any]
    reason: str
    created_at: datetime
    effective_at: datetime
    status: Status = "proposed"
    home_id: str = ""
    origin: str = "analytics"  # analytics | cold_snap
    outcome: Outcome | None = None
    applied_at: datetime | None = None
    published_at: datetime | None = None
    recheck_due_at: datetime | None = None
    before_c: float | None = None  # weighted mean (or home mean) over the window before applying
    after_c: float | None = None  # the same at the recheck
    updated_at: datetime | None = None
    note: str = ""
    targets: tuple[str, ...] = field(default=())  # communities (or home) the recheck re-analyses

    @property
    def is_setpoint(self) -> bool:
        return self.kind in SETPOINT_KINDS

    def check_transition(self, to: str) -> None:
        if to not in TRANSITIONS[self.status]:
            allowed = ", ".join(sorted(TRANSITIONS[self.status])) or "nothing (final)"
            raise TransitionError(f"proposal {self.proposal_id} is {self.status}; it can move to {allowed}, not {to}")

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (RFC 3339 times, Chinese names intact when dumped with ensure_ascii=False)."""
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, datetime):
                out[k] = rfc3339(v)
        out["targets"] = list(self.targets)
        return out
