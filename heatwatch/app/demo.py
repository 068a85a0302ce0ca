"""``heatwatch demo``: the whole loop on a laptop, no setup (the command behind ``make run``).

In-process amqtt broker (MQTT 3.1.1) + SQLite + a simulated network running a scenario in accelerated
time (default ``cold_snap``: five days, a 10 °C cold snap from day 3). The real collector stores what
the simulator publishes; every few simulated hours the real analytics and control loop run at the
simulated time, auto-apply their proposals (setpoints go back to the simulator over MQTT) and recheck
them 48 simulated hours later. It ends with the HTML report. Nothing here re-implements analytics or
control: it only drives them with a simulated clock.

Simulated time moves in lockstep (``heatwatch.app.lockstep``): a cycle runs once everything simulated before
it is stored, and the next step waits for the setpoints the cycle sent. So the story — every cycle, every
proposal — is the same on any machine; ``--speed`` only holds the steps back for a human to watch
(``--speed max`` does not).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO
from zoneinfo import ZoneInfo

from heatwatch.core.errors import UsageError

if TYPE_CHECKING:
    from analytics.results import AnalysisResult
    from collector.snapshot import CollectorSnapshot
    from control.alerts.model import WorkOrder
    from control.proposal import Proposal
    from heatwatch.core.config import Config
    from simulators.scenario import Scenario

MARKER = ".heatwatch-demo"  # only a directory carrying this marker is ever wiped
ANALYSIS_WINDOW_H = 12.0
SAFETY = timedelta(minutes=10)  # keep the last simulated reading this far in the past


@dataclass
class Tally:
    """What the run did, for the closing summary."""

    alerts: Counter[str] = field(default_factory=Counter)
    resolved: int = 0
    proposals: list[Proposal] = field(default_factory=list)
    rechecked: list[Proposal] = field(default_factory=list)
    cold_homes: set[str] = field(default_factory=set)


def prepare_dir(path: Path, what: str) -> Path:
    """Create ``path`` fresh; refuse to wipe a non-empty directory the demo did not create."""
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"{what} {path}: exists and is not a directory")
        if any(path.iterdir()) and not (path / MARKER).exists():
            raise UsageError(f"{what} {path}: not empty and not made by `heatwatch demo`; choose another directory")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / MARKER).write_text("made by `heatwatch demo`; wiped by the next demo run\n", encoding="utf-8")
    return path


def demo_config(data: Path, out: Path, port: int) -> Config:
    from heatwatch.core.config import load_config

    # environ={} on purpose: a production HEATWATCH_* variable must not point the demo at a real broker or store
    return load_config(environ={}, overrides={
        "general": {"data_dir": str(data), "log_level": "WARNING"},
        "mqtt": {"host": "127.0.0.1", "port": port, "protocol": "3.1.1", "client_id": "heatwatch-demo-collector"},
        "storage": {"backend": "sqlite"},
        "collector": {"batch_interval_s": 0.1, "metrics_interval_s": 5.0},
        "control": {"auto_apply": True},
        "alerts": {"mqtt": True, "jsonl_path": str(out / "alerts.jsonl")},
    })


def demo_start(now: datetime, duration: timedelta, tz: ZoneInfo) -> datetime:
    """Local midnight, as late as lets the whole simulated period end in the past.

    Readings must not lie in the future (the collector rejects them), and starting at midnight makes
    every demo run tell the same story: the same day hours, the same cold snap, the same rechecks.
    """
    latest = (now - SAFETY - duration).astimezone(tz)
    midnight = datetime.combine(latest.date(), dtime(0), tzinfo=tz)
    return midnight.astimezone(UTC)


def short(text: str, limit: int = 170) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fmt_c(x: float | None) -> str:
    return "  –  " if x is None else f"{x:5.1f}"


def cycle_line(t_local: str, stored: int, result: AnalysisResult, target_c: float) -> str:
    """One line per cycle: stored readings, and each community's weighted mean against its target for the
    window (18 °C by day, 16 °C at night: a window with night hours has a lower one), its status, the homes
    below standard and the sensors left out."""
    below = Counter(h.community for h in result.homes_below_standard)
    parts = []
    for c in result.communities:
        mark = "ok" if c.status == "ok" else c.status.upper()
        target = c.target_c if c.target_c is not None else target_c
        out = f", {c.homes_excluded} sensor{'s' if c.homes_excluded != 1 else ''} left out" if c.homes_excluded else ""
        parts.append(f"{c.community} {fmt_c(c.weighted_mean_c)} °C/{target:4.1f} {mark:<4} {below.get(c.community, 0):2d} cold{out}")
    return f"{t_local}  stored {stored:7,d}  |  " + "  |  ".join(parts)


def proposal_line(p: Proposal) -> str:
    if p.proposed_c is not None:
        what = f"{p.kind} {p.station_id} {fmt_c(p.current_c).strip()} → {p.proposed_c:.1f} °C"
    else:
        what = f"{p.kind} {p.home_id or p.community or p.station_id}"
    return f"    → proposal {p.proposal_id} [{p.origin}] {what}: {short(p.reason)}"


def alert_line(o: WorkOrder) -> str:
    where = o.home_id or o.community or o.station_id
    extra = f" ({len(o.homes)} homes)" if o.homes else ""
    return f"    ! alert {o.category} {where}{extra}: {short(o.content)}"


def recheck_line(p: Proposal) -> str:
    what = f"home {p.home_id} mean" if p.home_id else "weighted mean"
    mark = {"improved": "✓", "not_improved": "✗"}.get(str(p.outcome), "~")
    why = f" (another change took effect at {p.station_id} inside its window)" if p.outcome == "confounded" else ""
    return (f"    {mark} recheck {p.proposal_id} ({p.kind} {p.station_id}): {p.outcome}{why}, "
            f"{what} {fmt_c(p.before_c).strip()} → {fmt_c(p.after_c).strip()} °C")


class Demo:
    def __init__(self, args: argparse.Namespace, out: TextIO = sys.stdout) -> None:
        self.args = args
        self.out = out
        self.tally = Tally()

    def say(self, line: str = "") -> None:
        print(line, file=self.out, flush=True)

    def run(self) -> int:
        from collector.service import Collector
        from control.publish import MqttPublisher
        from control.service import ControlLoop
        from dispatch.measurements import in_home_spots
        from heatwatch.app.cycle import Cycle
        from heatwatch.app.lockstep import CountingPublisher, Lockstep
        from heatwatch.core.timeutil import SettableClock, utc_now
        from heatwatch.infra.embedded_broker import EmbeddedBroker
        from heatwatch.infra.storage import open_store
        from simulators.mqttio import MqttTarget
        from simulators.runner import ScenarioRunner
        from simulators.scenario import load_scenario

        a = self.args
        data = prepare_dir(Path(a.data), "--data")
        out = prepare_dir(Path(a.out), "--out")
        try:
            scenario = load_scenario(a.scenario)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--scenario {a.scenario}: {exc}") from None
        if a.days is not None:
            scenario = scenario.model_copy(update={"duration_h": a.days * 24.0})
        broker = EmbeddedBroker().start()
        cfg = demo_config(data, out, broker.port)
        tz = cfg.general.tz
        start = demo_start(utc_now(), timedelta(hours=scenario.duration_h), tz)
        until = start + timedelta(hours=scenario.duration_h)
        # speed 0 (--speed max): as fast as the lockstep allows; otherwise the steps are also held to the wall
        # clock for a human to watch. Either way every cycle runs at its simulated time: the same story.
        runner = ScenarioRunner(scenario, MqttTarget.from_config(cfg), out_dir=data / "sim", speed=a.speed, start=start,
                                until=until, tz=tz, client_id="heatwatch-demo-sim")
        reg = runner.registry
        store = open_store(cfg)
        clock = SettableClock(runner.start_time)
        collector = Collector(cfg, reg, store).start()
        publisher = MqttPublisher(cfg, "heatwatch-demo-control")
        counted = CountingPublisher(publisher, cfg.mqtt.topic_prefix)
        loop = ControlLoop(cfg, reg, store, clock, counted, spots=in_home_spots(cfg))
        lockstep = Lockstep(runner, [collector], clock=clock, setpoints=counted, timeout_s=60.0)
        cycle = Cycle(store, reg, cfg, loop, window_h=ANALYSIS_WINDOW_H, coldsnap=True)

        def local(t: datetime) -> str:
            return t.astimezone(tz).strftime("%m-%d %H:%M")

        pace = "as fast as the loop allows" if a.speed == 0 else f"{a.speed:g}× real time"
        self.say(f"heatwatch demo — scenario {scenario.name!r}: {scenario.description}")
        self.say(f"  broker   amqtt in-process on 127.0.0.1:{broker.port} (MQTT 3.1.1)")
        self.say(f"  store    SQLite {cfg.sqlite.path or data / 'heatwatch.sqlite'}")
        self.say(f"  network  {len(reg.homes)} homes with sensors in {len(reg.communities())} communities, "
                 f"{len(reg.stations)} stations")
        self.say(f"  period   {local(start)} .. {local(until)} {tz.key} (simulated; {pace}), "
                 f"analytics + control every {a.every:g} h, recheck {cfg.control.recheck_after_h:g} h after each change")
        st = cfg.standard
        self.say(f"  each cycle: readings stored | per community: weighted mean °C/its target for the last "
                 f"{ANALYSIS_WINDOW_H:g} h ({st.target_c:g} by day, {st.target_c - st.day_min_c + st.night_min_c:g} at "
                 f"night), status, homes below standard")
        self.say()
        interrupted = False
        try:
            if not collector.wait_ready(timeout=15):
                raise UsageError("the collector could not connect to the embedded broker")
            for done in lockstep.run_cycles(cycle, timedelta(hours=a.every)):
                self.tally.cold_homes |= {h.home_id for h in done.result.homes_below_standard}
                stored = int(collector.snapshot()["stored"])
                self.say(cycle_line(local(done.at), stored, done.result, cfg.standard.target_c))
                rep = done.report
                assert rep is not None
                self._events(done.planned, rep.proposals, rep.opened, rep.resolved, rep.rechecked, rep.escalated)
        except KeyboardInterrupt:
            interrupted = True
            self.say("\ninterrupted — stopping; the report covers what was simulated so far")
        finally:
            runner.stop()
            lockstep.close()
            collector.stop(timeout=30)
            loop.shutdown()
            publisher.close()
            broker.stop()
        end = max(clock(), start + timedelta(hours=1))
        self.say()
        self.say("writing the report …")
        from heatwatch.app.report import build_report

        path = build_report(store, reg, cfg, start, end, out, title=f"heatwatch demo — {scenario.name}")
        quality = None if interrupted else self._quality(scenario, cfg)
        self._summary(collector.snapshot(), path, out, data, quality)
        store.close()
        return 130 if interrupted else 0

    def _events(self, planned: list[Proposal], proposals: list[Proposal], opened: list[WorkOrder],
                resolved: list[WorkOrder], rechecked: list[Proposal], escalated: Sequence[WorkOrder] = ()) -> None:
        t = self.tally
        for p in [*planned, *proposals]:
            t.proposals.append(p)
            self.say(proposal_line(p))
        for o in opened:
            t.alerts[o.category] += 1
        shown = opened if len(opened) <= 4 else opened[:3]
        for o in shown:
            self.say(alert_line(o))
        if len(opened) > len(shown):
            self.say(f"    ! … and {len(opened) - len(shown)} more alerts ({', '.join(sorted({o.category for o in opened}))})")
        for o in escalated:
            self.say(f"    ! escalated {o.category} {o.home_id or o.community or o.station_id}: {short(o.content)}")
        if resolved:
            t.resolved += len(resolved)
            what = Counter(o.category for o in resolved)
            self.say(f"    ✓ {len(resolved)} alert(s) resolved: " + ", ".join(f"{k} {v}" for k, v in sorted(what.items())))
        for p in rechecked:
            t.rechecked.append(p)
            self.say(recheck_line(p))

    def _quality(self, scenario: Scenario, cfg: Config) -> str:
        """Comfort and heat of this scenario under the loop's strategy against the fixed curve, measured by the
        scorer (``heatwatch score``: the same scenario, days and cycle in lockstep, from the simulator's ground
        truth of every home) — computed here, never a constant."""
        from heatwatch.app.score import run_scores

        strategy = cfg.control.strategy  # "model" or "feedback": the scorer's strategy of the same name
        days = scenario.duration_h / 24.0
        try:
            curve, ours = run_scores([scenario], ("curve", strategy), every_h=self.args.every, days=days)
        except Exception as exc:  # the demo's own run is done and reported; say why this line is missing
            return f"not measured ({type(exc).__name__}: {exc})"
        net = "" if ours.net_heat_pct_of_curve is None else f", {ours.net_heat_pct_of_curve:.0f} % net of the warm-up stored in the homes"
        ideal = ("" if curve.ideal_pct_of_curve is None
                 else f"; every home exactly at its standard would take {curve.ideal_pct_of_curve:.0f} %")
        return (f"comfort {ours.pct_at_standard:.1f} % of home-hours, heat {ours.heat_pct_of_curve:.0f} % of the "
                f"fixed curve{net} (the curve alone: {curve.pct_at_standard:.1f} %{ideal}; heatwatch score, strategy "
                f"{strategy}, same scenario and {days:g} days in lockstep)")

    def _summary(self, snap: CollectorSnapshot, report: Path, out: Path, data: Path, quality: str | None = None) -> None:
        t = self.tally
        kinds = Counter(f"{p.kind}/{p.origin}" for p in t.proposals)
        outcomes = Counter(str(p.outcome) for p in t.rechecked)
        self.say()
        self.say("summary")
        self.say(f"  readings     {snap['stored']:,} stored, {snap['rejected']:,} rejected (dead-lettered with a reason)")
        self.say(f"  cold homes   {len(t.cold_homes)} flagged below standard at least once")
        self.say(f"  alerts       {sum(t.alerts.values())} opened ({', '.join(f'{k} {v}' for k, v in sorted(t.alerts.items())) or '–'}),"
                 f" {t.resolved} resolved")
        self.say(f"  proposals    {len(t.proposals)} ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items())) or '–'})")
        on_site = sum(1 for p in t.proposals if not p.is_setpoint)
        if on_site:
            self.say(f"               {on_site} visit/balancing/home-valve proposals wait for a crew to record them done "
                     "(auto-apply applies setpoints only)")
        self.say(f"  rechecks     {len(t.rechecked)} ({', '.join(f'{k} {v}' for k, v in sorted(outcomes.items())) or 'none due yet'})")
        if quality is not None:
            self.say(f"  quality      {quality}")
        self.say(f"  report       {report.resolve()}")
        self.say(f"  work orders  {(out / 'alerts.jsonl').resolve()}")
        self.say(f"  data         {data.resolve()} (SQLite store, simulator ground truth)")


def speed_arg(text: str) -> float:
    """``max`` (or 0): as fast as the lockstep allows; otherwise simulated seconds per real second."""
    if text.strip().lower() == "max":
        return 0.0
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected simulated seconds per real second (3600 = an hour a second) or 'max'")
    return value


def _demo(args: argparse.Namespace) -> int:
    if args.every <= 0:
        raise UsageError(f"--every {args.every}: expected simulated hours > 0")
    if args.days is not None and args.days <= 0:
        raise UsageError(f"--days {args.days}: expected a positive number of simulated days")
    return Demo(args).run()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo", help="the zero-setup demo: embedded broker, SQLite, simulated network, the whole loop",
        description="Runs an in-process MQTT broker, the collector, a simulated heating network in accelerated time, "
                    "analytics, control (auto-applied proposals, 48 h rechecks, cold-snap pre-adjustment) and alerts, "
                    "then writes the HTML report. --data and --out are wiped at the start (only if a demo made them).",
    )
    p.add_argument("--scenario", default="cold_snap", help="shipped scenario name or a scenario TOML file (default: cold_snap)")
    p.add_argument("--speed", type=speed_arg, default=3600.0,
                   help="simulated seconds per real second (default 3600: an hour a second), or 'max': as fast as "
                        "the loop allows. The story is the same at any speed: each cycle runs at its simulated time "
                        "once everything before it is stored")
    p.add_argument("--days", type=float, help="simulated days (default: the scenario's length)")
    p.add_argument("--every", type=float, default=3.0, help="simulated hours between analytics/control cycles (default 3)")
    p.add_argument("--data", default="data/demo", help="data directory (default data/demo; wiped at start)")
    p.add_argument("--out", default="out/demo", help="report directory (default out/demo; wiped at start)")
    p.set_defaults(handler=_demo)
