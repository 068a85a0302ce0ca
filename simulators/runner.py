"""Run a scenario against a broker: accelerated clock, closed loop on setpoints, ground truth out.

The simulated period ends at "now" by default (start = now - duration), because the collector
rejects readings from the future; simulated time is never allowed to pass the injected clock,
so with ``live=True`` the runner catches up at ``speed`` and then follows real time.

Used by ``heatwatch simulate run`` and by the zero-setup demo (``ScenarioRunner(...).start()``
in a thread next to an in-process broker and the collector).
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import numpy as np

from heatwatch.config import Config
from heatwatch.registry import Registry
from heatwatch.timeutil import Clock, rfc3339, utc_now
from simulators.mqttio import MqttTarget, Publisher, PublishError
from simulators.scenario import Scenario, load_scenario
from simulators.sensors import (
    Message,
    SensorBank,
    forecast_messages,
    next_forecast,
    station_messages,
    weather_messages,
)
from simulators.setpoint import SetpointSchedule, parse_setpoint, setpoint_topic
from simulators.simulation import Simulation, StepTruth
from simulators.truth import TruthWriter, fault_name

log = logging.getLogger(__name__)
Sink = Callable[[Message], None]
MAX_SLEEP_S = 0.5


def floor_to_step(t: datetime, step_s: float) -> datetime:
    s = int(step_s)
    return datetime.fromtimestamp(int(t.timestamp()) // s * s, UTC)


class ScenarioRunner:
    """One scenario run. ``run()`` blocks; ``start()`` runs it in a daemon thread."""

    def __init__(
        self,
        scenario: Scenario | str | Path,
        mqtt: MqttTarget | Config | None = None,
        out_dir: Path | None = None,
        speed: float = 3600.0,
        start: datetime | None = None,
        until: datetime | None = None,
        clock: Clock = utc_now,
        live: bool = False,
        tz: ZoneInfo | None = None,
        sink: Sink | None = None,
        client_id: str | None = None,
        progress: TextIO | None = None,
    ) -> None:
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        sc = self.scenario
        self.target = MqttTarget.from_config(mqtt) if isinstance(mqtt, Config) else mqtt
        self.prefix = self.target.topic_prefix if self.target else "heat"
        self.speed = speed
        self.clock = clock
        self.live = live
        self.sink = sink
        self.client_id = client_id or f"heatwatch-sim-{os.getpid()}-{id(self) % 10_000}"
        self.progress = progress
        duration = timedelta(hours=sc.duration_h)
        if start is None:
            start = (until or clock()) - duration
        self.start_time = floor_to_step(start, sc.step_s)
        self.until: datetime | None = None if (live and until is None) else (until or self.start_time + duration)
        if self.until is not None and self.until <= self.start_time:
            raise ValueError(f"until {rfc3339(self.until)} is not after start {rfc3339(self.start_time)}")
        zone = tz or ZoneInfo("Asia/Shanghai")
        offset = zone.utcoffset(self.start_time.replace(tzinfo=None))
        self.sim = Simulation(sc, self.start_time, offset.total_seconds() / 3600.0 if offset else 0.0)
        self.sensors = SensorBank(sc, self.sim.net, self.prefix)
        self.out_dir = out_dir or Path(tempfile.mkdtemp(prefix=f"heatwatch-sim-{sc.name}-"))
        self.homes_csv, self.stations_csv = self.sim.net.write_registry(self.out_dir)
        self.truth = TruthWriter(self.out_dir)
        self.schedule = SetpointSchedule()
        self.published = 0
        self.setpoints_applied = 0
        self.setpoints_refused = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._publisher: Publisher | None = None
        self._inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._prev_faults = ""
        self._last_progress = 0.0

    # --- public API --------------------------------------------------------------
    @property
    def registry(self) -> Registry:
        return self.sim.net.registry

    @property
    def ground_truth_path(self) -> Path:
        return self.truth.indoor_path

    @property
    def sim_time(self) -> datetime:
        return self.sim.t

    def submit_setpoint(self, topic: str, payload: bytes) -> None:
        """Feed a setpoint message directly (no broker), as the MQTT subscription would."""
        self._inbox.put((topic, payload))

    def start(self) -> ScenarioRunner:
        self._thread = threading.Thread(target=self._thread_main, name=f"sim-{self.scenario.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """True when the run has finished; re-raises an error from the run thread."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False
        if self.error is not None:
            raise self.error
        return True

    def stats(self) -> dict[str, Any]:
        pub = self._publisher
        return {
            "scenario": self.scenario.name,
            "step": self.sim.step_no,
            "sim_time": rfc3339(self.sim.t),
            "published": self.published,
            "acked": pub.acked if pub else self.published,
            "setpoints_applied": self.setpoints_applied,
            "setpoints_refused": self.setpoints_refused,
            "supply_c": {sid: round(float(v), 2) for sid, v in zip(self.sim.station_ids,
                                                                     self.sim.station_state.supply_c, strict=True)},
        }

    # --- the loop ------------------------------------------------------------------
    def _thread_main(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # reported by join()
            log.exception("simulator run failed")
            self.error = exc

    def run(self) -> dict[str, Any]:
        sc = self.scenario
        if self.target is not None:
            sub = [setpoint_topic(self.prefix, "+")]
            self._publisher = Publisher(self.target, self.client_id, subscribe=sub).connect()
        wall0 = time.monotonic()
        next_fc = self.start_time
        try:
            truth: StepTruth = self.sim.truth()
            while True:
                t = truth.t
                if sc.forecast.enabled and t >= next_fc:
                    self._forecast(t)
                    next_fc = next_forecast(self.start_time, sc.forecast.every_h, t)
                self._emit(truth)
                self._report_progress()
                if self._stop.is_set() or (self.until is not None and t >= self.until):
                    break
                t_next = t + timedelta(seconds=sc.step_s)
                if not self._pace(wall0, t_next):
                    break
                self._apply_setpoints(t_next)
                truth = self.sim.step()
            msgs, rows = self.sensors.flush()
            self._send(msgs)
            self.truth.indoor(rows)
            if self._publisher is not None and not self._publisher.drain(timeout=60):
                raise PublishError(f"{self._publisher.outstanding} simulator messages were not acknowledged by the broker "
                                   "within 60 s (is it overloaded or gone?)")
        finally:
            self.truth.close()
            if self._publisher is not None:
                self._publisher.close()
            self._report_progress(final=True)
        return self.stats()

    def _pace(self, wall0: float, t_next: datetime) -> bool:
        """Sleep until the next step is due (speed) and not in the future (clock). False when stopped."""
        sim_elapsed = (t_next - self.start_time).total_seconds()
        due = wall0 + (sim_elapsed / self.speed if self.speed > 0 else 0.0)
        while not self._stop.is_set():
            self._poll_inbox()
            wait = due - time.monotonic()
            ahead = (t_next - self.clock()).total_seconds()
            if wait <= 0 and ahead <= 0:
                return True
            self._stop.wait(min(MAX_SLEEP_S, max(wait, ahead, 0.01)))
        return False

    def _poll_inbox(self) -> None:
        sources: list[queue.Queue[tuple[str, bytes]]] = [self._inbox]
        if self._publisher is not None:
            sources.append(self._publisher.inbox)
        for q in sources:
            while True:
                try:
                    topic, payload = q.get_nowait()
                except queue.Empty:
                    break
                try:
                    cmd = parse_setpoint(topic, payload, self.prefix)
                    self.sim.station_index(cmd.station_id)
                except (ValueError, KeyError) as exc:
                    self.setpoints_refused += 1
                    log.warning("setpoint refused: %s", exc)
                    self.truth.event({"ts": rfc3339(self.sim.t), "kind": "setpoint_refused", "reason": str(exc)})
                    continue
                self.schedule.add(cmd)

    def _apply_setpoints(self, now: datetime) -> None:
        self._poll_inbox()
        for cmd in self.schedule.due(now):
            self.sim.set_setpoint(cmd.station_id, cmd.supply_c)
            self.setpoints_applied += 1
            log.info("setpoint %s: %s -> %.1f °C (%s)", cmd.proposal_id, cmd.station_id, cmd.supply_c, cmd.reason)
            self.truth.event(
                {"ts": rfc3339(now), "kind": "setpoint_applied", "station_id": cmd.station_id,
                 "supply_c": cmd.supply_c, "proposal_id": cmd.proposal_id, "effective_at": rfc3339(cmd.effective_at),
                 "reason": cmd.reason}
            )

    def _forecast(self, t: datetime) -> None:
        fc = self.sim.forecaster.issue(t)
        msgs = forecast_messages(self.prefix, t, fc)
        for site, m in zip(fc, msgs, strict=True):
            self.truth.forecast(site, m.payload)
        self._send(msgs)

    def _emit(self, truth: StepTruth) -> None:
        sim, net = self.sim, self.sim.net
        st_out = truth.outdoor_site[net.station_site_idx]
        faults = ";".join(f"{sid}:{fault_name(truth.faults, j)}" for j, sid in enumerate(sim.station_ids)
                          if fault_name(truth.faults, j))
        if faults != self._prev_faults:
            self.truth.event({"ts": rfc3339(truth.t), "kind": "station_faults", "active": faults})
            self._prev_faults = faults
        msgs = weather_messages(self.prefix, net.site_names, truth.t, truth.outdoor_site)
        msgs += station_messages(self.prefix, sim.station_ids, truth.t, truth.stations, truth.faults.outage)
        idx = self.sensors.idx
        home_out = st_out[net.station_idx[idx]] if len(idx) else np.zeros(0)
        sensor_msgs, rows = self.sensors.emit(truth.step, truth.t, truth.home_temp[idx], home_out)
        msgs += sensor_msgs
        self._send(msgs)
        self.truth.indoor(rows)
        self.truth.stations(truth.t, sim.station_ids, truth.stations, truth.faults, st_out)
        self.truth.weather(truth.t, net.site_names, truth.outdoor_site)

    def _send(self, msgs: list[Message]) -> None:
        for m in msgs:
            if self._publisher is not None:
                self._publisher.publish(m.topic, m.payload)
            if self.sink is not None:
                self.sink(m)
            self.published += 1

    def _report_progress(self, final: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if not final and now - self._last_progress < 1.0:
            return
        self._last_progress = now
        s = self.stats()
        line = (f"\rsim {s['sim_time']} step {s['step']} published {s['published']} acked {s['acked']} "
                f"setpoints {s['setpoints_applied']}")
        self.progress.write(line + ("\n" if final else ""))
        self.progress.flush()


def run_scenario(name: str, out_dir: Path, **kwargs: Any) -> dict[str, Any]:
    """Convenience for scripts: run to the end and return the stats."""
    return ScenarioRunner(name, out_dir=out_dir, progress=kwargs.pop("progress", sys.stderr), **kwargs).run()
