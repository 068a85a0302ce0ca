"""The heating season (供暖季): the local dates between which homes must be warm.

Northern Chinese cities heat from about 15 November to 15 March; the dates are settings
(``[season] start``/``end``, month-day, local time). Outside the season no cold alert is raised
(issue 16) and the report says so. A season is named by its two years, e.g. ``2026-2027``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

_MD = re.compile(r"^(\d{2})-(\d{2})$")
_LABEL = re.compile(r"^(\d{4})-(\d{4})$")


def parse_month_day(text: str) -> tuple[int, int]:
    """``"11-15"`` → (11, 15); a ValueError names what is wrong (29 February is refused: not every year has it)."""
    m = _MD.match(text.strip())
    if not m:
        raise ValueError(f"expected MM-DD such as 11-15, got {text!r}")
    month, day = int(m.group(1)), int(m.group(2))
    try:
        date(2025, month, day)  # not a leap year
    except ValueError:
        raise ValueError(f"{text!r} is not a day of every year") from None
    return month, day


@dataclass(frozen=True, slots=True)
class SeasonCalendar:
    """Start and end (inclusive) as month-day; a season may run over the new year (start after end)."""

    start: tuple[int, int] = (11, 15)
    end: tuple[int, int] = (3, 15)

    @classmethod
    def from_text(cls, start: str, end: str) -> SeasonCalendar:
        """From the config's ``MM-DD`` strings."""
        s, e = parse_month_day(start), parse_month_day(end)
        if s == e:
            raise ValueError(f"season start and end are the same day ({start})")
        return cls(s, e)

    def in_season(self, day: date) -> bool:
        """Is ``day`` (a local date) inside a heating season?"""
        md = (day.month, day.day)
        if self.start <= self.end:
            return self.start <= md <= self.end
        return md >= self.start or md <= self.end

    def season(self, label: str) -> tuple[date, date]:
        """The first and last day of the season ``label`` (``2026-2027``; ``2026`` when it does not span a new year)."""
        m = _LABEL.match(label.strip())
        spans = self.start > self.end
        if m:
            y0, y1 = int(m.group(1)), int(m.group(2))
            if y1 != y0 + 1 or not spans:
                raise ValueError(f"season {label!r}: expected two consecutive years such as 2026-2027"
                                 + ("" if spans else " only for a season over the new year; this one is named by its year"))
        elif label.strip().isdigit() and len(label.strip()) == 4 and not spans:
            y0 = y1 = int(label)
        else:
            raise ValueError(f"season {label!r}: expected two consecutive years such as 2026-2027")
        return date(y0, *self.start), date(y1, *self.end)

    def label_of(self, day: date) -> str:
        """The season ``day`` is in, or the next one to start after it."""
        if self.start <= self.end:
            return str(day.year if (day.month, day.day) <= self.end else day.year + 1)
        y = day.year if (day.month, day.day) > self.end else day.year - 1
        return f"{y}-{y + 1}"
