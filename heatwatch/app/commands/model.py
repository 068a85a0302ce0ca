"""``heatwatch model``: each station's grey-box model, fitted now from its stored telemetry, with its fit
error and the supply it would choose — what ``[control] strategy = "model"`` acts on (docs/CONTROL.md).

Read-only: it fits and plans but stores and sends nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from heatwatch.core.errors import UsageError


def cmd_model(args: argparse.Namespace) -> int:
    from control import valves
    from control.db import db_path, open_engine
    from control.mpc import decide_all
    from control.repo import ProposalRepo
    from control.stations import read_stations
    from heatwatch.app.context import App
    from heatwatch.core.registry import Registry
    from heatwatch.core.timeutil import parse_cli_time, rfc3339, utc_now

    app = App.from_args(args)
    cfg = app.cfg
    now = parse_cli_time(args.at, cfg.general.tz, "--at") if args.at else utc_now()
    reg = app.registry
    if args.station:
        unknown = sorted(set(args.station) - set(reg.stations))
        if unknown:
            raise UsageError(f"--station {', '.join(unknown)}: not in the registry ({', '.join(sorted(reg.stations))})")
        reg = Registry(reg.homes, {s: reg.stations[s] for s in args.station})
    repo = ProposalRepo(open_engine(db_path(cfg)))
    published = repo.last_published()
    with app.open_store() as store:  # as the loop plans: from when the home valves were set, closer once they held
        decisions = decide_all(store, reg, cfg, now, read_stations(store, reg, now, cfg), published, hold_recent=False,
                               valves_set=valves.set_times(repo), valves_settled=valves.settled(repo))
    if args.json:
        body = {"at": rfc3339(now), "strategy": cfg.control.strategy, "stations": [d.to_json() for d in decisions]}
        sys.stdout.write(json.dumps(body, ensure_ascii=False, indent=2, default=str) + "\n")
        return 0
    print(f"station models at {rfc3339(now, cfg.general.tz)} ([control] strategy = {cfg.control.strategy!r})")
    for d in decisions:
        print(f"{d.station_id}  {d.basis:<8} {d.why}")
        params: dict[str, Any] = d.fit.explain() if d.fit is not None else d.model.explain() if d.model else {}
        if params:
            print("    " + "  ".join(f"{k}={v}" for k, v in params.items()))
        if d.proposal is not None:
            p = d.proposal
            print(f"    would propose {p.kind} {p.current_c} → {p.proposed_c} °C: {p.reason}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg,unused-ignore]
    p = sub.add_parser(
        "model", help="each station's fitted model (coefficients, time constant, fit error) and its next supply",
        description="Fits each station's grey-box model (hourly: T[k+1]−T[k] = α(Ts−T) + β(To−T) + γ) on its stored "
                    "telemetry of the last [control] model_window_h hours, reports the coefficients, the time constant, "
                    "the indoor °C per supply °C and the fit error (RMSE one hour ahead and over the window), and the "
                    "supply the model-predictive strategy would choose now. Reads only; nothing is stored or sent.",
    )
    p.add_argument("--station", action="append", help="only this station (repeatable)")
    p.add_argument("--at", help="as of this time (default: now; local time or RFC 3339)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_model)
