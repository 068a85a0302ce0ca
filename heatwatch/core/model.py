"""The one record type every part exchanges with storage.

A ``Point`` is an InfluxDB-shaped record (measurement, tags, fields, time) so that
the same value travels unchanged from the collector to every backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

FieldValue = float | int | str | bool


@dataclass(frozen=True, slots=True)
class Point:
    """One record: measurement, tags (indexed), fields (values) and time."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    ts_ns: int  # UTC, nanoseconds since the epoch; the same series (measurement + tags) and time overwrite
