"""Time: UTC inside, local time only for the day/night rule and display.

The clock is injected (a zero-argument callable returning an aware UTC datetime) so tests
and the accelerated simulator can move time.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from heatwatch.core.errors import UsageError

Clock = Callable[[], datetime]

NS = 1_000_000_000
_MS_EPOCH_THRESHOLD = 100_000_000_000  # 1e11 s is year 5138; larger values are milliseconds sent by mistake
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_now() -> datetime:
    """The real clock: an aware UTC datetime (the default ``Clock``)."""
    return datetime.now(UTC)


class SettableClock:
    """A ``Clock`` that moves only when told: tests, and simulations that run control at simulated time.

    ``clock()`` reads it; ``set(t)`` and ``advance(hours=…)`` move it. One class for every fake clock,
    so a test and the lockstep driver mean the same thing by "now".
    """

    def __init__(self, t: datetime) -> None:
        self.t = _aware(t)

    def __call__(self) -> datetime:
        """The time it was last set (or moved) to."""
        return self.t

    def set(self, t: datetime) -> datetime:
        """Move to ``t`` (any direction: a test may go back); return it."""
        self.t = _aware(t)
        return self.t

    def advance(self, delta: timedelta | None = None, **kw: float) -> datetime:
        """Move forward by ``delta`` or by ``timedelta(**kw)`` (``advance(hours=48, minutes=1)``)."""
        self.t += (delta or timedelta()) + timedelta(**kw)
        return self.t

    def __repr__(self) -> str:
        return f"SettableClock({self.t.isoformat()})"


def _aware(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError("a clock reads timezone-aware times; got a naive datetime")
    return t


def to_ns(dt: datetime) -> int:
    """An aware datetime as UTC nanoseconds since the epoch (the time of a ``Point``)."""
    if dt.tzinfo is None:
        raise ValueError("datetime must be timezone-aware")
    delta = dt - _EPOCH  # aware subtraction: no astimezone, so 0001-01-01T00:00+01:00 cannot overflow
    return (delta.days * 86_400 + delta.seconds) * NS + delta.microseconds * 1000


def from_ns(ns: int) -> datetime:
    """UTC nanoseconds as an aware UTC datetime (microsecond precision)."""
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


def parse_cli_time(text: str, tz: ZoneInfo, flag: str = "time", also: str = "") -> datetime:
    """A time typed by an operator after ``flag``: RFC 3339, or a local time (or date) in the configured zone.

    Every command reads its times here, so they all accept the same forms and say the same thing when a
    time is wrong: a ``UsageError`` naming the flag (``also`` adds what else the flag takes, e.g. a duration).
    """
    try:
        dt = datetime.fromisoformat(text.strip().replace("z", "Z"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=tz)
        return dt.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: 0001-01-01T00:00+08:00 is before year 1 in UTC
        raise UsageError(
            f"{flag} {text!r} is not a time: expected a time such as 2026-01-10T06:00:00+08:00 (RFC 3339), "
            f"2026-01-10 06:00 or 2026-01-10 (local, {tz.key}){also}"
        ) from None


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration(text: str) -> timedelta | None:
    """A duration typed by an operator (``90s``, ``15m``, ``48h``, ``3d``); None when ``text`` is not one."""
    m = _DURATION.match(text)
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)]) if m else None


class Backoff:
    """Delays between retries: exponential from ``min_s`` to ``max_s``, each one partly random.

    ``jitter`` is the random fraction of each delay: the n-th delay is drawn from
    ``[base·(1 − jitter), base]`` with ``base = min(max_s, min_s·2ⁿ)``. 0 is plain exponential
    backoff, 1 is "full jitter". The randomness is what keeps scaled-out collectors (or many
    clients of one webhook) from retrying a recovering server in lockstep. Pass a seeded
    ``random.Random`` for a reproducible sequence.
    """

    def __init__(self, min_s: float, max_s: float, jitter: float = 0.2, rng: random.Random | None = None) -> None:
        if min_s <= 0 or not 0 <= jitter <= 1:
            raise ValueError(f"Backoff needs min_s > 0 and 0 <= jitter <= 1 (got {min_s}, {jitter})")
        self.min_s = min_s
        self.max_s = max(min_s, max_s)
        self.jitter = jitter
        self.rng = rng or random.Random()
        self.failures = 0  # consecutive failures since the last reset()

    def next(self) -> float:
        """The delay before the next attempt, after one more failure."""
        wait = self.delay(self.failures)
        self.failures += 1
        return wait

    def delay(self, failures: int) -> float:
        """The delay after ``failures`` earlier consecutive failures (0: the first retry), for callers that keep
        the count themselves (an outbox row's attempts)."""
        base = min(self.max_s, self.min_s * 2.0 ** min(max(failures, 0), 62))
        return base * (1.0 - self.jitter * self.rng.random())

    def reset(self) -> None:
        """The last attempt succeeded: the next failure waits ``min_s`` again (give or take the jitter)."""
        self.failures = 0
