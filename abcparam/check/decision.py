"""What every check's report is made of: fitted slopes (:class:`Fit`) and one decision over them (:class:`Decision`).

The width check's :class:`abcparam.CoordReport` and the depth check's
:class:`abcparam.check.depth.DepthReport` both hold a list of :class:`Fit` and
derive pass / fail / inconclusive from their statuses the same way
(docs/theory.md section 8).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Dict, List, Optional, Tuple

from ..text import table as text_table

__all__ = ["DEFAULT_TOLERANCE", "Decision", "Fit", "TOLERANCE_IS"]

DEFAULT_TOLERANCE = 0.2
TOLERANCE_IS = "the largest allowed |measured - predicted| slope"
_JSON_LARGE = 1e308  # an infinite slope in JSON (which has no infinity)


def json_float(x: float) -> Optional[float]:
    """A number JSON can carry: NaN becomes null, an infinity the largest float of its sign (JSON has no infinity)."""
    return x if math.isfinite(x) else (None if math.isnan(x) else math.copysign(_JSON_LARGE, x))


@dataclass(frozen=True)
class Fit:
    """One fitted slope: ``quantity`` of ``layer`` after ``step`` updates.

    ``quantity`` is a key of :data:`QUANTITIES`: ``"h"`` (RMS of the layer's
    output; only at step 0, at initialisation) or ``"dh"`` (RMS of its change
    since initialisation); for the model output the layer is ``"output"`` and
    the quantities are ``"f"`` (at step 0) and ``"df"``; a tied readout's
    logits at initialisation are split by token (``"h"``/``"f"`` the other
    tokens', ``"h_own"``/``"f_own"`` the input token's own, predicted between
    ``predicted_low`` and ``predicted``).  A readout's bias has no width dimension and
    starts at order one, so for readout layers the check measures the part the
    theory predicts, the weight term ``output - bias``.  ``slope`` is the
    least-squares slope of the seed-averaged log RMS against log width;
    ``spread`` the standard deviation of the per-seed slopes; ``noise`` the
    standard error used in the decision.  ``predicted`` is the theory's slope
    (a Fraction) or ``None``; ``status`` is ``"agree"``, ``"disagree"``,
    ``"inconclusive"`` or ``"-"`` (nothing compared), decided by
    :func:`abcparam.check.stats.judge`; ``ok`` is True / False / None for
    agree / disagree / anything else.
    """

    layer: str
    role: str
    quantity: str
    step: int
    slope: float
    spread: float
    predicted: Optional[Fraction]
    ok: Optional[bool]
    status: str = "-"
    noise: float = 0.0
    margin: float = 0.0
    reason: str = ""
    settle: str = ""
    predicted_low: Optional[Fraction] = None


class Decision:
    """What every check's report shares: its fits' statuses, one decision (``_decide() -> (status, why)``), and the
    renderings built from a report's ``summary()``, ``_rows()`` (a table, header first) and ``to_dict()``."""

    fits: List[Fit]

    def _decide(self) -> Tuple[str, str]:  # pragma: no cover - every report defines it
        raise NotImplementedError

    def summary(self) -> str:  # pragma: no cover - every report defines it
        raise NotImplementedError

    def _rows(self) -> List[Tuple[str, ...]]:  # pragma: no cover - every report defines it
        raise NotImplementedError

    def to_dict(self) -> Dict[str, Any]:  # pragma: no cover - every report defines it
        raise NotImplementedError

    def table(self) -> str:
        """The fits as a plain-text table."""
        return text_table(self._rows())

    def __str__(self) -> str:
        return self.summary() + "\n\n" + self.table()

    def to_markdown(self) -> str:
        """The summary and the table in Markdown (for a CI job summary)."""
        rows = self._rows()
        md = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        md += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return self.summary().replace("\n", "  \n") + "\n\n" + "\n".join(md)

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    def fit_records(self) -> List[Dict[str, Any]]:
        """Every fit as plain JSON values (exponents as strings such as "1/2")."""
        return [
            {
                "layer": f.layer, "role": f.role, "quantity": f.quantity, "step": f.step,
                "slope": json_float(f.slope), "spread": json_float(f.spread),
                "predicted": None if f.predicted is None else str(f.predicted),
                "predicted_low": None if f.predicted_low is None else str(f.predicted_low),
                "ok": f.ok, "status": f.status, "noise": json_float(f.noise), "margin": json_float(f.margin),
                "reason": f.reason, "settle": f.settle,
            }
            for f in self.fits
        ]

    @property
    def mismatches(self) -> List[Fit]:
        """Quantities whose measurement disagrees with the prediction (beyond the tolerance and the noise)."""
        return [f for f in self.fits if f.status == "disagree"]

    @property
    def undecided(self) -> List[Fit]:
        """Quantities the measurements cannot decide (see :attr:`Fit.settle` for what would)."""
        return [f for f in self.fits if f.status == "inconclusive"]

    @property
    def inconclusive(self) -> bool:
        """True when nothing disagrees but something could not be decided: neither pass nor fail."""
        return self.status == "inconclusive"

    @property
    def status(self) -> str:
        """``"pass"``, ``"fail"`` or ``"inconclusive"``: the outcome :attr:`passed` and the report's words share."""
        return self._decide()[0]

    def _try(self) -> str:
        """The keyword arguments that would settle an inconclusive check (a report's ``suggestion``, filled by
        :func:`abcparam.check.escalation.escalate`), as a user passes them."""
        suggestion: Dict[str, str] = getattr(self, "suggestion", {})
        if not suggestion:
            return ""
        kwargs = ", ".join(f"{k}={v}" for k, v in suggestion.items() if k != "budget")
        budget = suggestion.get("budget")
        return f"; try {kwargs}" + (f" (or budget={budget} to let the check add them)" if budget else "")

    def _cannot_decide(self, names: List[str]) -> str:
        """Why an inconclusive report could not decide: the quantities (``names``, the first four), what would settle
        them (their fits' :attr:`Fit.settle`), and the keyword arguments to try (:meth:`_try`)."""
        settle = sorted({f.settle for f in self.undecided if f.settle})
        listed = ", ".join(names[:4]) + (f" (+{len(names) - 4} more)" if len(names) > 4 else "")
        return f"cannot decide {listed}" + (f"; would settle it: {'; '.join(settle)}" if settle else "") + self._try()

    def outcome(self) -> str:
        """One line: PASS, FAIL or INCONCLUSIVE and why; the word is :attr:`status`, so the two cannot disagree."""
        status, why = self._decide()
        return f"{status.upper()}: {why}"


@dataclass
class SizeRun(Decision):
    """What a width or a depth check ran: ``steps`` updates at the base learning rate ``lr`` for each of ``seeds``,
    trained by the optimizer ``family`` (None when unknown), and the fits judged at ``tolerance``;
    ``rms[(module, quantity, step)]`` holds the measured RMS per size and seed.  Each check's report adds its sizes
    (``widths`` or ``depths``) and its verdict."""

    steps: int
    seeds: List[int]
    family: Optional[str]
    lr: float
    tolerance: float
    fits: List[Fit]
    rms: Dict[Tuple[str, str, int], List[List[float]]]
