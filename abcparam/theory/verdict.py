"""The classifier of docs/theory.md section 4: stable, trivial, feature learning or kernel, with the reasons layer by
layer."""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..text import table as text_table
from .calculus import Analysis, Slopes, alignment_exponents, analyse
from .exponents import HALF, Exponents, alignment_name, families_of, family_arg, family_label, power_text
from .presets import Preset, equivalent_preset


@dataclass(frozen=True)
class Verdict:
    """The exact verdict on one abc-parametrization (docs/theory.md section 4).

    Exponents are decay exponents: Delta h^l = Theta(n^-r_l), Delta f = Theta(n^-q).
    ``f0_exponent`` is the growth exponent of the initial output,
    f_0 = Theta(n^f0_exponent).  ``updated_maximally`` has one flag per layer
    (the readout last), ``features_evolve`` one per layer l <= L.  ``faithful``
    is ``None`` unless the readout is trained by an Adam-like optimizer.
    ``families`` has the optimizer family of each layer; ``optimizer`` is that
    family when all layers share it, else ``"hybrid"``.  Every number is a Fraction; use
    :meth:`to_dict` / :meth:`to_json` for a serialisable form.
    """

    regime: str
    stable_at_init: bool
    stable: bool
    nontrivial: bool
    r: Fraction
    q: Fraction
    f0_exponent: Fraction
    r_layers: Tuple[Fraction, ...]
    s_layers: Tuple[Fraction, ...]
    beta: Tuple[Fraction, ...]
    gamma: Tuple[Fraction, ...]
    g: Fraction
    updated_maximally: Tuple[bool, ...]
    features_evolve: Tuple[bool, ...]
    readout_initialised_maximally: bool
    faithful: Optional[bool]
    reasons: Tuple[str, ...]
    equivalent_to: Optional[str]
    exponents: Exponents
    optimizer: str
    alignment: str
    linear: bool = False
    name: Optional[str] = field(default=None, compare=False)
    families: Tuple[str, ...] = ()

    @property
    def depth(self) -> int:
        return len(self.r_layers)

    @property
    def feature_learning(self) -> bool:
        return self.regime == "feature_learning"

    @property
    def kernel(self) -> bool:
        return self.regime == "kernel"

    @property
    def dichotomy_applies(self) -> bool:
        """TP4 Cor 3.9 holds for nonlinear networks only."""
        return not self.linear

    def predicted_slopes(self, step: int = 2) -> Slopes:
        """Slopes a coordinate check should measure after ``step`` updates (>= 1).

        For SGD-like optimizers step 1 differs from later steps: only the
        initial readout carries the backward signal (g = beta_{L+1}).

        >>> from abcparam.theory import preset
        >>> v = classify(preset("ntk", depth=2))
        >>> [str(x) for x in v.predicted_slopes(1).delta_h], str(v.predicted_slopes(1).delta_f)
        (['-1/2', '-1/2'], '0')
        """
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 1:
            raise ValueError(f"step: the number of updates taken, an integer >= 1; got {step!r}")
        an = analyse(self.beta, self.gamma, self.families, self.alignment, 1 if step == 1 else None)
        return Slopes(int(step), tuple(-x for x in an.r), -an.q, self.f0_exponent)

    # -- rendering ---------------------------------------------------------

    def table(self) -> str:
        """A per-layer table: exponents, invariants, s_l, r_l and flags."""
        L = self.depth
        hybrid = len(set(self.families)) > 1
        rows = [("layer", "role") + (("family",) if hybrid else ()) + ("a", "b", "c", "beta", "gamma", "s_l", "r_l", "flags")]
        e = self.exponents
        for i in range(L + 1):
            role = "input" if i == 0 else ("output" if i == L else "hidden")
            flags = []
            if self.updated_maximally[i]:
                flags.append("updated maximally")
            if i < L:
                if self.features_evolve[i]:
                    flags.append("features evolve")
                s_l, r_l = str(self.s_layers[i]), str(self.r_layers[i])
            else:
                if self.readout_initialised_maximally:
                    flags.append("initialised maximally")
                s_l, r_l = "-", "-"
            rows.append(
                (str(i + 1), role) + ((self.families[i],) if hybrid else ()) + (str(e.a[i]), str(e.b[i]), str(e.c[i]), str(self.beta[i]), str(self.gamma[i]), s_l, r_l, ", ".join(flags))
            )
        return text_table(rows)

    def __str__(self) -> str:
        head = f"{self.name + ': ' if self.name else ''}{self.regime}"
        lines = [
            f"verdict: {head}  (optimizer {self._optimizer_text()}, alignment {self.alignment}, depth L = {self.depth})",
            f"r = {self.r}, q = {self.q}, f_0 ~ {power_text(self.f0_exponent)}, stable at init: {_yes(self.stable_at_init)}, "
            f"stable: {_yes(self.stable)}, nontrivial: {_yes(self.nontrivial)}"
            + ("" if self.faithful is None else f", faithful: {_yes(self.faithful)}"),
        ]
        if self.equivalent_to:
            lines.append(f"equivalent to: {self.equivalent_to}")
        lines.append("")
        lines.append(self.table())
        lines.append("")
        lines.append("reasons:")
        lines.extend(f"  - {x}" for x in self.reasons)
        return "\n".join(lines)

    def _optimizer_text(self) -> str:
        if self.optimizer != "hybrid":
            return self.optimizer
        return "hybrid: " + ", ".join(self.families)

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict: Fractions become strings such as ``"-1/2"``."""
        s = lambda xs: [str(x) for x in xs]  # noqa: E731
        return {
            "name": self.name,
            "regime": self.regime,
            "stable_at_init": self.stable_at_init,
            "stable": self.stable,
            "nontrivial": self.nontrivial,
            "r": str(self.r),
            "q": str(self.q),
            "f0_exponent": str(self.f0_exponent),
            "r_layers": s(self.r_layers),
            "s_layers": s(self.s_layers),
            "beta": s(self.beta),
            "gamma": s(self.gamma),
            "g": str(self.g),
            "updated_maximally": list(self.updated_maximally),
            "features_evolve": list(self.features_evolve),
            "readout_initialised_maximally": self.readout_initialised_maximally,
            "faithful": self.faithful,
            "reasons": list(self.reasons),
            "equivalent_to": self.equivalent_to,
            "exponents": self.exponents.to_dict(),
            "optimizer": self.optimizer,
            "families": list(self.families),
            "alignment": self.alignment,
            "linear": self.linear,
            "predicted_slopes": {str(t): self.predicted_slopes(t).to_dict() for t in (1, 2)},
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Verdict":
        """Rebuild a verdict from :meth:`to_dict` output, re-deriving and checking every field."""
        try:
            e = data["exponents"]
            fams = data.get("families") or data["optimizer"]
            v = classify(e["a"], e["b"], e["c"], optimizer=fams, alignment=data["alignment"], linear=data.get("linear", False))
        except KeyError as err:
            raise ValueError(f"data: missing key {err}; expected the output of Verdict.to_dict()") from None
        v = replace(v, name=data.get("name"))
        if v.to_dict() != dict(data):
            bad = sorted(k for k, x in v.to_dict().items() if data.get(k) != x)
            raise ValueError(f"data: fields {bad} disagree with the verdict their exponents give; the data was altered")
        return v

    @classmethod
    def from_json(cls, text: str) -> "Verdict":
        return cls.from_dict(json.loads(text))


def _yes(x: bool) -> str:
    return "yes" if x else "no"


# --------------------------------------------------------------------------
# The classifier
# --------------------------------------------------------------------------


def _coerce(a: Any, b: Any, c: Any, family: Any) -> Tuple[Exponents, Optional[str]]:
    if isinstance(a, Preset):
        if b is not None or c is not None:
            raise TypeError("b, c: give either a preset or the exponents (a, b, c), not both")
        return a.exponents(family), a.name
    if isinstance(a, Exponents):
        if b is not None or c is not None:
            raise TypeError("b, c: give either an Exponents object or the exponents (a, b, c), not both")
        return a, None
    if hasattr(a, "theory_preset") and b is None and c is None:
        p = a.theory_preset()
        return p.exponents(family), p.name
    if b is None or c is None:
        raise TypeError("classify: give the exponents a, b and c (or a preset from abcparam.preset(...))")
    return Exponents.of(a, b, c), None


def classify(
    a: Any,
    b: Any = None,
    c: Any = None,
    *,
    optimizer: Any = "sgd",
    alignment: str = "tp4",
    linear: bool = False,
) -> Verdict:
    """Decide exactly whether an abc-parametrization is stable, trivial, feature learning or kernel.

    ``a``, ``b``, ``c`` are sequences over the layers (input, hidden..., output),
    so the depth is L = len - 1; ``c`` may be one number for every layer.  ``a``
    may instead be a :class:`Preset` (then omit ``b`` and ``c``).  ``optimizer``
    is a family (``"sgd"``, ``"adam"``, ``"spectral"``, ``"relative"``), a torch
    optimizer name or class, or a sequence of them with one per layer for a
    model trained by several optimizers (docs/theory.md sections 1 and 11);
    ``alignment`` is ``"tp4"`` (the theorems) or ``"full"`` (Everett et al.).
    ``linear=True`` records that the network is linear, for which the dynamical
    dichotomy of TP4 Cor 3.9 does not hold (section 4).

    >>> v = classify([0, 0, 0], [0, "1/2", "1/2"], 0)
    >>> v.regime
    'unstable'
    >>> print(v.reasons[0])
    layer 2 features: r_2 = -1 < 0, Delta h^2 blows up like n^1 (own update s_2 = -1)
    """
    optimizer = family_arg(optimizer)
    align = alignment_name(alignment)
    if not isinstance(linear, bool):
        raise TypeError(f"linear: expected True or False, got {linear!r}")
    exps, name = _coerce(a, b, c, optimizer)
    L = exps.depth
    families = families_of(optimizer, L + 1)
    beta, gamma = exps.beta(), exps.gamma(families)
    an = analyse(beta, gamma, families, align, None)
    A, O, U = alignment_exponents(align, L)
    r, q = an.r[-1], an.q
    init_reasons = _init_reasons(beta)
    gname = {"sgd": "2a+c", "adam": "a+c", "spectral": "a+c+kappa", "relative": "a+b+c"}[families[L]]
    train_reasons = _training_reasons(an, gamma[L], A[L], gname)
    init_ok, stable = not init_reasons, not init_reasons and not train_reasons
    regime, regime_reasons = _regime(an, stable, gamma[L], A[L], gname)
    reasons = init_reasons + train_reasons + regime_reasons
    faithful: Optional[bool] = None
    if families[L] == "adam":
        bL, cL = exps.b[L], exps.c[L]
        faithful = bL <= cL
        if not faithful:
            reasons.append(
                f"note: Adam not faithful: b_{L + 1} - c_{L + 1} = {bL - cL} > 0, gradients fed to the normaliser "
                "change with width and epsilon starts to matter (TP4b Thm 2.8.12)"
            )
    if linear:
        reasons.append("note: linear network: the feature-learning/kernel dichotomy (TP4 Cor 3.9) does not apply")

    updated = tuple(x == 0 for x in an.s) + (gamma[L] == A[L],)
    v = Verdict(
        regime=regime,
        stable_at_init=init_ok,
        stable=stable,
        nontrivial=stable and q == 0,
        r=r,
        q=q,
        f0_exponent=HALF - beta[L],
        r_layers=an.r,
        s_layers=an.s,
        beta=beta,
        gamma=gamma,
        g=an.g,
        updated_maximally=updated,
        features_evolve=tuple(x == 0 for x in an.r),
        readout_initialised_maximally=beta[L] + r == O[L],
        faithful=faithful,
        reasons=tuple(reasons),
        equivalent_to=equivalent_preset(beta, gamma, families),
        exponents=exps,
        optimizer=family_label(families),
        alignment=align,
        linear=linear,
        name=name,
        families=families,
    )
    return v


def _init_reasons(beta: Tuple[Fraction, ...]) -> List[str]:
    """Why the parametrization is unstable at initialisation (section 4, condition 1); empty when it is stable."""
    L = len(beta) - 1
    reasons = []
    if beta[0] != 0:
        reasons.append(
            f"input layer init: beta_1 = a_1+b_1 = {beta[0]} != 0, h^1 {'vanishes' if beta[0] > 0 else 'blows up'} "
            f"like {power_text(-beta[0])}"
        )
    for i in range(1, L):
        if beta[i] != HALF:
            reasons.append(
                f"layer {i + 1} init: beta_{i + 1} = a+b = {beta[i]} != 1/2, W^{i + 1} x scales like "
                f"{power_text(HALF - beta[i])} ({'vanishes' if beta[i] > HALF else 'blows up'})"
            )
    if beta[L] < HALF:
        reasons.append(f"readout init: beta_{L + 1} = a+b = {beta[L]} < 1/2, f_0 blows up like {power_text(HALF - beta[L])}")
    return reasons


def _q_term_texts(an: Analysis, gname: str) -> Tuple[str, str, str]:
    """The three terms of q (section 3) in words; the readout-update term (the second) is worded where it is used."""
    L = len(an.r)
    return (f"readout init x feature change: beta_{L + 1}+r-O = {an.q_terms[0]}", "",
            f"readout update x feature change: {gname}+r-U = {an.q_terms[2]}")


def _training_reasons(an: Analysis, gamma_out: Fraction, a_out: Fraction, gname: str) -> List[str]:
    """Why training is unstable (section 4, condition 2: some r_l < 0 or some term of q < 0); empty when stable."""
    reasons = [
        f"layer {i + 1} features: r_{i + 1} = {r_l} < 0, Delta h^{i + 1} blows up like {power_text(-r_l)} "
        f"(own update s_{i + 1} = {an.s[i]})"
        for i, r_l in enumerate(an.r)
        if r_l < 0
    ]
    texts = _q_term_texts(an, gname)
    for k, t in enumerate(an.q_terms):
        if t < 0 and k == 1:
            reasons.append(f"readout update: {gname} = {gamma_out} < {a_out}, logits blow up like {power_text(-t)}")
        elif t < 0:
            reasons.append(f"{texts[k]} < 0, logits blow up like {power_text(-t)}")
    return reasons


def _regime(an: Analysis, stable: bool, gamma_out: Fraction, a_out: Fraction, gname: str) -> Tuple[str, List[str]]:
    """The regime of a parametrization and the reasons that decide it (section 4: q > 0 trivial; else r = 0 feature
    learning, r > 0 kernel)."""
    r, q = an.r[-1], an.q
    if not stable:
        return "unstable", []
    if q > 0:
        return "trivial", [f"output change: q = {q} > 0, the function moves only like {power_text(-q)} (trivial)"]
    texts = _q_term_texts(an, gname)
    reasons = []
    for k, t in enumerate(an.q_terms):
        if t == 0 and k == 1:
            reasons.append(f"readout update: {gname} = {gamma_out} = A_{len(an.r) + 1}, the output moves by Theta(1) (nontrivial)")
        elif t == 0:
            reasons.append(f"{texts[k]}, the output moves by Theta(1) (nontrivial)")
    if r == 0:
        evolving = [str(i + 1) for i, x in enumerate(an.r) if x == 0]
        return "feature_learning", reasons + [f"r = 0: the features of layer(s) {', '.join(evolving)} move by Theta(1) (feature learning)"]
    return "kernel", reasons + [f"r = {r} > 0: the features move only like {power_text(-r)} (kernel regime)"]
