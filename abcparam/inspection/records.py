"""What :func:`abcparam.inspect` returns: an :class:`Estimate` per exponent, a :class:`TensorUse` per (tensor,
module) pair, and the :class:`Inspection` with its verdict and table (docs/theory.md section 15)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Dict, List, Optional, Tuple

from .. import theory
from ..text import table as text_table


SEVERITY = {"unstable": 3, "trivial": 2, "kernel": 1, "feature_learning": 0}


@dataclass(frozen=True)
class Estimate:
    """One inferred exponent: ``value`` (exact, snapped) or ``None``; ``fit`` the fitted slope; ``residual`` the
    distance |fit - value|; ``how`` says where it comes from ("measured", "zero init", "not trained", ...)."""

    value: Optional[Fraction]
    fit: float = float("nan")
    residual: float = 0.0
    how: str = "measured"

    def __str__(self) -> str:
        if self.value is None:
            return "?" if self.how == "measured" else self.how
        text = str(self.value)
        if self.how != "measured":
            return f"{text} ({self.how})"
        return text if self.residual < 5e-4 else f"{text} (residual {self.residual:.3f})"

    def to_dict(self) -> Dict[str, Any]:
        return {"value": None if self.value is None else str(self.value),
                "fit": None if not math.isfinite(self.fit) else self.fit, "residual": self.residual, "how": self.how}


@dataclass(frozen=True)
class TensorUse:
    """One trained tensor as one module uses it (a tied tensor has one use per module)."""

    tensor: str
    module: str
    kind: str
    shapes: Tuple[Tuple[int, ...], ...]
    role: str
    a: Estimate
    b: Estimate
    c: Estimate
    eps: Estimate
    family: Optional[str]
    optimizer: Optional[str]
    notes: Tuple[str, ...] = ()

    def to_dict(self) -> Dict[str, Any]:
        return {"tensor": self.tensor, "module": self.module, "kind": self.kind, "shapes": [list(s) for s in self.shapes],
                "role": self.role, "a": self.a.to_dict(), "b": self.b.to_dict(), "c": self.c.to_dict(),
                "eps": self.eps.to_dict(), "family": self.family, "optimizer": self.optimizer, "notes": list(self.notes)}


@dataclass
class Inspection:
    """What :func:`inspect` inferred and concluded.  ``regime`` is the verdict's (the most severe over the
    per-role combinations and the attention), ``reasons`` name the tensors; ``preset`` is the named
    parametrization the model is equivalent to, if any; ``coord`` the coordinate check's report (with ``batch=``)."""

    widths: List[int]
    uses: List[TensorUse]
    attention: List[Tuple[str, Estimate, Tuple[int, ...]]]
    verdicts: List[Tuple[Dict[str, List[str]], theory.Verdict]]
    regime: Optional[str]
    reasons: List[str]
    preset: Optional[str]
    sp_like: bool
    notes: List[str] = field(default_factory=list)
    coord: Any = None

    @property
    def confirmed(self) -> Optional[bool]:
        """With ``batch=``: whether the coordinate check's measurements agree with the inferred verdict (None when
        the check was not run or could not decide)."""
        if self.coord is None:
            return None
        if self.coord.status == "inconclusive" or self.coord.verdict is None:
            return None
        return bool(self.coord.agrees)

    def use(self, tensor: str, module: Optional[str] = None) -> TensorUse:
        """The use of ``tensor`` (by parameter name), by ``module`` when the tensor is tied."""
        found = [u for u in self.uses if u.tensor == tensor and (module is None or u.module == module)]
        if not found:
            raise KeyError(f"tensor: no trained tensor named {tensor!r}; known: {', '.join(sorted({u.tensor for u in self.uses}))}")
        return found[0]

    def summary(self) -> str:
        """One line: the parametrization's name (or how it is written) and the regime."""
        if self.preset:
            what = self.preset
        elif self.sp_like:
            what = "SP-like (no multipliers, one learning rate; init exponents differ from SP)"
        else:
            what = "no named parametrization"
        att = sorted({str(e.value) for _, e, _ in self.attention if e.value is not None})
        if att:
            what += f", attention scale ~ d_head^-{'/'.join(att)}"
        return f"{what}: {self.regime or 'no verdict'}"

    def __str__(self) -> str:
        head = ("tensor", "module", "role", "a", "b", "c", "eps", "family")
        rows = [head] + [(u.tensor, f"{u.module} ({u.kind})", u.role, str(u.a), str(u.b), str(u.c), str(u.eps), u.family or "-")
                         for u in self.uses]
        lines = [f"abcparam inspect: widths {self.widths}; exponents of n (a: multiplier n^-a, b: init n^-b, "
                 "c: learning rate n^-c, eps: epsilon n^-eps)", ""]
        lines.append(text_table(rows))
        for name, e, dims in self.attention:
            lines.append(f"attention {name}: head_dim {list(dims)}, scale ~ d_head^-{e}" if e.value is not None
                         else f"attention {name}: {e.how}")
        noted = [(u.tensor, n) for u in self.uses for n in u.notes]
        if noted:
            lines.append("")
            lines += [f"note: {t}: {n}" for t, n in noted]
        lines += ["", f"verdict: {self.summary()}"]
        lines += [f"  - {r}" for r in self.reasons]
        lines += [f"note: {n}" for n in self.notes]
        if self.coord is not None:
            confirm = {True: "confirms", False: "CONTRADICTS", None: "could not decide on"}[self.confirmed]
            lines += ["", f"coordinate check ({self.coord.status}): the measured slopes {confirm} the inferred verdict", str(self.coord)]
        return "\n".join(lines)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "widths": self.widths,
            "tensors": [u.to_dict() for u in self.uses],
            "attention": [{"module": n, "exponent": e.to_dict(), "head_dims": list(d)} for n, e, d in self.attention],
            "regime": self.regime,
            "reasons": self.reasons,
            "preset": self.preset,
            "sp_like": self.sp_like,
            "verdicts": [{"columns": cols, "verdict": v.to_dict()} for cols, v in self.verdicts],
            "notes": self.notes,
            "coord": None if self.coord is None else self.coord.to_dict(),
            "confirmed": self.confirmed,
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)
