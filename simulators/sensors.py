"""Room sensors: turn true temperatures into MQTT messages, injecting the scenario's faults.

Random draws are whole vectors per step (never inside a branch), so the output depends only
on the seed and the step number. Every reading also yields a ground-truth row that says what
was true, what was sent, and which faults touched it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson

from heatwatch.infra.mqtt.topics import forecast_topic, indoor_topic, station_topic, weather_topic
from simulators.generator import Network
from simulators.scenario import Scenario

MALFORMED_KINDS = ("truncated", "string_temp", "nan", "missing_temp", "binary", "bad_ts")
TRUTH_COLUMNS = ("ts", "home_id", "community", "building", "true_c", "reported_c", "sent_ts", "faults")
NEVER = np.iinfo(np.int64).max


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes


def rfc3339_z(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SensorBank:
    """All sensors of a network (the registry's homes), with their fixed quirks and live faults."""

    def __init__(self, scenario: Scenario, net: Network, prefix: str = "heat") -> None:
        self.sc = scenario
        self.f = scenario.faults
        self.prefix = prefix
        self.idx = net.sensor_idx
        self.ids = [net.homes[i].home_id for i in self.idx]
        self.community = [net.homes[i].community for i in self.idx]
        self.building = [net.homes[i].building for i in self.idx]
        self.topics = [indoor_topic(prefix, h) for h in self.ids]
        n = len(self.idx)
        self.n = n
        rng = np.random.default_rng(np.random.SeedSequence([scenario.seed, 4]))
        self._rng = np.random.default_rng(np.random.SeedSequence([scenario.seed, 5]))
        steps = max(1, int(scenario.duration_h * 3600 / scenario.step_s))
        self.window = rng.random(n) < self.f.window_share
        self.heat = (rng.random(n) < self.f.heat_source_share) & ~self.window
        self.stuck_at = np.where(rng.random(n) < self.f.stuck_share, rng.integers(1, steps + 1, n), NEVER)
        self.stuck_val = np.full(n, np.nan)
        self.dropout_prone = rng.random(n) < self.f.dropout_share
        self.offline_until = np.zeros(n, dtype=np.int64)
        skewed = rng.random(n) < self.f.skew_share
        self.skew_s = np.where(skewed, rng.uniform(-1, 1, n) * self.f.skew_max_s, 0.0).astype(np.int64)
        self.skew_s[skewed & (self.skew_s == 0)] = 1
        self.epoch = rng.random(n) < scenario.sensors.epoch_share
        self.phase_s = rng.integers(0, int(min(scenario.step_s, 300)), n) if n else np.zeros(0, np.int64)
        self.rh_base = rng.uniform(28, 45, n)
        self.battery = rng.uniform(2.9, 3.2, n)
        self._buffer: list[list[tuple[dict[str, Any], list[Any]]]] = [[] for _ in range(n)]
        self._late: list[tuple[int, int, Message, list[list[Any]]]] = []  # (release step, seq, msg, rows)
        self._seq = 0

    # --- one step --------------------------------------------------------------
    def emit(
        self, step: int, t: datetime, true_c: np.ndarray, outdoor_c: np.ndarray
    ) -> tuple[list[Message], list[list[Any]]]:
        """Messages to publish now and ground-truth rows; ``true_c``/``outdoor_c`` are per sensor."""
        f, n, r = self.f, self.n, self._rng
        sd = self.sc.sensors.noise_sd_c
        noise = np.clip(r.normal(0.0, 1.0, n), -3, 3) * sd
        spike = r.random(n) < f.spike_prob
        spike_c = r.uniform(f.spike_min_c, f.spike_max_c, n) * np.where(r.random(n) < 0.5, -1, 1)
        start_drop = r.random(n) < f.dropout_per_day * self.sc.step_s / 86_400
        drop_len = np.ceil(r.exponential(f.dropout_mean_h * 3600 / self.sc.step_s, n)).astype(np.int64)
        malformed = r.random(n) < f.malformed_prob
        malformed_kind = r.integers(0, len(MALFORMED_KINDS), n)
        dup = r.random(n) < f.duplicate_prob
        late = r.random(n) < f.late_prob
        late_by = r.integers(1, f.late_max_steps + 1, n)
        rh_noise = r.normal(0, 1.5, n)

        new_drop = self.dropout_prone & start_drop & (self.offline_until <= step)
        self.offline_until = np.where(new_drop, step + drop_len, self.offline_until)
        offline = self.offline_until > step
        measured = true_c + noise
        measured = np.where(self.window, measured + f.window_coupling * (outdoor_c - true_c), measured)
        measured = np.where(self.heat, measured + f.heat_source_c, measured)
        stuck = step >= self.stuck_at
        first_stuck = stuck & np.isnan(self.stuck_val)
        self.stuck_val = np.where(first_stuck, np.round(measured, 1), self.stuck_val)
        measured = np.where(stuck, self.stuck_val, measured)
        measured = np.where(spike, measured + spike_c, measured)
        reported = np.clip(np.round(measured, 1), -29.9, 59.9)
        t_s = int(t.timestamp())
        sent = t_s - self.phase_s + self.skew_s

        out: list[Message] = []
        rows: list[list[Any]] = []
        ts_txt = rfc3339_z(t_s)
        batch = self.sc.sensors.batch
        for i in range(n):
            labels = []
            if self.window[i]:
                labels.append("window")
            if self.heat[i]:
                labels.append("heat_source")
            if self.skew_s[i]:
                labels.append("skew")
            row = [ts_txt, self.ids[i], self.community[i], self.building[i], round(float(true_c[i]), 3), "", "", ""]
            if offline[i]:
                row[7] = "+".join([*labels, "dropout"])
                rows.append(row)
                continue
            if stuck[i]:
                labels.append("stuck")
            if spike[i]:
                labels.append("spike")
            val = float(reported[i])
            reading: dict[str, Any] = {"ts": int(sent[i]) if self.epoch[i] else rfc3339_z(int(sent[i])), "temp_c": val}
            if self.sc.sensors.with_rh:
                reading["rh"] = round(float(np.clip(self.rh_base[i] + rh_noise[i], 5, 95)), 1)
                reading["battery_v"] = round(float(self.battery[i] - 1e-5 * step), 3)
            row[5], row[6], row[7] = val, rfc3339_z(int(sent[i])), "+".join(labels)
            buf = self._buffer[i]
            buf.append((reading, row))
            if len(buf) < batch:
                continue
            self._buffer[i] = []
            body: Any = buf[0][0] if batch == 1 else [rd for rd, _ in buf]
            msg_rows = [rw for _, rw in buf]
            payload = orjson.dumps(body)
            extra = []
            if malformed[i]:
                kind = MALFORMED_KINDS[int(malformed_kind[i])]
                payload = self._malform(kind, body, payload, step, i)
                extra.append(f"malformed:{kind}")
                for rw in msg_rows:
                    rw[5] = rw[6] = ""
            if dup[i]:
                extra.append("duplicate")
            if late[i]:
                extra.append("late")
            for rw in msg_rows:
                rw[7] = "+".join([x for x in [rw[7], *extra] if x])
            msg = Message(self.topics[i], payload)
            copies = [msg, msg] if dup[i] else [msg]
            if late[i]:
                for m in copies:
                    self._seq += 1
                    self._late.append((step + int(late_by[i]), self._seq, m, msg_rows))
                    msg_rows = []
            else:
                out.extend(copies)
                rows.extend(msg_rows)
        # late messages whose time has come, oldest first (so they arrive after newer ones: out of order)
        due = sorted((x for x in self._late if x[0] <= step), key=lambda x: (x[0], x[1]))
        if due:
            self._late = [x for x in self._late if x[0] > step]
            for _, _, m, rws in due:
                out.append(m)
                rows.extend(rws)
        return out, rows

    def flush(self) -> tuple[list[Message], list[list[Any]]]:
        """Everything still held back (late messages, partial batches), for a clean end."""
        out: list[Message] = []
        rows: list[list[Any]] = []
        for _, _, m, rws in sorted(self._late, key=lambda x: (x[0], x[1])):
            out.append(m)
            rows.extend(rws)
        self._late = []
        for i, buf in enumerate(self._buffer):
            if buf:
                body = [rd for rd, _ in buf]
                out.append(Message(self.topics[i], orjson.dumps(body)))
                rows.extend(rw for _, rw in buf)
                self._buffer[i] = []
        return out, rows

    @staticmethod
    def _malform(kind: str, body: Any, payload: bytes, step: int, i: int) -> bytes:
        first = body[0] if isinstance(body, list) else body
        ts = orjson.dumps(first["ts"]).decode()
        if kind == "truncated":
            return payload[: max(1, len(payload) // 2)]
        if kind == "string_temp":
            return f'{{"ts": {ts}, "temp_c": "warm"}}'.encode()
        if kind == "nan":
            return f'{{"ts": {ts}, "temp_c": NaN}}'.encode()
        if kind == "missing_temp":
            return f'{{"ts": {ts}, "rh": 40.0}}'.encode()
        if kind == "binary":
            return bytes((step * 31 + i * 17 + k * 101) % 256 for k in range(16)) + b"\xff\xfe"
        return f'{{"ts": "yesterday", "temp_c": {first["temp_c"]}}}'.encode()


def station_messages(
    prefix: str, station_ids: list[str], t: datetime, st: Any, outage: np.ndarray
) -> list[Message]:
    """One telemetry message per station that is up (an outage sends nothing)."""
    ts = rfc3339_z(int(t.timestamp()))
    out = []
    for j, sid in enumerate(station_ids):
        if outage[j]:
            continue
        body = {
            "ts": ts,
            "supply_c": round(float(st.supply_c[j]), 2),
            "return_c": round(float(st.return_c[j]), 2),
            "supply_kpa": round(float(st.supply_kpa[j]), 1),
            "return_kpa": round(float(st.static_kpa[j]), 1),
            "flow_m3h": round(float(st.flow_m3h[j]), 3),
            "primary_supply_c": round(float(st.primary_supply_c[j]), 2),
            "primary_return_c": round(float(st.primary_return_c[j]), 2),
        }
        out.append(Message(station_topic(prefix, sid), orjson.dumps(body)))
    return out


def weather_messages(prefix: str, sites: tuple[str, ...], t: datetime, temps: np.ndarray) -> list[Message]:
    ts = rfc3339_z(int(t.timestamp()))
    return [
        Message(weather_topic(prefix, s), orjson.dumps({"ts": ts, "temp_c": round(float(v), 2)}))
        for s, v in zip(sites, temps, strict=True)
        if math.isfinite(float(v))
    ]


def forecast_messages(
    prefix: str, issued: datetime, forecast: dict[str, list[tuple[datetime, float]]]
) -> list[Message]:
    its = rfc3339_z(int(issued.timestamp()))
    return [
        Message(
            forecast_topic(prefix, site),
            orjson.dumps({"issued": its, "points": [{"ts": rfc3339_z(int(t.timestamp())), "temp_c": v} for t, v in pts]}),
        )
        for site, pts in forecast.items()
    ]


def next_forecast(start: datetime, every_h: float, after: datetime) -> datetime:
    """The first forecast issue time strictly after ``after`` on the start-aligned grid."""
    k = math.floor((after - start).total_seconds() / (every_h * 3600)) + 1
    return start + timedelta(hours=every_h * k)
