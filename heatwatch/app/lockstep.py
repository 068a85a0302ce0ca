"""Lockstep: the simulator, the collector and control advanced together in simulated time.

Why: a run that lets the simulator follow the wall clock next to the collector and control measures
the machine as much as the product — a slow machine saw 4 analysis cycles where a fast one saw 24.
Here simulated time moves only when the product says so:

1. ``advance(k)`` publishes the next ``k`` simulator steps;
2. ``sync()`` waits until the broker acknowledged every one of them (the simulator's PUBACK count)
   and the collector has taken them all (its ``received`` count: stored or dead-lettered, then
   acknowledged; spool empty);
3. the caller runs its analytics + control cycle (``heatwatch.app.cycle``) at that simulated time
   (``cycles()`` sets the shared ``SettableClock``; ``run_cycles()`` runs the cycle too);
4. ``deliver_setpoints()`` waits until every setpoint control published has reached the simulator,
   so it takes effect at the same simulated step on every machine.

The wall clock only bounds each wait (``timeout_s``: a timeout is a failure that names the counts,
never a shortcut) and, when the runner has a ``speed``, slows the steps down for a human watching.
simulators/ must not import the collector or control, so the driver lives in the application layer.
Used by ``heatwatch demo`` and the closed-loop and end-to-end tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from heatwatch.core.timeutil import SettableClock

if TYPE_CHECKING:
    from heatwatch.app.cycle import Cycle, CycleSummary
    from heatwatch.infra.mqtt.client import Publisher
    from simulators.runner import ScenarioRunner

POLL_S = 0.002  # how often a wait looks at the counters (a wait ends on the counters, never on time)


class LockstepTimeout(RuntimeError):
    """A wait did not end within ``timeout_s``: the broker, the collector or control is stuck."""


class Collecting(Protocol):
    """What lockstep needs from a collector (``collector.service.Collector``)."""

    def wait_ready(self, timeout: float = 10.0) -> bool: ...

    def snapshot(self) -> Any: ...  # collector.snapshot.CollectorSnapshot: ``snap["received"]`` etc.


class CountingPublisher:
    """Control's publisher, counting the setpoints it got acknowledged, so lockstep knows what the
    simulator must receive before its next step."""

    def __init__(self, inner: Publisher, topic_prefix: str) -> None:
        self.inner = inner
        self.head = f"{topic_prefix}/control/setpoint/"
        self.setpoints = 0

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, timeout: float = 10.0) -> None:
        self.inner.publish(topic, payload, qos=qos, retain=retain, timeout=timeout)
        if topic.startswith(self.head):
            self.setpoints += 1


class Lockstep:
    """Drives a ``ScenarioRunner`` one step at a time next to in-process collectors.

    ``collectors`` share the simulator's stream (one, or several in a shared subscription group);
    ``setpoints`` is control's publisher when control runs in the loop.
    """

    def __init__(
        self,
        runner: ScenarioRunner,
        collectors: Sequence[Collecting] = (),
        *,
        clock: SettableClock | None = None,
        setpoints: CountingPublisher | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.runner = runner
        self.collectors = tuple(collectors)
        self.clock = clock or SettableClock(runner.start_time)  # control's clock: the current cycle's simulated time
        self.setpoints = setpoints
        self.timeout_s = timeout_s
        self.syncs = 0

    @property
    def t(self) -> datetime:
        """The simulated time of the last published step."""
        return self.runner.sim_time

    @property
    def at_end(self) -> bool:
        return self.runner.at_end

    # --- steps ----------------------------------------------------------------------------------
    def begin(self) -> datetime:
        """Wait until every collector is subscribed, then publish the start state and sync."""
        for c in self.collectors:
            if not c.wait_ready(timeout=self.timeout_s):
                raise LockstepTimeout(f"a collector did not subscribe within {self.timeout_s:g} s")
        self.runner.begin()
        self.sync()
        return self.t

    def advance(self, steps: int = 1) -> datetime:
        """Publish up to ``steps`` further steps (fewer at the end of the run), then sync."""
        for _ in range(steps):
            if self.runner.at_end or not self.runner.pace():
                break
            self.runner.step()
        self.sync()
        return self.t

    def advance_to(self, t: datetime) -> datetime:
        """Publish every step up to the first at or after ``t`` (or the end of the run), then sync."""
        step = timedelta(seconds=self.runner.scenario.step_s)
        n = max(0, -(-(t - self.t) // step))  # ceil: the first step at or after t
        return self.advance(n) if n else self.t

    def finish(self) -> None:
        """Publish what the simulated sensors still hold back (late messages, partial batches) and sync."""
        self.runner.end()
        self.sync()

    def close(self) -> None:
        self.runner.close()

    # --- waits on the product's own counters -----------------------------------------------------
    def sync(self) -> None:
        """Return once the broker acknowledged everything published and the collectors have taken it."""
        if not self.runner.drain(timeout=self.timeout_s):
            raise LockstepTimeout(f"the broker acknowledged {self.runner.acked} of {self.runner.published} simulator "
                                  f"messages within {self.timeout_s:g} s")
        want = self.runner.published
        if self.collectors:
            self._wait(lambda: self._taken() >= want,
                       lambda: f"the collectors took {self._taken()} of {want} published messages "
                               f"(received, then stored or dead-lettered, spool empty)")
        self.syncs += 1

    def _taken(self) -> int:
        """Messages the collectors received and finished with: counted only with the store's data durable."""
        snaps = [c.snapshot() for c in self.collectors]
        if any(int(s["spool_points"]) for s in snaps):
            return -1  # spooled is durable, but not yet in the store that analytics reads
        return sum(int(s["received"]) for s in snaps)

    def deliver_setpoints(self, expected: int | None = None) -> None:
        """Wait until the simulator has received ``expected`` setpoint messages in all (default: every
        setpoint control has published), so each takes effect at the same simulated step on every machine."""
        want = expected if expected is not None else (self.setpoints.setpoints if self.setpoints else 0)
        self._wait(lambda: self.runner.poll_setpoints() >= want,
                   lambda: f"the simulator received {self.runner.setpoints_received} of {want} setpoints")

    def _wait(self, done: Callable[[], bool], what: Callable[[], str]) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not done():
            if time.monotonic() > deadline:
                raise LockstepTimeout(f"after {self.timeout_s:g} s: {what()}")
            time.sleep(POLL_S)

    # --- whole runs -------------------------------------------------------------------------------
    def cycles(self, every: timedelta, first: timedelta | None = None) -> Iterator[datetime]:
        """Yield the simulated time of each control cycle, with everything up to it published and collected.

        The first cycle is ``first`` (default ``every``) after the start, each next one ``every`` after the
        last, and one at the end of the run if the last fell before it: ``ceil(duration / every)`` cycles
        when ``every`` is a whole number of steps. Before the next step, the setpoints the cycle published
        are delivered. The clock reads the cycle's time while the caller runs it.
        """
        if every <= timedelta(0):
            raise ValueError(f"cycle interval {every} is not positive")
        self.begin()
        target = self.runner.start_time + (every if first is None else first)
        last: datetime | None = None
        until = self.runner.until
        while True:
            t = self.advance_to(target)
            at = min(t, until) if until is not None else t
            if last is None or at > last:
                self.clock.set(at)
                yield at
                self.deliver_setpoints()
                last = at
            if self.runner.at_end:
                break
            target = at + every
        self.finish()

    def run_cycles(self, cycle: Cycle, every: timedelta, first: timedelta | None = None) -> Iterator[CycleSummary]:
        """``cycles()``, running ``cycle`` (analytics + control, on ``self.clock``) at each cycle time."""
        for t in self.cycles(every, first):
            yield cycle.run(t)

    def run(self, sync_every: int = 16) -> dict[str, Any]:
        """The whole run without control, synced every ``sync_every`` steps; the runner's stats."""
        self.begin()
        while not self.runner.at_end:
            self.advance(sync_every)
        self.finish()
        return self.runner.stats()
