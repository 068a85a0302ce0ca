"""What a cycle asks the service desk's facts before it analyses: which homes are heated today, and which cold
alerts stay quiet (outside the heating season; homes told of an outage during its window).

Resolved here, in the application layer, on the cycle's own time, so analytics and control only ever see an
effective registry and a ``Quiet`` — neither reads the service database (issue 16).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from control.alerts.model import WorkOrder
from control.alerts.repo import AlertRepo
from control.alerts.rules import Quiet
from heatwatch.core.config import Config
from heatwatch.core.homestatus import heated_only, status_on
from heatwatch.core.registry import Registry
from heatwatch.core.season import SeasonCalendar
from heatwatch.infra.servicedb import ServiceDb

if TYPE_CHECKING:
    from dispatch.desk import Desk
    from heatwatch.app.outages import Announced


def season_of(cfg: Config) -> SeasonCalendar:
    """The configured heating season."""
    return SeasonCalendar.from_text(cfg.season.start, cfg.season.end)


def in_season(cfg: Config, at: datetime) -> bool:
    """Is ``at`` inside the heating season, on the local calendar?"""
    return season_of(cfg).in_season(at.astimezone(cfg.general.tz).date())


def heated_registry(cfg: Config, registry: Registry, at: datetime) -> Registry:
    """The homes heated on ``at``'s local date (what ``analyze`` and the report count); the service database is only
    read when it exists, so a read-only command creates nothing."""
    from heatwatch.infra.servicedb import db_path

    changes = ServiceDb.open(cfg).status_changes() if db_path(cfg).exists() else []
    return heated_only(registry, status_on(registry, changes, at.astimezone(cfg.general.tz).date()))


def season_note(cfg: Config, start: datetime, end: datetime) -> str | None:
    """What a report of [start, end) says about the heating season: nothing when the period is inside it."""
    cal = season_of(cfg)
    tz = cfg.general.tz
    first, last = start.astimezone(tz).date(), end.astimezone(tz).date()
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    outside = [d for d in days if not cal.in_season(d)]
    if not outside:
        return None
    span = f"{cfg.season.start} – {cfg.season.end}"
    if len(outside) == len(days):
        return (f"This period is outside the heating season ({span}, [season] start/end): no cold alerts are raised, "
                "and temperatures under the standard are shown for information only.")
    return (f"{len(outside)} of the {len(days)} days of this period ({outside[0].isoformat()} … {outside[-1].isoformat()}) "
            f"are outside the heating season ({span}): no cold alerts were raised on them.")


class ServiceState:
    """Home statuses and outages from the service database, resolved at a time."""

    def __init__(self, cfg: Config, db: ServiceDb, desk: Desk | None = None) -> None:
        self.cfg = cfg
        self.db = db
        self.desk = desk  # where unplanned outage notices are recorded as no_heat orders (None: not recorded)

    @classmethod
    def from_config(cls, cfg: Config, desk: Desk | None = None) -> ServiceState:
        """On the configured service database (created when missing)."""
        return cls(cfg, ServiceDb.open(cfg), desk)

    def at(self, registry: Registry, at: datetime) -> tuple[Registry, Quiet]:
        """The registry of the homes heated on ``at``'s local date, and the cold alerts quiet at ``at``."""
        day = at.astimezone(self.cfg.general.tz).date()
        effective = heated_only(registry, status_on(registry, self.db.status_changes(), day))
        homes: dict[str, str] = {}
        stations: dict[str, str] = {}
        for o in self.db.outages(covering=at):
            stations.setdefault(o.station_id, f"announced outage {o.outage_id}")
            for hid in o.homes:
                homes.setdefault(hid, f"outage {o.outage_id} at {o.station_id}")
        return effective, Quiet(season_off=not season_of(self.cfg).in_season(day), homes=homes, stations=stations)

    def tell_unplanned(self, registry: Registry, alerts: AlertRepo, orders: list[WorkOrder], at: datetime) -> list[Announced]:
        """Station faults past the 8 h rule (control's ``notify_users``) told to their homes, once per outage."""
        from heatwatch.app.outages import notify_unplanned

        return notify_unplanned(self.cfg, registry, self.db, alerts, orders, at, self.desk)
