"""The exponent calculus of docs/theory.md sections 3 and 8: the own-update exponents s_l, the feature-update exponents
r_l, the logit terms of q, and the slopes a coordinate check should measure."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Dict, Optional, Sequence, Tuple

from .exponents import HALF, ONE, ZERO


# --------------------------------------------------------------------------
# The exponent calculus (docs/theory.md sections 3 and 8)
# --------------------------------------------------------------------------


def alignment_exponents(alignment: str, depth: int) -> Tuple[Tuple[Fraction, ...], ...]:
    """(A, O, U) indexed by layer 1..L+1 (index 0 unused: the input layer has none)."""
    L = depth
    A = (ZERO,) + (ONE,) * L
    U = (ZERO,) + (ONE,) * L
    O = (ZERO,) + (HALF,) * (L - 1) + ((ONE if alignment == "tp4" else HALF),)
    return A, O, U


@dataclass(frozen=True)
class Analysis:
    g: Fraction
    s: Tuple[Fraction, ...]
    r: Tuple[Fraction, ...]
    q_terms: Tuple[Fraction, Fraction, Fraction]

    @property
    def q(self) -> Fraction:
        return min(self.q_terms)


def analyse(
    beta: Sequence[Fraction], gamma: Sequence[Fraction], families: Sequence[str], alignment: str, step: Optional[int]
) -> Analysis:
    """Sections 3 and 11.  ``g`` is the backward signal an SGD-like layer sees; a layer of a normalised
    family (Adam-like, spectral, relative) sees 0 whatever the gradient's scale."""
    L = len(beta) - 1
    A, O, U = alignment_exponents(alignment, L)
    if "sgd" not in families:
        g = ZERO
    elif step == 1:
        g = beta[L]
    else:
        g = min(beta[L], gamma[L])
    gl = [g if f == "sgd" else ZERO for f in families]
    s = [gamma[0] + gl[0]]
    r = [s[0]]
    for i in range(1, L):  # hidden layers l = i + 1
        s.append(gamma[i] + gl[i] - A[i])
        r.append(min(s[i], gamma[i] + gl[i] + r[i - 1] - U[i], r[i - 1] + HALF - O[i]))
    rr = r[-1]
    q_terms = (beta[L] + rr - O[L], gamma[L] - A[L], gamma[L] + rr - U[L])
    return Analysis(g, tuple(s), tuple(r), q_terms)


@dataclass(frozen=True)
class Slopes:
    """Width exponents a coordinate check should measure (docs/theory.md section 8).

    Each value is the predicted slope of log RMS against log n: ``delta_h[l-1]``
    for Delta h^l (that is, -r_l), ``delta_f`` for the output change (-q) and
    ``f0`` for the initial output (1/2 - beta_{L+1}).  For unstable
    parametrizations the positive slopes are a lower bound, not a value.
    """

    step: int
    delta_h: Tuple[Fraction, ...]
    delta_f: Fraction
    f0: Fraction

    def to_dict(self) -> Dict[str, Any]:
        return {"step": self.step, "delta_h": [str(x) for x in self.delta_h], "delta_f": str(self.delta_f), "f0": str(self.f0)}
