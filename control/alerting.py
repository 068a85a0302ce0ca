"""Control's side of the work orders: which sinks, and what each cycle and each failed recheck opens.

The rules, dedupe, outbox and sinks are ``control.alerts`` (which imports nothing of the loop); this
module wires them to the loop's inputs — the analytics result, the station readings, the collectors'
alarms in the store, a recheck that found no improvement — and writes every change to the store for
Grafana.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from analytics.results import AnalysisResult
from control.alerts.dispatch import Dispatcher
from control.alerts.model import Candidate, WorkOrder
from control.alerts.repo import AlertRepo
from control.alerts.rules import (
    TELEMETRY_OUTAGE,
    Observation,
    Quiet,
    StationReading,
    observe_analysis,
    observe_collector_alarms,
    observe_stations,
    quieten,
    unit_of,
)
from control.alerts.sinks import JsonlSink, MqttSink, Sink, WebhookSink
from control.alerts.tracker import Plan, plan
from control.points import PointWriter
from control.proposal import Proposal
from heatwatch.core import schema
from heatwatch.core.config import Config
from heatwatch.core.registry import Registry
from heatwatch.core.timeutil import Clock, rfc3339
from heatwatch.infra.mqtt.client import Publisher
from heatwatch.infra.storage.base import Store, StoreError, StoreUnavailable

log = logging.getLogger("heatwatch.control")
COLLECTOR_ALARM_LOOKBACK = timedelta(days=2)


def configured_sinks(cfg: Config) -> list[str]:
    """The sinks every alert change is queued for (one outbox row each)."""
    names = ["jsonl"]
    if cfg.alerts.mqtt:
        names.append("mqtt")
    if cfg.alerts.webhook_url:
        names.append("webhook")
    return names


def jsonl_path(cfg: Config) -> Path:
    return cfg.alerts.jsonl_path or cfg.general.data_dir / "alerts.jsonl"


def build_sinks(cfg: Config, publisher: Publisher | None) -> dict[str, Sink]:
    sinks: dict[str, Sink] = {"jsonl": JsonlSink(jsonl_path(cfg))}
    if cfg.alerts.mqtt and publisher is not None:
        sinks["mqtt"] = MqttSink(publisher, cfg.mqtt.topic_prefix)
    if cfg.alerts.webhook_url:
        a = cfg.alerts
        sinks["webhook"] = WebhookSink(
            a.webhook_url, cfg.secret("alerts", "webhook_secret"), a.webhook_retries, a.webhook_backoff_s, a.webhook_timeout_s
        )
    return sinks


class Alerting:
    """Work orders for one control loop: its repository, its dispatcher and what opens them."""

    def __init__(
        self,
        cfg: Config,
        registry: Registry,
        store: Store,
        engine: Engine,
        clock: Clock,
        points: PointWriter,
        sinks: dict[str, Sink],
    ) -> None:
        self.cfg = cfg
        self.registry = registry
        self.store = store
        self.points = points
        self.repo = AlertRepo(engine, configured_sinks(cfg))
        self.dispatcher = Dispatcher(self.repo, sinks, clock, cfg.alerts.redeliver_interval_s)

    def cycle(self, result: AnalysisResult, readings: dict[str, StationReading], now: datetime,
              quiet: Quiet | None = None) -> Plan:
        """Observe the analysis and the stations, plan (dedupe, hysteresis, storms), record with the outbox.
        ``quiet``: cold alerts not raised now (outside the season, homes told of an outage)."""
        obs = quieten(observe_analysis(result, self.registry, self.cfg), quiet, self.registry)
        st_obs = observe_stations(readings, self.registry, self.cfg, now)
        merged = Observation(obs.candidates + st_obs.candidates, {**obs.healthy, **st_obs.healthy})
        pl = plan(self.repo.open_alerts(), merged, self.registry, self.cfg, now)
        pl.opened += self._collector_alarm_orders(now)
        self.repo.record(pl.opened, [*pl.updated, *pl.escalated], pl.resolved, pl.recovering, at=now)
        self.points.alerts([*pl.opened, *pl.updated, *pl.escalated, *pl.resolved], now)
        return pl

    def store_unreachable(self, error: str, now: datetime) -> list[WorkOrder]:
        """The store does not answer: readings cannot be stored or analysed. One ``telemetry_outage`` order
        (the same one an ingestion stop opens); it resolves when an analysis sees readings flowing again."""
        if any(o.order.key == TELEMETRY_OUTAGE for o in self.repo.open_alerts()):
            return []
        order = WorkOrder.from_candidate(Candidate(
            key=TELEMETRY_OUTAGE, category="telemetry_outage",
            content=(f"the store does not answer ({error}): readings are neither stored nor analysed — the collectors "
                     "spool them meanwhile. Check the database and its disk; one order for all sensors and stations."),
            evidence={"error": error}, responsible_unit=self.cfg.alerts.responsible_unit or "operations (collector and store)",
            deadline_h=self.cfg.alerts.station_response_h, severity="urgent", source="heatwatch control",
        ), now)
        self.repo.record(opened=[order], at=now)
        return [order]

    def _collector_alarm_orders(self, now: datetime) -> list[WorkOrder]:
        """Collectors' alarms in the store (a broker that lost their session) become urgent orders, once each."""
        try:
            df = self.store.query(schema.COLLECTOR_ALARMS, now - COLLECTOR_ALARM_LOOKBACK, now + timedelta(seconds=1))
        except (StoreUnavailable, StoreError) as exc:
            log.warning("collector alarms unavailable: %s", exc)
            return []
        return [WorkOrder.from_candidate(c, now) for c in observe_collector_alarms(df, self.cfg) if not self.repo.has_key(c.key)]

    def recheck_not_improved(self, p: Proposal, now: datetime, why: str = "") -> WorkOrder:
        """An urgent order to dispatch: the change ``p`` was rechecked and the homes that asked for it are not
        at their standard (``why`` names them)."""
        st = self.registry.stations.get(p.station_id)
        home = self.registry.homes.get(p.home_id) if p.home_id else None
        where = (home.address if home else "") or p.community or (st.name if st else p.station_id)
        a = self.cfg.alerts
        cand = Candidate(
            key=f"recheck_not_improved:{p.proposal_id}", category="recheck_not_improved",
            content=(
                f"{where}: the {p.kind} change {p.proposal_id} applied {rfc3339(p.applied_at or now, self.cfg.general.tz)} "
                f"did not help — {why + '; ' if why else ''}before {p.before_c} °C, after {p.after_c} °C. "
                f"Original reason: {p.reason}"
            ),
            evidence={"proposal_id": p.proposal_id, "kind": p.kind, "before_c": p.before_c, "after_c": p.after_c,
                      "proposed_c": p.proposed_c},
            station_id=p.station_id, community=p.community, home_id=p.home_id, address=where,
            contact=home.contact if home else "", responsible_unit=unit_of(self.cfg, st, p.station_id),
            deadline_h=a.urgent_response_h if p.kind == "home_visit" else a.station_response_h, severity="urgent",
            source="heatwatch recheck",
        )
        order = WorkOrder.from_candidate(cand, now)
        self.repo.record(opened=[order], at=now)
        self.points.alerts([order], now)
        return order

    def deliver_due(self) -> int:
        return self.dispatcher.deliver_due()
