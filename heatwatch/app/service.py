"""``heatwatch run``: the configured parts in one process.

collector (MQTT → store, ack after durable storage) · analytics every ``analytics.interval_min`` over
the last ``run.analytics_window_h`` (results written to the store for Grafana) · control after each
analysis (proposals, work orders, overdue rechecks) plus the ControlLoop's own scheduler (persistent
48 h rechecks, cold-snap job, alert redelivery). A failing job is logged and counted; it never stops
the process. Health goes to ``<data_dir>/status.json`` and, optionally, HTTP (heatwatch.app.status).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from heatwatch import __version__
from heatwatch.app.status import Snapshot, StatusServer, healthy, metrics_text, status_path, write_bytes_atomic, write_snapshot
from heatwatch.core.config import Config
from heatwatch.core.registry import Registry
from heatwatch.core.timeutil import Clock, rfc3339, utc_now
from heatwatch.infra.storage.base import Store, StoreError, StoreUnavailable

if TYPE_CHECKING:
    from collector.service import Collector
    from control.publish import MqttPublisher
    from control.service import ControlLoop

log = logging.getLogger("heatwatch.run")
RATE_WINDOW_S = 60.0


class Service:
    def __init__(self, cfg: Config, registry: Registry, store: Store, clock: Clock = utc_now) -> None:
        self.cfg = cfg
        self.registry = registry
        self.store = store
        self.clock = clock
        self.parts = tuple(cfg.run.parts)
        self.collector: Collector | None = None
        self.publisher: MqttPublisher | None = None
        self.loop: ControlLoop | None = None
        self.scheduler: Any = None
        self.http: StatusServer | None = None
        self.started_at = clock()
        self.job_errors: dict[str, int] = {}
        self.last_analysis: dict[str, Any] = {}
        self._samples: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()
        self._latest: Snapshot = {}
        self._stopping = threading.Event()
        self.desk: Any = None  # dispatch.tick.DeskTick
        self._desk_publisher: MqttPublisher | None = None
        self.desk_doors: Any = None  # heatwatch.app.deskintake.DeskDoors: [desk] http_port / mqtt_intake
        self._service_state: Any = None

    @property
    def service_state(self) -> Any:
        """Home statuses, outages and the season for each cycle (opened on first use)."""
        if self._service_state is None:
            from heatwatch.app.servicestate import ServiceState

            self._service_state = ServiceState.from_config(self.cfg)
        return self._service_state

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Service:
        from apscheduler.schedulers.background import BackgroundScheduler

        if self.cfg.run.http_port:  # bound before anything starts: a taken port is one error line, exit 2
            self.http = StatusServer(self.cfg.run.http_host, self.cfg.run.http_port, lambda: self._latest)
        from heatwatch.app.deskintake import DeskDoors

        if DeskDoors.enabled(self.cfg):  # the desk's HTTP port is bound here too, before anything starts
            self.desk_doors = DeskDoors.from_config(self.cfg, self.registry, self.clock)
        if "collector" in self.parts:
            from collector.service import Collector

            self.collector = Collector(self.cfg, self.registry, self.store, self.clock).start()
        if "control" in self.parts:
            from control.publish import MqttPublisher
            from control.service import ControlLoop
            from dispatch.measurements import in_home_spots

            self.publisher = MqttPublisher(self.cfg, f"{self.cfg.mqtt.client_id}-control"[:64])
            self.loop = ControlLoop(self.cfg, self.registry, self.store, self.clock, self.publisher,
                                    spots=in_home_spots(self.cfg)).start()
            self.scheduler = self.loop.scheduler  # one scheduler: the loop's persistent jobs and ours
        else:
            self.scheduler = BackgroundScheduler(timezone="UTC")
            self.scheduler.start()
        if "analytics" in self.parts:
            self.scheduler.add_job(
                self._job("analytics", self.analytics_cycle), "interval", minutes=self.cfg.analytics.interval_min,
                id="analytics", name="analytics + control", jobstore="memory" if self.loop else "default",
                replace_existing=True, next_run_time=datetime.now().astimezone() + timedelta(seconds=2),
                max_instances=1, coalesce=True,
            )
        self._start_desk()
        self._start_desk_figures()
        if self.desk_doors is not None:
            self.desk_doors.start()
        self.scheduler.add_job(
            self._job("status", self.write_status), "interval", seconds=self.cfg.run.status_interval_s, id="status",
            name="status snapshot", jobstore="memory" if self.loop else "default", replace_existing=True,
            max_instances=1, coalesce=True,
        )
        if self.http is not None:
            self.http.start()
        self.write_status()
        if self.collector is not None:
            threading.Thread(target=self._watch_readiness, name="heatwatch-readiness", daemon=True).start()
        log.info("heatwatch run: parts %s, store %s, MQTT %s:%s", ", ".join(self.parts), self.store.name,
                 self.cfg.mqtt.host, self.cfg.mqtt.port)
        return self

    def stop(self) -> None:
        """Stop consuming, flush and ack (collector), then the scheduler; the last snapshot says stopped."""
        self._stopping.set()
        if self.desk_doors is not None:  # no new orders in from here
            self.desk_doors.stop()
        if self.collector is not None:
            self.collector.stop(timeout=self.cfg.run.stop_timeout_s)
        if self.loop is not None:
            self.loop.shutdown()
        elif self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.publisher is not None:
            self.publisher.close()
        if self._desk_publisher is not None:
            self._desk_publisher.close()
        try:
            self.write_status(state="stopped")
        except OSError as exc:
            log.warning("could not write the final status: %s", exc)
        if self.http is not None:
            self.http.stop()

    # --- jobs -----------------------------------------------------------------------------------
    def _start_desk(self) -> None:
        """The service desk's job (docs/SERVICE_DESK.md): sensor orders in, overdue clocks escalated, delivered."""
        from dispatch.tick import DeskTick

        publisher = self.publisher
        if publisher is None and self.cfg.desk.escalate_mqtt:
            from control.publish import MqttPublisher

            publisher = self._desk_publisher = MqttPublisher(self.cfg, f"{self.cfg.mqtt.client_id}-desk"[:64])
        alerts = self.loop.alerts if self.loop else None
        if alerts is None:  # control runs in another process: its work orders are still read from its file
            from control.alerts.repo import AlertRepo
            from control.db import db_path, open_engine

            if db_path(self.cfg).exists():
                alerts = AlertRepo(open_engine(db_path(self.cfg)), [])
        self.desk = DeskTick.from_config(self.cfg, self.clock, publisher, alerts)
        self.scheduler.add_job(
            self._job("desk", self.desk), "interval", seconds=self.cfg.desk.tick_interval_s, id="desk",
            name="service desk: sensor orders, overdue escalation", jobstore="memory" if self.loop else "default",
            replace_existing=True, max_instances=1, coalesce=True,
        )

    def _start_desk_figures(self) -> None:
        """desk_figures (previous and current month) and desk_overdue into the store, where Grafana reads them."""
        from heatwatch.app.deskintake import write_points

        self.scheduler.add_job(
            self._job("desk_figures", lambda: write_points(self.desk.desk, self.store, self.cfg, self.clock())), "interval",
            seconds=self.cfg.desk.tick_interval_s, id="desk_figures", name="service desk: figures and overdue count",
            jobstore="memory" if self.loop else "default", replace_existing=True, max_instances=1, coalesce=True,
        )

    def _job(self, name: str, fn: Any) -> Any:
        def run() -> None:
            try:
                fn()
            except Exception:  # one bad cycle must not stop collection, rechecks or the next cycle
                self.job_errors[name] = self.job_errors.get(name, 0) + 1
                log.exception("%s job failed (%d failures so far); the next run tries again", name, self.job_errors[name])

        run.__name__ = f"heatwatch_{name}_job"
        return run

    def analytics_cycle(self) -> None:
        from heatwatch.app.cycle import Cycle

        done = Cycle(self.store, self.registry, self.cfg, self.loop, window_h=self.cfg.run.analytics_window_h,
                     service=self.service_state).run(self.clock())
        summary = done.for_status()
        self.last_analysis = summary
        log.info("analysis %s: %d communities (%d cold), %d homes below standard in %.2f s", summary["at"],
                 summary["communities"], summary["cold_communities"], summary["homes_below_standard"], summary["duration_s"])

    # --- health ---------------------------------------------------------------------------------
    def _ingest_rate(self, stored: int) -> float:
        now = time.monotonic()
        self._samples.append((now, stored))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW_S:
            self._samples.popleft()
        t0, n0 = self._samples[0]
        return round((stored - n0) / (now - t0), 1) if now > t0 else 0.0

    def _store_reachable(self) -> tuple[bool, str]:
        try:
            self.store.ping()
            return True, ""
        except (StoreUnavailable, StoreError, OSError) as exc:
            return False, str(exc)

    def snapshot(self, state: str = "running") -> Snapshot:
        now = self.clock()
        ok, err = self._store_reachable()
        snap: Snapshot = {
            "state": state, "pid": os.getpid(), "version": __version__, "parts": list(self.parts),
            "started_at": rfc3339(self.started_at), "updated_at": rfc3339(now),
            "status_interval_s": self.cfg.run.status_interval_s,
            "store": {"backend": self.cfg.storage.backend, "name": self.store.name, "reachable": ok, "error": err},
            "last_analysis": self.last_analysis or None, "job_errors": dict(self.job_errors),
        }
        if self.collector is not None:
            c = self.collector.snapshot()
            snap["broker"] = {
                "host": self.cfg.mqtt.host, "port": self.cfg.mqtt.port, "connected": c.connected,
                "subscribed": c.subscribed, "session_lost": c.session_lost,
                "session_lost_at": rfc3339(datetime.fromtimestamp(c.session_lost_at, UTC)) if c.session_lost_at else None,
                "stalls_recovered": c.stalls, "probe_refused": c.probe_refused, "connects": c.connects,
            }
            snap["ingest"] = {
                "received_messages": c.received, "readings": c.readings, "stored": c.stored, "rejected": c.rejected,
                "rejects_by_reason": c.rejects_by_reason, "acked": c.acked, "queue_depth": c.queue_depth,
                "rate_per_s": self._ingest_rate(c.stored), "unacked": c.unacked, "stalled_s": c.stalled_s,
                "live": c.live, "not_live_reason": c.not_live_reason, "writer_errors": c.writer_errors,
                "store_alarms": c.store_alarms,
            }
            snap["spool"] = {"batches": c.spool_batches, "readings": c.spool_points, "bytes": c.spool_bytes}
            snap["ready"] = c.subscribed
            snap["collector_id"] = self.collector.collector_id
            snap["collector"] = c.as_dict()
        jobs = []
        if self.scheduler is not None and self.scheduler.running:
            for j in self.scheduler.get_jobs():
                if j.id != "status" and j.next_run_time is not None:
                    jobs.append({"id": j.id, "name": j.name, "next_run": rfc3339(j.next_run_time)})
        snap["next_jobs"] = sorted(jobs, key=lambda j: j["next_run"])
        if self.loop is not None:
            from control.proposal import OPEN

            pending = self.loop.proposals.pending_rechecks()
            snap["rechecks_pending"] = [
                {"proposal_id": p.proposal_id, "station_id": p.station_id, "kind": p.kind,
                 "due": rfc3339(p.recheck_due_at) if p.recheck_due_at else None}
                for p in sorted(pending, key=lambda p: p.recheck_due_at or now)
            ]
            snap["proposals_open"] = len(self.loop.proposals.find(statuses=OPEN, limit=100_000))
            snap["alerts_open"] = len(self.loop.alerts.open_alerts())
            snap["alerts_undelivered"] = self.loop.alerts.pending_count()
        if self.desk_doors is not None:
            snap["desk_intake"] = self.desk_doors.snapshot()
        if self.desk is not None:  # escalations a supervisor sink has not taken yet (docs/SERVICE_DESK.md)
            snap["desk_escalations_undelivered"] = self.desk.escalator.pending()
        snap["healthy"] = healthy(snap)
        return snap

    def write_status(self, state: str = "running") -> None:
        with self._lock:
            self._latest = self.snapshot(state)
            write_snapshot(status_path(self.cfg), self._latest)
            if self.collector is not None:  # for node_exporter's textfile collector where nothing scrapes /metrics
                write_bytes_atomic(status_path(self.cfg).with_name("metrics.prom"), metrics_text(self._latest))

    def _watch_readiness(self) -> None:
        """Rewrite the status as soon as the collector's readiness changes: waiters need not wait an interval."""
        assert self.collector is not None
        last = False
        while not self._stopping.is_set():
            now = self.collector.subscriber.subscribed.wait(0.2)
            if now != last:
                last = now
                try:
                    self.write_status()
                except Exception:
                    log.exception("status write on readiness change failed")
            if now:
                self._stopping.wait(0.2)
