"""The desk's monthly figures on a hand-built set of orders; every expected number is worked out by hand below."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dispatch.figures import ALL, monthly, overdue_counts, points, records
from dispatch.model import Order

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2027, 1, 2, 0, 0, tzinfo=UTC)
A, B = "阳光站班组", "幸福里班组"


def z(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def order(oid: str, unit: str, category: str, received: str, respond_h: float, stages: dict[str, str],
          satisfaction: str | None = None) -> Order:
    rec = z(received)
    stage_at = {"received": rec, **{k: z(v) for k, v in stages.items()}}
    stage = max(stage_at, key=lambda s: stage_at[s])
    evidence = {"callback": {"satisfaction": satisfaction}} if satisfaction else {}
    return Order(order_id=oid, source="hotline", reporter="张伟", phone="138", address="地址", home_id="H", community="小区",
                 station_id="S", category=category, content="不热", urgency="normal", handling_unit=unit, received_at=rec,
                 deadline=rec + timedelta(hours=respond_h), stage=stage, evidence=evidence, stage_at=stage_at)


def done(received: str, *offsets_min: float) -> dict[str, str]:
    """The whole path from ``received``: dispatched, accepted, contacted, on_site, repaired, reviewed, callback, closed."""
    rec = z(received)
    names = ("dispatched", "accepted", "contacted", "on_site", "repaired", "reviewed", "callback", "closed")
    return {n: (rec + timedelta(minutes=m)).isoformat()[:19] for n, m in zip(names, offsets_min, strict=True)}


ORDERS = [
    # o1, A, not warm: first move 4 min after (respond 2 h: met); contact 30 min; repaired 240 min = 4 h; satisfied; closed
    order("o1", A, "not_warm", "2026-12-01T01:00", 2, done("2026-12-01T01:00", 4, 10, 30, 60, 240, 250, 1680, 1740), "satisfied"),
    # o2, A, leak, received 17:30 UTC on 30 Nov = 01:30 on 1 Dec in Shanghai: December. First move at 40 min > 30 min: late;
    # contact 70 min; repaired 480 min = 8 h; unsatisfied; closed
    order("o2", A, "leak", "2026-11-30T17:30", 0.5, done("2026-11-30T17:30", 40, 50, 70, 100, 480, 490, 1500, 1560),
          "unsatisfied"),
    # o3, B, complaint, nothing done; due 15 Dec, overdue now
    order("o3", B, "complaint", "2026-12-10T02:00", 120, {}),
    # o4, B, not warm, 17:00 UTC on 31 Dec = 01:00 on 1 Jan in Shanghai: January; overdue now
    order("o4", B, "not_warm", "2026-12-31T17:00", 2, {}),
    # o5, B, not warm: first move 5 min (met); contact 20 min; repaired 180 min = 3 h; satisfied; closed
    order("o5", B, "not_warm", "2026-12-05T00:00", 2, done("2026-12-05T00:00", 5, 10, 20, 60, 180, 190, 1440, 1500), "satisfied"),
    # o6, A, measurement, nothing done; due 21 Dec, overdue now
    order("o6", A, "measurement", "2026-12-20T00:00", 24, {}),
    # o7, A, complaint received 31 Dec 10:00 UTC (18:00 local, December), due in 5 days: still running, not decided
    order("o7", A, "complaint", "2026-12-31T10:00", 120, {}),
]


def row(df: object, month: str, unit: str) -> dict[str, object]:
    rows = [r for r in records(df) if r["month"] == month and r["handling_unit"] == unit]  # type: ignore[arg-type]
    assert len(rows) == 1, (month, unit)
    return rows[0]


def test_monthly_figures_as_computed_by_hand() -> None:
    df = monthly(ORDERS, TZ, NOW)
    a, b, total = row(df, "2026-12", A), row(df, "2026-12", B), row(df, "2026-12", ALL)
    # A: o1 o2 o6 o7
    assert (a["received"], a["received_not_warm"], a["received_leak"], a["received_measurement"], a["received_complaint"]) \
        == (4, 1, 1, 1, 1)
    assert (a["ontime_respond_n"], a["ontime_respond"]) == (3, round(1 / 3, 4))  # o1 met, o2 late, o6 overdue; o7 running
    assert (a["contacted"], a["median_contact_min"]) == (2, 50.0)  # (30 + 70) / 2
    assert (a["repaired"], a["median_repair_h"]) == (2, 6.0)  # (4 + 8) / 2
    assert (a["closed"], a["closure_rate"]) == (2, 0.5)  # o1, o2 of 4
    assert (a["callbacks"], a["satisfied"], a["satisfaction_rate"]) == (2, 1, 0.5)
    # B in December: o3 o5 (o4 is January's)
    assert (b["received"], b["received_complaint"], b["received_not_warm"]) == (2, 1, 1)
    assert (b["ontime_respond_n"], b["ontime_respond"]) == (2, 0.5)  # o5 met, o3 overdue
    assert (b["median_contact_min"], b["median_repair_h"], b["closure_rate"], b["satisfaction_rate"]) == (20.0, 3.0, 0.5, 1.0)
    # the month: 6 orders; respond met o1 o5 of o1 o2 o3 o5 o6; contacts 20 30 70; repairs 3 4 8 h; 3 closed; 2 of 3 satisfied
    assert total["received"] == 6
    assert (total["ontime_respond_n"], total["ontime_respond"]) == (5, 0.4)
    assert (total["median_contact_min"], total["median_repair_h"]) == (30.0, 4.0)
    assert (total["closure_rate"], total["satisfaction_rate"]) == (0.5, round(2 / 3, 4))
    # January: o4 alone, overdue, nothing measured yet
    jan = row(df, "2027-01", B)
    assert (jan["received"], jan["ontime_respond"], jan["closure_rate"]) == (1, 0.0, 0.0)
    assert jan["median_contact_min"] is None and jan["satisfaction_rate"] is None
    assert sorted(monthly(ORDERS, TZ, NOW, month="2027-01")["handling_unit"]) == [ALL, B]


@dataclass(frozen=True)
class FakeClock:
    name: str
    result: str

    def state(self, now: datetime) -> str:
        return self.result


def test_each_clock_gets_its_own_rate_and_undecided_clocks_count_nowhere() -> None:
    states = {"o1": [FakeClock("dispatch", "met"), FakeClock("callback", "late")],
              "o2": [FakeClock("dispatch", "late"), FakeClock("leak_contact", "met")],
              "o6": [FakeClock("dispatch", "overdue")], "o7": [FakeClock("dispatch", "running")]}
    df = monthly(ORDERS, TZ, NOW, clock_states=lambda o: states.get(o.order_id, []))
    a = row(df, "2026-12", A)
    assert (a["ontime_dispatch_n"], a["ontime_dispatch"]) == (3, round(1 / 3, 4))
    assert (a["ontime_callback_n"], a["ontime_callback"]) == (1, 0.0)
    assert (a["ontime_leak_contact_n"], a["ontime_leak_contact"]) == (1, 1.0)
    assert row(df, "2026-12", B)["ontime_dispatch_n"] == 0 and row(df, "2026-12", B)["ontime_dispatch"] is None


def test_overdue_counts_and_points() -> None:
    assert overdue_counts(ORDERS, NOW) == {ALL: 3, A: 1, B: 2}  # o6; o3 o4 (o7 still running, the rest closed)
    pts = points(monthly(ORDERS, TZ, NOW, month="2026-12"), TZ)
    assert {p.tags["handling_unit"] for p in pts} == {A, B, ALL}
    p = next(p for p in pts if p.tags["handling_unit"] == ALL)
    assert p.ts_ns == int(datetime(2026, 12, 1, tzinfo=TZ).timestamp()) * 1_000_000_000  # the local month's start
    assert p.fields["received"] == 6 and p.fields["closure_rate"] == 0.5
    assert all(not (isinstance(v, float) and math.isnan(v)) for q in pts for v in q.fields.values())


def test_no_orders_no_rows() -> None:
    assert monthly([], TZ, NOW).empty
    with pytest.raises(ValueError, match="month '2026-13'"):
        monthly(ORDERS, TZ, NOW, month="2026-13")
