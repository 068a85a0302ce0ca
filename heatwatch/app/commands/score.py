"""``heatwatch score``: the fixed heating curve against heatwatch's control on the same simulated weather."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from heatwatch.core.errors import UsageError

DEFAULT_SCENARIOS = ("normal", "imbalanced", "cold_snap", "season")


def _strategy(text: str) -> str:
    from heatwatch.app.score import STRATEGIES, curve_shift, with_crew

    base, crew = with_crew(text)
    if (base in STRATEGIES and not crew) or (crew and base in ("feedback", "model")) or curve_shift(text) is not None:
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: expected one of {', '.join(STRATEGIES)}, feedback+crew, model+crew "
                                     "or curve+N (N in °C)")


def cmd_score(args: argparse.Namespace) -> int:
    from heatwatch.app.score import STRATEGIES, markdown, run_scores
    from simulators.scenario import load_scenario
    from simulators.spec import SpecError

    if args.days is not None and args.days <= 0:
        raise UsageError(f"--days {args.days}: expected a positive number of simulated days")
    if args.every <= 0:
        raise UsageError(f"--every {args.every}: expected simulated hours > 0")
    if args.crew_h < 0:
        raise UsageError(f"--crew-h {args.crew_h}: expected simulated hours ≥ 0")
    strategies = args.strategy or list(STRATEGIES)
    try:
        scenarios = [load_scenario(s) for s in (args.scenario or DEFAULT_SCENARIOS)]
    except (OSError, SpecError) as exc:
        raise UsageError(f"--scenario: {exc}") from None
    t0 = time.monotonic()
    keep = Path(args.keep) if args.keep else None
    base = Path(args.config) if getattr(args, "config", None) else None
    scores = run_scores(scenarios, strategies, every_h=args.every, days=args.days, work=keep, config=base,
                        crew_h=args.crew_h)
    if args.json:
        print(json.dumps({"scores": [asdict(s) for s in scores], "seconds": round(time.monotonic() - t0, 1)},
                         ensure_ascii=False))
    else:
        print(markdown(scores))
        print(f"\n{len(scores)} runs in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser(
        "score", help="score control strategies on simulated scenarios (comfort, heat, setpoint changes)",
        description="Runs each scenario once per strategy in lockstep (identical weather, homes and seed) and scores "
                    "them from the simulator's ground truth: curve = the fixed heating curve alone, feedback = the "
                    "same curve plus heatwatch's analytics and control with [control] strategy = \"feedback\" "
                    "(indoor feedback, the cold-snap job), model = the same loop with strategy = \"model\", "
                    "heatwatch's default (fitted station models choose the supply ahead of the forecast). "
                    "With the global --config, a company's curve, standard and control settings are scored; "
                    "without it the defaults (./heatwatch.toml and HEATWATCH_* are not read). Every run writes "
                    "only to its own directory.",
    )
    p.add_argument("--scenario", action="append", help="shipped name or TOML file; repeat for several "
                   f"(default: {' '.join(DEFAULT_SCENARIOS)})")
    p.add_argument("--strategy", action="append", type=_strategy, metavar="curve|feedback|model|curve+N|…+crew",
                   help="default: curve, feedback, model; curve+N = the fixed curve raised by N °C (a reference); "
                        "feedback+crew, model+crew = the same with the balancing advice carried out by a crew")
    p.add_argument("--crew-h", type=float, default=24.0,
                   help="simulated hours from a balancing proposal to the crew opening the valves (…+crew; default 24)")
    p.add_argument("--days", type=float, help="simulated days (default: each scenario's length)")
    p.add_argument("--every", type=float, default=3.0, help="simulated hours between control cycles (default 3)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the Markdown table")
    p.add_argument("--keep", metavar="DIR", help="keep each run's store, control database and ground truth in "
                   "DIR/<scenario>/<strategy>/ (default: a temporary directory, removed at the end)")
    p.set_defaults(handler=cmd_score)
