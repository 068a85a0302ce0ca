"""An order's lifecycle as a pure state machine (003: 工单处理规范; 001 for the callback).

received → dispatched → accepted → contacted → on_site → repaired → reviewed → callback → closed

- ``repaired`` is the reply, with the four elements of 003: whether the customer was contacted in time
  (the desk fills it from the contact clock), the situation and cause, the measures and their effect, and
  whether the customer agrees. A reply missing any of them is refused, naming them.
- The hotline reviews it: complete → ``reviewed``; incomplete → sent back (the reply is kept as evidence,
  the stage returns to where it was before the reply and the review clock starts again with the next one).
- ``callback`` records the customer's satisfaction; only then may an order close — or, before that, when a
  supervisor records why. An unsatisfied customer (the standards want 100 % satisfaction) is not closed by an
  ordinary operator: the order is reopened (back to ``dispatched``, its clocks running again) or a supervisor
  closes it and says why.
- Orders without a phone (sensors) may skip ``contacted`` and need no customer opinion (003: 未留联系方式的除外);
  orders that need no visit (a bill, a complaint) may go from ``contacted`` to ``repaired``.

Each function takes an Order and returns the changed copy; nothing here reads a clock or a database.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, Literal

from dispatch.model import Order

REPLY_ELEMENTS = ("cause", "action", "result", "opinion")
REPLY_NAMES = {
    "contacted_in_time": "是否在规定时间内与客户联系 contacted in time",
    "cause": "现场情况与问题原因 situation and cause",
    "action": "处理措施 measures taken",
    "result": "处理效果 their effect",
    "opinion": "客户是否认可 the customer's opinion",
}
Satisfaction = Literal["satisfied", "unsatisfied"]
MARKS = ("late_notice",)  # events a clock may wait for besides stages (000: a late visit announced ahead)


class TransitionError(ValueError):
    """A move the lifecycle does not allow from where the order stands; the message says what is possible."""


def _at(o: Order, stage: str, at: datetime, **changes: Any) -> Order:
    return replace(o, stage=stage, stage_at={**o.stage_at, stage: at}, updated_at=at, **changes)


def _need(o: Order, *stages: str, action: str) -> None:
    if o.stage == "closed":
        raise TransitionError(f"order {o.order_id} is closed")
    if o.stage not in stages:
        raise TransitionError(f"order {o.order_id} is {o.stage}: {action} needs it {' or '.join(stages)}")


def dispatch(o: Order, at: datetime, unit: str = "") -> Order:
    """To the handling unit (责任单位)."""
    _need(o, "received", action="dispatch")
    return _at(o, "dispatched", at, handling_unit=unit or o.handling_unit)


def accept(o: Order, at: datetime, assignee: str) -> Order:
    """The unit routes it to a first-line worker (its handling opinion)."""
    if not assignee.strip():
        raise TransitionError("accept needs the first-line worker's name (assignee)")
    _need(o, "dispatched", action="accept")
    return _at(o, "accepted", at, assignee=assignee.strip())


def advance(o: Order, to: str, at: datetime) -> Order:
    """``contacted`` or ``on_site``."""
    if to == "contacted":
        _need(o, "accepted", action="contacted")
    elif to == "on_site":
        allowed = ("contacted", "accepted") if not o.phone else ("contacted",)
        _need(o, *allowed, action="on_site")
    else:
        raise TransitionError(f"advance goes to contacted or on_site, not {to!r} (other stages have their own command)")
    return _at(o, to, at)


def mark(o: Order, name: str, at: datetime, text: str = "") -> Order:
    """An event a clock waits for that is not a stage (e.g. the late-visit notice)."""
    if name not in MARKS:
        raise TransitionError(f"unknown mark {name!r}; one of {', '.join(MARKS)}")
    if o.stage == "closed":
        raise TransitionError(f"order {o.order_id} is closed")
    marks = [*o.evidence.get("marks", []), {"mark": name, "at": at.isoformat(), "text": text}]
    return replace(o, stage_at={**o.stage_at, name: o.stage_at.get(name, at)}, evidence={**o.evidence, "marks": marks},
                   updated_at=at)


def missing_reply(o: Order, reply: dict[str, str]) -> list[str]:
    out = [k for k in REPLY_ELEMENTS if not str(reply.get(k, "")).strip()]
    if not o.phone and out == ["opinion"]:  # no contact left: no opinion to ask for
        return []
    return out


def reply(o: Order, at: datetime, elements: dict[str, str], contacted_in_time: bool | None) -> Order:
    """The reply (回单): refused, naming them, when any of the four elements is missing."""
    allowed = ("contacted", "on_site", "accepted") if not o.phone else ("contacted", "on_site")
    _need(o, *allowed, action="a reply")
    missing = missing_reply(o, elements)
    if missing:
        raise TransitionError("reply refused: missing " + ", ".join(REPLY_NAMES[k] for k in missing))
    body = {k: str(elements.get(k, "")).strip() for k in REPLY_ELEMENTS}
    body["contacted_in_time"] = ("n/a (no contact left)" if contacted_in_time is None
                                 else "yes" if contacted_in_time else "no")
    body["at"] = at.isoformat()
    body["back_to"] = o.stage
    return _at(o, "repaired", at, evidence={**o.evidence, "reply": body})


def review(o: Order, at: datetime, ok: bool, missing: tuple[str, ...] = (), reason: str = "") -> Order:
    """The hotline's review: complete → reviewed; incomplete → sent back to before the reply."""
    _need(o, "repaired", action="a review")
    if ok:
        return _at(o, "reviewed", at)
    unknown = [m for m in missing if m not in REPLY_NAMES]
    if unknown:
        raise TransitionError(f"unknown reply element(s) {', '.join(unknown)}; one of {', '.join(REPLY_NAMES)}")
    if not missing and not reason.strip():
        raise TransitionError("sending a reply back needs what is missing (reply elements) or a reason")
    reply_body = dict(o.evidence.get("reply", {}))
    back = str(reply_body.get("back_to") or "on_site")
    sent = [*o.evidence.get("sent_back", []), {"at": at.isoformat(), "missing": list(missing), "reason": reason.strip(),
                                                "reply": reply_body}]
    stage_at = {k: v for k, v in o.stage_at.items() if k != "repaired"}
    evidence = {k: v for k, v in o.evidence.items() if k != "reply"}
    return replace(o, stage=back, stage_at=stage_at, evidence={**evidence, "sent_back": sent}, updated_at=at)


def callback(o: Order, at: datetime, satisfaction: Satisfaction, note: str = "") -> Order:
    """The return call (回访) and the customer's satisfaction."""
    if satisfaction not in ("satisfied", "unsatisfied"):
        raise TransitionError(f"satisfaction is satisfied or unsatisfied, not {satisfaction!r}")
    _need(o, "reviewed", action="a callback")
    body = {"satisfaction": satisfaction, "note": note.strip(), "at": at.isoformat()}
    return _at(o, "callback", at, evidence={**o.evidence, "callback": body})


def close(o: Order, at: datetime, reason: str = "", supervisor: bool = False) -> Order:
    """After the callback; before it only with a reason a supervisor gives."""
    if o.stage == "closed":
        raise TransitionError(f"order {o.order_id} is already closed")
    if o.stage != "callback":
        if not reason.strip():
            raise TransitionError(f"order {o.order_id} is {o.stage}: closing needs the callback first, "
                                  "or a reason (a supervisor's decision)")
        if not supervisor:
            raise TransitionError("closing without a callback needs a supervisor")
    if o.stage == "callback" and _unsatisfied(o) and not (supervisor and reason.strip()):
        raise TransitionError(f"order {o.order_id}: the customer was unsatisfied at the callback; reopen it, "
                              "or a supervisor closes it with a reason")
    body = {"at": at.isoformat(), "reason": reason.strip(), "after_callback": o.stage == "callback"}
    return _at(o, "closed", at, evidence={**o.evidence, "close": body})


def _unsatisfied(o: Order) -> bool:
    return bool(o.evidence.get("callback", {}).get("satisfaction") == "unsatisfied")


def reopen(o: Order, at: datetime, reason: str) -> Order:
    """An unsatisfied callback goes back to the handling unit: stages after ``dispatched`` start again.

    The earlier reply and callback stay on the order as evidence (``reopened``), so the audit trail and the
    monthly satisfaction figure still see them.
    """
    if not reason.strip():
        raise TransitionError("reopening needs a reason (what the customer is still unhappy about)")
    _need(o, "callback", action="reopen")
    if not _unsatisfied(o):
        raise TransitionError(f"order {o.order_id}: the customer was satisfied; close it instead")
    earlier = {k: o.evidence[k] for k in ("reply", "callback") if k in o.evidence}
    reopened = [*o.evidence.get("reopened", []), {"at": at.isoformat(), "reason": reason.strip(), **earlier}]
    evidence = {k: v for k, v in o.evidence.items() if k not in ("reply", "callback")}
    keep = {k: v for k, v in o.stage_at.items() if k in ("received", *MARKS)}
    return replace(o, stage="dispatched", stage_at={**keep, "dispatched": at}, assignee="",
                   evidence={**evidence, "reopened": reopened}, updated_at=at)
