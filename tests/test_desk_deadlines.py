"""The standards' clocks on an order (dispatch.deadlines): pure, in local time, with a holiday calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dispatch.deadlines import Calendar, Policy, clocks, overdue, reached_at, rules_from
from heatwatch.core.config import Config, DeskSettings, load_config

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, a Tuesday


def policy(**desk: object) -> Policy:
    return Policy.from_config(load_config(environ={}, overrides={"desk": desk}))


def by_name(states: list) -> dict:
    return {s.name: s for s in states}


def test_clocks_listed_in_domain_order_with_their_seeds_and_settings() -> None:
    rules = rules_from(DeskSettings())
    assert [r.name for r in rules][:3] == ["measure", "measure_notice", "station_opinion"]
    assert [r.seed for r in rules][-4:] == ["003"] * 4
    for r in rules:  # every amount is a [desk] setting
        assert r.setting in DeskSettings.model_fields
    amounts = {r.name: (r.amount, r.unit) for r in rules}
    assert amounts["not_warm_respond"] == (2.0, "h")
    assert amounts["leak_contact"] == (30.0, "min") and amounts["leak_on_site"] == (2.0, "h")
    assert amounts["leak_fixed"] == (24.0, "h") and amounts["callback"] == (48.0, "h")
    assert amounts["complaint_answer"] == (5, "wd") and amounts["report_answer"] == (10, "wd")
    assert amounts["dispatch"] == (5.0, "min") and amounts["review"] == (20.0, "min")


def test_holiday_week_and_make_up_saturday() -> None:
    """Received on the eve of National Day: the holiday week does not count, the 调休 Saturday does."""
    cal = Calendar(SH, holidays=frozenset(date(2026, 10, d) for d in range(1, 8)), extra_working=frozenset({date(2026, 10, 10)}))
    start = datetime(2026, 9, 30, 10, 0, tzinfo=SH)
    # 10-08 Thu (1), 10-09 Fri (2), 10-10 Sat make-up (3), 10-12 Mon (4), 10-13 Tue (5): end of 10-13 local
    assert cal.add_working_days(start, 5) == datetime(2026, 10, 14, 0, 0, tzinfo=SH)
    assert cal.add_working_days(start, 5).astimezone(UTC) == datetime(2026, 10, 13, 16, 0, tzinfo=UTC)
    # without the calendar it is the next Wednesday's end
    assert Calendar(SH).add_working_days(start, 5) == datetime(2026, 10, 8, 0, 0, tzinfo=SH)


def test_local_date_decides_the_day_not_utc() -> None:
    """Friday 23:30 in Shanghai is Friday 15:30 UTC; 1 working day later is the end of Monday local time."""
    fri_late = datetime(2026, 12, 4, 15, 30, tzinfo=UTC)
    assert Calendar(SH).add_working_days(fri_late, 1) == datetime(2026, 12, 8, 0, 0, tzinfo=SH)
    # Saturday 00:30 local is still Friday in UTC: the weekend is skipped all the same
    sat_early = datetime(2026, 12, 4, 16, 30, tzinfo=UTC)
    assert Calendar(SH).add_working_days(sat_early, 1) == datetime(2026, 12, 8, 0, 0, tzinfo=SH)


def test_complaint_on_holiday_weekend_uses_the_configured_calendar() -> None:
    p = policy(holidays=["2027-01-01"], extra_working_days=[])
    # received Thursday 2026-12-31 local; Fri 01-01 is a holiday, then the weekend: Mon 4 .. Fri 8 are the 5 days
    received = datetime(2026, 12, 31, 9, 0, tzinfo=SH).astimezone(UTC)
    st = by_name(clocks("complaint", "138", {}, {"received": received}, p))
    assert st["complaint_answer"].due_at == datetime(2027, 1, 9, 0, 0, tzinfo=SH)
    assert "report_answer" not in st
    rep = by_name(clocks("complaint", "138", {"kind": "report"}, {"received": received}, p))
    assert "complaint_answer" not in rep and rep["report_answer"].due_at == datetime(2027, 1, 16, 0, 0, tzinfo=SH)


def test_not_warm_is_urgent_two_hours_and_overdue_when_past_any_clock() -> None:
    p = Policy.from_config(Config())
    st = clocks("not_warm", "13800000000", {}, {"received": T0}, p)
    names = {s.name for s in st}
    assert {"not_warm_respond", "dispatch", "repair_call", "station_opinion", "route", "contact"} <= names
    assert "leak_contact" not in names
    assert by_name(st)["not_warm_respond"].due_at == T0 + timedelta(hours=2)
    assert overdue(st, T0 + timedelta(minutes=5)) == []
    late = overdue(st, T0 + timedelta(minutes=5, seconds=1))
    assert [s.name for s in late] == ["dispatch"]
    assert p.respond_by("not_warm", T0) == T0 + timedelta(hours=2)


def test_a_later_stage_meets_an_earlier_target_and_late_is_not_overdue() -> None:
    p = Policy.from_config(Config())
    at = {"received": T0, "dispatched": T0 + timedelta(minutes=7), "accepted": T0 + timedelta(minutes=9),
          "contacted": T0 + timedelta(minutes=12), "repaired": T0 + timedelta(hours=1)}
    st = by_name(clocks("leak", "139", {}, at, p))
    assert st["dispatch"].state(T0 + timedelta(days=1)) == "late"  # 7 min > 5 min: late, not overdue
    assert st["leak_contact"].state(T0 + timedelta(days=1)) == "met"
    assert st["leak_on_site"].met_at == T0 + timedelta(hours=1)  # repaired without a separate visit stamp
    assert st["review"].state(T0 + timedelta(hours=1, minutes=21)) == "overdue"
    assert st["callback"].due_at == T0 + timedelta(hours=49)
    assert reached_at(at, "on_site") == T0 + timedelta(hours=1)


def test_measurement_late_visit_notice_one_hour_ahead_and_contact_only_with_a_phone() -> None:
    p = Policy.from_config(Config())
    st = by_name(clocks("measurement", "", {}, {"received": T0}, p))
    assert st["measure"].due_at == T0 + timedelta(hours=24)
    assert st["measure_notice"].due_at == T0 + timedelta(hours=23)
    assert "contact" not in st  # 003: orders without a phone are exempt from the contact clock
    noticed = by_name(clocks("measurement", "", {}, {"received": T0, "late_notice": T0 + timedelta(hours=20)}, p))
    assert noticed["measure_notice"].state(T0 + timedelta(hours=23, minutes=1)) == "met"
    assert noticed["measure"].state(T0 + timedelta(hours=24, minutes=1)) == "overdue"


def test_every_clock_is_a_setting() -> None:
    p = policy(not_warm_respond_h=3, dispatch_min=2, asap_h=12)
    assert p.respond_by("not_warm", T0) == T0 + timedelta(hours=3)
    assert p.respond_by("other", T0) == T0 + timedelta(hours=12)  # "as soon as possible" = an explicit 12 h
    assert by_name(clocks("other", "1", {}, {"received": T0}, p))["dispatch"].due_at == T0 + timedelta(minutes=2)


def test_closing_stops_every_clock() -> None:
    p = Policy.from_config(Config())
    closed = T0 + timedelta(hours=3)
    st = clocks("not_warm", "1", {}, {"received": T0, "closed": closed}, p)
    assert overdue(st, T0 + timedelta(days=9)) == []
    assert by_name(st)["not_warm_respond"].state(T0 + timedelta(days=9)) == "late"


@pytest.mark.parametrize("bad", [[0], [8], []])
def test_working_weekdays_are_checked(bad: list[int]) -> None:
    from heatwatch.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"desk\.working_weekdays"):
        load_config(environ={}, overrides={"desk": {"working_weekdays": bad}})


def test_appointment_clock_runs_only_with_an_agreed_time() -> None:
    """003 首问处理: on site at the time agreed with the customer, at least 5 minutes early."""
    p = Policy.from_config(Config())
    assert "appointment" not in {s.name for s in clocks("not_warm", "1", {}, {"received": T0}, p)}
    agreed = T0 + timedelta(hours=5)
    st = by_name(clocks("not_warm", "1", {}, {"received": T0}, p, expected_at=agreed))
    assert st["appointment"].due_at == agreed - timedelta(minutes=5)
    assert st["appointment"].state(agreed - timedelta(minutes=4)) == "overdue"
    on_time = by_name(clocks("not_warm", "1", {}, {"received": T0, "on_site": agreed - timedelta(minutes=10)}, p,
                             expected_at=agreed))
    assert on_time["appointment"].state(agreed) == "met"
