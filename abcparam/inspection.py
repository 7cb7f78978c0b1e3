"""Infer the abc-parametrization of unmodified model code, then classify it (docs/theory.md section 15).

Every exponent of an abc-parametrization is observable: build the model at two
or more widths and compare.  For each trained tensor :func:`inspect` finds

- its role, from which of its dimensions grow with the width (the weight
  layout of the module that uses it says which dimension is fan-in);
- b, from the initial RMS across widths (several draws for small tensors);
- a, from the module that uses it: its output on a probe input against the
  same computation done with the stored tensor (``F.linear``, a table lookup,
  a normalisation);
- c, from the learning rate the optimizer gives it at each width (torch
  Muon's own shape factor included), with the optimizer's family, and the
  width exponent of Adam's epsilon;
- the attention scale, from attention modules that expose it (``scaling`` or
  ``scale`` with ``head_dim``, as HF's and abcparam's do; torch's
  ``nn.MultiheadAttention``).

Each exponent is the least-squares slope of log-quantities against log-width,
snapped to the nearest fraction with denominator <= 4 and shown with its
residual.  The inferred exponents are then classified by the exact calculus
(per role, as the coordinate check predicts non-chain models), and with
``batch=`` the coordinate check measures the same builds against that
prediction.  What no probe can see (a multiplier written inline in a model's
``forward``, outside any module) is the coordinate check's to catch.
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ._torch import torch
from . import theory, validate
from .check.engine import build_optimizers, seeded_build, split_batch
from .conv import TORCH_CONVS, torch_conv
from .check.stats import ols
from .norms import CHANNEL_NORMS
from .text import table as text_table

nn = torch.nn
F = torch.nn.functional

__all__ = ["inspect", "Inspection", "TensorUse", "Estimate"]

MAX_DENOMINATOR = 4
EXACT_TOL = 1e-3  # slopes of deterministic quantities (multipliers, learning rates, epsilons)
MIN_ENTRIES = 1 << 15  # entries per width (over draws) for the init RMS of small tensors
MAX_DRAWS = 8
_SEVERITY = {"unstable": 3, "trivial": 2, "kernel": 1, "feature_learning": 0}


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


# ----------------------------------------------------------------------------
# Fitting
# ----------------------------------------------------------------------------


def _snap(x: float, tol: float) -> Optional[Fraction]:
    best = min((Fraction(round(x * d), d) for d in range(1, MAX_DENOMINATOR + 1)), key=lambda f: (abs(x - f), f.denominator))
    return best if abs(x - float(best)) <= tol else None


def _decay(widths: Sequence[int], values: Sequence[float], tol: float, what: str) -> Estimate:
    """The exponent e of values ~ n^-e, snapped; ``None`` with the fit when it is not a simple power of n."""
    xs = [math.log(w) for w in widths]
    ys = [math.log(v) for v in values]
    e = -ols(xs, ys)[0]
    # the largest departure of the points from the best line, so a curve that is no power law shows
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = max(abs(y - (my - e * (x - mx))) for x, y in zip(xs, ys))
    snapped = _snap(e, tol)
    if snapped is None or spread > max(tol, 1e-6) * 3:
        return Estimate(None, e, spread, f"{what} not a power of the width over these widths (best fit n^{-e:.3f})")
    return Estimate(snapped, e, abs(e - float(snapped)))


# ----------------------------------------------------------------------------
# Structure: owners, layouts, roles
# ----------------------------------------------------------------------------


def _is_conv1d(mod: nn.Module) -> bool:
    from .conversion.handlers import is_hf_conv1d as _is_hf_conv1d
    from .layers import Conv1D

    return isinstance(mod, Conv1D) or _is_hf_conv1d(mod)


def _kind(mod: nn.Module) -> str:
    cls = type(mod)
    return cls.__name__ if cls.__module__.split(".")[0] in ("torch", "abcparam") else f"{cls.__module__.split('.')[0]}.{cls.__name__}"


def _owners(model: nn.Module) -> Dict[int, List[Tuple[str, nn.Module, str]]]:
    """For each parameter: the modules that use it, (module name, module, attribute).  A module uses a tensor it
    registers, or one its ``weight`` attribute returns (abcparam's TiedReadout reads its embedding's table)."""
    owners: Dict[int, List[Tuple[str, nn.Module, str]]] = {}
    for mname, mod in model.named_modules():  # a module registered under two names counts once
        seen = set()
        for attr, p in mod._parameters.items():
            if p is not None:
                owners.setdefault(id(p), []).append((mname, mod, attr))
                seen.add(id(p))
        w = getattr(type(mod), "weight", None)
        if isinstance(w, property):
            p = getattr(mod, "weight", None)
            if isinstance(p, nn.Parameter) and id(p) not in seen:
                owners.setdefault(id(p), []).append((mname, mod, "weight"))
    return owners


def _layout(mod: nn.Module, attr: str, ndim: int) -> Tuple[Optional[int], Optional[int], Optional[str]]:
    """(fan-in dim, fan-out dim, note) of a tensor of ``ndim`` dims as ``mod`` uses it."""
    if ndim < 2:
        return None, None, None
    if isinstance(mod, nn.Embedding) and attr == "weight":
        return 0, 1, None  # (num_embeddings, embedding_dim): one-hot in
    if _is_conv1d(mod) and attr == "weight":
        return 0, 1, None  # HF's Conv1D: in x out
    if isinstance(mod, (nn.Linear, nn.MultiheadAttention)) or type(mod).__name__ == "MultiheadAttention" \
            or isinstance(mod, nn.modules.conv._ConvNd):
        return 1, 0, None  # torch layout: (out, in, ...)
    return 1, 0, f"layout of {type(mod).__name__}.{attr} assumed (out, in) as torch's Linear"


def _role(shapes: List[Tuple[int, ...]], fan_in: Optional[int], fan_out: Optional[int]) -> str:
    grows = [len({s[d] for s in shapes}) > 1 for d in range(len(shapes[0]))]
    if fan_in is None:
        return "vector" if any(grows) else "fixed"
    gi = grows[fan_in] or any(g for d, g in enumerate(grows) if d not in (fan_in, fan_out) and d >= 2)
    go = grows[fan_out]
    return {(True, True): "hidden", (False, True): "input", (True, False): "output", (False, False): "fixed"}[(gi, go)]


# ----------------------------------------------------------------------------
# Probes: the multiplier a module applies to a tensor
# ----------------------------------------------------------------------------


def _fit_scale(out: torch.Tensor, ref: torch.Tensor) -> Optional[float]:
    """s with out = s * ref, or None when out is not a multiple of ref."""
    out, ref = out.detach().double().flatten(), ref.detach().double().flatten()
    rr = float(ref @ ref)
    if rr == 0.0 or not math.isfinite(rr):
        return None
    s = float(out @ ref) / rr
    err = float((out - s * ref).norm()) / max(float(out.norm()), 1e-300)
    return s if err < 1e-3 and s != 0.0 else None


def _call(mod: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = mod(x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise TypeError("not a tensor")
    return out


def _multiplier(mod: nn.Module, attr: str, p: torch.Tensor, fan_in: Optional[int]) -> Tuple[Optional[float], str]:
    """The factor ``mod`` applies to tensor ``p`` (its attribute ``attr``), probed; (None, why) when no probe fits."""
    gen = torch.Generator().manual_seed(1234)
    was = mod.training
    mod.eval()
    try:
        with torch.no_grad():
            if type(mod).__name__ == "MultiheadAttention" and attr.startswith("in_proj"):
                if isinstance(mod, nn.MultiheadAttention):
                    return 1.0, "torch's MultiheadAttention applies none"
                m = getattr(mod, "in_proj_multiplier", None)
                return (float(m), "read from the module") if m is not None else (None, "not probed")
            if p.dim() == 2 and attr == "weight" and isinstance(mod, nn.Embedding):
                idx = torch.arange(min(p.shape[0], 32))
                return _fit_scale(_call(mod, idx), p[idx]), ""
            if p.dim() >= 3 and attr == "weight" and isinstance(mod, TORCH_CONVS):
                x = _channel_input(mod, mod.in_channels, gen, p.dtype)
                delta = _call(mod, x) - _call(mod, torch.zeros_like(x))
                return _fit_scale(delta, torch_conv(mod)._conv_forward(mod, x, p, None)), ""  # torch's convolution of the stored tensor
            if p.dim() == 2 and attr == "weight" and fan_in is not None:
                x = torch.randn(3, p.shape[fan_in], generator=gen, dtype=p.dtype)
                delta = _call(mod, x) - _call(mod, torch.zeros_like(x))
                ref = x @ p if fan_in == 0 else x @ p.t()
                return _fit_scale(delta, ref), ""
            if p.dim() == 1 and attr == "bias":
                n_in = getattr(mod, "in_features", None) or getattr(mod, "nx", None)
                shape = getattr(mod, "normalized_shape", None)
                if isinstance(mod, (TORCH_CONVS, CHANNEL_NORMS)):  # zeros in: a convolution or a norm gives its bias
                    x = torch.zeros_like(_channel_input(mod, getattr(mod, "in_channels", p.shape[0]), gen, p.dtype))
                elif n_in is None and shape is None:
                    return None, "not probed"
                else:
                    x = torch.zeros(1, n_in if n_in is not None else p.shape[0], dtype=p.dtype)
                saved = p.detach().clone()
                p.fill_(1.0)
                try:
                    out = _call(mod, x)
                finally:
                    p.copy_(saved)
                return _fit_scale(out, torch.ones_like(out)), ""
            if p.dim() == 1 and attr == "weight" and isinstance(mod, CHANNEL_NORMS):  # a gain per channel
                x = _channel_input(mod, p.shape[0], gen, p.dtype)
                gain = p.view(-1, *[1] * (x.dim() - 2))
                return _fit_scale(_gain_term(mod, p, x), _channel_normalised(mod, x) * gain), ""
            if p.dim() == 1 and attr == "weight":  # a normalisation's gain
                x = torch.randn(3, p.shape[0], generator=gen, dtype=p.dtype)
                delta = _gain_term(mod, p, x)
                eps = float(getattr(mod, "eps", None) or getattr(mod, "variance_epsilon", None) or 1e-5)
                for ref in (F.layer_norm(x, (p.shape[0],), eps=eps), x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)):
                    s = _fit_scale(delta, ref * p)
                    if s is not None:
                        return s, ""
                return None, "not a LayerNorm or RMSNorm gain"
    except Exception as exc:  # a module whose forward takes other inputs
        return None, f"probe failed ({type(exc).__name__})"
    finally:
        mod.train(was)
    return None, "not probed"


def _gain_term(mod: nn.Module, p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The part of ``mod(x)`` that the gain ``p`` multiplies: the output with ``p`` doubled minus the output with
    ``p`` (``p`` is restored)."""
    saved = p.detach().clone()
    try:
        out1 = _call(mod, x)
        p.mul_(2.0)
        return _call(mod, x) - out1
    finally:
        p.copy_(saved)


def _channel_input(mod: nn.Module, channels: int, gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """A probe input (3, channels, *spatial) the module accepts: a convolution gets its (dilated) kernel's size, a
    norm the first of (), (4,), (2, 2), (2, 2, 2) spatial sizes that its forward takes."""
    if isinstance(mod, TORCH_CONVS):
        spatial = [(k - 1) * d + 1 for k, d in zip(mod.kernel_size, mod.dilation)]
        return torch.randn(3, channels, *spatial, generator=gen, dtype=dtype)
    for spatial in ((), (4,), (2, 2), (2, 2, 2)):
        x = torch.randn(3, channels, *spatial, generator=gen, dtype=dtype)
        try:
            mod(x)
        except (ValueError, RuntimeError):
            continue
        return x
    raise ValueError(f"{type(mod).__name__} takes none of the probe shapes")


def _channel_normalised(mod: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What a channel norm (in eval mode) computes before its gain and bias, recomputed with torch's functions."""
    eps = float(mod.eps)
    if isinstance(mod, nn.GroupNorm):
        return F.group_norm(x, mod.num_groups, eps=eps)
    stats = getattr(mod, "running_mean", None) is not None
    if isinstance(mod, nn.modules.batchnorm._BatchNorm) and stats:
        return F.batch_norm(x, mod.running_mean, mod.running_var, None, None, False, 0.0, eps)
    if isinstance(mod, nn.modules.batchnorm._BatchNorm):
        return F.batch_norm(x, None, None, None, None, True, 0.0, eps)
    if stats and not mod.training:
        return F.instance_norm(x, mod.running_mean, mod.running_var, eps=eps, use_input_stats=False)
    return F.instance_norm(x, eps=eps)


# ----------------------------------------------------------------------------
# Optimizers: learning rate, family and epsilon of each tensor
# ----------------------------------------------------------------------------


def _make_optimizer(optimizer: Any, model: nn.Module, lr: float) -> List[torch.optim.Optimizer]:
    """The optimizers as the coordinate check makes them: an unwrapped one is wrapped when the model has abcparam
    layers (which gives them their rates and leaves every other tensor's alone)."""
    import warnings

    from .layers import abc_modules
    from .optim import wrap

    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        theory.optimizer_family(optimizer)  # one outside the theory is refused with the reason, before it is built
    opts = build_optimizers(optimizer, model, lr)
    for o in opts:
        theory.optimizer_family(o)
    if abc_modules(model) and not any("abc_lr_scale" in g for o in opts for g in o.param_groups):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # wrap's note about tensors no abcparam layer owns: they are what is inspected
            wrap(opts if len(opts) > 1 else opts[0], model)
    return opts


def _rates(opts: List[torch.optim.Optimizer]) -> Dict[int, Tuple[float, Optional[float], str, str]]:
    """tensor id -> (effective learning rate, epsilon, family, optimizer class name)."""
    from .optim import muon_factor

    out: Dict[int, Tuple[float, Optional[float], str, str]] = {}
    for o in opts:
        fam = theory.optimizer_family(o)
        for g in o.param_groups:
            lr = float(g["lr"])
            eps = g.get("eps")
            if isinstance(eps, (tuple, list)):  # Adafactor: (eps1, eps2)
                eps = eps[0]
            eps = float(eps) if isinstance(eps, (numbers.Real, torch.Tensor)) else None
            for p in g["params"]:
                # torch's Muon multiplies the group's rate by its own shape factor (adjust_lr_fn)
                eff = lr * muon_factor(g.get("adjust_lr_fn"), p.shape) if fam == "spectral" and p.dim() == 2 else lr
                out[id(p)] = (eff, eps, fam, type(o).__name__)
    return out


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

    # init RMS across widths, with extra draws for small tensors
    rms: Dict[str, List[float]] = {}
    rel_var: Dict[str, List[float]] = {}  # variance of log RMS per width, from the spread of the squared entries
    for wi, (w, m) in enumerate(zip(ws, models)):
        small = min(p.numel() for p in m.parameters())
        draws = [m] + [seeded_build(build, w, s) for s in range(1, min(MAX_DRAWS, math.ceil(MIN_ENTRIES / max(1, small))))]
        tables = [dict(d.named_parameters()) for d in draws]
        for n in names[0]:
            sq = torch.cat([t[n].detach().double().flatten().pow(2) for t in tables])
            mean = float(sq.mean())
            rms.setdefault(n, []).append(math.sqrt(mean))
            rel_var.setdefault(n, []).append(float(sq.var()) / (4 * sq.numel() * mean ** 2) if mean > 0 and sq.numel() > 1 else 0.0)

    owners = [_owners(m) for m in models]
    opts = [_make_optimizer(optimizer, m, float(lr)) for m in models]
    rates = [_rates(o) for o in opts]
    uses: List[TensorUse] = []
    for n in names[0]:
        ps = [p[n] for p in params]
        shapes = tuple(tuple(p.shape) for p in ps)
        growing = len(set(shapes)) > 1
        # b from the init RMS
        r = rms[n]
        if all(v == 0.0 for v in r):
            b = Estimate(None, how="zero init")
        elif any(v == 0.0 for v in r):
            b = Estimate(None, how="zero at some widths")
        elif not growing and max(r) / min(r) - 1 < 1e-6:
            b = Estimate(Fraction(0), 0.0, 0.0)
        else:
            # snap within 3 standard errors of the fitted slope (at least 0.05, at most 1/8)
            xs = [math.log(w) for w in ws]
            mx, sxx = sum(xs) / len(xs), sum((x - sum(xs) / len(xs)) ** 2 for x in xs)
            se = math.sqrt(sum(v * ((x - mx) / sxx) ** 2 for v, x in zip(rel_var[n], xs)))
            b = _decay(ws, r, min(0.125, max(0.05, 3 * se)), "init RMS")
        # c, family and eps from the optimizer
        got = [rt.get(id(p)) for rt, p in zip(rates, ps)]
        if not ps[0].requires_grad or any(g is None or not g[0] > 0 for g in got):
            c = eps = Estimate(None, how="not trained")
            fam = opt_name = None
        else:
            fam, opt_name = got[0][2], got[0][3]  # type: ignore[index]
            c = _decay(ws, [g[0] for g in got], EXACT_TOL, "learning rate")  # type: ignore[index]
            e = [g[1] for g in got]  # type: ignore[index]
            eps = _decay(ws, e, EXACT_TOL, "epsilon") if all(x for x in e) and fam != "sgd" else Estimate(None, how="-")
        for mname, mod, attr in owners[0][id(ps[0])]:
            fan_in, fan_out, note = _layout(mod, attr, ps[0].dim())
            use_notes = [note] if note else []
            role = _role(list(shapes), fan_in, fan_out)
            mods = []
            for own, prm in zip(owners, params):
                match = [x for x in own.get(id(prm[n]), []) if x[0] == mname and x[2] == attr]
                mods.append(match[0][1] if match else None)
            scales, why = [], ""
            for mod_w, p in zip(mods, ps):
                s, why = _multiplier(mod_w, attr, p, fan_in) if mod_w is not None else (None, "not found")
                scales.append(s)
            if all(s is not None and s > 0 for s in scales):
                a = _decay(ws, scales, EXACT_TOL, "multiplier")  # type: ignore[arg-type]
            else:
                a = Estimate(None, how=f"unknown: {why or 'the module is not a scaled linear map of it'}")
            uses.append(TensorUse(n, mname, _kind(mod), shapes, role, a, b, c, eps, fam, opt_name, tuple(use_notes)))

    attention = _attention(models, ws)
    if batch is not None:
        attention += _observed_attention(models, batch)
    result = _conclude(ws, uses, attention, alignment)
    if batch is not None:
        from .check.width import coord_check

        declared = {}
        for u in result.uses:
            if u.role in ("input", "hidden", "output") and u.module and u.family is not None:
                ex = _classified(u)
                if ex is not None and u.tensor.endswith("weight"):
                    declared.setdefault(u.module, (u.role,) + ex)
        result.coord = coord_check(build, ws, batch, optimizer=optimizer, lr=lr, alignment=alignment, exponents=declared, **check)
    return result


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
        e = _decay(list(dims), [p[1] for p in pairs], EXACT_TOL, "attention scale")
        out.append((name, e, dims))
    return out


def _observed_attention(models: List[nn.Module], batch: Any) -> List[Tuple[str, Estimate, Tuple[int, ...]]]:
    """The scale of every ``F.scaled_dot_product_attention`` call in one forward pass on ``batch`` at each width."""
    from .attention import ScaleObserver, scale_exponent

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
        b = _snap(u.b.fit, 1.0) if math.isfinite(u.b.fit) else None  # type: ignore[assignment]
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
    from .attention import classify_attention

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
        worst = max(_SEVERITY[v.regime] for _, v in verdicts)
        regime = next(v.regime for _, v in verdicts if _SEVERITY[v.regime] == worst)
        seen = set()
        for cols, v in verdicts:
            if _SEVERITY[v.regime] != worst:
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
