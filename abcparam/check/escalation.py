"""Escalation: a check whose first pass cannot decide measures more before it gives up.

An inconclusive width check usually lacks one of two things (docs/theory.md
section 8): seeds, when the slopes' noise keeps them inside the band, or width,
when a finite-width correction (of relative order n^-1/2) keeps a slope short
of its prediction.  So after an inconclusive first pass the check runs, in
order, while it stays inconclusive:

1. twice the seeds, at the same widths;
2. those seeds at the widths moved up one octave (every width doubled);
3. those seeds at the widths moved up another octave.

Each pass is a whole check of its own (its report replaces the previous one),
judged by the same rules but one: a slope short of its prediction is no longer
excused as a finite-width correction (with more seeds the correction test
gains the power to excuse a wrong exponent; an added pass must agree
outright).  A pass is taken only when its predicted cost fits
in what is left of the time ``budget``.  The cost is predicted from the first
pass's time, in proportion to the seeds and to the sum of the squared widths
(a matrix layer's cost; the conservative estimate).  A check left
inconclusive by a loss that rises during the steps gets the seeds pass only:
an added pass passes only by agreeing outright (a disagreement there still
fails only when it is a blow-up), and less noise can settle it, but wider
widths would spend the budget where the learning rate, not the data, is the
trouble; if it stays inconclusive, a quarter of the learning rate is what the
report suggests.  The report lists what was added
(``escalation``) and, when it stays inconclusive, the exact keyword arguments
that would settle it (``suggestion``).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["DEFAULT_BUDGET", "escalate", "plan"]

DEFAULT_BUDGET = 30.0  # seconds: an MLP escalates fully in about 5 s, a 2-block transformer stops within 30 s


def plan(widths: Sequence[int], seeds: Sequence[int]) -> List[Tuple[str, List[int], List[int]]]:
    """The passes added after an inconclusive first one: (what is added, widths, seeds)."""
    more = list(seeds) + [max(seeds) + 1 + k for k in range(len(seeds))]
    return [("seeds", list(widths), more), ("widths", [2 * w for w in widths], more), ("widths", [4 * w for w in widths], more)]


def cost(widths: Sequence[int], seeds: Sequence[int]) -> float:
    """A pass's cost in arbitrary units: seeds times the sum of the squared widths."""
    return len(seeds) * sum(float(w) ** 2 for w in widths)


def _describe(what: str, widths: List[int], seeds: List[int]) -> str:
    return f"seeds={tuple(seeds)}" if what == "seeds" else f"widths={widths}"


def _settleable(report: Any, what: str) -> bool:
    """Inconclusive, and ``what`` ("seeds" or "widths") may settle it: under a rising loss only more seeds (see the
    module's text), since moving the widths up costs most where the learning rate, not the data, is the trouble."""
    return report.status == "inconclusive" and (what == "seeds" or getattr(report, "lr_too_large", None) is None)


def escalate(run: Callable[[List[int], List[int], bool], Any], widths: List[int], seeds: List[int],
             budget: Optional[float], clock: Callable[[], float] = time.perf_counter) -> Any:
    """Run the first pass, then the passes of :func:`plan` while the report is inconclusive and each fits the budget.

    ``run(widths, seeds, escalated)`` is one pass of the check; returns the last pass's report with ``escalation`` (what was
    added, and how each pass came out) and ``suggestion`` (keyword arguments that would settle an inconclusive one).
    ``clock`` measures the passes' time (seconds).
    """
    t0 = clock()
    report = run(widths, seeds, False)
    spent = clock() - t0
    per_unit = spent / cost(widths, seeds)
    added: List[str] = []
    suggestion: Dict[str, str] = {}
    for what, w, s in plan(widths, seeds):
        if not _settleable(report, what):
            break
        predicted = per_unit * cost(w, s)
        if not budget or spent + predicted > budget:
            suggestion[what] = str(tuple(s)) if what == "seeds" else str(w)
            if what == "widths":
                suggestion["seeds"] = str(tuple(s))
            suggestion["budget"] = f"{math.ceil(spent + predicted)}"
            break
        t = clock()
        report = run(w, s, True)
        spent += clock() - t
        added.append(f"{_describe(what, w, s)}: {report.status}")
    else:
        if _settleable(report, "widths"):  # the plan is spent: one octave wider still, with twice the seeds again
            w, s = plan(report.widths, report.seeds)[1][1:]  # (the last pass's widths, an octave up)
            suggestion = {"widths": str(w), "seeds": str(tuple(s))}
    if report.status == "inconclusive" and getattr(report, "lr_too_large", None) is not None:
        suggestion = {"lr": f"{report.lr / 4:g}"}
    report.escalation = added
    report.suggestion = suggestion
    return report
