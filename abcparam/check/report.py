"""The width check's report (:class:`CoordReport`): measured against predicted slopes, the regimes, the verdict and
what would settle an inconclusive one (docs/theory.md section 8)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .. import theory
from ..text import signed
from . import stats
from .decision import Fit, SizeRun
from .plot import slopes_figure

# A change that grows past the fail band at every step, at the first by DECISIVE_MARGIN tolerances (and twice its
# noise) more, is a blow-up that a rising loss does not excuse: the loss rises because of it
DECISIVE_MARGIN = 1.0


@dataclass
class CoordReport(SizeRun):
    """What :func:`coord_check` measured, what the theory predicts, and whether they agree."""

    widths: List[int]
    verdict: Optional[theory.Verdict]
    measured_regime: str
    expect: Optional[str] = None
    notes: List[str] = field(default_factory=list)
    nonfinite: List[Tuple[int, int, int, str]] = field(default_factory=list)
    no_prediction: Optional[str] = None
    unowned: List[str] = field(default_factory=list)
    lr_too_large: Optional[Tuple[int, float]] = None
    escalation: List[str] = field(default_factory=list)
    suggestion: Dict[str, str] = field(default_factory=dict)
    # measured at a smaller learning rate than asked (abcparam.check.escalation): the rate asked for, and the width and
    # factor of the loss's rise there
    lowered_from: Optional[Tuple[float, int, float]] = None

    @property
    def theory_regime(self) -> Optional[str]:
        return self.verdict.regime if self.verdict is not None else None

    @property
    def decisive(self) -> List[Fit]:
        """The changes (``dh``/``df``) that blow up: faster than predicted past the fail band at every step, and at
        the first step (one update from initialisation) by ``DECISIVE_MARGIN`` tolerances and twice the noise more.
        Decisive even when the loss rises: it rises because of the blow-up.  An unowned module's growth counts
        the same way (nothing may grow in a stable model).  So does any disagreement at initialisation (step 0):
        no learning rate acts before the first step.  Initialisation first, then the changes."""
        out: List[Fit] = [f for f in self.fits if f.step == 0 and f.status == "disagree"]
        by_change: Dict[Tuple[str, str], List[Fit]] = {}
        for f in self.fits:
            if f.quantity in ("dh", "df") and f.step >= 1:
                by_change.setdefault((f.layer, f.quantity), []).append(f)
        for fs in by_change.values():
            fs = sorted(fs, key=lambda f: f.step)
            if len(fs) == self.steps and all(map(self._grows_past_band, fs)) and self._wide(fs[0]):
                out.extend(fs)
        return out

    @staticmethod
    def _grows_past_band(f: Fit) -> bool:
        predicted = 0.0 if f.predicted is None else float(f.predicted)  # unowned: a stable model's changes do not grow
        return f.status == "disagree" and f.slope > predicted

    def _wide(self, f: Fit) -> bool:
        return math.isinf(f.slope) or f.margin >= max(DECISIVE_MARGIN * self.tolerance, stats.NOISE_FACTOR * f.noise)

    @property
    def growing(self) -> List[Fit]:
        """Slopes that grow with width (beyond the tolerance)."""
        return [f for f in self.fits if f.quantity in ("dh", "df", "h", "f") and (math.isinf(f.slope) or f.slope > self.tolerance)]

    def _decide(self) -> Tuple[str, str]:
        status, why = self._judge()
        if self.lowered_from is not None:
            asked, w, rise = self.lowered_from
            why += (f" (measured at lr {self.lr:g}: at the lr asked for, {asked:g}, the loss rises {rise:.1f}x at width {w}; "
                    "a learning rate's constant changes no width exponent, docs/theory.md section 1)")
        return status, why

    def _judge(self) -> Tuple[str, str]:
        if self.diverged:
            first = self.nonfinite[0]
            return "fail", (f"non-finite values (the run diverged), first at width {first[0]}, seed {first[1]}, "
                            f"step {first[2]} in {first[3]}")
        if self.verdict is None:
            if self.expect is None:
                return "fail", "no prediction to compare with"
            ok = self.measured_regime == self.expect
            return ("pass" if ok else "fail"), f"measured {self.measured_regime}, expected {self.expect} (no prediction)"
        if self.expect is not None and self.verdict.regime != self.expect:
            return "fail", f"the theory predicts {self.verdict.regime}, expected {self.expect}"
        comparison = self.comparison
        if comparison == "disagree" and self.lr_too_large is not None:
            w, rise = self.lr_too_large
            first = self.decisive[0]
            if first.step == 0:
                return "fail", (f"{first.layer} {first.quantity} at initialisation grows like n^{signed(first.slope)} where "
                                f"the theory says n^{first.predicted}, past the fail band: no learning rate acts before the "
                                f"first step (the loss rises {rise:.1f}x at width {w})")
            return "fail", (f"{first.layer} {first.quantity} grows faster than predicted past the fail band at every step "
                            f"(n^{signed(first.slope)} vs n^{first.predicted or 0} at step 1, by {first.margin:.2f} more than "
                            f"the band): a blow-up, which is why the loss rises {rise:.1f}x at width {w}")
        if comparison == "disagree":
            return "fail", "the measurements disagree with the theory"
        if comparison == "inconclusive" and self.lr_too_large is not None and self.verdict.regime != "unstable":
            w, rise = self.lr_too_large
            return "inconclusive", (f"the loss rises {rise:.1f}x during the steps at width {w}: the learning rate is too large "
                                    "for the asymptotics at these widths; would settle it: a smaller learning rate" + self._try())
        if comparison == "inconclusive":
            return "inconclusive", "nothing disagrees, but the measurements " + self._cannot_decide(
                [f"{f.layer} {f.quantity}@{f.step}" for f in self.undecided])
        if self.verdict.regime == "unstable":
            if self.expect == "unstable":
                return "pass", "unstable, as expected (it measurably grows with width)"
            return "fail", "the measurements agree with the theory that the model is UNSTABLE (it blows up as width grows)"
        # here the measured regime is the verdict's (comparison "agree"), which is ``expect`` when one is given
        if self.lr_too_large is not None:
            w, rise = self.lr_too_large
            return "pass", (f"the measurements agree with the theory ({self.verdict.regime}): every quantity at every step, "
                            f"outright, although the loss rises {rise:.1f}x at width {w}")
        return "pass", f"the measurements agree with the theory ({self.verdict.regime})"

    @property
    def comparison(self) -> str:
        """``"agree"``, ``"disagree"``, ``"inconclusive"``: the measurements against the verdict, before ``expect``
        (``"none"`` without a prediction; a diverged run disagrees)."""
        if self.verdict is None:
            return "none"
        if self.diverged:
            return "disagree"
        if self.lr_too_large is not None and self.verdict.regime != "unstable":
            # Outside the asymptotic regime a disagreement may be a finite-width effect of the large step, so it fails
            # only when decisive (a blow-up: the loss rises because of it); agreement of every quantity at every step,
            # and of the regime, is still evidence for the prediction, so it passes
            if self.decisive:
                return "disagree"
            # (outright: an agreement that excuses a slope as a finite-width correction does not count here)
            outright = all(f.status == "-" or f.status == "agree" and not f.reason for f in self.fits)
            agree = outright and self.measured_regime == self.verdict.regime
            return "agree" if agree else "inconclusive"
        if self.verdict.regime == "unstable":
            growth = [f.status for f in self.fits]
            if "agree" in growth:
                return "agree"  # something measurably grows: the lower bound holds
            return "inconclusive" if "inconclusive" in growth else "disagree"
        statuses = {f.status for f in self.fits}
        if "disagree" in statuses:
            return "disagree"
        if "inconclusive" in statuses:
            return "inconclusive"
        return "agree" if self.measured_regime == self.verdict.regime else "disagree"

    @property
    def diverged(self) -> bool:
        """True when some measurement was NaN or infinite (see :attr:`nonfinite`)."""
        return bool(self.nonfinite)

    @property
    def agrees(self) -> bool:
        """True when the measurements agree with the theory's prediction for the declared exponents.

        For a stable parametrization every compared quantity must agree with
        its prediction (within the tolerance, allowing for the noise and the
        leading finite-width correction: :mod:`abcparam.check.stats`).  For an
        unstable one the prediction is only a lower bound (docs/theory.md
        section 8): the measurements agree when something measurably grows with
        width.  A run with non-finite values never agrees: a slope through an
        overflow is no measurement.  Without a prediction there is nothing to
        agree with (False).  An inconclusive comparison does not agree.
        """
        return self.comparison == "agree"  # "none" without a verdict, "disagree" when diverged

    @property
    def passed(self) -> bool:
        """True when the model checks out: the measurements agree with the theory, the model is
        not unstable (unless ``expect="unstable"``), nothing diverged, and the regime is ``expect``.

        Without a prediction (no abcparam layers, or a role missing) the check
        passes only when ``expect`` is given and measured.  An inconclusive
        check does not pass (see :attr:`status`).
        """
        return self.status == "pass"

    @property
    def smallest_margin(self) -> Optional[float]:
        """The smallest distance of an agreeing quantity to the tolerance (how close the pass was)."""
        margins = [f.margin for f in self.fits if f.status == "agree" and self.verdict is not None and self.verdict.regime != "unstable"]
        return min(margins) if margins else None

    # -- rendering ------------------------------------------------------------

    def _rows(self) -> List[Tuple[str, ...]]:
        rows = [("layer", "role", "quantity", "step", "measured", "noise", "predicted", "decision")]
        for f in self.fits:
            pred = "-" if f.predicted is None else (f"{f.predicted}" + (" (bound)" if self._bound(f) else ""))
            if f.predicted_low is not None and not self._bound(f):
                pred = f"{f.predicted_low}..{f.predicted}"
            decision = {"agree": "yes", "disagree": "NO", "inconclusive": "?"}.get(f.status, "-")
            if f.status == "agree" and f.reason and self.verdict is not None and self.verdict.regime != "unstable":
                decision = "yes (corrected)"
            rows.append((f.layer, f.role, f.quantity, str(f.step), signed(f.slope), f"{f.noise:.2f}" if f.noise and math.isfinite(f.noise) else "-", pred, decision))
        return rows

    def _bound(self, f: Fit) -> bool:
        return self.verdict is not None and self.verdict.regime == "unstable" and f.predicted is not None and f.predicted > 0

    def summary(self) -> str:
        theory_txt = self.theory_regime or f"no prediction ({self.no_prediction or 'unknown reason'})"
        lines = [
            f"coordinate check: widths {self.widths}, {self.steps} step(s), seeds {self.seeds}, "
            f"optimizer {self.family or '?'}, lr {self.lr:g}, tolerance {self.tolerance:g}",
            f"theory: {theory_txt}; measured: {self.measured_regime}" + (f"; expected: {self.expect}" if self.expect else ""),
            self.outcome(),
        ]
        if self.nonfinite:
            shown = ", ".join(f"width {w} seed {sd} step {t}: {what}" for w, sd, t, what in self.nonfinite[:6])
            more = f" (+{len(self.nonfinite) - 6} more)" if len(self.nonfinite) > 6 else ""
            lines.append(f"non-finite: {shown}{more}")
        if self.growing:
            lines.append("growing with width: " + ", ".join(
                f"{f.layer} {f.quantity}@{f.step} " + (f"~ n^{signed(f.slope)}" if math.isfinite(f.slope) else "non-finite")
                for f in self.growing))
        if self.mismatches:
            lines.append("disagreeing with the theory: " + ", ".join(
                f"{f.layer} {f.quantity}@{f.step}: {signed(f.slope)} vs {f.predicted} ({f.reason})" for f in self.mismatches))
        if self.undecided:
            lines.append("undecided: " + ", ".join(
                f"{f.layer} {f.quantity}@{f.step}: {signed(f.slope)} vs {f.predicted} ({f.reason})" for f in self.undecided))
        if self.escalation:
            lines.append("added after an inconclusive pass: " + "; ".join(self.escalation))
        if self.unowned:
            lines.append(f"owned by no abcparam layer (trained at the base learning rate, not predicted): {', '.join(self.unowned)}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "widths": self.widths,
            "steps": self.steps,
            "seeds": self.seeds,
            "family": self.family,
            "lr": self.lr,
            "tolerance": self.tolerance,
            "theory_regime": self.theory_regime,
            "measured_regime": self.measured_regime,
            "expect": self.expect,
            "passed": self.passed,
            "status": self.status,
            "agrees": self.agrees,
            "unowned": self.unowned,
            "lr_too_large": None if self.lr_too_large is None else {"width": self.lr_too_large[0], "loss_rise": self.lr_too_large[1]},
            "decisive": [{"layer": f.layer, "quantity": f.quantity, "step": f.step} for f in self.decisive],
            "escalation": self.escalation,
            "suggestion": self.suggestion,
            "lowered_from": None if self.lowered_from is None else dict(zip(("lr", "width", "loss_rise"), self.lowered_from)),
            "outcome": self.outcome(),
            "nonfinite": [{"width": w, "seed": sd, "step": t, "where": what} for w, sd, t, what in self.nonfinite],
            "no_prediction": self.no_prediction,
            "fits": self.fit_records(),
            "verdict": None if self.verdict is None else self.verdict.to_dict(),
            "notes": self.notes,
        }

    def plot(self, path: Optional[str] = None) -> Any:
        """The coordinate-check figure: one panel per step, log RMS against log width,
        a line per layer, dotted lines with the predicted slopes.  Needs matplotlib
        (``pip install abcparam[plot]``); returns the figure and saves it to ``path``."""
        layers = list(dict.fromkeys(f.layer for f in self.fits))

        def lines(step: int) -> List[Tuple[str, Tuple[str, str, int]]]:
            out = "output"
            return [(layer, (layer, ("h" if layer != out else "f") if step == 0 else ("dh" if layer != out else "df"), step))
                    for layer in layers]

        return slopes_figure(self.widths, self.rms, self.fits, [0] + list(range(1, self.steps + 1)), lines,
                             lambda step: "init: RMS h, f" if step == 0 else f"step {step}: RMS of change", "width",
                             f"theory {self.theory_regime}, measured {self.measured_regime}: {self.outcome()}", path)
