"""Operator-typed times and durations, and the jittered retry backoff."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from heatwatch.core.errors import UsageError
from heatwatch.core.timeutil import Backoff, parse_cli_time, parse_duration

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("2026-01-10T06:00:00+08:00", datetime(2026, 1, 9, 22, tzinfo=UTC)),
        ("2026-01-10T06:00Z", datetime(2026, 1, 10, 6, tzinfo=UTC)),
        ("2026-01-10t06:00z", datetime(2026, 1, 10, 6, tzinfo=UTC)),
        ("2026-01-10 06:00", datetime(2026, 1, 9, 22, tzinfo=UTC)),  # local, in the configured zone
        (" 2026-01-10 ", datetime(2026, 1, 9, 16, tzinfo=UTC)),  # a date is local midnight
    ],
)
def test_cli_times(text: str, expect: datetime) -> None:
    got = parse_cli_time(text, SHANGHAI, "--from")
    assert got == expect and got.tzinfo == UTC


@pytest.mark.parametrize("text", ["yesterday", "", "2026-13-01", "0001-01-01T00:00+08:00"])
def test_bad_cli_time_names_the_flag_and_the_forms(text: str) -> None:
    with pytest.raises(UsageError) as exc:
        parse_cli_time(text, SHANGHAI, "--since", also=", or a duration such as 48h")
    msg = str(exc.value)
    assert msg.startswith(f"--since {text!r} is not a time")
    assert "RFC 3339" in msg and "Asia/Shanghai" in msg and msg.endswith("or a duration such as 48h")


def test_durations() -> None:
    assert parse_duration("48h") == timedelta(hours=48)
    assert parse_duration(" 1.5d ") == timedelta(hours=36)
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("2026-01-10") is None and parse_duration("3 weeks") is None


def test_backoff_grows_to_the_cap_within_its_jitter_and_resets() -> None:
    b = Backoff(0.5, 8.0, jitter=0.2, rng=random.Random(1))
    delays = [b.next() for _ in range(8)]
    bases = [0.5, 1, 2, 4, 8, 8, 8, 8]
    for d, base in zip(delays, bases, strict=True):
        assert 0.8 * base <= d <= base
    assert b.failures == 8
    b.reset()
    assert 0.4 <= b.next() <= 0.5


def test_backoff_is_reproducible_with_a_seed_and_spreads_clients() -> None:
    """Same seed, same delays; ten collectors failing together do not retry together."""
    def seq(seed: int) -> list[float]:
        b = Backoff(1.0, 30.0, jitter=0.5, rng=random.Random(seed))
        return [b.next() for _ in range(6)]

    assert seq(7) == seq(7)
    fifth = sorted(seq(s)[4] for s in range(10))  # base 16 s
    assert fifth[-1] - fifth[0] > 2.0  # spread over seconds, not in lockstep
    plain = Backoff(1.0, 30.0, jitter=0.0)
    assert [plain.next() for _ in range(6)] == [1, 2, 4, 8, 16, 30]


def test_backoff_never_overflows_and_checks_its_arguments() -> None:
    b = Backoff(1.0, 60.0, jitter=1.0, rng=random.Random(3))
    b.failures = 10_000
    assert 0.0 <= b.next() <= 60.0
    with pytest.raises(ValueError):
        Backoff(0.0, 1.0)
    with pytest.raises(ValueError):
        Backoff(1.0, 2.0, jitter=1.5)


def test_backoff_delay_for_a_stored_failure_count() -> None:
    """An outbox keeps its attempts in a database: delay(n) is the n-th wait without the object's own count."""
    b = Backoff(60.0, 3600.0, jitter=0.25, rng=random.Random(9))
    for n, base in [(0, 60), (1, 120), (5, 1920), (6, 3600), (40, 3600)]:
        assert 0.75 * base <= b.delay(n) <= base
    assert b.failures == 0
