"""Did the change help? The recheck's verdict on the homes that asked for it (pure).

A change is judged on what caused it (000 section 五: check the temperature again 48 h after adjusting):

- the homes below standard when it was proposed (``evidence["homes"]``: a visit's home, a supply raise's
  or a balancing job's cold homes): improved when every one of them that reports is at its standard now;
  not improved when any is still below it, or none reports (no data is no evidence);
- a change no home asked for (a community mean under target with no home below standard for two hours, a
  cold-snap step): improved when the community mean reached its target or rose by ``improve_min_c``;
- a lowering: improved when the warmest mean is back between its target and the ceiling and no home
  of the communities it served fell below standard;
- a home-valve job (inter-home balancing): improved when no home of the classes it set is below its standard
  (the valves took only heat nobody needed, or gave back what a cold class lacked); not improved when one is, or
  none of them reports;
- confounded (decided by the caller): another change took effect at the same station inside the window,
  so nobody can say which one did it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from analytics.results import AnalysisResult
from control.proposal import Outcome, Proposal


def judged_mean(means: Iterable[float], lowering: bool) -> float | None:
    """The community mean a station change is judged on: a lowering on the warmest of its communities, a raise on
    the coldest (None without one). The proposal's ``before_c`` and the recheck's ``after_c`` both follow it."""
    vals = list(means)
    if not vals:
        return None
    return max(vals) if lowering else min(vals)


def measured(p: Proposal, results: Sequence[AnalysisResult]) -> float | None:
    """The number the proposal's ``before_c`` holds, measured again: the home's mean for a visit,
    else the coldest (raise) or warmest (lower) weighted mean of its target communities."""
    if p.kind == "home_visit":
        vals = [r.home_means_c[p.home_id] for r in results if p.home_id in r.home_means_c]
        return vals[-1] if vals else None
    if p.kind == "home_valves":
        return throttled_mean(p, results)
    means = [
        c.weighted_mean_c for r in results for c in r.communities if c.community in p.targets and c.weighted_mean_c is not None
    ]
    return judged_mean(means, p.kind == "lower_supply")


def valve_homes(p: Proposal) -> tuple[list[str], list[str]]:
    """A home-valve job's sensor homes: (those it is measured on — the throttled ones, or the opened ones when it only
    opens —, every home of the classes it set)."""
    throttled = [str(h) for h in p.evidence.get("throttled_homes", [])]
    every = [str(h) for h in p.evidence.get("homes_set", throttled)]
    return (throttled or every), every


def throttled_mean(p: Proposal, results: Sequence[AnalysisResult]) -> float | None:
    """A home-valve job's measure: the mean of its measured homes (``valve_homes``) that report."""
    homes = valve_homes(p)[0]
    vals = [r.home_means_c[h] for r in results for h in homes if h in r.home_means_c]
    return sum(vals) / len(vals) if vals else None


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    after_c: float | None
    still_below: tuple[str, ...] = ()  # of the homes that caused it
    no_data: tuple[str, ...] = ()  # of the homes that caused it: no reading in the window
    why: str = ""


def caused_by(p: Proposal) -> tuple[str, ...]:
    homes = p.evidence.get("homes")
    if homes:
        return tuple(str(h) for h in homes)
    return (p.home_id,) if p.kind == "home_visit" and p.home_id else ()


def judge(p: Proposal, results: Sequence[AnalysisResult], target_c: float, ceiling_c: float, improve_min_c: float) -> Verdict:
    after = measured(p, results)
    below = {hb.home_id for r in results for hb in r.homes_below_standard}
    reporting = {h for r in results for h in r.home_means_c}
    targets = [c for r in results for c in r.communities if c.community in p.targets]
    window_target = min((c.target_c for c in targets if c.target_c is not None), default=target_c)
    if p.kind == "lower_supply":
        cold = sorted(below)  # the results are the analyses of the communities it served
        ok = after is not None and window_target <= after <= ceiling_c and not cold
        why = "back between target and ceiling" if ok else (
            "no data" if after is None else f"homes below standard after the cut: {', '.join(cold)}" if cold
            else "not between target and ceiling")
        return Verdict("improved" if ok else "not_improved", after, tuple(cold), (), why)
    if p.kind == "home_valves":
        measured_on, every = valve_homes(p)
        chilled = tuple(h for h in every if h in below)
        if chilled:
            return Verdict("not_improved", after, chilled, (), f"homes of the classes set below standard: {', '.join(chilled)}")
        if after is None:
            return Verdict("not_improved", None, (), tuple(measured_on), "no reading from the homes of the classes set")
        was = "" if p.before_c is None else f"{p.before_c:.1f} → "
        what = "throttled" if p.evidence.get("throttled_homes") else "opened"
        return Verdict("improved", after, why=f"no home of the classes set below its standard (the {what} homes' "
                                                f"mean {was}{after:.1f} °C)")
    homes = caused_by(p)
    if homes:
        still = tuple(h for h in homes if h in below)
        silent = tuple(h for h in homes if h not in reporting and h not in below)
        if still:
            return Verdict("not_improved", after, still, silent, f"still below standard: {', '.join(still)}")
        if len(silent) == len(homes):
            return Verdict("not_improved", after, (), silent, "no reading from those homes after the change")
        return Verdict("improved", after, (), silent, "every home that asked for it is at its standard")
    if after is None:
        return Verdict("not_improved", None, (), (), "no data after the change")  # not evidence that it worked
    if after >= window_target:
        return Verdict("improved", after, why="the community mean reached its target")
    if p.before_c is not None and after - p.before_c >= improve_min_c:
        return Verdict("improved", after, why=f"the community mean rose by {after - p.before_c:.1f} °C")
    return Verdict("not_improved", after, why="the community mean is under its target and did not rise enough")
