"""The standards' clocks on an order (DOMAIN.md, seeds 000-004): pure functions, no database, no wall clock.

A clock runs from one event of the order (a stage reached) to a target stage (or a mark such as the
late-visit notice), for the categories it applies to. An order carries several; it is overdue when any
clock that started is past its due time without its target. Reaching a later stage counts for an earlier
target (a complaint answered without a visit has met "on site"), and closing stops every clock.

Durations in hours or minutes are wall-clock time; ``wd`` counts working days of the desk's calendar in
local time: the day the order came in does not count, and the deadline is the end (24:00 local) of the
n-th working day after it (weekdays of ``working_weekdays``, minus ``holidays``, plus ``extra_working_days``).
"As soon as possible" is never left open: orders with no other respond clock get ``asap_h`` (004).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from dispatch.model import STAGES

if TYPE_CHECKING:
    from heatwatch.core.config import Config

Unit = Literal["h", "min", "wd", "before"]  # before: minutes ahead of the customer's expected time
REPAIR_CATEGORIES = frozenset({"not_warm", "leak", "no_heat"})  # what 002 calls 报修 (repair calls)


@dataclass(frozen=True, slots=True)
class Calendar:
    """Working days in local time (Asia/Shanghai by default): weekdays, public holidays, 调休 working weekends."""

    tz: ZoneInfo
    weekdays: frozenset[int] = frozenset({1, 2, 3, 4, 5})
    holidays: frozenset[date] = frozenset()
    extra_working: frozenset[date] = frozenset()

    def is_working_day(self, d: date) -> bool:
        if d in self.extra_working:
            return True
        return d.isoweekday() in self.weekdays and d not in self.holidays

    def add_working_days(self, start: datetime, n: int) -> datetime:
        """The end (24:00 local, as UTC) of the n-th working day after ``start``'s local date."""
        d = start.astimezone(self.tz).date()
        counted = 0
        for _ in range(n * 7 + 400):  # bounded: a calendar with no working day at all must not loop forever
            d += timedelta(days=1)
            if self.is_working_day(d):
                counted += 1
                if counted >= n:
                    end = datetime.combine(d + timedelta(days=1), time(0), tzinfo=self.tz)
                    return end.astimezone(start.tzinfo or self.tz)
        raise ValueError(f"no {n} working days within a year after {d}: check desk.working_weekdays and desk.holidays")


@dataclass(frozen=True, slots=True)
class ClockRule:
    """One deadline of the standards: from which event, to which stage, how long, for which orders."""

    name: str
    seed: str  # the seed file it comes from (000-004)
    standard: str  # what the standard says, in a line
    setting: str  # the [desk] key holding the amount
    start: str  # the stage it runs from
    target: tuple[str, ...]  # stages (or marks) that stop it; a later stage counts for an earlier one
    amount: float
    unit: Unit
    categories: frozenset[str] | None = None  # None: every category
    needs_phone: bool = False  # 003: "未留联系方式的除外" (orders without a phone are exempt)
    report: bool | None = None  # complaints only: True = a report (举报), False = not a report
    minus_h: float = 0.0  # due this long before the amount ends (a notice ahead of a deadline)

    def applies(self, category: str, phone: str, evidence: Mapping[str, Any]) -> bool:
        if self.categories is not None and category not in self.categories:
            return False
        if self.needs_phone and not phone:
            return False
        return self.report is None or (evidence.get("kind") == "report") == self.report

    def due(self, started: datetime, cal: Calendar, expected_at: datetime | None = None) -> datetime | None:
        if self.unit == "before":
            return None if expected_at is None else expected_at - timedelta(minutes=self.amount)
        if self.unit == "wd":
            return cal.add_working_days(started, int(self.amount)) - timedelta(hours=self.minus_h)
        span = timedelta(minutes=self.amount) if self.unit == "min" else timedelta(hours=self.amount)
        return started + span - timedelta(hours=self.minus_h)

    @property
    def shown(self) -> str:
        if self.unit == "before":
            return f"{self.amount:g} min before the agreed time"
        unit = {"h": "h", "min": "min", "wd": "working days"}[self.unit]
        less = f" − {self.minus_h:g} h" if self.minus_h else ""
        return f"{self.amount:g} {unit}{less}"


ClockStateName = Literal["waiting", "running", "met", "late", "overdue"]


@dataclass(frozen=True, slots=True)
class ClockState:
    """A clock on one order at one moment."""

    rule: ClockRule
    started_at: datetime | None
    due_at: datetime | None
    met_at: datetime | None

    @property
    def name(self) -> str:
        return self.rule.name

    def state(self, now: datetime) -> ClockStateName:
        if self.started_at is None or self.due_at is None:
            return "waiting"
        if self.met_at is not None:
            return "met" if self.met_at <= self.due_at else "late"
        return "overdue" if now > self.due_at else "running"

    def to_json(self, now: datetime) -> dict[str, Any]:
        def iso(t: datetime | None) -> str | None:
            return None if t is None else t.isoformat()

        return {"clock": self.rule.name, "seed": self.rule.seed, "standard": self.rule.standard,
                "limit": self.rule.shown, "started_at": iso(self.started_at), "due_at": iso(self.due_at),
                "met_at": iso(self.met_at), "state": self.state(now)}


def rules_from(desk: Any) -> tuple[ClockRule, ...]:
    """The clocks, in DOMAIN.md's order, with the amounts of ``[desk]`` (DeskSettings or anything with its keys)."""
    d = desk
    return (
        ClockRule("measure", "000", "measurement request: two staff measure at the home", "measure_h",
                  "received", ("on_site",), d.measure_h, "h", frozenset({"measurement"})),
        ClockRule("measure_notice", "000", "a late measurement visit is announced ahead", "measure_notice_h",
                  "received", ("on_site", "late_notice"), d.measure_h, "h", frozenset({"measurement"}),
                  minus_h=d.measure_notice_h),
        ClockRule("station_opinion", "001", "the station's handling opinion back to dispatch", "station_opinion_h",
                  "received", ("accepted",), d.station_opinion_h, "h"),
        ClockRule("repair_call", "002", "a repair call passed to the responsible team", "repair_call_min",
                  "received", ("dispatched",), d.repair_call_min, "min", REPAIR_CATEGORIES),
        ClockRule("leak_contact", "001", "leak: contact the user", "leak_contact_min",
                  "received", ("contacted",), d.leak_contact_min, "min", frozenset({"leak"})),
        ClockRule("leak_on_site", "001", "leak: on site", "leak_on_site_h",
                  "received", ("on_site",), d.leak_on_site_h, "h", frozenset({"leak"})),
        ClockRule("leak_fixed", "001", "leak: fixed", "leak_fixed_h",
                  "received", ("repaired",), d.leak_fixed_h, "h", frozenset({"leak"})),
        ClockRule("callback", "001", "the callback after a repair", "callback_h",
                  "repaired", ("callback",), d.callback_h, "h"),
        ClockRule("not_warm_respond", "004", "不热 is urgent: respond to the user", "not_warm_respond_h",
                  "received", ("contacted",), d.not_warm_respond_h, "h", frozenset({"not_warm"})),
        ClockRule("billing_review", "004", "fee dispute: the 48-hour review answered", "billing_review_h",
                  "received", ("repaired",), d.billing_review_h, "h", frozenset({"billing"})),
        ClockRule("asap", "004", "'as soon as possible' as an explicit deadline: respond", "asap_h",
                  "received", ("contacted",), d.asap_h, "h", frozenset({"other"})),
        ClockRule("complaint_answer", "001", "a complaint answered", "complaint_working_days",
                  "received", ("repaired",), d.complaint_working_days, "wd", frozenset({"complaint"}), report=False),
        ClockRule("report_answer", "001", "a report (举报) answered", "report_working_days",
                  "received", ("repaired",), d.report_working_days, "wd", frozenset({"complaint"}), report=True),
        ClockRule("dispatch", "003", "the order checked and dispatched", "dispatch_min",
                  "received", ("dispatched",), d.dispatch_min, "min"),
        ClockRule("route", "003", "the receiving unit routes it to a first-line worker", "route_min",
                  "dispatched", ("accepted",), d.route_min, "min"),
        ClockRule("contact", "003", "the first-line worker contacts the customer", "contact_min",
                  "accepted", ("contacted",), d.contact_min, "min", needs_phone=True),
        ClockRule("review", "003", "the reply reviewed (an incomplete one is sent back)", "review_min",
                  "repaired", ("reviewed",), d.review_min, "min"),
        ClockRule("appointment", "003", "on site at the customer's agreed time, a few minutes early", "appointment_early_min",
                  "received", ("on_site",), d.appointment_early_min, "before"),
    )


# the respond-by deadline an order shows first (Order.deadline): the category's own respond clock
RESPOND_CLOCK: dict[str, str] = {
    "not_warm": "not_warm_respond", "measurement": "measure", "leak": "leak_contact", "no_heat": "station_opinion",
    "billing": "billing_review", "complaint": "complaint_answer", "other": "asap",
}


@dataclass(frozen=True, slots=True)
class Policy:
    """The clocks and the calendar they count working days in."""

    rules: tuple[ClockRule, ...]
    calendar: Calendar

    @classmethod
    def from_config(cls, cfg: Config) -> Policy:
        d = cfg.desk
        cal = Calendar(cfg.general.tz, frozenset(d.working_weekdays), frozenset(d.holidays), frozenset(d.extra_working_days))
        return cls(rules_from(d), cal)

    def rule(self, name: str) -> ClockRule:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(f"no clock {name!r}")

    def respond_by(self, category: str, received: datetime) -> datetime:
        """``Desk``'s deadline function: when the category's respond clock runs out for an order received then."""
        due = self.rule(RESPOND_CLOCK.get(category, "asap")).due(received, self.calendar)
        assert due is not None  # respond clocks run for a duration
        return due


def reached_at(stage_at: Mapping[str, datetime], target: str) -> datetime | None:
    """When ``target`` was reached: the first time of it or any later stage (a mark counts only itself)."""
    if target not in STAGES:
        return stage_at.get(target)
    later = [stage_at[s] for s in STAGES[STAGES.index(target):] if s in stage_at]
    return min(later) if later else None


def clocks(category: str, phone: str, evidence: Mapping[str, Any], stage_at: Mapping[str, datetime],
           policy: Policy, expected_at: datetime | None = None) -> list[ClockState]:
    """Every clock that applies to an order, started or not (the appointment only with an agreed time)."""
    out = []
    for rule in policy.rules:
        if not rule.applies(category, phone, evidence) or (rule.unit == "before" and expected_at is None):
            continue
        started = stage_at.get(rule.start)
        due = None if started is None else rule.due(started, policy.calendar, expected_at)
        met = [t for t in (reached_at(stage_at, x) for x in rule.target) if t is not None]
        if started is not None:
            met = [t for t in met if t >= started] or ([stage_at["closed"]] if "closed" in stage_at else [])
        out.append(ClockState(rule, started, due, min(met) if met else None))
    return out


def overdue(states: Iterable[ClockState], now: datetime) -> list[ClockState]:
    """The clocks past due without their target: the order is overdue when this is not empty."""
    return [s for s in states if s.state(now) == "overdue"]
