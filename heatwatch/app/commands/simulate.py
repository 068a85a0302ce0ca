"""``heatwatch simulate run | load | generate | list``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from heatwatch.app.context import App, setup_logging
from heatwatch.core.errors import UsageError
from heatwatch.core.timeutil import parse_cli_time, parse_duration, rfc3339, utc_now
from heatwatch.infra.mqtt.client import PublishError
from simulators.generator import generate
from simulators.load import LoadGenerator, choose_homes, default_plan, synthetic_spec
from simulators.mqttio import MqttTarget
from simulators.scenario import load_scenario, shipped_scenarios
from simulators.spec import load_network


def _run(args: argparse.Namespace) -> int:
    from simulators.runner import ScenarioRunner, floor_to_step

    app = App.from_args(args)
    setup_logging(app.cfg)
    scenario = load_scenario(args.scenario)
    if args.speed < 0:
        raise UsageError(f"--speed {args.speed}: expected 0 (as fast as possible) or a positive factor")
    start = parse_cli_time(args.start, app.cfg.general.tz, "--start") if args.start else None
    until: datetime | None = None
    if args.until:
        dur = parse_duration(args.until)
        if dur is not None:
            if dur.total_seconds() <= 0:
                raise UsageError(f"--until {args.until}: the duration must be positive")
            # the runner starts on a step boundary; ending on one too keeps the last step in the past
            start = floor_to_step(start or utc_now() - dur, scenario.step_s)
            until = start + dur
        else:
            until = parse_cli_time(args.until, app.cfg.general.tz, "--until", also=", or a duration such as 48h / 3d")
    if until is not None and until > utc_now() and not args.live:
        raise UsageError(f"--until {args.until}: lies in the future; use --live to follow real time")
    out = Path(args.out) if args.out else app.cfg.general.data_dir / "sim" / scenario.name
    target = None if args.no_mqtt else MqttTarget.from_config(app.cfg)
    try:
        runner = ScenarioRunner(
            scenario, target, out_dir=out, speed=args.speed, start=start, until=until, live=args.live,
            tz=app.cfg.general.tz, progress=sys.stderr,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"registry: {runner.homes_csv} and {runner.stations_csv} "
          f"({len(runner.registry.homes)} homes with sensors); ground truth: {runner.ground_truth_path}",
          file=sys.stderr)
    try:
        stats = runner.run()
    except PublishError as exc:
        print(f"heatwatch: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(stats, ensure_ascii=False))
    return 0


def _load(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    setup_logging(app.cfg)
    if args.homes < 1:
        raise UsageError(f"--homes {args.homes}: expected at least 1")
    if args.rate < 0:
        raise UsageError(f"--rate {args.rate}: expected readings per second >= 0 (0 = unpaced)")
    if args.batch < 1:
        raise UsageError(f"--batch {args.batch}: expected at least 1 reading per message")
    if args.interval_s < 1:
        raise UsageError(f"--interval-s {args.interval_s}: expected at least 1")
    if args.count is not None and args.count < 1:
        raise UsageError(f"--count {args.count}: expected at least 1")
    total = args.count if args.count is not None else int(args.rate * args.duration) if args.rate > 0 else 0
    if total < 1:
        raise UsageError("give --count N, or --rate R with --duration S")
    if app.cfg.registry.homes_csv:
        homes = sorted(app.registry.homes.values(), key=lambda h: h.home_id)
        try:
            ids = choose_homes(homes, args.homes)
        except ValueError as exc:
            raise UsageError(f"{exc} ({app.cfg.registry.homes_csv})") from None
    else:
        net = generate(synthetic_spec(args.homes, args.seed))
        out = Path(args.out) if args.out else app.cfg.general.data_dir / "load-registry"
        reg_homes = [net.homes[i] for i in range(args.homes)]
        from heatwatch.core.registry import write_homes, write_stations

        out.mkdir(parents=True, exist_ok=True)
        write_homes(out / "homes.csv", reg_homes)
        used = {h.station_id for h in reg_homes}
        write_stations(out / "stations.csv", [s for s in net.stations if s.station_id in used])
        print(f"no registry configured: wrote {args.homes} homes to {out / 'homes.csv'} "
              f"(point registry.homes_csv at it for the collector)", file=sys.stderr)
        ids = tuple(h.home_id for h in reg_homes)
    plan = default_plan(ids, total, args.batch, time.time(), args.interval_s, args.seed)
    gen = LoadGenerator(MqttTarget.from_config(app.cfg), plan, args.rate, client_id=f"heatwatch-load-{args.seed}",
                        progress=sys.stderr)
    try:
        stats = gen.run()
    except PublishError as exc:
        print(f"heatwatch: {exc}", file=sys.stderr)
        return 1
    stats["first_ts"] = rfc3339(datetime.fromtimestamp(plan.t0_s, UTC))
    print(json.dumps(stats, ensure_ascii=False))
    return 0 if stats["all_acked"] else 1


def _generate(args: argparse.Namespace) -> int:
    spec = load_network(Path(args.spec))
    net = generate(spec)
    homes_csv, stations_csv = net.write_registry(Path(args.out))
    print(json.dumps({"homes_csv": str(homes_csv), "stations_csv": str(stations_csv), "homes": net.n,
                      "homes_with_sensor": int(net.has_sensor.sum()), "stations": len(net.stations)},
                     ensure_ascii=False))
    return 0


def _list(args: argparse.Namespace) -> int:
    for name in shipped_scenarios():
        sc = load_scenario(name)
        print(f"{name}\t{sc.duration_h:g} h\t{sc.description}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser("simulate", help="simulated heating network, load generator")
    ssub = p.add_subparsers(dest="simulate_command", metavar="ACTION", required=True)

    r = ssub.add_parser("run", help="run a scenario and publish it over MQTT")
    r.add_argument("--scenario", required=True, help="shipped name (see 'simulate list') or a .toml path")
    r.add_argument("--speed", type=float, default=3600.0, help="simulated seconds per real second (0 = flat out)")
    r.add_argument("--start", help="simulated start (default: end minus the scenario's duration)")
    r.add_argument("--until", help="simulated end: a time, or a duration such as 48h (default: now)")
    r.add_argument("--out", help="directory for the registry and ground truth (default: <data_dir>/sim/NAME)")
    r.add_argument("--live", action="store_true", help="after catching up, keep following real time")
    r.add_argument("--no-mqtt", action="store_true", help="write the ground truth only, publish nothing")
    r.set_defaults(handler=_run)

    ld = ssub.add_parser("load", help="publish registry-consistent indoor readings at a target rate")
    ld.add_argument("--homes", type=int, required=True)
    ld.add_argument("--rate", type=float, required=True, help="readings per second (0 = as fast as acknowledged)")
    ld.add_argument("--batch", type=int, default=1, help="readings per message (JSON array when > 1)")
    ld.add_argument("--count", type=int, help="total readings (default: rate x duration)")
    ld.add_argument("--duration", type=float, default=10.0, help="seconds, when --count is not given")
    ld.add_argument("--interval-s", type=int, default=60, help="spacing of one home's timestamps")
    ld.add_argument("--seed", type=int, default=0)
    ld.add_argument("--out", help="where to write a synthetic registry when none is configured")
    ld.set_defaults(handler=_load)

    g = ssub.add_parser("generate", help="write registry CSVs from a network spec")
    g.add_argument("--spec", required=True, help="network spec TOML (or a scenario file)")
    g.add_argument("--out", required=True)
    g.set_defaults(handler=_generate)

    ls = ssub.add_parser("list", help="list the shipped scenarios")
    ls.set_defaults(handler=_list)
