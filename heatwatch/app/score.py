"""Control quality, measured: the same scenario (weather, homes, seed) run under two strategies and scored
from the simulator's ground truth.

Strategies:

- ``curve``: the fixed heating curve alone. Every station follows heatwatch's configured quality-regulation
  curve (``heatwatch.core.curve``) at its own outdoor temperature; no feedback, no cold-snap job.
- ``feedback``: the same stations and curve, plus heatwatch's loop every ``every_h`` simulated hours with
  ``[control] strategy = "feedback"`` (``heatwatch.app.cycle.Cycle``: analytics, proposals with indoor feedback,
  the cold-snap ramp and release, auto-apply, rechecks) — heatwatch's control as the issue found it.
- ``model``: the same loop with ``[control] strategy = "model"`` (heatwatch's default): each station's grey-box
  model, refitted on its stored telemetry every cycle, chooses the supply ahead of the forecast
  (``control.mpc``); curve and feedback only where the model does not fit.

Why no broker: a 30-day season of a few hundred homes is close to a million sensor messages, and the
embedded broker plus the collector's threads need minutes for that on two cores. The score is about
control, not transport, so the driver runs the lockstep (``heatwatch.app.lockstep``) with the simulator
publishing into an in-process sink, the collector's own ``Codec`` turning every message into the points
the collector would store, and control's setpoints handed to the simulator's inbox as the MQTT subscription
would. Everything control sees went through the same decoding and the same store as in production.

The metric functions at the top are pure: truth frames in, numbers out.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from control.proposal import Proposal
    from heatwatch.app.cycle import CycleSummary
    from heatwatch.core.config import Config
    from simulators.scenario import Scenario

OVERHEAT_MARGIN_C = 2.0
STRATEGIES = ("curve", "feedback", "model")
DEFAULT_START = datetime(2025, 12, 1, 0, 0, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)


_log = logging.getLogger("heatwatch.score")

# --- metrics (pure) ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Score:
    """One strategy on one scenario."""

    scenario: str
    strategy: str
    homes: int
    stations: int
    days: float
    pct_at_standard: float  # home-hours at or above the applicable standard, %
    degree_hours_below: float  # Σ max(0, standard − T) · h
    overheat_degree_hours: float  # Σ max(0, T − (day standard + 2)) · h
    heat_kwh: float
    heat_pct_of_curve: float | None  # filled in against the curve strategy
    setpoint_changes_per_station_day: float
    imbalance_answered_with_heat: int
    peak_home_mean_c: float  # the warmest hourly mean over all homes: how far over the target the network ran
    stored_kwh: float = 0.0  # heat left in the homes' mass at the end against the start (a short run's warm-up)
    pct_at_standard_after_day1: float | None = None  # the same from hour 24 on: past the warm-up from the curve's state
    ideal_heat_kwh: float | None = None  # the curve run only: every home held exactly at its standard (a bound)
    ideal_pct_of_curve: float | None = None  # that bound against the curve's heat
    net_heat_pct_of_curve: float | None = None  # (heat − stored) against the curve's (heat − stored)


def comfort(homes: pd.DataFrame, dt_h: float) -> dict[str, float]:
    """Comfort from the true indoor temperature of every home at every step.

    ``homes`` has one row per home and step: ``temp_c``, ``standard_c`` (the minimum that applies at that
    time: day or night, residential, bungalow or contract) and ``day_standard_c`` (the home's daytime minimum).
    Each row stands for ``dt_h`` hours. Overheating counts what is above the daytime standard + 2 °C, at any
    hour: a home at 20 °C at night is not overheated because the night minimum is 16 °C.
    """
    if homes.empty:
        return {"pct_at_standard": float("nan"), "degree_hours_below": 0.0, "overheat_degree_hours": 0.0}
    t = homes["temp_c"].to_numpy(float)
    std = homes["standard_c"].to_numpy(float)
    hot = homes["day_standard_c"].to_numpy(float) + OVERHEAT_MARGIN_C
    return {
        "pct_at_standard": float(np.mean(t >= std) * 100.0),
        "degree_hours_below": float(np.clip(std - t, 0.0, None).sum() * dt_h),
        "overheat_degree_hours": float(np.clip(t - hot, 0.0, None).sum() * dt_h),
    }


def heat_delivered_kwh(stations: pd.DataFrame, dt_h: float) -> float:
    """Σ heat_kw · dt over the station rows (one row per station and step, each standing for ``dt_h`` hours)."""
    return float(stations["heat_kw"].to_numpy(float).sum() * dt_h)


def stored_heat_kwh(cap_j_per_k: np.ndarray, start_c: np.ndarray, end_c: np.ndarray) -> float:
    """Heat the homes hold at the end beyond what they held at the start, Σ C·(T_end − T_start), kWh. A run that
    ends warmer than it began delivered that heat without losing it yet: on a 3-day run a warm-up is several
    percent of the heat, on a season a fraction of one."""
    return float(np.sum(np.asarray(cap_j_per_k, float) * (np.asarray(end_c, float) - np.asarray(start_c, float)))
                 / 3.6e6)


def ideal_heat_kwh(ua_w_per_k: np.ndarray, q_int_w: np.ndarray, standard_c: np.ndarray, outdoor_c: np.ndarray,
                   dt_h: float) -> float:
    """The heat if every home were exactly at its standard: Σ max(0, UA·(standard − To) − gains)·dt over the homes
    (and the steps, when ``standard_c``/``outdoor_c`` are steps × homes).
    No thermal mass (a 16 °C night costs nothing to reach) and each home on its own valve: a lower bound no
    supply temperature — one value per station for all its homes — can reach."""
    need = np.asarray(ua_w_per_k, float) * (np.asarray(standard_c, float) - np.asarray(outdoor_c, float))
    return float(np.clip(need - np.asarray(q_int_w, float), 0.0, None).sum() * dt_h / 1000.0)


def setpoint_changes_per_station_day(changes: int, stations: int, days: float) -> float:
    return changes / (stations * days) if stations and days > 0 else 0.0


def with_curve_share(scores: Sequence[Score]) -> list[Score]:
    """Each score's heat as % of the ``curve`` strategy's heat on the same scenario."""
    base = {s.scenario: s for s in scores if s.strategy == "curve"}
    out = []
    for s in scores:
        b = base.get(s.scenario)
        pct = round(s.heat_kwh / b.heat_kwh * 100.0, 1) if b is not None and b.heat_kwh else None
        net_b = None if b is None else b.heat_kwh - b.stored_kwh
        net = round((s.heat_kwh - s.stored_kwh) / net_b * 100.0, 1) if net_b else None
        ideal = (round(s.ideal_heat_kwh / s.heat_kwh * 100.0, 1)
                 if s.strategy == "curve" and s.ideal_heat_kwh is not None and s.heat_kwh else None)
        out.append(Score(**{**asdict(s), "heat_pct_of_curve": pct, "net_heat_pct_of_curve": net,
                            "ideal_pct_of_curve": ideal}))
    return out


# --- truth collected while the simulation runs ---------------------------------------------------------
@dataclass
class TruthLog:
    """Per step: every home's true temperature and every station's heat (all homes, with or without a sensor)."""

    times: list[datetime]
    temps: list[np.ndarray]
    heat: list[np.ndarray]

    @classmethod
    def empty(cls) -> TruthLog:
        return cls([], [], [])

    def record(self, t: datetime, temp: np.ndarray, heat_kw: np.ndarray) -> None:
        self.times.append(t)
        self.temps.append(temp.copy())
        self.heat.append(heat_kw.copy())


def standards(cfg: Config, kinds: Sequence[str], contract_c: Sequence[float | None],
              times: Sequence[datetime]) -> tuple[np.ndarray, np.ndarray]:
    """(applicable standard: steps × homes, daytime standard: homes) — the same rules as analytics."""
    s = cfg.standard
    kind = np.array(kinds)
    contract = np.array([np.nan if c is None else c for c in contract_c], dtype=float)
    day = np.where(kind == "residential", s.day_min_c, np.where(kind == "bungalow", s.bungalow_min_c, contract))
    night = np.where(kind == "residential", s.night_min_c, np.where(kind == "bungalow", s.bungalow_min_c, contract))
    hours = np.array([t.astimezone(cfg.general.tz).hour for t in times])
    is_day = (hours >= s.day_start_hour) & (hours < s.day_end_hour)
    return np.where(is_day[:, None], day[None, :], night[None, :]), day


def truth_frames(log: TruthLog, cfg: Config, net: Any, station_ids: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The long frames the metric functions read."""
    temps = np.vstack(log.temps)
    std, day_std = standards(cfg, [h.kind for h in net.homes], [h.min_temp_c for h in net.homes], log.times)
    n_steps, n_homes = temps.shape
    homes = pd.DataFrame({
        "step": np.repeat(np.arange(n_steps), n_homes),
        "home": np.tile(np.arange(n_homes), n_steps),
        "temp_c": temps.ravel(),
        "standard_c": std.ravel(),
        "day_standard_c": np.tile(day_std, n_steps),
    })
    heat = np.vstack(log.heat)
    stations = pd.DataFrame({
        "step": np.repeat(np.arange(n_steps), len(station_ids)),
        "station_id": np.tile(np.array(station_ids, dtype=object), n_steps),
        "heat_kw": heat.ravel(),
    })
    return homes, stations


# --- the scenario under one strategy -----------------------------------------------------------------
def curve_table(cfg: Config, station_id: str, shift_c: float = 0.0) -> list[tuple[float, float]]:
    """heatwatch's configured heating curve as the station's outdoor-reset table (1 K steps, −40…+20 °C),
    shifted by ``shift_c``."""
    from heatwatch.core.curve import design_for, heating_curve

    design = design_for(cfg, station_id)
    return [(float(o), round(heating_curve(design, float(o)).supply_c + shift_c, 2)) for o in range(-40, 21)]


CREW = "+crew"  # feedback+crew, model+crew: the balancing advice carried out by a crew ``crew_h`` after it is made


def with_crew(strategy: str) -> tuple[str, bool]:
    """``model+crew`` → (``model``, True); any other name → (it, False)."""
    return (strategy[: -len(CREW)], True) if strategy.endswith(CREW) else (strategy, False)


def curve_shift(strategy: str) -> float | None:
    """``curve+N``: the fixed curve raised by N °C (a reference: what a fixed curve needs to meet the standard);
    None for any other name."""
    m = re.fullmatch(r"curve\+(\d+(?:\.\d+)?)", strategy)
    return float(m.group(1)) if m else None


def on_the_curve(scenario: Scenario, cfg: Config) -> Scenario:
    """The scenario with every station on heatwatch's curve and no fixed or scripted setpoint: the common start
    (``curve+N`` too: its shift is applied from the first step, from the same settled state)."""
    stations = [s.model_copy(update={"curve": curve_table(cfg, s.id), "setpoint_c": None})
                for s in scenario.network.stations]
    network = scenario.network.model_copy(update={"stations": stations})
    return scenario.model_copy(update={"network": network, "setpoints": []})


def score_config(data_dir: Path, base: Path | None = None, strategy: str = "feedback") -> Config:
    """The settings a run scores: ``base`` (a company's TOML: its curve, standard and control settings) or the
    defaults — never ./heatwatch.toml by accident. Everything that writes stays under ``data_dir``: a fresh
    SQLite store, control and job databases; no forecast file (control reads the simulated forecasts), no
    alert sinks, auto-apply on."""
    from heatwatch.core.config import load_config

    data_dir.mkdir(parents=True, exist_ok=True)
    if base is None:
        base = data_dir / "defaults.toml"
        base.write_text("# heatwatch score: the defaults\n", encoding="utf-8")
    # environ={}: a production HEATWATCH_* variable must not point the scorer at a real store or broker
    return load_config(base, environ={}, overrides={
        "general": {"data_dir": str(data_dir), "log_level": "WARNING"},
        "storage": {"backend": "sqlite"},
        "sqlite": {"path": str(data_dir / "heatwatch.sqlite")},
        "control": {"auto_apply": True, "db_path": str(data_dir / "control.sqlite"), "forecast_file": None,
                    "strategy": strategy,
                    "jobstore_url": f"sqlite:///{(data_dir / 'jobs.sqlite').resolve()}"},
        "alerts": {"mqtt": False},
    })


class _Inbox:
    """Control's publisher in the scorer: a setpoint goes straight into the simulator's inbox."""

    def __init__(self, submit: Callable[[str, bytes], None]) -> None:
        self.submit = submit

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, timeout: float = 10.0) -> None:
        self.submit(topic, payload)


def heat_for_indoor_shortfall(p: Proposal) -> bool:
    """A supply raise driven (wholly or partly) by homes measured under target: an analytics raise, or a
    cold-snap step whose indoor feedback is positive. At a station with imbalance, that is heat answering it."""
    if p.kind != "supply" or (p.proposed_c or 0.0) <= (p.current_c or 0.0):
        return False
    if p.origin == "cold_snap":
        return float(p.evidence.get("indoor_feedback_c") or 0.0) > 0.0
    if p.origin == "model":  # homes under the model's target now (not the forecast) drove the raise
        return bool(p.evidence.get("indoor_shortfall"))
    return True


def _imbalanced_stations(summary: CycleSummary, community_station: dict[str, str], spread_c: float) -> set[str]:
    out = set()
    for im in summary.result.imbalance:
        cold_next_to_warm = bool(im.cold_buildings) and bool(im.warm_buildings)
        spread = im.building_spread_c is not None and im.building_spread_c >= spread_c
        if cold_next_to_warm or spread:
            out.add(community_station.get(im.community, ""))
    return out


def run_strategy(scenario: Scenario, strategy: str, *, every_h: float = 3.0, window_h: float = 12.0,
                 start: datetime = DEFAULT_START, days: float | None = None, work: Path | None = None,
                 config: Path | None = None, crew_h: float = 24.0) -> Score:
    """Run ``scenario`` (put on the curve first) under ``strategy`` in lockstep and score it (``config``: see
    ``score_config``). ``feedback+crew`` / ``model+crew``: each balancing proposal is carried out ``crew_h`` hours
    after it is made — the crew balances the community (the short buildings' valves opened, the others throttled:
    every building at its design flow) and records the job done, which starts its 48 h recheck; without ``+crew``
    nobody acts on advice, as for the curve."""
    from collector.codec import Codec
    from heatwatch.app.lockstep import CountingPublisher, Lockstep
    from heatwatch.core.timeutil import SettableClock
    from heatwatch.infra.storage import open_store
    from simulators.runner import ScenarioRunner
    from simulators.sensors import Message

    base, crew = with_crew(strategy)
    shift = curve_shift(strategy)
    if (base not in STRATEGIES and shift is None) or (crew and base not in ("feedback", "model")):
        raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}, curve+N")
    work = Path(tempfile.mkdtemp(prefix="heatwatch-score-")) if work is None else work
    data = work / scenario.name / strategy
    data.mkdir(parents=True, exist_ok=True)
    cfg = score_config(data, config, "model" if base == "model" else "feedback")
    sc = on_the_curve(scenario, cfg)
    if days is not None:
        sc = sc.model_copy(update={"duration_h": days * 24.0})
    until = start + timedelta(hours=sc.duration_h)
    control = base in ("feedback", "model")
    jobs: list[Proposal] = []  # balancing advice waiting for the crew (``+crew``)
    outdoors: list[np.ndarray] = []
    buffer: list[Message] = []
    runner = ScenarioRunner(sc, None, out_dir=data / "sim", speed=0.0, start=start, until=until,
                            clock=lambda: until + timedelta(days=1), tz=cfg.general.tz,
                            sink=buffer.append if control else None)
    sim = runner.sim
    if shift:  # from the plain curve's settled homes, as every strategy starts: the warm-up is paid by all
        for sid in sim.station_ids:
            sim.set_setpoint(sid, None, shift)
    log = TruthLog.empty()
    imbalance_raises = 0
    clock = SettableClock(runner.start_time)
    store = open_store(cfg) if control else None
    loop = None
    try:
        counted = None
        cycle = None
        codec = None
        if control:
            from control.service import ControlLoop
            from dispatch.measurements import in_home_spots
            from heatwatch.app.cycle import Cycle

            assert store is not None
            reg = runner.registry
            codec = Codec(cfg, reg)
            counted = CountingPublisher(_Inbox(runner.submit_setpoint), cfg.mqtt.topic_prefix)
            loop = ControlLoop(cfg, reg, store, clock, counted, sinks={}, spots=in_home_spots(cfg))
            cycle = Cycle(store, reg, cfg, loop, window_h=window_h, coldsnap=True)
        lockstep = Lockstep(runner, (), clock=clock, setpoints=counted)

        def flush() -> None:
            if codec is None or store is None or not buffer:
                return
            now_ns = int(sim.t.timestamp()) * 1_000_000_000 + 60_000_000_000
            points = [p for m in buffer for p in codec.decode(m.topic, m.payload, now_ns).points]
            buffer.clear()
            store.write(points)

        community_station = {c.name: c.station for c in sc.network.communities}
        every = timedelta(hours=every_h)
        next_cycle = runner.start_time + every
        lockstep.begin()
        start_c = sim.home_state.temp_c.copy()
        home_site = sim.net.station_site_idx[sim.net.station_idx]
        while not lockstep.at_end:
            t = lockstep.advance(1)
            log.record(t, sim.home_state.temp_c, sim.station_state.heat_kw)
            if strategy == "curve":  # the weather each home saw: the per-home bound (the curve's row carries it)
                outdoors.append(sim.weather.at(t)[home_site])
            if jobs and loop is not None:
                jobs = _crew_visits(jobs, t, crew_h, sim, loop, clock)
            if cycle is not None and t >= next_cycle:
                flush()
                clock.set(t)
                done = cycle.run(t)
                lockstep.deliver_setpoints()
                hot = _imbalanced_stations(done, community_station, cfg.control.imbalance_spread_c)
                made = [*done.planned, *(done.report.proposals if done.report else [])]
                if crew:
                    jobs += [p for p in made if p.kind in ("balancing", "home_valves")]
                imbalance_raises += sum(1 for p in made if p.station_id in hot and heat_for_indoor_shortfall(p))
                next_cycle = t + every
        lockstep.finish()
        lockstep.close()
    finally:
        if loop is not None:
            loop.shutdown()
        if store is not None:
            store.close()
    homes, stations = truth_frames(log, cfg, sim.net, sim.station_ids)
    dt_h = sc.step_s / 3600.0
    n_days = len(log.times) * dt_h / 24.0
    temps = np.vstack(log.temps)
    per_hour = max(1, round(1.0 / dt_h))
    hourly = temps[: len(temps) // per_hour * per_hour].reshape(-1, per_hour, temps.shape[1]).mean(axis=(1, 2))
    settled = homes[homes["step"] >= round(24.0 / dt_h)]
    ideal = None  # every home at the standard truth_frames applied, step by step, on the weather it saw
    if outdoors:
        std = homes["standard_c"].to_numpy(float).reshape(len(outdoors), sim.net.n)
        ideal = round(ideal_heat_kwh(sim.params.ua, sim.params.q_int, std, np.vstack(outdoors), dt_h), 1)
    return Score(
        scenario=scenario.name, strategy=strategy, homes=sim.net.n, stations=len(sim.station_ids),
        days=round(n_days, 2), **{k: round(v, 2) for k, v in comfort(homes, dt_h).items()},
        heat_kwh=round(heat_delivered_kwh(stations, dt_h), 1), heat_pct_of_curve=None,
        setpoint_changes_per_station_day=round(
            setpoint_changes_per_station_day(runner.setpoints_applied, len(sim.station_ids), n_days), 2),
        imbalance_answered_with_heat=imbalance_raises,
        peak_home_mean_c=round(float(hourly.max()), 2) if len(hourly) else float("nan"),
        stored_kwh=round(stored_heat_kwh(sim.params.cap, start_c, sim.home_state.temp_c), 1),
        pct_at_standard_after_day1=round(comfort(settled, dt_h)["pct_at_standard"], 2) if len(settled) else None,
        ideal_heat_kwh=ideal,
    )


def _crew_visits(jobs: list[Proposal], t: datetime, crew_h: float, sim: Any, loop: Any,
                 clock: Any) -> list[Proposal]:
    """Carry out the on-site jobs due by ``t``: the community balanced, or a home-valve job's classes set, in the simulator; the job
    recorded done in control (approved and applied by the crew: its recheck is scheduled). Returns the rest.
    A home-valve job's in-home measurements (``measure_homes``) are taken first and kept in the measurement book:
    the home's true temperature to 0.1 °C, two staff, a calibrated thermometer."""
    from control.service import ApplyError
    from dispatch.measurements import Measurement, MeasurementBook, record

    left = []
    for p in jobs:
        if t < p.created_at + timedelta(hours=crew_h):
            left.append(p)
            continue
        if p.kind == "home_valves":  # every home of each class, with a sensor or not
            if p.evidence.get("measure_homes"):
                book = MeasurementBook.open(loop.cfg)
                index = {h.home_id: i for i, h in enumerate(sim.net.homes)}
                for r in p.evidence["measure_homes"]:
                    temp = round(float(sim.home_state.temp_c[index[r["home_id"]]]), 1)
                    record(book, Measurement(r["home_id"], t, (("客厅", temp),), ("张工", "李工"), "scorer-thermometer",
                                             (t - timedelta(days=30)).date()), cfg=loop.cfg, registry=loop.registry,
                           now=t, by="crew")
            for v in p.evidence["classes"]:
                sim.set_valves(v["community"], v["building"], v["location"], float(v["flow_pct"]) / 100.0)
            done = f"home valves set {crew_h:g} h after the advice (scorer's crew)"
        else:
            sim.balance(p.community)  # open the short buildings, throttle the others: every building at design flow
            done = f"balancing valves opened {crew_h:g} h after the advice (scorer's crew)"
        clock.set(t)
        try:
            if loop.proposals.get(p.proposal_id).status == "proposed":
                loop.approve(p.proposal_id, "crew")
            loop.apply(p.proposal_id, "crew", done)
        except (ApplyError, ValueError) as exc:  # withdrawn or decided meanwhile: the valves are open all the same
            _log.warning("crew: %s not recorded done: %s", p.proposal_id, exc)
    return left


def run_scores(scenarios: Sequence[Scenario], strategies: Sequence[str] = STRATEGIES, *, work: Path | None = None,
               **kw: Any) -> list[Score]:
    """Every scenario under every strategy. The stores, control databases and ground-truth files go to ``work``
    (kept), or to a temporary directory removed at the end (a 30-day season leaves about 100 MB per strategy)."""
    if work is not None:
        return with_curve_share([run_strategy(sc, st, work=work, **kw) for sc in scenarios for st in strategies])
    with tempfile.TemporaryDirectory(prefix="heatwatch-score-") as tmp:
        return with_curve_share([run_strategy(sc, st, work=Path(tmp), **kw) for sc in scenarios for st in strategies])


COLUMNS = (
    ("scenario", "scenario"), ("strategy", "strategy"), ("homes", "homes"), ("days", "days"),
    ("at standard %", "pct_at_standard"), ("… after day 1", "pct_at_standard_after_day1"),
    ("°C·h below", "degree_hours_below"),
    ("°C·h over std+2", "overheat_degree_hours"), ("heat kWh", "heat_kwh"), ("heat % of curve", "heat_pct_of_curve"),
    ("setpoint changes /station/day", "setpoint_changes_per_station_day"),
    ("imbalance answered with heat", "imbalance_answered_with_heat"), ("peak mean °C", "peak_home_mean_c"),
    ("stored kWh", "stored_kwh"), ("net heat % of curve", "net_heat_pct_of_curve"),
    ("per-home ideal % of curve", "ideal_pct_of_curve"),
)


def markdown(scores: Sequence[Score]) -> str:
    head = "| " + " | ".join(c for c, _ in COLUMNS) + " |"
    sep = "| " + " | ".join("---" for _ in COLUMNS) + " |"
    rows = ["| " + " | ".join("–" if getattr(s, k) is None else f"{getattr(s, k):,}" if isinstance(getattr(s, k), float | int)
                              else str(getattr(s, k)) for _, k in COLUMNS) + " |" for s in scores]
    return "\n".join([head, sep, *rows])
