"""The probes of :func:`abcparam.inspect`: who owns each tensor and in which layout, the multiplier a module applies
to it, the learning rate, family and epsilon the optimizer gives it, and the exact exponent fitted across widths
(docs/theory.md section 15)."""

from __future__ import annotations

import math
import warnings
import numbers
from fractions import Fraction
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..conversion.handlers import is_hf_conv1d
from ..layers import Conv1D, abc_modules
from ..optim import muon_factor, wrap
from ..torch_quiet import torch
from .. import theory
from ..check.engine import build_optimizers
from ..conv import TORCH_CONVS, torch_conv
from ..check.stats import ols
from ..norms import CHANNEL_NORMS

nn = torch.nn
F = torch.nn.functional

from .records import Estimate

MAX_DENOMINATOR = 4
EXACT_TOL = 1e-3  # slopes of deterministic quantities (multipliers, learning rates, epsilons)


# ----------------------------------------------------------------------------
# Fitting
# ----------------------------------------------------------------------------


def snap(x: float, tol: float) -> Optional[Fraction]:
    best = min((Fraction(round(x * d), d) for d in range(1, MAX_DENOMINATOR + 1)), key=lambda f: (abs(x - f), f.denominator))
    return best if abs(x - float(best)) <= tol else None


def decay(widths: Sequence[int], values: Sequence[float], tol: float, what: str) -> Estimate:
    """The exponent e of values ~ n^-e, snapped; ``None`` with the fit when it is not a simple power of n."""
    xs = [math.log(w) for w in widths]
    ys = [math.log(v) for v in values]
    e = -ols(xs, ys)[0]
    # the largest departure of the points from the best line, so a curve that is no power law shows
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = max(abs(y - (my - e * (x - mx))) for x, y in zip(xs, ys))
    snapped = snap(e, tol)
    if snapped is None or spread > max(tol, 1e-6) * 3:
        return Estimate(None, e, spread, f"{what} not a power of the width over these widths (best fit n^{-e:.3f})")
    return Estimate(snapped, e, abs(e - float(snapped)))


# ----------------------------------------------------------------------------
# Structure: owners, layouts, roles
# ----------------------------------------------------------------------------


def _is_conv1d(mod: nn.Module) -> bool:
    return isinstance(mod, Conv1D) or is_hf_conv1d(mod)


def kind(mod: nn.Module) -> str:
    cls = type(mod)
    return cls.__name__ if cls.__module__.split(".")[0] in ("torch", "abcparam") else f"{cls.__module__.split('.')[0]}.{cls.__name__}"


def owners(model: nn.Module) -> Dict[int, List[Tuple[str, nn.Module, str]]]:
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


def layout(mod: nn.Module, attr: str, ndim: int) -> Tuple[Optional[int], Optional[int], Optional[str]]:
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


def role_of(shapes: List[Tuple[int, ...]], fan_in: Optional[int], fan_out: Optional[int]) -> str:
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


def multiplier(mod: nn.Module, attr: str, p: torch.Tensor, fan_in: Optional[int]) -> Tuple[Optional[float], str]:
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


def wrapped_optimizers(optimizer: Any, model: nn.Module, lr: float) -> List[torch.optim.Optimizer]:
    """The optimizers as the coordinate check makes them: an unwrapped one is wrapped when the model has abcparam
    layers (which gives them their rates and leaves every other tensor's alone)."""
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


def rates(opts: List[torch.optim.Optimizer]) -> Dict[int, Tuple[float, Optional[float], str, str]]:
    """tensor id -> (effective learning rate, epsilon, family, optimizer class name)."""
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
