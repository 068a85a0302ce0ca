"""The collector: MQTT messages → validated Points → store (or spool) → then, and only then, PUBACK.

Two stages: the worker thread batches and decodes; the writer thread owns storage, the spool and
acknowledgement, so the order is always store-durably-then-ack. While the writer waits for the
database, the worker decodes the next batch (the profile showed the single worker idle a third of
its time waiting for influxd's answer). Memory is bounded three ways: MQTT 5 Receive Maximum (the broker
never has more unacknowledged messages in flight to us), a bounded hand-over queue (the paho
thread blocks, TCP pushes back), and a bounded spool (when full, we stop acknowledging).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from collector.codec import Codec, Reject
from collector.deadletter import deadletter, deadletter_point
from collector.handover import Handover
from collector.session import SessionMarker
from collector.snapshot import CollectorSnapshot
from collector.spool import Spool
from collector.transport import Inbound, Subscriber
from heatwatch.core import schema
from heatwatch.core.config import Config
from heatwatch.core.model import Point
from heatwatch.core.registry import Registry
from heatwatch.core.timeutil import Backoff, Clock, to_ns, utc_now
from heatwatch.infra.mqtt.client import MQTT_ERR_SUCCESS
from heatwatch.infra.mqtt.topics import deadletter_topic, probe_topic, subscriptions
from heatwatch.infra.storage import Store, StoreError, StoreUnavailable

log = logging.getLogger("heatwatch.collector")

IDLE_FLUSH_S = 0.005  # a pause this long means the broker is waiting for our acks: flush now
FILL_POLL_S = 0.001  # while a batch fills, look this often (not per message: see collector/handover.py)
EAGER_FLUSH_S = 0.01  # the writer is idle: hand over a batch this old rather than let readings wait for more
DEADLETTER_EXPIRE_EVERY_S = 3600.0  # how often dead letters past collector.deadletter_retention_days are deleted


@dataclass
class Stats:
    received: int = 0  # MQTT messages
    readings: int = 0  # points decoded
    stored: int = 0  # points written to the store (incl. replayed)
    rejected: int = 0  # readings / payloads dead-lettered
    spooled: int = 0  # points written to the spool
    replayed: int = 0  # points moved from spool to store
    acked: int = 0
    ack_skipped: int = 0  # acks dropped because the connection changed (message will be redelivered)
    batches: int = 0
    last_batch_ms: float = 0.0
    writer_errors: int = 0  # unexpected exceptions in the writer (logged; the writer carries on)
    rejects_by_reason: Counter[str] = field(default_factory=Counter)
    store_alarms: Counter[str] = field(default_factory=Counter)  # store errors that are not bad data, by alarm code
    deadletters_unpublished: int = 0  # dead letters paho would not publish (they are in the store all the same)


@dataclass(slots=True)
class _Decoded:
    """A batch on its way from the worker to the writer."""

    batch: list[Inbound]
    points: list[Point]
    dead: list[tuple[str, bytes, Reject]]
    now_ns: int
    t0: float  # decoding began (perf_counter): batch latency = decode + wait + store + ack


class Collector:
    def __init__(self, cfg: Config, registry: Registry, store: Store, clock: Clock = utc_now) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.codec = Codec(cfg, registry)
        c = cfg.collector
        self.collector_id = c.collector_id or cfg.mqtt.client_id
        self.spool = Spool(cfg.spool_dir, int(c.spool_max_mb * 1024 * 1024))
        self.queue: Handover[Inbound] = Handover(c.queue_max)
        # flush before the broker's in-flight window (Receive Maximum) is exhausted
        self.max_batch_msgs = max(1, min(c.batch_size, cfg.mqtt.receive_maximum // 2 or 1))
        self.stats_lock = threading.Lock()
        self.stats = Stats()
        self.subscriber = Subscriber(
            cfg, subscriptions(cfg.mqtt.topic_prefix, cfg.mqtt.shared_group), self._enqueue, client_id=cfg.mqtt.client_id,
            probe=probe_topic(cfg.mqtt.topic_prefix, cfg.mqtt.client_id),
        )
        self.session = SessionMarker(cfg.general.data_dir / "mqtt-session.json", cfg)
        self.subscriber.had_session = self.session.expects_session()
        self.subscriber.on_session_lost = self._session_lost
        self._alarms: list[Point] = []  # alarm points waiting to be written with the next metrics
        self._stop = threading.Event()
        self._stopped = False
        self._worker = threading.Thread(target=self._run, name="collector-worker", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="collector-writer", daemon=True)
        self._watchdog = threading.Thread(target=self._watch, name="collector-watchdog", daemon=True)
        # decoded batches waiting for the writer: one, so at most two batches are unacknowledged at a time
        self._decoded: queue.Queue[_Decoded | None] = queue.Queue(maxsize=1)
        self._writing = False  # the writer is storing a batch: the worker may keep filling the next one
        self._store_down_until = 0.0  # monotonic time before which the store is not tried again
        # jittered: collectors of one group that lost the store together do not retry it together
        self._store_backoff = Backoff(c.store_retry_s, c.store_retry_max_s)
        self._last_metrics = time.monotonic()
        self._spool_warned_at = 0.0
        self._dl_topic = deadletter_topic(cfg.mqtt.topic_prefix)
        self._dl_last_ns = 0  # time of the last dead letter: each gets its own
        self._dl_expire_at = 0.0  # monotonic time of the next dead-letter retention pass

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> Collector:
        if len(self.spool):
            log.warning("spool holds %d batches (%d readings) from before; replaying when the store answers",
                        self.spool.batches, self.spool.points)
        self._writer.start()
        self._worker.start()
        self.subscriber.start()
        self._watchdog.start()
        return self

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Subscribed: the broker acknowledged every filter, so what is published from now on reaches us."""
        return self.subscriber.subscribed.wait(timeout)

    def stalled_s(self) -> float:
        """Seconds of unacknowledged work with no progress (0 when nothing waits or things move)."""
        sub = self.subscriber
        waiting = sub.unacked > 0 or self.queue.qsize() > 0 or self.spool.batches > 0
        return round(sub.idle_s(), 1) if waiting else 0.0

    def live(self) -> tuple[bool, str]:
        """Progress-based liveness: what a supervisor should restart on, whatever "connected" says."""
        if not self._writer.is_alive() and not self._stop.is_set():
            return False, "writer thread is not running"
        if not self._worker.is_alive() and not self._stop.is_set():
            return False, "worker thread is not running"
        stalled = self.stalled_s()
        if stalled > self.cfg.collector.stall_after_s:
            return False, f"unacknowledged readings with no progress for {stalled:.0f} s"
        return True, ""

    # --- watchdog thread -------------------------------------------------------------------------
    def _watch(self) -> None:
        """Once a second: detect a stalled MQTT session (collector.transport) and keep the session marker fresh."""
        while not self._stop.wait(1.0):
            try:
                idle = self.queue.qsize() == 0 and self._decoded.empty() and not self._writing
                self.subscriber.check(pipeline_idle=idle)
                if self.subscriber.subscribed.is_set():
                    self.session.seen()
            except Exception:
                log.exception("collector watchdog tick failed; it carries on")

    def _session_lost(self) -> None:
        """The broker forgot our session: an alarm for operators (status, /metrics, a work order via the store)."""
        ts = to_ns(self.clock())
        detail = (f"broker {self.cfg.mqtt.host}:{self.cfg.mqtt.port} had no session for {self.cfg.mqtt.client_id}; "
                  "readings published while the collector was away may be lost: check the broker's persistence")
        with self.stats_lock:
            self._alarms.append(Point(schema.COLLECTOR_ALARMS, {"collector_id": self.collector_id, "alarm": "session_lost"},
                                      {"count": self.subscriber.session_lost, "detail": detail}, ts))
        self._last_metrics = 0.0  # write it with the next metrics, soon

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful: stop consuming, store and ack what was received, then disconnect. A second call does nothing."""
        if self._stopped:
            return
        self._stopped = True
        self.subscriber.stop_consuming()
        self._stop.set()
        deadline = time.monotonic() + timeout
        self._worker.join(timeout)
        self._writer.join(max(0.1, deadline - time.monotonic()))
        try:
            self._write_metrics(force=True)
        except Exception:
            log.exception("final metrics write failed")
        time.sleep(0.05)  # let paho send the last PUBACKs before DISCONNECT
        self._watchdog.join(2.0)
        self.subscriber.disconnect()
        self.spool.close()
        log.info("collector stopped: %s", self.snapshot())

    def snapshot(self) -> CollectorSnapshot:
        sub = self.subscriber
        ok, why = self.live()
        with self.stats_lock:
            s = self.stats
            return CollectorSnapshot(
                received=s.received, readings=s.readings, stored=s.stored, rejected=s.rejected, spooled=s.spooled,
                replayed=s.replayed, acked=s.acked, ack_skipped=s.ack_skipped, batches=s.batches,
                last_batch_ms=round(s.last_batch_ms, 1), spool_batches=self.spool.batches, spool_points=self.spool.points,
                spool_bytes=self.spool.bytes, queue_depth=self.queue.qsize(), rejects_by_reason=dict(s.rejects_by_reason),
                connected=sub.connected.is_set(), subscribed=sub.subscribed.is_set(), unacked=sub.unacked,
                stalled_s=self.stalled_s(), live=ok, not_live_reason=why, session_lost=sub.session_lost,
                session_lost_at=sub.session_lost_at, stalls=sub.stalls, redeliveries=sub.redeliveries, probes=sub.probes_sent,
                probe_refused=sub.probe_refused, connects=sub.connects, writer_errors=s.writer_errors,
                store_alarms=dict(s.store_alarms), deadletters_unpublished=s.deadletters_unpublished,
                spool_set_aside=self.spool.quarantined,
            )

    # --- paho thread ---------------------------------------------------------------------------
    def _enqueue(self, msg: Inbound) -> None:
        self.queue.put(msg, self._stop)  # refused only on shutdown: the message stays unacked, redelivered

    # --- worker thread -------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                batch = self._collect_batch()
                if batch:
                    try:
                        self._decoded.put(self._decode(batch))
                    except Exception:  # the codec never raises on input; this is a bug: leave the batch unacked
                        log.exception("unexpected error decoding a batch of %d messages; they stay unacked", len(batch))
                if self._stop.is_set() and self.queue.empty():
                    if batch:
                        continue
                    break
        finally:
            self._decoded.put(None)  # the writer stores what is queued, then ends

    # --- writer thread -------------------------------------------------------------------------
    def _write_loop(self) -> None:
        """Never dies on an error: a writer that ended silently would leave every later reading unacknowledged."""
        while True:
            try:
                item = self._decoded.get(timeout=0.2)
            except queue.Empty:
                item = None
                try:
                    if self.spool.batches:
                        self._replay()
                except Exception:
                    self._writer_error("replaying the spool")
            else:
                if item is None:
                    return
                self._writing = True
                try:
                    self._process(item)
                except Exception:
                    self._writer_error(f"storing a batch of {len(item.batch)} messages (they stay unacknowledged and "
                                       "are redelivered after a reconnect)")
                    self.subscriber.settle(item.batch)
                    time.sleep(self.cfg.collector.store_retry_s)
                finally:
                    self._writing = False
            try:
                self._write_metrics()
            except Exception:
                self._writer_error("writing collector metrics")

    def _writer_error(self, doing: str) -> None:
        with self.stats_lock:
            self.stats.writer_errors += 1
            n = self.stats.writer_errors
        log.exception("unexpected error while %s (writer error #%d); the writer carries on", doing, n)

    def _collect_batch(self) -> list[Inbound]:
        c = self.cfg.collector
        if not self.queue.wait(0.2):
            return []
        batch = self.queue.take(self.max_batch_msgs)
        started = last_growth = time.monotonic()
        deadline = started + c.batch_interval_s
        # Adaptive: while the writer is busy, batches grow (throughput); when it is idle, a batch waits
        # at most EAGER_FLUSH_S (latency: a steady 5,000 readings/s no longer waits for a full batch).
        while len(batch) < self.max_batch_msgs:
            time.sleep(FILL_POLL_S)
            now = time.monotonic()
            more = self.queue.take(self.max_batch_msgs - len(batch))
            if more:
                batch += more
                last_growth = now
            elif now - last_growth >= IDLE_FLUSH_S:
                break
            if now >= deadline or (now - started >= EAGER_FLUSH_S and not self._writing and self._decoded.empty()):
                break
        return batch

    def _decode(self, batch: list[Inbound]) -> _Decoded:
        t0 = time.perf_counter()
        now_ns = to_ns(self.clock())
        points: list[Point] = []
        dead: list[tuple[str, bytes, Reject]] = []
        for msg in batch:
            try:
                res = self.codec.decode(msg.topic, msg.payload, now_ns)
            except Exception as exc:  # a codec bug must cost this message (dead-lettered), not stall the batch
                log.exception("codec failed on a message on %s; dead-lettering it as internal_error", msg.topic)
                dead.append((msg.topic, msg.payload, Reject("internal_error", f"{type(exc).__name__}: {exc}"[:300])))
                continue
            points += res.points
            for rej in res.rejects:
                dead.append((msg.topic, msg.payload, rej))
        return _Decoded(batch, points, dead, now_ns, t0)

    def _process(self, item: _Decoded) -> None:
        batch, points, dead, now_ns, t0 = item.batch, item.points, item.dead, item.now_ns, item.t0
        # dead letters are durable (store or spool) before the ack, like readings: one write for both
        found = len(dead)
        if not self._store([*points, *self._letters(dead, now_ns)], dead, now_ns) or (
            len(dead) > found and not self._store(self._letters(dead[found:], now_ns), dead, now_ns)  # refused by the store
        ):
            log.warning("shutting down with %d messages unstored; they stay unacknowledged for redelivery", len(batch))
            return
        self._publish_dead(dead, now_ns)
        acked, skipped = self.subscriber.ack_many(batch)
        with self.stats_lock:
            s = self.stats
            s.received += len(batch)
            s.readings += len(points)
            s.rejected += len(dead)
            s.rejects_by_reason.update(r.code for _, _, r in dead)
            s.acked += acked
            s.ack_skipped += skipped
            s.batches += 1
            s.last_batch_ms = (time.perf_counter() - t0) * 1000

    def _store(self, points: list[Point], dead: list[tuple[str, bytes, Reject]], now_ns: int) -> bool:
        """True once ``points`` are durable in the store or the spool (or dead-lettered); False on shutdown."""
        if not points:
            return True
        while True:
            if self.spool.batches:
                self._replay()
            if not self.spool.batches and time.monotonic() >= self._store_down_until:
                try:
                    self._write_isolating(points, dead)
                    self._store_backoff.reset()
                    return True
                except StoreUnavailable as exc:
                    wait = self._store_down()
                    log.error("store unavailable (%s); spooling to %s, retrying in %.1f s", exc, self.spool.path, wait)
                    self._store_alarm(exc)
            if self.spool.has_room():
                with self.stats_lock:  # spool and counter move together: a snapshot never sees one without the other
                    self.spool.append(points)
                    self.stats.spooled += len(points)
                self._warn_spool()
                return True
            if self._stop.is_set():
                return False
            # spool full: keep the messages unacknowledged (the broker holds the backlog) and wait
            log.critical(
                "SPOOL FULL (%d bytes, limit %d) and store unavailable: not acknowledging; backlog stays at the broker",
                self.spool.bytes, self.spool.max_bytes,
            )
            self._stop.wait(max(0.1, self._store_down_until - time.monotonic()))
            self._store_down_until = 0.0

    def _store_down(self) -> float:
        """The store did not answer: wait the next (jittered, growing) backoff before trying it again."""
        wait = self._store_backoff.next()
        self._store_down_until = time.monotonic() + wait
        return wait

    def _write_isolating(self, points: Sequence[Point], dead: list[tuple[str, bytes, Reject]]) -> None:
        """Write; when the store refuses the batch, bisect to dead-letter only the points it refuses."""
        try:
            self.store.write(points)
            with self.stats_lock:
                self.stats.stored += len(points)
        except StoreError as exc:
            if len(points) == 1:
                p = points[0]
                topic = f"{self.cfg.mqtt.topic_prefix}/{p.measurement}/{next(iter(p.tags.values()), '')}"
                element = {"measurement": p.measurement, "tags": dict(p.tags), "fields": dict(p.fields), "ts_ns": p.ts_ns}
                dead.append((topic, b"", Reject("store_rejected", str(exc)[:300], 0, element)))
                return
            mid = len(points) // 2
            self._write_isolating(points[:mid], dead)
            self._write_isolating(points[mid:], dead)

    def _replay(self) -> None:
        if time.monotonic() < self._store_down_until:
            return
        while True:
            head = self.spool.oldest()
            if head is None:
                log.info("spool drained")
                return
            seq, pts = head
            try:
                dead: list[tuple[str, bytes, Reject]] = []
                self._write_isolating(pts, dead)
                if dead:  # points the store refused: their dead letters are stored before the entry leaves the spool
                    self._write_isolating(self._letters(dead, to_ns(self.clock())), [])
            except StoreUnavailable as exc:
                wait = self._store_down()
                log.warning("store still unavailable (%s); %d batches wait in the spool, retrying in %.1f s",
                            exc, self.spool.batches, wait)
                self._store_alarm(exc)
                return
            self._store_backoff.reset()
            self._publish_dead(dead, to_ns(self.clock()))
            with self.stats_lock:  # as in _spool: spool_points and replayed change in one step
                self.spool.remove(seq)
                self.stats.replayed += len(pts)
            if self._stop.is_set() and not self._decoded.empty():
                return

    def _letters(self, dead: Sequence[tuple[str, bytes, Reject]], now_ns: int) -> list[Point]:
        """Dead letters as points, each at its own time (the key of a point is series + time)."""
        out = []
        for topic, payload, rej in dead:
            self._dl_last_ns = max(now_ns, self._dl_last_ns + 1)
            out.append(deadletter_point(topic, payload, rej, now_ns, self._dl_last_ns, self.collector_id,
                                        self.cfg.collector.max_payload_bytes))
        return out

    def _publish_dead(self, dead: Sequence[tuple[str, bytes, Reject]], now_ns: int) -> None:
        """Publish each dead letter (QoS 1) for live listeners; the store has them already. Count what paho refuses."""
        failed = 0
        for topic, payload, rej in dead:
            log.info("rejected %s on %s: %s", rej.code, topic, rej.reason)
            if self.subscriber.client.publish(self._dl_topic, deadletter(topic, payload, rej, now_ns), qos=1).rc != MQTT_ERR_SUCCESS:
                failed += 1
        if failed:
            with self.stats_lock:
                self.stats.deadletters_unpublished += failed
            log.warning("%d dead letters not published on %s (they are in the store)", failed, self._dl_topic)

    def _expire_deadletters(self) -> None:
        """Hourly: delete dead letters older than collector.deadletter_retention_days from the store."""
        days = self.cfg.collector.deadletter_retention_days
        now = time.monotonic()
        if not days or now < self._dl_expire_at:
            return
        try:
            self.store.delete_before(schema.DEADLETTER, self.clock() - timedelta(days=days))
            self._dl_expire_at = now + DEADLETTER_EXPIRE_EVERY_S
        except (StoreUnavailable, StoreError) as exc:
            self._dl_expire_at = now + 60
            log.warning("could not delete dead letters older than %d days: %s", days, exc)

    def _store_alarm(self, exc: StoreUnavailable) -> None:
        """Count a store trouble only an operator can end (full, at a limit, damaged, access denied) by its code."""
        alarm = getattr(exc, "alarm", None)
        if alarm:
            with self.stats_lock:
                self.stats.store_alarms[alarm] += 1
            log.critical("STORE ALARM %s: %s", alarm, exc)

    def _warn_spool(self) -> None:
        fill = self.spool.bytes / self.spool.max_bytes
        now = time.monotonic()
        if now - self._spool_warned_at > 10:
            self._spool_warned_at = now
            log.error("spool %.0f%% full: %d batches, %d readings waiting for the store", fill * 100, self.spool.batches,
                      self.spool.points)

    def _write_metrics(self, force: bool = False) -> None:
        self._expire_deadletters()
        now = time.monotonic()
        if not force and now - self._last_metrics < self.cfg.collector.metrics_interval_s:
            return
        self._last_metrics = now
        snap = self.snapshot()
        ts = to_ns(self.clock())
        tags = {"collector_id": self.collector_id}
        fields: dict[str, float | int | str | bool] = {
            "received": snap.received, "readings": snap.readings, "stored": snap.stored, "rejected": snap.rejected,
            "spooled": snap.spooled, "replayed": snap.replayed, "queue_depth": snap.queue_depth,
            "spool_bytes": snap.spool_bytes, "batch_latency_ms": snap.last_batch_ms, "unacked": snap.unacked,
            "stalls": snap.stalls, "session_lost": snap.session_lost, "writer_errors": snap.writer_errors,
        }
        pts = [Point(schema.COLLECTOR, tags, fields, ts)]
        pts += [Point(schema.COLLECTOR_REJECTS, {**tags, "reason": r}, {"count": n}, ts) for r, n in snap.rejects_by_reason.items()]
        with self.stats_lock:
            alarms, self._alarms = self._alarms, []
        log.info("collector %s", snap.log_line())
        try:
            self.store.write(pts + alarms)
        except (StoreUnavailable, StoreError) as exc:
            log.warning("could not write collector metrics: %s", exc)
            if alarms:
                with self.stats_lock:
                    self._alarms[:0] = alarms  # an alarm is not dropped: it goes with the next write
