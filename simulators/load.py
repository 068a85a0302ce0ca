"""Load generator: registry-consistent indoor readings at a target rate, QoS 1, paced.

Every reading is unique (home, timestamp) and its value is a pure function of (home index,
reading number, seed), so a test can recompute exactly what must have been stored.
Timestamps lie in the past (t0 = now - what is needed), never in the collector's future.
"""

from __future__ import annotations

import calendar
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import orjson

from heatwatch.core.registry import Home
from heatwatch.infra.mqtt.topics import indoor_topic
from simulators.mqttio import MqttTarget, Publisher
from simulators.sensors import rfc3339_z
from simulators.spec import CommunitySpec, NetworkSpec, StationSpec

HOMES_PER_BUILDING = 24  # 6 floors x 2 entrances x 2 homes
BUILDINGS_PER_COMMUNITY = 40


@dataclass(frozen=True)
class LoadPlan:
    home_ids: tuple[str, ...]
    total: int  # readings
    batch: int = 1  # readings per message
    t0_s: int = 0  # epoch seconds of each home's first reading
    interval_s: int = 60
    seed: int = 0

    @property
    def messages(self) -> int:
        return math.ceil(self.total / self.batch)

    @property
    def span_s(self) -> int:
        """Time covered by the readings of the busiest home."""
        per_home = math.ceil(self.total / max(1, len(self.home_ids)))
        return per_home * self.interval_s


def reading_value(home_index: int, k: int, seed: int = 0) -> float:
    """15.00 .. 24.99 °C, deterministic, different for neighbouring homes and readings."""
    return 15.0 + ((home_index * 7919 + k * 104_729 + seed * 31) % 1000) / 100.0


def plan_messages(plan: LoadPlan) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(home_id, readings) per message: homes in turn, each message K consecutive readings of one home."""
    n = len(plan.home_ids)
    if n == 0:
        raise ValueError("the load plan has no homes")
    counters = [0] * n
    left = plan.total
    j = 0
    while left > 0:
        h = j % n
        k0 = counters[h]
        size = min(plan.batch, left)
        readings = [
            {"ts": rfc3339_z(plan.t0_s + (k0 + q) * plan.interval_s), "temp_c": reading_value(h, k0 + q, plan.seed)}
            for q in range(size)
        ]
        counters[h] += size
        left -= size
        j += 1
        yield plan.home_ids[h], readings


def expected_readings(plan: LoadPlan) -> dict[tuple[str, int], float]:
    """(home_id, epoch seconds) -> temp_c for every reading the plan publishes."""
    out: dict[tuple[str, int], float] = {}
    for hid, readings in plan_messages(plan):
        for rd in readings:
            ts = rd["ts"]
            epoch = calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ"))
            out[(hid, epoch)] = rd["temp_c"]
    return out


def synthetic_spec(n_homes: int, seed: int = 0) -> NetworkSpec:
    """A network of at least ``n_homes`` homes, all with sensors, for when no registry is configured."""
    buildings = max(1, math.ceil(n_homes / HOMES_PER_BUILDING))
    n_comm = math.ceil(buildings / BUILDINGS_PER_COMMUNITY)
    comms = []
    for c in range(n_comm):
        nb = min(BUILDINGS_PER_COMMUNITY, buildings - c * BUILDINGS_PER_COMMUNITY)
        comms.append(
            CommunitySpec(name=f"负载测试小区{c + 1}", code=f"L{c + 1:03d}", station=f"LS{c // 10 + 1:02d}",
                          buildings=nb, floors=6, entrances=2, homes_per_floor=2, coverage=1.0)
        )
    stations = [StationSpec(id=f"LS{k + 1:02d}", name=f"负载测试换热站{k + 1}") for k in range(math.ceil(n_comm / 10))]
    return NetworkSpec(seed=seed, stations=stations, communities=comms)


class LoadGenerator:
    """Publishes a plan at ``rate`` readings per second (0 = as fast as the broker acknowledges)."""

    def __init__(
        self, target: MqttTarget, plan: LoadPlan, rate: float, client_id: str = "heatwatch-load",
        progress: TextIO | None = None, max_inflight: int = 1000,
    ) -> None:
        self.target = target
        self.plan = plan
        self.rate = rate
        self.client_id = client_id
        self.progress = progress
        self.max_inflight = max_inflight
        self.readings_sent = 0
        self.messages_sent = 0

    def run(self) -> dict[str, Any]:
        pub = Publisher(self.target, self.client_id, max_inflight=self.max_inflight).connect()
        t_start = time.monotonic()
        last_report = t_start
        prefix = self.target.topic_prefix
        try:
            for hid, readings in plan_messages(self.plan):
                if self.rate > 0:
                    due = t_start + self.readings_sent / self.rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                body = readings[0] if self.plan.batch == 1 else readings
                pub.send(indoor_topic(prefix, hid), orjson.dumps(body))
                self.readings_sent += len(readings)
                self.messages_sent += 1
                now = time.monotonic()
                if self.progress is not None and now - last_report >= 1.0:
                    last_report = now
                    self._report(pub, now - t_start)
            ok = pub.drain(timeout=120)
        finally:
            pub.close()
        elapsed = time.monotonic() - t_start
        if self.progress is not None:
            self._report(pub, elapsed, final=True)
        return {
            "readings": self.readings_sent,
            "messages": self.messages_sent,
            "acked": pub.acked,
            "all_acked": ok,
            "seconds": round(elapsed, 3),
            "readings_per_s": round(self.readings_sent / elapsed, 1) if elapsed > 0 else None,
        }

    def _report(self, pub: Publisher, elapsed: float, final: bool = False) -> None:
        assert self.progress is not None
        rate = self.readings_sent / elapsed if elapsed > 0 else 0.0
        self.progress.write(
            f"\rload: {self.readings_sent}/{self.plan.total} readings, {self.messages_sent} messages, "
            f"{pub.acked} acked, {rate:,.0f} readings/s" + ("\n" if final else "")
        )
        self.progress.flush()


def choose_homes(registry_homes: Sequence[Home], n: int) -> tuple[str, ...]:
    if len(registry_homes) < n:
        raise ValueError(f"--homes {n}: the registry has only {len(registry_homes)} homes")
    return tuple(h.home_id for h in registry_homes[:n])


def default_plan(home_ids: Sequence[str], total: int, batch: int, now_s: float, interval_s: int = 60,
                 seed: int = 0) -> LoadPlan:
    """A plan whose last reading lies a minute before ``now_s``."""
    probe = LoadPlan(tuple(home_ids), total, batch, 0, interval_s, seed)
    t0 = int(now_s) - probe.span_s - 60
    return LoadPlan(tuple(home_ids), total, batch, t0, interval_s, seed)

