"""What the theory predicts for the model as built: the verdict on its abcparam layers' exponents, each measured
quantity's predicted exponent, and the regime the measurements indicate (docs/theory.md sections 4, 8 and 14).

Every quantity the width check measures is declared here, in :data:`QUANTITIES`, beside its prediction."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Dict, List, Optional, Tuple

from .. import torch_quiet  # noqa: F401  (torch without the numpy warning)
from torch import nn

from .. import theory
from ..layers import is_abc_layer
from . import stats
from .decision import Fit

CHAIN_ROLES = ("input", "hidden", "output")  # the roles of the layers the classifier's chain is made of

# What the check measures: each quantity, what it is, and (in brackets) the prediction it is compared with; the
# predictions themselves are computed in one place, _prediction (and _attention_fits for the scale).
QUANTITIES: Dict[str, str] = {
    "h": "RMS of a layer's output at initialisation [0 below the readout; f_0's exponent for the readout]",
    "h_own": "a tied readout's logit of each position's own input token at initialisation (the other tokens' logits are "
             "its h) [between f_0's exponent and 1/2 more: docs/theory.md section 14]",
    "dh": "RMS of a layer's output change since initialisation after a step [Delta h of section 8; the readout's: Delta f]",
    "f": "RMS of the model output at initialisation (a tied readout's: the other tokens' logits) [f_0's exponent]",
    "f_own": "the model output's logit of each position's own input token at initialisation, with a tied readout [as h_own]",
    "df": "RMS of the model output's change after a step [Delta f of section 8]",
    "dw": "RMS of a trained tensor's own contribution after the steps: M (W_t - W_0) x for a weight on its layer's input, "
          "Delta b for a bias (abcparam.check.maximal) [0 for every tensor under muP: each updated maximally, "
          "docs/theory.md section 4]",
    "scale": "the exponent in d_head of an F.scaled_dot_product_attention call's scale, read exactly across widths "
             "[the parametrization's attention exponent; a scale that makes the logits grow fails a stable model]",
}


def layer_exponents(mod: nn.Module, family: str) -> Tuple[Fraction, Fraction, Fraction, str]:
    return mod.a, mod.b, getattr(mod, "c_" + family), family


def family_text(families: Dict[str, str]) -> Optional[str]:
    """The report's family: one name, or "hybrid (...)" listing which layers each family trains."""
    fams = sorted(set(families.values()), key=str)
    if not fams or None in fams:
        return None
    if len(fams) == 1:
        return fams[0]
    return "hybrid (" + "; ".join(f"{f}: {', '.join(n for n, x in families.items() if x == f)}" for f in fams) + ")"


def predict(
    order: List[str], tracked: Dict[str, nn.Module], families: Dict[str, str], alignment: str
) -> Tuple[Optional[theory.Verdict], Dict[str, int], List[str], Optional[str]]:
    """Classify the model's abcparam layers, each with the family of the optimizer that trains it; map each layer
    to its index in the classified chain.

    Returns the verdict, the index map, notes, and (when there is no verdict) the reason.
    """
    notes: List[str] = []
    # the layers of the chain: a vector-like layer (a depthwise convolution) is trained like a bias, not predicted
    layers = [(n, tracked[n]) for n in order if is_abc_layer(tracked[n]) and getattr(tracked[n], "role", None) in CHAIN_ROLES]
    if not layers:
        return None, {}, [], "the model has no abcparam layers (or none ran in the forward pass)"
    untrained = [n for n, _ in layers if families.get(n) is None]
    if untrained:
        return None, {}, [], f"no optimizer trains the weight of {', '.join(untrained)}, so its learning-rate exponent is unknown"
    roles = [m.role for _, m in layers]
    missing = [r for r in ("input", "output") if r not in roles]
    if missing:
        return None, {}, [], (
            f"no abcparam layer has the {' or '.join(missing)} role (abcparam layers: "
            f"{', '.join(f'{n} ({m.role})' for n, m in layers)}); the theory needs the whole chain input -> output"
        )
    if roles[0] == "input" and roles[-1] == "output" and roles.count("input") == 1 and roles.count("output") == 1:
        exps = [layer_exponents(m, families[n]) for n, m in layers]
        v = theory.classify([e[0] for e in exps], [e[1] for e in exps], [e[2] for e in exps], optimizer=[e[3] for e in exps],
                            alignment=alignment)
        return v, {n: i for i, (n, _) in enumerate(layers)}, notes, None
    # Not a chain (several inputs or outputs, parallel branches): predict per role.
    by_role: Dict[str, Dict[Tuple[Fraction, Fraction, Fraction, str], List[str]]] = {}
    for n, m in layers:
        by_role.setdefault(m.role, {}).setdefault(layer_exponents(m, families[n]), []).append(n)
    mixed = {r: e for r, e in by_role.items() if len(e) > 1}
    if mixed:
        role, groups = next(iter(mixed.items()))
        detail = "; ".join(f"{', '.join(names)}: (a, b, c) = ({a}, {b}, {c}) under {f}" for (a, b, c, f), names in groups.items())
        return None, {}, [], f"the {role} layers declare different exponents ({detail}): no single prediction per role"
    cols = [next(iter(by_role["input"]))] + ([next(iter(by_role["hidden"]))] if "hidden" in by_role else []) + [next(iter(by_role["output"]))]
    v = theory.classify([c[0] for c in cols], [c[1] for c in cols], [c[2] for c in cols], optimizer=[c[3] for c in cols],
                        alignment=alignment)
    index = {"input": 0, "hidden": 1, "output": len(cols) - 1}
    notes.append("the layers are not one chain input -> hidden... -> output: predictions are per role")
    return v, {n: index[m.role] for n, m in layers}, notes, None


def attention_fits(calls_by_width: List[List[Tuple[int, float]]], tracked: Dict[str, nn.Module],
                    verdict: Optional[theory.Verdict]) -> List[Fit]:
    """One row per F.scaled_dot_product_attention call: the exponent of its scale in d_head, observed exactly across
    the widths (docs/theory.md section 14), against the exponent the model's abcparam modules declare; a scale that
    makes the logits blow up fails a model the theory calls stable."""
    from ..attention import classify_attention, scale_exponent

    if not calls_by_width or not calls_by_width[0]:
        return []
    declared = {getattr(m, "attention") for m in tracked.values() if isinstance(getattr(m, "attention", None), Fraction)}
    want = next(iter(declared)) if len(declared) == 1 else None
    rows = []
    results = scale_exponent(calls_by_width)
    if not results:
        return [Fit("attention", "-", "scale", 0, math.nan, 0.0, None, None, "inconclusive", 0.0, 0.0,
                    "the number of attention calls changes with width", "the same number of attention calls at every width")]
    for i, (e, residual, note) in enumerate(results):
        name = f"attention {i}"
        pred = None if want is None else -want
        if e is None and "does not change" in note:
            rows.append(Fit(name, "-", "scale", 0, 0.0, 0.0, pred, None, "-", 0.0, 0.0, note))
            continue
        if e is None:
            rows.append(Fit(name, "-", "scale", 0, math.nan, 0.0, pred, None, "inconclusive", 0.0, 0.0, note,
                            "an attention scale that is a power of the head dimension"))
            continue
        v = classify_attention(e)
        if not v.stable and verdict is not None and verdict.regime != "unstable":
            status, why = "disagree", v.reason
        elif want is not None and e != want:
            status, why = "disagree", f"{note}, but the parametrization says d_head^-{want}"
        else:
            status, why = ("agree" if want is not None else "-"), note
        rows.append(Fit(name, "-", "scale", 0, -float(e), 0.0, pred, {"agree": True, "disagree": False}.get(status), status,
                        0.0, 0.0 if status != "agree" else 1.0, "" if status == "agree" else why))
    return rows


def prediction(
    verdict: Optional[theory.Verdict], slopes: Dict[int, theory.Slopes], index: Dict[str, int], name: str, q: str, step: int
) -> Tuple[Optional[Fraction], Optional[Fraction]]:
    """The predicted exponent of ``q`` (a key of :data:`QUANTITIES`) for layer ``name`` after ``step`` updates, as
    ``(predicted, None)``, or ``(upper, lower)`` for a quantity predicted to lie between two exponents; ``(None,
    None)`` when there is no prediction."""
    if verdict is None:
        return None, None
    L = verdict.depth
    own = q.endswith("_own")
    if name == "output":
        p = verdict.f0_exponent if q in ("f", "f_own") else slopes[step].delta_f
    elif name not in index:
        return None, None
    elif q in ("h", "h_own"):
        # pre-activations at init: Theta(1) for l <= L when stable at init; the readout's is f_0
        if index[name] != L:
            return (Fraction(0) if verdict.stable_at_init else None), None
        p = verdict.f0_exponent
    elif index[name] == L:
        p = slopes[step].delta_f  # the readout layer's own output change
    else:
        p = slopes[step].delta_h[index[name]]
    if own:
        # the input token's own logit: its embedding, carried by a residual stream, meets itself in the readout (a sum
        # of n correlated terms, n^(1/2) more than the others' n^f0); without such a path it is like the others
        return p + Fraction(1, 2), p
    return p, None


def measured_regime(fits: List[Fit], order: List[str], tracked: Dict[str, nn.Module], steps: int, tol: float,
                     verdict: Optional[theory.Verdict], readout: Optional[str]) -> str:
    """The regime the measurements indicate (docs/theory.md section 8).

    When every compared quantity agrees with a stable verdict, that verdict's
    regime is what was measured.  Otherwise the slopes at the last step decide:
    significant growth (beyond the tolerance and twice the noise) is unstable,
    an output change that falls is trivial, a last hidden layer whose change
    falls is kernel.  ``readout`` names the layer whose weight term stands for
    the output when the readout has a bias.
    """
    compared = [f for f in fits if f.status != "-"]
    if verdict is not None and compared and all(f.status == "agree" for f in compared):
        return verdict.regime  # (an unstable verdict: something measurably grows, its only "agree")
    if verdict is not None and verdict.regime == "unstable" and any(f.status == "agree" for f in fits):
        return "unstable"  # a quantity measurably grows (stats.judge_growth)

    def grows(f: Fit) -> bool:
        return math.isinf(f.slope) or f.slope > tol + stats.NOISE_FACTOR * f.noise

    out = readout or "output"
    out_q = {"f": "h", "df": "dh"} if readout else {"f": "f", "df": "df"}
    last = {(f.layer, f.quantity): f for f in fits if f.step in (0, steps)}
    if any(grows(f) for f in fits if f.quantity in ("dh", "df") and not math.isnan(f.slope)):
        return "unstable"  # something grows with width at some step
    roles = {n: getattr(tracked.get(n), "role", None) for n in order}
    init = [f for (layer, q), f in last.items() if q == "h" and roles.get(layer) != "output" and not math.isnan(f.slope)]
    if any(abs(f.slope) > tol + stats.NOISE_FACTOR * f.noise for f in init):
        return "unstable"  # pre-activations vanish or blow up at initialisation
    f0 = next((f for f in fits if (f.layer, f.quantity, f.step) == (out, out_q["f"], 0)), None)
    if f0 is not None and grows(f0):
        return "unstable"
    df = last.get((out, out_q["df"]))
    if df is not None and not math.isnan(df.slope) and df.slope < -tol - stats.NOISE_FACTOR * df.noise and df.status != "agree":
        return "trivial"
    hidden = [n for n in order if roles.get(n) in ("hidden", "input")]
    if hidden:
        r = last.get((hidden[-1], "dh"))
        if r is not None and not math.isnan(r.slope):
            return "feature_learning" if (r.slope >= -tol or r.status == "agree" and r.predicted == 0) else "kernel"
    changes = [f for (layer, q), f in last.items() if q in ("dh", "df")]
    return "feature_learning" if all(abs(f.slope) <= tol for f in changes) else "kernel"
