"""Maximal updates, tensor by tensor: muP itself, not only feature learning (docs/theory.md sections 3 and 4).

The regime check sees the features move (r = 0).  muP asks more: every layer
is *updated maximally*, each trained tensor's own update moving its layer's
output by Theta(1).  A tensor trained too slowly hides behind the others: a
plain ``nn.Linear`` input layer under SGD (its rate too small by m) freezes
its own update ``Delta W^1 x`` while the next layers' updates keep the features
moving, and a plain hidden layer's bias under SGD freezes while its weight
carries the layer.  So this check measures, after the steps, each tensor's own
contribution (the quantity ``"dw"`` of :data:`abcparam.check.prediction.QUANTITIES`):

- a weight used as a linear map (``nn.Linear`` and abcparam's ``Linear``):
  ``M (W_t - W_0) x_t`` on the layer's input ``x_t`` at the last step, with its
  forward multiplier ``M``;
- an embedding table: ``M (E_t - E_0)`` at the batch's tokens;
- a convolution's kernel: ``M conv(x_t, W_t - W_0)``;
- a bias, or a norm's gain (which multiplies a normalised input of RMS one):
  ``b_t - b_0``;

and fits its slope against width like every other quantity.  Under muP each is
of order one: the slope must agree with 0 (:func:`abcparam.check.stats.judge`).
Other tensors are not measured here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .. import torch_quiet  # noqa: F401  (torch without the numpy warning)
import torch
import torch.nn.functional as F
from torch import nn

from . import stats
from ..conv import TORCH_CONVS, torch_conv
from ..layers import Conv1D
from ..norms import TORCH_NORMS
from .decision import Decision, Fit
from .escalation import DEFAULT_BUDGET, escalate
from .engine import Batch, default_loss, make_optimizer, observe, rms, seeded_build, split_batch, train_step

__all__ = ["MaximalReport", "maximal_check"]


def _trained(model: nn.Module) -> Dict[str, Tuple[nn.Module, str]]:
    """``"module.weight"`` / ``"module.bias"`` -> (module, attribute) for every trained tensor measured here."""
    out: Dict[str, Tuple[nn.Module, str]] = {}
    seen = set()  # a tied tensor is measured once
    for name, mod in model.named_modules():
        linear = isinstance(mod, (nn.Linear, nn.Embedding) + TORCH_CONVS)
        for attr in ("weight", "bias"):
            t = getattr(mod, attr, None)
            if not isinstance(t, nn.Parameter) or not t.requires_grad or id(t) in seen:
                continue
            if t.dim() == 1 and (attr == "bias" or isinstance(mod, TORCH_NORMS)) or attr == "weight" and linear:
                seen.add(id(t))
                out[f"{name}.{attr}" if name else attr] = (mod, attr)
    return out


def _own_updates(model: nn.Module, start: Dict[str, torch.Tensor], tensors: Dict[str, Tuple[nn.Module, str]],
                 args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Dict[str, float]:
    """RMS of each tensor's own contribution ``M (T_t - T_0)`` applied to its module's input, on the batch."""
    inputs: Dict[int, torch.Tensor] = {}
    hooks = [mod.register_forward_pre_hook(lambda m, a: inputs.setdefault(id(m), a[0]))
             for mod in {id(m): m for m, _ in tensors.values()}.values()]
    try:
        observe(model, args, kwargs)
    finally:
        for h in hooks:
            h.remove()
    out: Dict[str, float] = {}
    with torch.no_grad():
        for key, (mod, attr) in tensors.items():
            delta = getattr(mod, attr).detach() - start[key]
            x = inputs.get(id(mod))
            if delta.dim() == 1:  # a bias, or a norm's gain (it multiplies a normalised input, of RMS one)
                out[key] = rms(delta)
            elif x is None:
                continue  # not called on this batch
            elif isinstance(mod, nn.Embedding):
                out[key] = rms(F.embedding(x, delta) * getattr(mod, "weight_multiplier", 1.0))
            elif isinstance(mod, TORCH_CONVS):  # torch's convolution with the update as the kernel
                out[key] = rms(torch_conv(mod)._conv_forward(mod, x, delta, None) * getattr(mod, "weight_multiplier", 1.0))
            elif isinstance(mod, Conv1D):  # stored in x out
                out[key] = rms(x @ delta * mod.weight_multiplier)
            else:
                out[key] = rms(F.linear(x, delta) * getattr(mod, "weight_multiplier", 1.0))
    return out


@dataclass
class MaximalReport(Decision):
    """Each trained tensor's own update against width: ``"pass"`` when every one is of order one (updated maximally)."""

    widths: List[int]
    steps: int
    seeds: List[int]
    tolerance: float
    lr: float
    fits: List[Fit]
    rms: Dict[str, List[List[float]]] = field(default_factory=dict)
    escalation: List[str] = field(default_factory=list)
    suggestion: Dict[str, str] = field(default_factory=dict)

    def _decide(self) -> Tuple[str, str]:
        if self.mismatches:
            named = ", ".join(f"{f.layer} (n^{f.slope:+.2f})" for f in self.mismatches)
            return "fail", f"not updated maximally: {named}; under muP every tensor's own update is of order one"
        if self.undecided:
            return "inconclusive", self._cannot_decide([f.layer for f in self.undecided])
        return "pass", f"every tensor's own update is of order one ({len(self.fits)} tensors)"

    def summary(self) -> str:
        added = f"\nadded after an inconclusive pass: {'; '.join(self.escalation)}" if self.escalation else ""
        return (f"maximal updates: widths {self.widths}, {self.steps} step(s), seeds {self.seeds}, tolerance "
                f"{self.tolerance:g}\n{self.outcome()}{added}")

    def _rows(self) -> List[Tuple[str, ...]]:
        rows = [("tensor", "quantity", "step", "measured", "noise", "predicted", "decision")]
        for f in self.fits:
            decision = {"agree": "yes", "disagree": "NO", "inconclusive": "?"}.get(f.status, "-")
            rows.append((f.layer, f.quantity, str(f.step), f"{f.slope:+.2f}", f"{f.noise:.2f}", str(f.predicted), decision))
        return rows

    def to_dict(self) -> Dict[str, Any]:
        return {"widths": self.widths, "steps": self.steps, "seeds": self.seeds, "tolerance": self.tolerance, "lr": self.lr,
                "status": self.status, "outcome": self.outcome(), "fits": self.fit_records(), "escalation": self.escalation,
                "suggestion": self.suggestion}


def maximal_check(build: Callable[[int], nn.Module], widths: Sequence[int], batch: Batch, *, optimizer: Any, lr: float,
                  steps: int = 3, seeds: Sequence[int] = (0, 1), loss: Optional[Callable[[Any, Any], torch.Tensor]] = None,
                  tolerance: float = 0.2, family: Optional[str] = None, budget: Optional[float] = DEFAULT_BUDGET) -> MaximalReport:
    """Train ``build(width)`` like :func:`abcparam.coord_check` and judge every trained tensor's own update against
    n^0 after the last step, escalating an inconclusive pass within ``budget`` seconds
    (:mod:`abcparam.check.escalation`); arguments validated by the caller, :func:`abcparam.testing.assert_mup`."""
    def run(w: List[int], s: List[int], escalated: bool, scale: Fraction) -> MaximalReport:
        return _once(build, w, batch, optimizer, lr * float(scale), steps, s, loss, tolerance, family, escalated)

    return escalate(run, list(widths), list(seeds), budget)


def _once(build: Callable[[int], nn.Module], widths: Sequence[int], batch: Batch, optimizer: Any, lr: float, steps: int,
          seeds: Sequence[int], loss: Optional[Callable[[Any, Any], torch.Tensor]], tolerance: float,
          family: Optional[str], escalated: bool = False) -> MaximalReport:
    args, kwargs, y = split_batch(batch)
    loss_fn = loss or default_loss
    table: Dict[str, List[List[float]]] = {}
    for wi, width in enumerate(widths):
        for si, seed in enumerate(seeds):
            model = seeded_build(build, width, seed)
            opts = make_optimizer(optimizer, model, lr, family)
            tensors = _trained(model)
            start = {k: getattr(m, a).detach().clone() for k, (m, a) in tensors.items()}
            for _ in range(steps):
                train_step(model, opts, loss_fn, args, kwargs, y)
            for key, v in _own_updates(model, start, tensors, args, kwargs).items():
                table.setdefault(key, [[math.nan] * len(seeds) for _ in widths])[wi][si] = v
    fits = []
    for key, per_width in table.items():
        if any(math.isnan(v) for row in per_width for v in row):
            continue  # not measured at every width and seed (a module that is not always called)
        values = [v for row in per_width for v in row]
        if all(v == 0 for v in values):  # its gradient is structurally zero (a bias before a batch norm): nothing moves
            fits.append(Fit(key, "-", "dw", steps, math.nan, 0.0, Fraction(0), None, "-", 0.0, 0.0,
                            "exactly zero at every width and seed: the tensor never moves, whatever its rate"))
            continue
        if min(values) <= 0:  # zero at some widths or seeds only: no slope to fit
            fits.append(Fit(key, "-", "dw", steps, math.nan, 0.0, Fraction(0), None, "inconclusive", 0.0, 0.0,
                            "exactly zero at some widths or seeds only: no slope can be fitted",
                            "other seeds, or a batch on which the tensor moves"))
            continue
        j = stats.judge(list(widths), per_width, 0.0, tolerance, excuse=not escalated)
        ok = {"agree": True, "disagree": False}.get(j.status)
        fits.append(Fit(key, "-", "dw", steps, j.slope, j.spread, Fraction(0), ok, j.status, j.noise, j.margin, j.reason, j.settle))
    return MaximalReport(list(widths), int(steps), list(seeds), float(tolerance), float(lr), fits, table)
