"""Run a scenario against a broker: accelerated clock, closed loop on setpoints, ground truth out.

The simulated period ends at "now" by default (start = now - duration), because the collector
rejects readings from the future; simulated time is never allowed to pass the injected clock,
so with ``live=True`` the runner catches up at ``speed`` and then follows real time.

``run()`` (or ``start()`` in a thread) paces itself: ``heatwatch simulate run``. ``begin()``, ``step()``,
``end()`` and ``close()`` hand the steps to a driver: ``heatwatch.app.lockstep`` advances the simulator, the
collector and control together (the demo, the closed-loop tests), so nothing depends on the machine's speed.
"""

from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import numpy as np

from heatwatch.core.config import Config
from heatwatch.core.registry import Registry
from heatwatch.core.timeutil import Clock, rfc3339, utc_now
from heatwatch.infra.mqtt.client import PublishError
from heatwatch.infra.mqtt.setpoint import parse_setpoint
from heatwatch.infra.mqtt.topics import setpoint_filter
from simulators.mqttio import MqttTarget, Publisher
from simulators.scenario import Scenario, load_scenario
from simulators.sensors import (
    Message,
    SensorBank,
    forecast_messages,
    next_forecast,
    station_messages,
    weather_messages,
)
from simulators.setpoint import SetpointSchedule
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
        self.setpoints_received = 0  # setpoint messages taken from the inbox (applied, pending or refused)
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._publisher: Publisher | None = None
        self._inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._prev_faults = ""
        self._last_progress = 0.0
        self._begun = False
        self._wall0 = 0.0
        self._next_fc = self.start_time

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
        return {
            "scenario": self.scenario.name,
            "step": self.sim.step_no,
            "sim_time": rfc3339(self.sim.t),
            "published": self.published,
            "acked": self.acked,
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
        """The whole run at ``speed``: the same steps a lockstep driver takes one at a time."""
        try:
            self.begin()
            while not self.at_end:
                if not self.pace():
                    break
                self.step()
            self.end()
        finally:
            self.close()
        return self.stats()

    # --- one step at a time (``run`` above, or a lockstep driver such as heatwatch.app.lockstep) ----
    def begin(self) -> datetime:
        """Connect and publish the state at the start time; returns the simulated time."""
        if self._begun:
            return self.sim.t
        self._begun = True
        if self.target is not None:
            sub = [setpoint_filter(self.prefix)]
            self._publisher = Publisher(self.target, self.client_id, subscribe=sub).connect()
        self._wall0 = time.monotonic()
        self._publish_state(self.sim.truth())
        return self.sim.t

    @property
    def at_end(self) -> bool:
        """Stopped, or the simulated time has reached ``until``: ``step()`` must not be called."""
        return self._stop.is_set() or (self.until is not None and self.sim.t >= self.until)

    @property
    def next_time(self) -> datetime:
        return self.sim.t + timedelta(seconds=self.scenario.step_s)

    def pace(self) -> bool:
        """Sleep until the next step is due (speed) and not in the future (clock). False when stopped."""
        t_next = self.next_time
        sim_elapsed = (t_next - self.start_time).total_seconds()
        due = self._wall0 + (sim_elapsed / self.speed if self.speed > 0 else 0.0)
        while not self._stop.is_set():
            self._poll_inbox()
            wait = due - time.monotonic()
            ahead = (t_next - self.clock()).total_seconds()
            if wait <= 0 and ahead <= 0:
                return True
            self._stop.wait(min(MAX_SLEEP_S, max(wait, ahead, 0.01)))
        return False

    def step(self) -> datetime:
        """Apply the setpoints due at the next step, advance the physics one step and publish it."""
        if self.at_end:
            raise RuntimeError(f"the run is over at {rfc3339(self.sim.t)}; no further step")
        self._apply_setpoints(self.next_time)
        self._publish_state(self.sim.step())
        return self.sim.t

    def end(self) -> None:
        """Publish what the sensors still hold back (late messages, partial batches), write the ground truth
        out in full (readable before ``close``) and wait for every PUBACK."""
        msgs, rows = self.sensors.flush()
        self._send(msgs)
        self.truth.indoor(rows)
        self.truth.flush()
        if not self.drain(timeout=60):
            assert self._publisher is not None
            raise PublishError(f"{self._publisher.outstanding} simulator messages were not acknowledged by the broker "
                               "within 60 s (is it overloaded or gone?)")

    def close(self) -> None:
        self.truth.close()
        if self._publisher is not None:
            self._publisher.close()
        self._report_progress(final=True)

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until the broker has acknowledged everything published so far; False on timeout."""
        return self._publisher is None or self._publisher.drain(timeout=timeout)

    @property
    def acked(self) -> int:
        """Messages the broker acknowledged (all of them when publishing to a sink only)."""
        return self._publisher.acked if self._publisher is not None else self.published

    def poll_setpoints(self) -> int:
        """Take the setpoint messages received so far into the schedule; returns how many arrived in all."""
        self._poll_inbox()
        return self.setpoints_received

    def _publish_state(self, truth: StepTruth) -> None:
        sc = self.scenario
        if sc.forecast.enabled and truth.t >= self._next_fc:
            self._forecast(truth.t)
            self._next_fc = next_forecast(self.start_time, sc.forecast.every_h, truth.t)
        self._emit(truth)
        self._report_progress()

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
                self.setpoints_received += 1
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
            self.sim.set_setpoint(cmd.station_id, cmd.supply_c, cmd.curve_offset_c)
            self.setpoints_applied += 1
            log.info("setpoint %s: %s -> %.1f °C (%s)", cmd.proposal_id, cmd.station_id, cmd.supply_c, cmd.reason)
            self.truth.event(
                {"ts": rfc3339(now), "kind": "setpoint_applied", "station_id": cmd.station_id,
                 "supply_c": cmd.supply_c, "curve_offset_c": cmd.curve_offset_c, "proposal_id": cmd.proposal_id,
                 "effective_at": rfc3339(cmd.effective_at),
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
                self._publisher.send(m.topic, m.payload)
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
