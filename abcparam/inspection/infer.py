"""The entry point :func:`abcparam.inspect`: measure every trained tensor across widths, then conclude (docs/theory.md
section 15)."""

from __future__ import annotations

import itertools
import math
import numbers
import re
from fractions import Fraction
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..attention import ScaleObserver, classify_attention, scale_exponent
from ..check.width import coord_check
from ..torch_quiet import torch
from .. import theory, validate
from ..check.engine import seeded_build, split_batch

nn = torch.nn

from .probes import EXACT_TOL, decay, kind, layout, wrapped_optimizers, multiplier, owners, rates, role_of, snap
from .records import SEVERITY, Estimate, Inspection, TensorUse

MIN_ENTRIES = 1 << 15  # entries per width (over draws) for the init RMS of small tensors
MAX_DRAWS = 8


# ----------------------------------------------------------------------------
# The entry point
# ----------------------------------------------------------------------------


def _check_args(build: Any, widths: Any, lr: Any) -> List[int]:
    if not callable(build):
        raise TypeError("build: expected a function width -> nn.Module")
    try:
        ws = list(widths)
    except TypeError:
        raise TypeError(f"widths: expected a sequence of ints, got {widths!r}") from None
    if not all(isinstance(w, numbers.Integral) and not isinstance(w, bool) for w in ws):
        raise TypeError(f"widths: expected ints, got {ws!r}")
    if len(ws) < 2:
        raise ValueError(f"widths: need at least 2 widths to see how anything scales, got {ws}")
    if any(w <= 0 for w in ws) or any(b <= a for a, b in zip(ws, ws[1:])):
        raise ValueError(f"widths: positive and strictly increasing, got {ws}")
    validate.number(lr, "lr")
    return [int(w) for w in ws]


def inspect(
    build: Callable[[int], nn.Module],
    *,
    optimizer: Any,
    lr: float,
    widths: Sequence[int] = (64, 128, 256),
    batch: Any = None,
    alignment: str = "tp4",
    **check: Any,
) -> Inspection:
    """Infer the abc-parametrization of ``build(width)`` trained by ``optimizer`` at ``lr``, and classify it.

    Args:
        build: the user's own code, ``build(width) -> nn.Module``; nothing in it
            needs to come from abcparam.
        optimizer: a torch optimizer class, or a factory ``params -> optimizer``
            or ``(params, lr) -> optimizer`` (microsoft/mup's ``MuAdam``, a
            hybrid returning a list of optimizers, an abcparam-wrapped one).
        lr: the learning rate given to the optimizer (c is what the optimizer
            makes of it across widths).
        widths: two or more increasing widths (three or more with ``batch=``).
        batch: a batch as the coordinate check takes it; with it, the check runs
            on the same builds and its measured slopes are compared with the
            inferred verdict (``Inspection.coord``, ``Inspection.confirmed``).
        check: more keyword arguments for :func:`abcparam.coord_check`
            (``steps``, ``seeds``, ``loss``, ...).

    Returns an :class:`Inspection`; ``print`` it for the table, the verdict and
    the tensors to blame.  See docs/theory.md section 15.
    """
    ws = _check_args(build, widths, lr)
    if batch is not None and len(ws) < 3:
        raise ValueError(f"widths: the coordinate check (batch=) needs at least 3 widths, got {ws}")
    theory.exponents.alignment_name(alignment)
    models = [seeded_build(build, w, 0) for w in ws]
    names = [[n for n, _ in m.named_parameters()] for m in models]
    for w, ns in zip(ws[1:], names[1:]):
        if ns != names[0]:
            extra = sorted(set(ns) ^ set(names[0]))[:4]
            raise ValueError(f"build: the models at widths {ws[0]} and {w} have different parameters ({', '.join(extra)} ...); "
                             "inspect compares one model across widths, so build(width) must change sizes only")
    params = [dict(m.named_parameters()) for m in models]
    if all(params[0][n].shape == params[-1][n].shape for n in names[0]):
        raise ValueError(f"build: the model's shapes do not change between widths {ws[0]} and {ws[-1]}; does build use its "
                         "width argument?")
    if not names[0]:
        raise ValueError("build: the model has no parameters")

    rms, rel_var = _init_rms(build, ws, models, names[0])
    owners_at = [owners(m) for m in models]
    rates_at = [rates(wrapped_optimizers(optimizer, m, float(lr))) for m in models]
    uses = [u for n in names[0] for u in _uses(n, ws, params, owners_at, rates_at, rms[n], rel_var[n])]

    attention = _attention(models, ws)
    if batch is not None:
        attention += _observed_attention(models, batch)
    result = _conclude(ws, uses, attention, alignment)
    if batch is not None:
        declared = {}
        for u in result.uses:
            if u.role in ("input", "hidden", "output") and u.module and u.family is not None:
                ex = _classified(u)
                if ex is not None and u.tensor.endswith("weight"):
                    declared.setdefault(u.module, (u.role,) + ex)
        result.coord = coord_check(build, ws, batch, optimizer=optimizer, lr=lr, alignment=alignment, exponents=declared, **check)
    return result



def _init_rms(build: Callable[[int], nn.Module], ws: List[int], models: List[nn.Module], names: List[str]
              ) -> Tuple[Dict[str, List[float]], Dict[str, List[float]]]:
    """Each tensor's RMS at initialisation per width (over extra draws for small tensors, up to :data:`MAX_DRAWS`),
    and the variance of its log per width, from the spread of the squared entries."""
    rms: Dict[str, List[float]] = {}
    rel_var: Dict[str, List[float]] = {}
    for w, m in zip(ws, models):
        small = min(p.numel() for p in m.parameters())
        draws = [m] + [seeded_build(build, w, s) for s in range(1, min(MAX_DRAWS, math.ceil(MIN_ENTRIES / max(1, small))))]
        tables = [dict(d.named_parameters()) for d in draws]
        for n in names:
            sq = torch.cat([t[n].detach().double().flatten().pow(2) for t in tables])
            mean = float(sq.mean())
            rms.setdefault(n, []).append(math.sqrt(mean))
            rel_var.setdefault(n, []).append(float(sq.var()) / (4 * sq.numel() * mean ** 2) if mean > 0 and sq.numel() > 1 else 0.0)
    return rms, rel_var


def _init_exponent(ws: List[int], r: List[float], rel_var: List[float], growing: bool) -> Estimate:
    """b from the initial RMS across widths, snapped within 3 standard errors of the fitted slope (at least 0.05, at
    most 1/8)."""
    if all(v == 0.0 for v in r):
        return Estimate(None, how="zero init")
    if any(v == 0.0 for v in r):
        return Estimate(None, how="zero at some widths")
    if not growing and max(r) / min(r) - 1 < 1e-6:
        return Estimate(Fraction(0), 0.0, 0.0)
    xs = [math.log(w) for w in ws]
    mx, sxx = sum(xs) / len(xs), sum((x - sum(xs) / len(xs)) ** 2 for x in xs)
    se = math.sqrt(sum(v * ((x - mx) / sxx) ** 2 for v, x in zip(rel_var, xs)))
    return decay(ws, r, min(0.125, max(0.05, 3 * se)), "init RMS")


def _uses(n: str, ws: List[int], params: List[Dict[str, torch.Tensor]], owners_at: List[Dict[int, List[Tuple[str, nn.Module, str]]]],
          rates_at: List[Dict[int, Tuple[float, Optional[float], str, str]]], r: List[float], rel_var: List[float]) -> List[TensorUse]:
    """One :class:`TensorUse` per module that uses tensor ``n``: its role from the layout, a from the module's
    multiplier at each width, b from the initial RMS, c, the family and epsilon from the optimizer."""
    ps = [p[n] for p in params]
    shapes = tuple(tuple(p.shape) for p in ps)
    b = _init_exponent(ws, r, rel_var, len(set(shapes)) > 1)
    got = [rt.get(id(p)) for rt, p in zip(rates_at, ps)]
    if not ps[0].requires_grad or any(g is None or not g[0] > 0 for g in got):
        c = eps = Estimate(None, how="not trained")
        fam = opt_name = None
    else:
        fam, opt_name = got[0][2], got[0][3]  # type: ignore[index]
        c = decay(ws, [g[0] for g in got], EXACT_TOL, "learning rate")  # type: ignore[index]
        e = [g[1] for g in got]  # type: ignore[index]
        eps = decay(ws, e, EXACT_TOL, "epsilon") if all(x for x in e) and fam != "sgd" else Estimate(None, how="-")
    uses = []
    for mname, mod, attr in owners_at[0][id(ps[0])]:
        fan_in, fan_out, note = layout(mod, attr, ps[0].dim())
        role = role_of(list(shapes), fan_in, fan_out)
        mods = []
        for own, prm in zip(owners_at, params):
            match = [x for x in own.get(id(prm[n]), []) if x[0] == mname and x[2] == attr]
            mods.append(match[0][1] if match else None)
        scales, why = [], ""
        for mod_w, p in zip(mods, ps):
            s, why = multiplier(mod_w, attr, p, fan_in) if mod_w is not None else (None, "not found")
            scales.append(s)
        if all(s is not None and s > 0 for s in scales):
            a = decay(ws, scales, EXACT_TOL, "multiplier")  # type: ignore[arg-type]
        else:
            a = Estimate(None, how=f"unknown: {why or 'the module is not a scaled linear map of it'}")
        uses.append(TensorUse(n, mname, kind(mod), shapes, role, a, b, c, eps, fam, opt_name, (note,) if note else ()))
    return uses


def _attention(models: List[nn.Module], ws: List[int]) -> List[Tuple[str, Estimate, Tuple[int, ...]]]:
    """Attention modules that expose their scale, with e of scale ~ d_head^-e across the widths."""
    found: Dict[str, List[Tuple[int, float]]] = {}
    for m in models:
        for name, mod in m.named_modules():
            d = getattr(mod, "head_dim", None)
            s = None
            if isinstance(mod, nn.MultiheadAttention) and isinstance(d, int):
                s = d ** -0.5  # torch's own scale
            else:
                for attr in ("scaling", "scale"):
                    v = getattr(mod, attr, None)
                    if isinstance(v, numbers.Real) and not isinstance(v, bool) and isinstance(d, int):
                        s = float(v)
                        break
            if s is not None and s > 0:
                found.setdefault(name, []).append((d, s))
    out = []
    for name, pairs in found.items():
        if len(pairs) != len(ws):
            continue
        dims = tuple(p[0] for p in pairs)
        if len(set(dims)) == 1:
            out.append((name, Estimate(None, how=f"head_dim {dims[0]} at every width: the scale's exponent is not observable "
                                                  "(more heads, not wider ones)"), dims))
            continue
        e = decay(list(dims), [p[1] for p in pairs], EXACT_TOL, "attention scale")
        out.append((name, e, dims))
    return out


def _observed_attention(models: List[nn.Module], batch: Any) -> List[Tuple[str, Estimate, Tuple[int, ...]]]:
    """The scale of every ``F.scaled_dot_product_attention`` call in one forward pass on ``batch`` at each width."""
    args, kwargs, _ = split_batch(batch)
    calls = []
    for m in models:
        was = m.training
        m.eval()
        with torch.no_grad(), ScaleObserver() as seen:
            m(*args, **kwargs)
        m.train(was)
        calls.append(seen.calls)
    out = []
    for i, (e, residual, note) in enumerate(scale_exponent(calls)):
        dims = tuple(c[i][0] for c in calls)
        est = Estimate(e, float(e) if e is not None else float("nan"), residual) if e is not None else Estimate(None, how=note)
        out.append((f"F.scaled_dot_product_attention call {i + 1}", est, dims))
    return out


def _classified(u: TensorUse) -> Optional[Tuple[Fraction, Fraction, Fraction, str]]:
    """(a, b, c, family) of a use as the classifier takes it, or None when it is not classified (frozen)."""
    if u.c.value is None or u.family is None:
        return None
    a, c = (u.a.value if u.a.value is not None else Fraction(0)), u.c.value
    if u.b.value is not None:
        b = u.b.value
    elif u.b.how == "zero init":
        # a zero tensor contributes nothing at init: the readout's term vanishes as for any beta > 1/2,
        # the others are classified at their stable scale
        b = {"output": Fraction(1), "hidden": Fraction(1, 2)}.get(u.role, Fraction(0)) - a
    else:
        b = snap(u.b.fit, 1.0) if math.isfinite(u.b.fit) else None  # type: ignore[assignment]
        if b is None:
            return None
    if u.role == "vector" and a + b > 0:
        # a vector-like tensor (bias, gain) that starts small adds nothing at init; only its blowing up would matter.
        # Classify it as an input layer at the stable init scale with the same training exponent gamma.
        c += (a + b) if u.family == "relative" else 0
        b = -a
    return a, b, c, u.family


def _label(names: List[str]) -> str:
    return ", ".join(names) if len(names) <= 3 else f"{', '.join(names[:2])} and {len(names) - 2} more"


def _name_layers(reason: str, cols: List[List[str]]) -> str:
    """The classifier's reason with the tensors of each layer it names."""
    L = len(cols)

    def layer(m: "re.Match[str]") -> str:
        i = int(m.group(2)) - 1
        return f"{m.group(1)} ({_label(cols[i])})" if 0 <= i < L else m.group(0)

    reason = re.sub(r"\b(layer (\d+))", layer, reason)
    reason = re.sub(r"\breadout\b", f"readout ({_label(cols[-1])})", reason, count=1)
    return re.sub(r"\binput layer\b", f"input layer ({_label(cols[0])})", reason, count=1)


def _conclude(ws: List[int], uses: List[TensorUse], attention: List[Tuple[str, Estimate, Tuple[int, ...]]],
              alignment: str) -> Inspection:
    notes: List[str] = []
    zero: List[str] = []
    groups: Dict[str, Dict[Tuple[Fraction, Fraction, Fraction, str], List[str]]] = {}
    classified: List[Tuple[Fraction, Fraction, Fraction, str]] = []  # what the verdict is computed from
    for u in uses:
        if u.role == "fixed":
            continue
        ex = _classified(u)
        if ex is None:
            if u.c.how == "not trained":
                notes.append(f"{u.tensor} is not trained: left out of the verdict")
            else:
                notes.append(f"{u.tensor}: its init is not a power of the width; left out of the verdict")
            continue
        if u.a.value is None:
            notes.append(f"{u.tensor}: the multiplier of {u.module} could not be probed; classified with a = 0 (the coordinate "
                         "check with batch= is the backstop)")
        elif u.b.value is None and u.b.how == "zero init":
            zero.append(u.tensor)
        groups.setdefault(u.role, {}).setdefault(ex, []).append(u.tensor)
        classified.append(ex)
    if zero:
        notes.append(f"zero-initialised, classified as tensors whose initial contribution vanishes: {_label(zero)}")
    verdicts: List[Tuple[Dict[str, List[str]], theory.Verdict]] = []
    reasons: List[str] = []
    regime: Optional[str] = None
    inputs = list(groups.get("input", {}).items()) + list(groups.get("vector", {}).items())
    hidden = list(groups.get("hidden", {}).items())
    outputs = list(groups.get("output", {}).items())
    if not groups.get("input") or not outputs:
        missing = [r for r in ("input", "output") if not groups.get(r)]
        notes.append(f"no verdict: no trained tensor has the {' or '.join(missing)} role (the theory needs input -> output)")
    else:
        for combo in itertools.product(inputs, hidden or [None], outputs):
            cols = [c for c in combo if c is not None]
            exps = [c[0] for c in cols]
            v = theory.classify([e[0] for e in exps], [e[1] for e in exps], [e[2] for e in exps],
                                optimizer=[e[3] for e in exps], alignment=alignment)
            labels = ["input", "hidden", "output"] if len(cols) == 3 else ["input", "output"]
            verdicts.append(({lab: list(c[1]) for lab, c in zip(labels, cols)}, v))
        worst = max(SEVERITY[v.regime] for _, v in verdicts)
        regime = next(v.regime for _, v in verdicts if SEVERITY[v.regime] == worst)
        seen = set()
        for cols, v in verdicts:
            if SEVERITY[v.regime] != worst:
                continue
            for r in v.reasons:
                r = _name_layers(r, list(cols.values()))
                if r not in seen:
                    seen.add(r)
                    reasons.append(r)
    for name, e, _ in attention:
        if e.value is None:
            continue
        av = classify_attention(e.value)
        if not av.stable:
            reasons.append(f"attention {name}: {av.reason}")
            regime = "unstable"
        elif not av.nontrivial and regime in ("feature_learning", None):
            reasons.append(f"attention {name}: {av.reason}")
    for u in uses:
        if u.role == "fixed" and u.c.value not in (None, Fraction(0)):
            notes.append(f"{u.tensor} has no width-sized dimension but its learning rate scales like n^-{u.c.value}")
    preset = None
    if verdicts and all(v.equivalent_to for _, v in verdicts) and len({v.equivalent_to for _, v in verdicts}) == 1:
        preset = verdicts[0][1].equivalent_to
    sp_like = bool(classified) and all(a == 0 and c == 0 for a, _, c, _ in classified)
    return Inspection(ws, uses, attention, verdicts, regime, reasons, preset, sp_like, notes)
