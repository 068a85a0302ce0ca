"""Time: UTC inside, local time only for the day/night rule and display.

The clock is injected (a zero-argument callable returning an aware UTC datetime) so tests
and the accelerated simulator can move time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

Clock = Callable[[], datetime]

NS = 1_000_000_000
_MS_EPOCH_THRESHOLD = 100_000_000_000  # 1e11 s is year 5138; larger values are milliseconds sent by mistake
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_ns(dt: datetime) -> int:
    if dt.tzinfo is None:
        raise ValueError("datetime must be timezone-aware")
    delta = dt - _EPOCH  # aware subtraction: no astimezone, so 0001-01-01T00:00+01:00 cannot overflow
    return (delta.days * 86_400 + delta.seconds) * NS + delta.microseconds * 1000


def from_ns(ns: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)


def parse_ts(value: object) -> int:
    """Parse an RFC 3339 string or epoch seconds into UTC nanoseconds.

    Raises ValueError with a message an operator can act on.
    """
    if isinstance(value, bool):
        raise ValueError("ts must be RFC 3339 or epoch seconds, got a boolean")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("ts is not a finite number")
        if abs(value) >= _MS_EPOCH_THRESHOLD:
            raise ValueError("ts looks like epoch milliseconds; send epoch seconds")
        if value < 0:
            raise ValueError("ts is before 1970")
        if isinstance(value, int):
            return value * NS
        return round(value * 1e6) * 1000
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("ts is an empty string")
        try:
            dt = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            raise ValueError(f"ts {value[:40]!r} is not RFC 3339") from None
        if dt.tzinfo is None:
            raise ValueError(f"ts {value[:40]!r} has no UTC offset (RFC 3339 needs Z or +hh:mm)")
        try:  # 0001-01-01T00:00+01:00 is a year-0 instant: not a time any reading or later step can hold
            dt.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"ts {value[:40]!r} is outside the representable range (years 1-9999 UTC)") from None
        return to_ns(dt)
    raise ValueError(f"ts must be RFC 3339 or epoch seconds, got {type(value).__name__}")


def rfc3339(dt: datetime, tz: ZoneInfo | None = None) -> str:
    """Render with an explicit offset, in ``tz`` when given (display), else UTC."""
    return dt.astimezone(tz or UTC).isoformat(timespec="seconds")


def parse_cli_time(text: str, tz: ZoneInfo) -> datetime:
    """Times typed by an operator: RFC 3339, or a naive local time in the configured zone."""
    dt = datetime.fromisoformat(text.strip().replace("z", "Z"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.astimezone(UTC)
