"""The work order (工单) an alert becomes, with the elements the service standards require.

Elements (DOMAIN.md, 003): information source, address, contact, home/community/station, content
with the evidence, fault category, responsible unit, deadline, created_at, status.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from heatwatch.core.timeutil import rfc3339

Category = Literal[
    "home_below_standard", "community_cold", "sensor_stale", "station_fault", "recheck_not_improved", "broker_session_lost",
    "telemetry_lost", "telemetry_outage", "outage_notice",
]
CATEGORIES: tuple[str, ...] = (
    "home_below_standard",
    "community_cold",
    "sensor_stale",
    "station_fault",
    "recheck_not_improved",
    "broker_session_lost",
    "telemetry_lost",
    "telemetry_outage",
    "outage_notice",
)
Status = Literal["open", "acked", "resolved"]
Event = Literal["open", "update", "ack", "resolve"]

# fault categories as dispatch names them (Chinese first, the way work orders are written)
FAULT_NAMES: dict[str, str] = {
    "home_below_standard": "室温不达标 home below standard",
    "community_cold": "小区供热不足 community cold",
    "sensor_stale": "测温设备维护 sensor maintenance",
    "station_fault": "换热站故障 station fault",
    "recheck_not_improved": "调整后复查未改善 recheck not improved",
    "broker_session_lost": "数据采集会话丢失 broker lost the collector's session",
    "telemetry_lost": "换热站数据中断 station telemetry lost",
    "telemetry_outage": "数据采集中断 readings stopped arriving",
    "outage_notice": "停热通知 heat outage notice to users",  # a notice to the homes, not a fault to work on
}
# categories that recover only after the hysteresis hold (temperature, not a switch)
HYSTERESIS = frozenset({"home_below_standard", "community_cold"})


def new_alert_id() -> str:
    return "A" + secrets.token_hex(5)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A condition failing now; becomes a work order unless one is already open for its key."""

    key: str  # dedupe key: category + home / community / station / proposal
    category: Category
    content: str
    evidence: dict[str, Any]
    station_id: str = ""
    community: str = ""
    home_id: str = ""
    address: str = ""
    contact: str = ""
    responsible_unit: str = ""
    deadline_h: float = 24.0
    severity: Literal["urgent", "normal"] = "normal"
    notify_users: bool = False
    homes: tuple[str, ...] = ()
    source: str = "heatwatch analytics"


@dataclass(frozen=True, slots=True)
class WorkOrder:
    alert_id: str
    key: str
    category: Category
    source: str
    address: str
    contact: str
    home_id: str
    community: str
    station_id: str
    content: str
    evidence: dict[str, Any]
    fault_category: str
    responsible_unit: str
    deadline: datetime
    severity: str
    created_at: datetime
    status: Status = "open"
    notify_users: bool = False
    homes: tuple[str, ...] = field(default=())
    updated_at: datetime | None = None
    resolved_at: datetime | None = None
    note: str = ""

    @classmethod
    def from_candidate(cls, c: Candidate, now: datetime) -> WorkOrder:
        from datetime import timedelta

        return cls(
            alert_id=new_alert_id(), key=c.key, category=c.category, source=c.source, address=c.address,
            contact=c.contact, home_id=c.home_id, community=c.community, station_id=c.station_id, content=c.content,
            evidence=c.evidence, fault_category=FAULT_NAMES[c.category], responsible_unit=c.responsible_unit,
            deadline=now + timedelta(hours=c.deadline_h), severity=c.severity, created_at=now,
            notify_users=c.notify_users, homes=c.homes, updated_at=now,
        )

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, datetime):
                out[k] = rfc3339(v)
        out["homes"] = list(self.homes)
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> WorkOrder:
        def t(x: str | None) -> datetime | None:
            return None if x is None else datetime.fromisoformat(x)

        body = dict(d)
        for k in ("deadline", "created_at", "updated_at", "resolved_at"):
            body[k] = t(body.get(k))
        body["homes"] = tuple(body.get("homes", ()))
        return cls(**body)
