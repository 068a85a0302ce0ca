"""Configuration: one TOML file, every key overridable by ``HEATWATCH_<SECTION>_<KEY>``.

Every number from the service standards (docs/DOMAIN rules) is a default here, so a heating
company can change it without code. Secrets are ``SecretStr``: masked when printed, and they
may come from ``<key>_file`` (a path) instead of the file or environment.

``Config`` is a pydantic-settings model: ``Config()`` is the defaults (no file, no environment),
``load_config`` layers explicit overrides > environment > TOML file > defaults, and every error
names the key (or the environment variable) that is wrong.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)
from pydantic_settings.sources.utils import parse_env_vars

from heatwatch.core.errors import ConfigError
from heatwatch.core.redact import mask_url

ENV_PREFIX = "HEATWATCH_"
__all__ = ["Config", "ConfigError", "load_config"]

CONFIG_ENV = "HEATWATCH_CONFIG"
DEFAULT_FILE = "heatwatch.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class GeneralSettings(_Section):
    timezone: str = "Asia/Shanghai"
    data_dir: Path = Path("data")  # SQLite store, spool, job store, control database, status.json
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one object per line, for log shippers

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}; expected an IANA name such as Asia/Shanghai") from None
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class MqttSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    # "auto": MQTT 5, falling back to 3.1.1 when the broker refuses 5 (e.g. the embedded amqtt broker)
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    client_id: str = "heatwatch-collector"
    username: str | None = None
    password: SecretStr | None = None  # better: password_file or HEATWATCH_MQTT_PASSWORD
    password_file: Path | None = None  # a file holding the password (e.g. a container secret)
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False
    topic_prefix: str = "heat"
    qos: Literal[0, 1, 2] = 1
    shared_group: str = ""  # set on every collector of a group: $share/<group>/… splits the load (docs/SCALING.md)
    keepalive_s: int = Field(30, ge=5)
    session_expiry_s: int = Field(7 * 86_400, ge=0)  # the broker keeps QoS 1 readings this long while the collector is down
    receive_maximum: int = Field(1000, ge=1, le=65535)  # unacknowledged messages in flight (MQTT 5)
    reconnect_min_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(60.0, gt=0)

    @field_validator("qos", mode="before")
    @classmethod
    def _qos_from_text(cls, v: Any) -> Any:
        return int(v) if isinstance(v, str) and v.strip() in ("0", "1", "2") else v  # HEATWATCH_MQTT_QOS=1 is text

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v or any(c in v for c in "#+") or v.startswith("/") or v.endswith("/"):
            raise ValueError("expected a plain topic prefix such as 'heat' (no wildcards, no leading/trailing '/')")
        return v


class StorageSettings(_Section):
    backend: Literal["sqlite", "influxdb1", "influxdb2"] = "sqlite"
    retention_days: int = Field(400, ge=1)  # readings stamped older than this are rejected as too_old


class SqliteSettings(_Section):
    path: Path | None = None  # default: <data_dir>/heatwatch.sqlite
    synchronous: Literal["FULL", "NORMAL"] = "FULL"  # FULL: an acked reading survives a power cut


def _http_url(v: str) -> str:
    """An InfluxDB endpoint: http(s)://host[:port][/path] — checked here so a store is never built from a bad one."""
    from urllib.parse import urlsplit

    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected http(s)://host:port")
    return v


def _not_blank(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be empty")
    return v


class Influxdb1Settings(_Section):
    url: str = "http://127.0.0.1:8086"
    database: str = "heatwatch"
    retention_policy: str = ""
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    timeout_s: float = Field(10.0, gt=0)
    create_database: bool = True

    _url = field_validator("url")(_http_url)
    _database = field_validator("database")(_not_blank)


class Influxdb2Settings(_Section):
    url: str = "http://127.0.0.1:8086"
    org: str = "heatwatch"
    bucket: str = "heatwatch"
    token: SecretStr | None = None
    token_file: Path | None = None
    timeout_s: float = Field(10.0, gt=0)

    _url = field_validator("url")(_http_url)
    _names = field_validator("org", "bucket")(_not_blank)

    @field_validator("token")
    @classmethod
    def _token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().strip():
            raise ValueError("must not be empty (leave it unset and use token_file, or set the token)")
        return v


class RegistrySettings(_Section):
    homes_csv: Path | None = None  # the home registry; with none, home ids are not checked
    stations_csv: Path | None = None  # heat-exchange stations and the communities they serve; with none, station ids are not checked


class CollectorSettings(_Section):
    batch_size: int = Field(5000, ge=1)  # readings per store write
    batch_interval_s: float = Field(0.5, gt=0)
    queue_max: int = Field(20_000, ge=10)
    unknown_ids: Literal["reject", "store"] = "reject"  # a home/station id not in the registry: dead letter, or store anyway
    max_payload_bytes: int = Field(256 * 1024, ge=64)
    future_tolerance_s: float = Field(300.0, ge=0)  # readings stamped further in the future are rejected (sensor clock skew)
    spool_dir: Path | None = None  # default: <data_dir>/spool
    spool_max_mb: float = Field(512.0, gt=0)  # disk spool while the store is down; when full the collector stops acking
    metrics_interval_s: float = Field(10.0, gt=0)
    store_retry_s: float = Field(2.0, gt=0)  # first wait before retrying a store that is down
    store_retry_max_s: float = Field(30.0, gt=0)  # waits double up to this, jittered so collectors do not retry in step
    collector_id: str = ""  # default: the MQTT client id
    deadletter_retention_days: int = Field(30, ge=0)  # dead letters older than this are deleted from the store hourly (0: kept)
    # liveness: with nothing received for probe_idle_s and nothing unacknowledged, publish a probe to our own
    # session; no message at all within probe_timeout_s means the broker stopped delivering (a stalled session):
    # reconnect, so the broker resends what it holds in flight (docs/MQTT.md, "Stalled sessions")
    probe_idle_s: float = Field(15.0, gt=0)
    probe_timeout_s: float = Field(15.0, gt=0)
    stall_after_s: float = Field(60.0, gt=0)  # unacknowledged readings with no progress this long: unhealthy


class LimitsSettings(_Section):
    """Plausible ranges; a reading outside is rejected, not clipped."""

    indoor_min_c: float = -30.0
    indoor_max_c: float = 60.0
    rh_min: float = 0.0
    rh_max: float = 100.0
    battery_min_v: float = 0.0
    battery_max_v: float = 15.0
    supply_min_c: float = 0.0
    supply_max_c: float = 150.0
    return_min_c: float = 0.0
    return_max_c: float = 150.0
    pressure_min_kpa: float = 0.0
    pressure_max_kpa: float = 4000.0
    flow_min_m3h: float = 0.0
    flow_max_m3h: float = 100_000.0
    outdoor_min_c: float = -60.0
    outdoor_max_c: float = 60.0


class StandardSettings(_Section):
    """Indoor temperature standard (DOMAIN.md: 001 section 七)."""

    day_start_hour: int = Field(6, ge=0, le=23)
    day_end_hour: int = Field(21, ge=1, le=24)
    day_min_c: float = 18.0
    night_min_c: float = 16.0
    bungalow_min_c: float = 16.0
    target_c: float = 18.0


class AnalyticsSettings(_Section):
    edge_share_min: float = Field(0.40, ge=0, le=1)
    min_sample: int = Field(5, ge=1)
    min_hours_below: int = Field(2, ge=1)
    cold_share_max: float = Field(0.25, ge=0, le=1)
    interval_min: float = Field(15.0, gt=0)
    stale_after_h: float = Field(3.0, gt=0)
    stuck_after_h: float = Field(6.0, gt=0)
    jump_c_per_h: float = Field(6.0, gt=0)
    warm_above_c: float = 28.0
    no_sensor_after_days: float = Field(30.0, gt=0)  # no sensor reading this long = home without a sensor
    imbalance_warm_margin_c: float = Field(2.0, ge=0)  # building mean over target + this = warm building
    imbalance_min_homes: int = Field(1, ge=1)  # reporting homes a building/entrance needs to enter the spread
    edge_min_homes: int = Field(2, ge=1)  # reporting edge homes a weighted mean needs (one must not carry 40 % alone)
    implausible_below_c: float = 5.0  # an hourly mean under this is a broken sensor, not a home: left out


class StationDesign(_Section):
    """Design point of a station's quality-regulation heating curve (docs/CONTROL.md), plus its habits."""

    indoor_c: float = 18.0  # t_n
    outdoor_design_c: float = -9.0  # t_out_design
    supply_design_c: float = 60.0  # t_s' (secondary network, radiators)
    return_design_c: float = 45.0  # t_r'
    b: float = Field(0.3, ge=0, le=1)  # radiator exponent - 1
    lead_time_h: float = Field(12.0, ge=0)  # thermal lag to beat before a cold snap
    auto_apply: bool | None = None  # None: follow [control] auto_apply


class ControlSettings(_Section):
    recheck_after_h: float = Field(48.0, gt=0)
    max_step_c: float = Field(3.0, gt=0)
    warm_ceiling_c: float = 22.0
    auto_apply: bool = False
    jobstore_url: str = ""  # default: sqlite:///<data_dir>/jobs.sqlite
    # --- the control loop's settings; see docs/CONTROL.md ------------------------------------------
    db_path: Path | None = None  # default: <data_dir>/control.sqlite
    design: StationDesign = StationDesign()
    stations: dict[str, StationDesign] = Field(default_factory=dict)  # per station_id; unset keys from design
    feedback_gain: float = Field(3.0, ge=0)  # supply °C per °C the weighted mean is under target
    shortfall_margin_c: float = Field(0.0, ge=0)  # weighted mean under target - margin = shortfall
    imbalance_spread_c: float = Field(2.0, gt=0)  # building spread that means imbalance, not shortfall
    emergency_drop_c: float = Field(1.0, gt=0)  # worse by this since applying: new proposal despite recheck
    recheck_window_h: float = Field(24.0, gt=0)  # analytics window before apply and at the recheck
    min_change_c: float = Field(0.5, ge=0)  # smaller supply changes are not proposed
    forecast_file: Path | None = None  # Open-Meteo hourly JSON; default: the store's forecast measurement
    forecast_site: str = ""  # the weather_site forecast_file is for ("": the one site every station shares)
    forecast_jump_c: float = Field(8.0, gt=0)  # an hour this much off the previous issue: ramp held for an operator
    forecast_max_rate_c_per_h: float = Field(10.0, gt=0)  # a forecast changing faster than this is implausible
    coldsnap_threshold_c: float = -15.0
    coldsnap_drop_c: float = Field(8.0, gt=0)
    coldsnap_horizon_h: float = Field(72.0, gt=0)
    coldsnap_interval_min: float = Field(60.0, gt=0)
    ramp_interval_h: float = Field(3.0, gt=0)  # between ramp steps of a pre-adjustment
    improve_min_c: float = Field(0.3, ge=0)  # a recheck needs this much warming (or the target) to count
    # --- the model-predictive strategy (control/model.py, control/mpc.py; docs/CONTROL.md) --------------------
    strategy: Literal["feedback", "model"] = "model"  # feedback: the heating curve + indoor feedback + cold-snap job
    feedback_setpoint: Literal["curve_offset", "supply"] = "curve_offset"  # analytics setpoints shift the curve, or fix a supply
    model_setpoint: Literal["curve_offset", "supply"] = "curve_offset"  # shift the station's curve, or fix a supply
    model_window_h: float = Field(168.0, gt=0)  # rolling window each fit reads (refitted every cycle)
    model_min_hours: float = Field(24.0, ge=4)  # fewer usable hours: the design prior with model_prior_tau_h
    model_prior_tau_h: float = Field(24.0, gt=0)  # assumed time constant of the homes before a fit
    model_max_rmse_c: float = Field(0.5, gt=0)  # free-run fit error over this: curve + feedback keep the station
    model_lookahead_h: float = Field(24.0, ge=1)  # forecast hours each plan keeps at their standard
    model_hold_h: float = Field(3.0, ge=1)  # hours the first move is held (the cycle interval)
    model_margin_c: float = Field(1.0, ge=0)  # aimed above the estimated cold homes (the standard + this, not 22 °C)
    model_cold_quantile: float = Field(0.05, gt=0, lt=0.5)  # the cold homes the standard is aimed at
    model_gap_h: float = Field(72.0, ge=1)  # hours over which the cold homes' gap under the mean is measured
    # --- inter-home balancing: home valve settings per class of homes (control/valves.py; docs/CONTROL.md) --------
    home_valves: bool = True  # advise the home valves of warm classes (a crew sets them; nothing is sent)
    valve_window_h: float = Field(24.0, gt=0)  # hours each class's mean is taken over
    valve_deadband_c: float = Field(0.5, ge=0)  # a class this much over the reference (or under it, throttled) moves
    valve_min_flow: float = Field(0.2, gt=0, le=1)  # no home valve is advised under this share of design flow
    valve_max_cut: float = Field(0.5, gt=0, lt=1)  # share of a class's flow one round may take away
    valve_min_change: float = Field(0.05, gt=0, le=1)  # smaller changes of flow share are not advised
    valve_min_homes: int = Field(2, ge=1)  # sensor homes + warm in-home readings a class needs to be throttled (opening: one)
    valve_spot_days: float = Field(14.0, gt=0)  # in-home readings (入户测温) this recent count (taken after the class settled)
    valve_margin_c: float = Field(0.5, ge=0)  # model_margin_c where the last home-valve job was rechecked improved


class AlertsSettings(_Section):
    mqtt: bool = True
    jsonl_path: Path | None = None  # default: <data_dir>/alerts.jsonl
    webhook_url: str = ""
    webhook_secret: SecretStr | None = None
    webhook_secret_file: Path | None = None
    # --- delivery and the rules of control.alerts; see docs/CONTROL.md ----------------------------
    webhook_retries: int = Field(3, ge=0)
    webhook_backoff_s: float = Field(1.0, ge=0)
    webhook_timeout_s: float = Field(5.0, gt=0)
    redeliver_interval_s: float = Field(60.0, gt=0)
    home_check_h: float = Field(24.0, gt=0)  # home temperature check deadline
    urgent_response_h: float = Field(2.0, gt=0)  # "not warm" urgent response deadline
    urgent_below_c: float = Field(2.0, ge=0)  # this far under the threshold = urgent
    station_response_h: float = Field(1.0, gt=0)
    outage_notice_h: float = Field(8.0, gt=0)  # longer outages must be announced to users
    outage_after_min: float = Field(30.0, gt=0)  # outage evidence this long = outage; no reading this long = telemetry lost
    under_curve_c: float = Field(8.0, gt=0)  # supply this far under the heating curve = station fault
    min_diff_kpa: float = Field(20.0, ge=0)  # supply - return pressure under this = pressure drop
    recover_margin_c: float = Field(0.5, ge=0)
    recover_hold_h: float = Field(2.0, ge=0)
    storm_min_homes: int = Field(5, ge=2)  # this many new cold homes under one community = one incident
    no_flow_m3h: float = Field(0.0, ge=0)  # station flow at or under this: stopped (evidence of a heat outage)
    outage_spread_c: float = Field(3.0, gt=0)  # supply within this of the return (or outdoors): no heat delivered
    telemetry_outage_share: float = Field(0.5, gt=0, le=1)  # this share of sensors silent at once: ingestion stopped
    responsible_unit: str = ""  # default: the station's name


class SeasonSettings(_Section):
    """The heating season (供暖季) and where dated home statuses, outages and measurement records are kept."""

    start: str = "11-15"  # first day of the heating season, MM-DD local date
    end: str = "03-15"  # last day of the heating season (inclusive); outside it no cold alerts are raised
    db_path: Path | None = None  # default: <data_dir>/service.sqlite (home status changes, outages, measurement records)

    @field_validator("start", "end")
    @classmethod
    def _month_day(cls, v: str) -> str:
        from heatwatch.core.season import parse_month_day

        parse_month_day(v)
        return v


class OutagesSettings(_Section):
    """Announced heat outages (停热): users are told ahead, with the expected restoration time (issue 16)."""

    notice_ahead_h: float = Field(24.0, ge=0)  # a planned outage is announced at least this long before it starts


class MeasurementsSettings(_Section):
    """In-home measurement records (入户测温, 000 section 三 / 001 section 八)."""

    staff_required: int = Field(2, ge=1)  # distinct staff who measure together
    calibration_valid_days: int = Field(365, ge=1)  # the thermometer's calibration is valid this long
    reading_min_c: float = 0.0  # a room reading under this is a mistake, refused
    reading_max_c: float = 40.0  # a room reading over this is a mistake, refused


class VisitsSettings(_Section):
    """The season's visit plan (访民问暖, 000 section 五); the edge share is analytics.edge_share_min."""

    per_community: int = Field(10, ge=1)  # homes visited per residential community (all of them when it has fewer)


class OperatorSettings(_Section):
    """One named desk user (``[desk.operators."<name>"]``): approvals and closures name them, never free text."""

    role: Literal["operator", "supervisor"] = "operator"  # supervisor: may close an order without a callback (with a reason)
    token: SecretStr | None = None  # better: token_file or HEATWATCH_DESK_OPERATORS as JSON; never printed
    token_file: Path | None = None  # a file holding the token (e.g. a container secret)
    display_name: str = ""  # e.g. 王伟 (default: the user name)

    @field_validator("token")
    @classmethod
    def _token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value().strip()) < 8:
            raise ValueError("too short (at least 8 characters; better a random one from token_file)")
        return v


class DeskSettings(_Section):
    """The service desk (调度室, issue 16): its users, its database, the standards' clocks (docs/SERVICE_DESK.md)."""

    db_path: Path | None = None  # default: <data_dir>/desk.sqlite
    operators: dict[str, OperatorSettings] = Field(default_factory=dict)  # per user name
    # --- the clocks, in DOMAIN.md's order (seed in brackets); every one runs from an order's own events ---------
    measure_h: float = Field(24.0, gt=0)  # [000] measurement request: two staff measure at the home within this
    measure_notice_h: float = Field(1.0, ge=0)  # [000] a visit later than measure_h is announced this long ahead
    station_opinion_h: float = Field(1.0, gt=0)  # [001] the station's handling opinion back to dispatch
    repair_call_min: float = Field(10.0, gt=0)  # [002] a repair call passed to the responsible team
    leak_contact_min: float = Field(30.0, gt=0)  # [001] leak (跑冒滴漏): contact the user
    leak_on_site_h: float = Field(2.0, gt=0)  # [001] leak: on site
    leak_fixed_h: float = Field(24.0, gt=0)  # [001] leak: fixed
    callback_h: float = Field(48.0, gt=0)  # [001] the callback (回访) after a repair
    not_warm_respond_h: float = Field(2.0, gt=0)  # [004] 不热 is urgent: respond (contact the user) within this
    billing_review_h: float = Field(48.0, gt=0)  # [004] fee disputes: the 48-hour review
    asap_h: float = Field(24.0, gt=0)  # [004] "as soon as possible" written as this explicit deadline (other orders)
    complaint_working_days: int = Field(5, ge=1)  # [001] complaints answered within N working days (002: 2 days)
    report_working_days: int = Field(10, ge=1)  # [001] reports (举报: complaints with evidence kind=report): N working days
    dispatch_min: float = Field(5.0, gt=0)  # [003] an order checked and dispatched
    route_min: float = Field(10.0, gt=0)  # [003] the receiving unit routes it to a first-line worker
    contact_min: float = Field(10.0, gt=0)  # [003] the first-line worker contacts the customer (orders with a phone)
    review_min: float = Field(20.0, gt=0)  # [003] a reply reviewed by the hotline
    appointment_early_min: float = Field(5.0, ge=0)  # [003] on site this long before the customer's agreed time
    # --- the calendar of working days (local time, general.timezone) -----------------------------------------
    working_weekdays: tuple[int, ...] = (1, 2, 3, 4, 5)  # ISO weekdays that are working days (1 = Monday)
    holidays: tuple[date, ...] = ()  # public holidays (local dates), e.g. the State Council's notice for the year
    extra_working_days: tuple[date, ...] = ()  # weekend days that are working days (调休上班)
    # --- escalation of overdue orders to the supervisors ------------------------------------------------------
    escalate_mqtt: bool = True  # publish on <mqtt.topic_prefix>/desk/alerts/<clock>
    escalate_jsonl_path: Path | None = None  # default: <data_dir>/desk_escalations.jsonl
    escalate_webhook_url: str = ""  # signed like alerts (alerts.webhook_secret); "" = none
    tick_interval_s: float = Field(60.0, gt=0)  # `heatwatch run`: overdue check and delivery every N seconds
    retry_s: float = Field(60.0, gt=0)  # first wait before a refused escalation is retried (doubling, at most 1 h)
    # --- intake from other systems (docs/SERVICE_DESK.md, "HTTP API" and "MQTT") ----------------------------------
    http_port: int = Field(0, ge=0, le=65535)  # HTTP JSON intake (POST /orders …) in `heatwatch run`; 0 = off
    http_host: str = "127.0.0.1"  # where the intake listens (0.0.0.0 for a call-centre system on another host)
    http_max_body_kb: int = Field(64, ge=1)  # a request body over this is refused (413)
    mqtt_intake: bool = False  # `heatwatch run` takes orders from <mqtt.topic_prefix>/orders/new

    @field_validator("working_weekdays")
    @classmethod
    def _weekdays(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(d < 1 or d > 7 for d in v):
            raise ValueError("expected ISO weekdays 1 (Monday) to 7 (Sunday), at least one")
        return tuple(sorted(set(v)))

    @field_validator("operators")
    @classmethod
    def _names(cls, v: dict[str, OperatorSettings]) -> dict[str, OperatorSettings]:
        for name in v:
            if not name.strip() or name != name.strip() or name.startswith("system:"):
                raise ValueError(f"operator name {name!r}: not empty, no surrounding spaces, not 'system:…'")
        return v


RunPart = Literal["collector", "analytics", "control"]
RUN_PARTS: tuple[RunPart, ...] = ("collector", "analytics", "control")


class RunSettings(_Section):
    """``heatwatch run``: which parts this process runs, and how it reports its health."""

    parts: Annotated[tuple[RunPart, ...], NoDecode] = RUN_PARTS  # control: proposals, rechecks, cold snap, alerts
    analytics_window_h: float = Field(6.0, gt=0)  # each scheduled analysis covers the last N hours (every analytics.interval_min)
    status_interval_s: float = Field(5.0, gt=0)  # how often the status snapshot (<data_dir>/status.json) is rewritten
    http_host: str = "127.0.0.1"
    http_port: int = Field(0, ge=0, le=65535)  # /healthz and /status; 0 = off
    stop_timeout_s: float = Field(30.0, gt=0)  # SIGTERM: how long flushing and acking may take

    @field_validator("parts", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):  # from the environment: "collector,analytics"
            v = [p.strip() for p in v.split(",") if p.strip()]
        if isinstance(v, (list, tuple)) and not v:
            raise ValueError(f"at least one of {', '.join(RUN_PARTS)}")
        return v


class Config(BaseSettings):
    """Every setting, one section per part. ``Config()`` is the defaults; ``load_config`` reads the file and environment."""

    model_config = SettingsConfigDict(
        extra="forbid",
        frozen=True,
        env_prefix=ENV_PREFIX,  # HEATWATCH_<SECTION>_<KEY>: the section is the field, the rest of the name its key
        env_nested_delimiter="_",
        env_nested_max_split=1,  # HEATWATCH_ANALYTICS_EDGE_SHARE_MIN is analytics.edge_share_min, not analytics.edge.share…
    )

    general: GeneralSettings = GeneralSettings()
    mqtt: MqttSettings = MqttSettings()
    storage: StorageSettings = StorageSettings()
    sqlite: SqliteSettings = SqliteSettings()
    influxdb1: Influxdb1Settings = Influxdb1Settings()
    influxdb2: Influxdb2Settings = Influxdb2Settings()
    registry: RegistrySettings = RegistrySettings()
    collector: CollectorSettings = CollectorSettings()
    limits: LimitsSettings = LimitsSettings()
    standard: StandardSettings = StandardSettings()
    analytics: AnalyticsSettings = AnalyticsSettings()
    control: ControlSettings = ControlSettings()
    alerts: AlertsSettings = AlertsSettings()
    run: RunSettings = RunSettings()
    desk: DeskSettings = DeskSettings()
    season: SeasonSettings = SeasonSettings()
    outages: OutagesSettings = OutagesSettings()
    measurements: MeasurementsSettings = MeasurementsSettings()
    visits: VisitsSettings = VisitsSettings()

    source: str = Field("defaults", exclude=True)  # where the values came from, for messages: "heatwatch.toml + environment"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """``Config(...)`` takes only its arguments: the file and environment are read by ``load_config``, explicitly."""
        return (init_settings,)

    # --- derived paths -------------------------------------------------------
    @property
    def sqlite_path(self) -> Path:
        """The SQLite store's file: ``[sqlite] path``, else ``<data_dir>/heatwatch.sqlite``."""
        return self.sqlite.path or self.general.data_dir / "heatwatch.sqlite"

    @property
    def spool_dir(self) -> Path:
        """The collector's disk spool: ``[collector] spool_dir``, else ``<data_dir>/spool``."""
        return self.collector.spool_dir or self.general.data_dir / "spool"

    def secret(self, section: str, key: str) -> str | None:
        """The secret's value, from the setting itself or from ``<key>_file``."""
        sect = getattr(self, section)
        value: SecretStr | None = getattr(sect, key)
        if value is not None:
            return value.get_secret_value()
        path: Path | None = getattr(sect, f"{key}_file", None)
        if path is None:
            return None
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{section}.{key}_file: cannot read {path}: {exc.strerror}") from None


SECTIONS: tuple[str, ...] = tuple(n for n in Config.model_fields if n != "source")
_SECTION_TYPES: dict[str, type[BaseModel]] = {n: type(getattr(Config(), n)) for n in SECTIONS}


def _check_env_names(environ: Mapping[str, str]) -> bool:
    """A misspelled ``HEATWATCH_*`` variable is an error, not silently ignored (pydantic-settings skips unknown names).

    Returns whether any variable sets a key.
    """
    found = False
    for name in environ:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper == CONFIG_ENV or upper.startswith("HEATWATCH_TEST_"):
            continue
        section, _, key = upper[len(ENV_PREFIX) :].lower().partition("_")
        if section not in SECTIONS or not key:
            raise ConfigError(
                f"environment variable {name}: unknown section; expected HEATWATCH_<SECTION>_<KEY> with "
                f"SECTION one of {', '.join(s.upper() for s in SECTIONS)}"
            )
        fields = _SECTION_TYPES[section].model_fields
        if key not in fields:
            raise ConfigError(
                f"environment variable {name}: section [{section}] has no key {key!r}; known keys: {', '.join(sorted(fields))}"
            )
        found = True
    return found


class _Environment(EnvSettingsSource):
    """The ``HEATWATCH_*`` variables of a given mapping (``os.environ`` by default; tests pass their own)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


class _TomlFile(TomlConfigSettingsSource):
    """The TOML file; a missing file, bad TOML or an unknown section is a ``ConfigError`` naming the file."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        if not path.is_file():
            what = "is not a file" if path.exists() else "does not exist"
            raise ConfigError(f"config file {path} {what} (given by --config or {CONFIG_ENV})")
        super().__init__(settings_cls, toml_file=path)

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        try:
            raw = super()._read_file(file_path)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file_path} is not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"config file {file_path}: cannot read: {exc.strerror}") from None
        for section, body in raw.items():
            if section not in SECTIONS:
                raise ConfigError(f"{file_path}: unknown section [{section}]; expected one of {', '.join(SECTIONS)}")
            if not isinstance(body, dict):
                raise ConfigError(f"{file_path}: [{section}] must be a table of key = value")
        return raw


def _format_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see heatwatch.example.toml)"
        got = e.get("input")
        got_txt = "" if isinstance(got, dict) or got is None else f" (got {str(got)[:60]!r})"
        if "password" in loc or "token" in loc or "secret" in loc:
            got_txt = ""
        lines.append(f"{loc}: {msg}{got_txt}")
    return f"invalid configuration in {source}:\n  " + "\n  ".join(lines)


def load_config(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Load the TOML file (``path``, ``$HEATWATCH_CONFIG`` or ./heatwatch.toml, if any), then the environment, then ``overrides``."""
    env = os.environ if environ is None else environ
    chosen = path or env.get(CONFIG_ENV)
    if chosen is None and Path(DEFAULT_FILE).is_file():
        chosen = DEFAULT_FILE
    source = "defaults" if chosen is None else str(chosen)
    if _check_env_names(env):
        source += " + environment"
    try:
        sources: list[PydanticBaseSettingsSource] = [
            InitSettingsSource(Config, {**{k: dict(v) for k, v in (overrides or {}).items()}, "source": source}),
            _Environment(Config, env),
        ]
        if chosen is not None:
            sources.append(_TomlFile(Config, Path(chosen)))
        return Config(_build_sources=(tuple(sources), {}))
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source)) from None
    except SettingsError as exc:  # a table given by the environment is JSON, and this one is not
        raise ConfigError(
            f"invalid configuration in {source}: {exc} (a table such as HEATWATCH_CONTROL_STATIONS is given as JSON)"
        ) from None


def effective_settings(cfg: Config) -> dict[str, dict[str, Any]]:
    """All settings as plain values, secrets masked — safe to print or log."""
    def plain(body: dict[str, Any]) -> dict[str, Any]:
        for key, value in body.items():
            if isinstance(value, SecretStr):
                body[key] = "******"
            elif key.endswith("_url") and isinstance(value, str):
                body[key] = mask_url(value)  # a webhook URL often carries its token
            elif isinstance(value, Path):
                body[key] = str(value)
            elif isinstance(value, dict):  # nested tables: [desk.operators."<name>"] holds tokens
                body[key] = plain(value)
        return body

    return {section: plain(getattr(cfg, section).model_dump()) for section in SECTIONS}
