"""A service-desk order and what it takes to open one (DOMAIN.md, 003: 工单处理规范).

An order carries the elements seed 003 lists; one missing is refused with its name, so a call-centre
operator knows what to ask the caller for. Categories and stages are codes (ASCII, stable in topics and
tables) with the Chinese names dispatch uses beside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Category = Literal["not_warm", "measurement", "leak", "no_heat", "billing", "complaint", "other"]
CATEGORY_NAMES: dict[str, str] = {
    "not_warm": "不热 not warm",
    "measurement": "测温申请 measurement request",
    "leak": "跑冒滴漏 leak",
    "no_heat": "停热 no heat / outage",
    "billing": "收费/报停 billing or stop-heating request",
    "complaint": "投诉 complaint",
    "other": "其他 other",
}
Source = Literal["hotline", "http", "mqtt", "sensor", "measurement", "outage"]
Urgency = Literal["urgent", "normal"]

# the lifecycle, in order (a later stage implies the earlier ones happened)
Stage = Literal["received", "dispatched", "accepted", "contacted", "on_site", "repaired", "reviewed", "callback", "closed"]
STAGES: tuple[str, ...] = (
    "received", "dispatched", "accepted", "contacted", "on_site", "repaired", "reviewed", "callback", "closed",
)

# seed 003's elements a person-reported order cannot do without; sensor/outage orders name the system instead
REQUIRED_FROM_PEOPLE = ("reporter", "phone", "address", "category", "content", "handling_unit")
REQUIRED_FROM_SYSTEMS = ("address", "category", "content", "handling_unit")


class OrderRefused(ValueError):
    """An order that cannot be taken as given; the message names every element that is wrong or missing."""


class OrderInput(BaseModel):
    """What intake (CLI, HTTP, MQTT, sensors) hands the desk; validated here, at the boundary."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    source: Source = "hotline"
    reporter: str = ""
    phone: str = ""
    address: str = ""
    home_id: str = ""
    community: str = ""
    station_id: str = ""
    category: Category
    content: str = ""
    urgency: Urgency | None = None  # None: the category's default (不热 is urgent)
    handling_unit: str = ""
    expected_at: datetime | None = None  # the customer's expected time (客户期望时间)
    received_at: datetime | None = None  # None: now, by the desk's clock
    evidence: dict[str, Any] = Field(default_factory=dict)
    ref: str = ""  # the caller's own reference (a sensor work order id, a call-centre ticket): makes intake idempotent

    @field_validator("expected_at", "received_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("needs a time zone (e.g. 2026-12-01T08:00+08:00)")
        return None if v is None else v.astimezone(UTC)

    @classmethod
    def parse(cls, data: dict[str, Any]) -> OrderInput:
        """Validate raw intake data; every problem in one message, each naming its element."""
        try:
            inp = cls.model_validate(data)
        except ValidationError as exc:
            parts = []
            for err in exc.errors():
                loc = ".".join(str(x) for x in err["loc"]) or "order"
                parts.append(f"{loc}: {err['msg']}")
            raise OrderRefused("order refused: " + "; ".join(parts)) from None
        missing = inp.missing()
        if missing:
            raise OrderRefused("order refused: missing " + ", ".join(missing))
        return inp

    def missing(self) -> list[str]:
        required = REQUIRED_FROM_SYSTEMS if self.source in ("sensor", "outage") else REQUIRED_FROM_PEOPLE
        out = [name for name in required if not getattr(self, name)]
        if not (self.home_id or self.community or self.station_id):
            out.append("home_id/community/station_id (at least one)")
        return out


@dataclass(frozen=True, slots=True)
class Order:
    """An order as the desk holds it: the intake elements plus where it stands on its clocks."""

    order_id: str
    source: str
    reporter: str
    phone: str
    address: str
    home_id: str
    community: str
    station_id: str
    category: str
    content: str
    urgency: str
    handling_unit: str
    received_at: datetime
    deadline: datetime  # the first clock that runs: the category's respond-by time
    expected_at: datetime | None = None
    stage: str = "received"
    assignee: str = ""
    ref: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    stage_at: dict[str, datetime] = field(default_factory=dict)  # when each stage was reached
    updated_at: datetime | None = None

    @property
    def category_name(self) -> str:
        return CATEGORY_NAMES.get(self.category, self.category)

    @property
    def closed(self) -> bool:
        return self.stage == "closed"
