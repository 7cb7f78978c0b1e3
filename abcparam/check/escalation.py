"""Escalation: a check whose first pass cannot decide measures more before it gives up.

An inconclusive width check usually lacks one of three things (docs/theory.md
section 8): seeds, when the slopes' noise keeps them inside the band; width,
when a finite-width correction (of relative order n^-1/2) keeps a slope short
of its prediction; or a smaller learning rate, when the loss rises during the
steps (the steps are then not small at these widths).  So after an
inconclusive first pass the check runs, while it stays inconclusive:

1. twice the seeds, at the same widths;
2. while the loss still rises: the learning rate divided by 4 (at most twice,
   so down to 1/16 of the one asked for), with those seeds;
3. those seeds at the widths moved up one octave (every width doubled), then
   another octave, at the learning rate reached.

A smaller learning rate measures the same exponents: the constants of an
abc-parametrization (its multipliers, init scales and the base learning rate)
do not change any width exponent (docs/theory.md section 1), so an agreement
or a blow-up measured at a quarter of the rate is one of the model as asked.
The report then says at which rate it decided and why it lowered it
(``lowered_from``).  Wider widths are never spent on a rising loss: there the
learning rate, not the data, is the trouble.

Each pass is a whole check of its own (its report replaces the previous one),
judged by the same rules but one: a slope short of its prediction is no longer
excused as a finite-width correction (with more seeds the correction test
gains the power to excuse a wrong exponent; an added pass must agree
outright).  A pass is taken only when its predicted cost fits
in what is left of the time ``budget``.  The cost is predicted from the first
pass's time, in proportion to the seeds and to the sum of the squared widths
(a matrix layer's cost; the conservative estimate).  The report lists what was
added (``escalation``) and, when it stays inconclusive, the exact keyword
arguments that would settle it (``suggestion``).
"""

from __future__ import annotations

import math
import time
from fractions import Fraction
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["DEFAULT_BUDGET", "escalate", "plan"]

DEFAULT_BUDGET = 30.0  # seconds: an MLP escalates fully in about 5 s, a 2-block transformer stops within 30 s
LR_DIVISOR = 4  # a pass under a rising loss divides the learning rate by this ...
LR_PASSES = 2  # ... at most this many times


def plan(widths: Sequence[int], seeds: Sequence[int]) -> List[Tuple[str, List[int], List[int]]]:
    """The passes added after an inconclusive first one while the loss does not rise: (what is added, widths, seeds)."""
    more = list(seeds) + [max(seeds) + 1 + k for k in range(len(seeds))]
    return [("seeds", list(widths), more), ("widths", [2 * w for w in widths], more), ("widths", [4 * w for w in widths], more)]


def cost(widths: Sequence[int], seeds: Sequence[int]) -> float:
    """A pass's cost in arbitrary units: seeds times the sum of the squared widths."""
    return len(seeds) * sum(float(w) ** 2 for w in widths)


def _rising(report: Any) -> bool:
    return getattr(report, "lr_too_large", None) is not None


def _next(report: Any, passes: List[Tuple[str, List[int], List[int]]], taken: int, lowered: int,
          scale: Fraction) -> Optional[Tuple[str, List[int], List[int], Fraction]]:
    """The pass to add after ``report`` (None: nothing left to try): the seeds pass first; then, under a rising loss,
    a smaller learning rate (``lowered`` of :data:`LR_PASSES` taken so far); then the wider widths of ``passes``
    (``taken`` of them run) at the learning rate ``scale`` reached."""
    if taken == 0:
        return (*passes[0], scale)
    if _rising(report):
        return ("lr", report.widths, report.seeds, scale / LR_DIVISOR) if lowered < LR_PASSES else None
    return (*passes[taken], scale) if taken < len(passes) else None


def _describe(what: str, widths: List[int], seeds: List[int], lr: float) -> str:
    return {"seeds": f"seeds={tuple(seeds)}", "widths": f"widths={widths}", "lr": f"lr={lr:g}"}[what]


def _suggest(what: str, widths: List[int], seeds: List[int], lr: float) -> Dict[str, str]:
    """The keyword arguments that run the pass ``what`` by hand."""
    out = {"lr": f"{lr:g}"} if what == "lr" else {}
    if what == "widths":
        out["widths"] = str(widths)
    out["seeds"] = str(tuple(seeds))
    return out


def escalate(run: Callable[[List[int], List[int], bool, Fraction], Any], widths: List[int], seeds: List[int],
             budget: Optional[float], clock: Callable[[], float] = time.perf_counter) -> Any:
    """Run the first pass, then the passes of the module's text while the report is inconclusive and each fits the
    budget.

    ``run(widths, seeds, escalated, scale)`` is one pass of the check, at ``scale`` times the learning rate asked for
    (a fraction: 1, 1/4, 1/16); returns the last pass's report with ``escalation`` (what was added, and how each pass
    came out), ``suggestion`` (keyword arguments that would settle an inconclusive one) and, when it was measured at a
    smaller learning rate, ``lowered_from`` (the rate asked for, and the width and factor of the loss's rise there).
    ``clock`` measures the passes' time (seconds).
    """
    t0 = clock()
    first = report = run(widths, seeds, False, Fraction(1))
    spent = clock() - t0
    per_unit = spent / cost(widths, seeds)
    passes = plan(widths, seeds)
    added: List[str] = []
    suggestion: Dict[str, str] = {}
    taken, lowered, scale = 0, 0, Fraction(1)
    lowered_from = None
    while report.status == "inconclusive":
        step = _next(report, passes, taken, lowered, scale)
        if step is None:
            suggestion = _stuck(report)
            break
        what, w, s, next_scale = step
        lr = first.lr * float(next_scale)
        predicted = per_unit * cost(w, s)
        if not budget or spent + predicted > budget:
            suggestion = {**_suggest(what, w, s, lr), "budget": f"{math.ceil(spent + predicted)}"}
            break
        if what == "lr" and lowered_from is None:
            lowered_from = (report.lr, *report.lr_too_large)
        t = clock()
        report = run(w, s, True, next_scale)
        spent += clock() - t
        added.append(f"{_describe(what, w, s, lr)}: {report.status}")
        if what == "lr":
            lowered, scale = lowered + 1, next_scale
        else:
            taken += 1
    report.escalation = added
    report.suggestion = suggestion
    if lowered_from is not None:
        report.lowered_from = lowered_from
    return report


def _stuck(report: Any) -> Dict[str, str]:
    """What to try when every pass was run: a quarter of the learning rate under a rising loss, else one octave wider
    still with twice the seeds again."""
    if _rising(report):
        return {"lr": f"{report.lr / LR_DIVISOR:g}"}
    w, s = plan(report.widths, report.seeds)[1][1:]  # (the last pass's widths, an octave up)
    return {"widths": str(w), "seeds": str(tuple(s))}
