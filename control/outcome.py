"""Did the change help? The recheck's verdict from before/after temperatures (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from analytics.results import AnalysisResult
from control.proposal import Outcome, Proposal


def measured(p: Proposal, results: Sequence[AnalysisResult]) -> float | None:
    """The number the proposal's ``before_c`` holds, measured again: the home's mean for a visit,
    else the coldest (raise) or warmest (lower) weighted mean of its target communities."""
    if p.kind == "home_visit":
        vals = [r.home_means_c[p.home_id] for r in results if p.home_id in r.home_means_c]
        return vals[-1] if vals else None
    means = [
        c.weighted_mean_c for r in results for c in r.communities if c.community in p.targets and c.weighted_mean_c is not None
    ]
    if not means:
        return None
    return max(means) if p.kind == "lower_supply" else min(means)


def judge(p: Proposal, after_c: float | None, target_c: float, ceiling_c: float, improve_min_c: float) -> Outcome:
    if after_c is None:
        return "not_improved"  # no data after the change is not evidence that it worked
    before = p.before_c
    if p.kind == "lower_supply":
        return "improved" if target_c <= after_c <= ceiling_c else "not_improved"
    goal = float(p.evidence.get("threshold_c", target_c)) if p.kind == "home_visit" else target_c
    if after_c >= goal:
        return "improved"
    if before is not None and after_c - before >= improve_min_c:
        return "improved"
    return "not_improved"
