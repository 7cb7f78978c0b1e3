"""Attention with the parametrization's scale, and the scale observed in any model (docs/theory.md section 14).

In a head whose dimension d_head grows with the width, the logit ``scale * q . k``
is Theta(d_head^(1/2)) at init and its change Theta(d_head) after training
(the change of q is correlated with k).  With ``scale ~ d_head^-e`` the logits
start at ``d_head^(1/2 - e)`` and move by ``d_head^(1 - e)``: ``e = 1`` (muP)
is stable and nontrivial, ``e = 1/2`` (every standard implementation) makes
them blow up like ``d_head^(1/2)``.

* :class:`ScaledDotProductAttention` calls torch's fused kernel with the
  parametrization's scale, ``alpha * d_head_0^(e - 1/2) / d_head^e``
  (``d_head_0 = d_head / m``), which is the usual ``1/sqrt(d_head_0)`` at
  base width; :meth:`abcparam.Parametrization.attention_scale` gives the same
  number to code that computes its own attention.
* :class:`ScaleObserver` sees every call of
  ``torch.nn.functional.scaled_dot_product_attention`` during a forward pass
  (a ``TorchFunctionMode``) with its head dimension and scale, so the scale's
  exponent is known exactly from builds at two widths: the coordinate check
  uses it (attention written as an explicit matmul and softmax is not seen).

>>> import torch, abcparam
>>> attn = ScaledDotProductAttention(64, param=abcparam.mup(256, 64))       # d_head 64 at m = 4: base 16
>>> attn.scale == 16 ** 0.5 / 64
True
>>> classify_attention(1).stable, classify_attention("1/2").logit_change
(True, Fraction(1, 2))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, List, Optional, Tuple

from . import _torch  # noqa: F401  (torch without the numpy warning)
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .parametrizations import Parametrization, _positive_int
from .theory import exponent

__all__ = ["ScaledDotProductAttention", "ScaleObserver", "AttentionVerdict", "classify_attention", "scale_exponent"]


@dataclass(frozen=True)
class AttentionVerdict:
    """What a scale ~ d_head^-e does to attention logits as d_head grows (section 14), as growth exponents in
    d_head: logits at init ``1/2 - e``, their change ``1 - e``."""

    exponent: Fraction
    logit_init: Fraction
    logit_change: Fraction
    stable: bool
    nontrivial: bool
    reason: str


def classify_attention(e: Any) -> AttentionVerdict:
    """The verdict on an attention scale ~ d_head^-e (d_head growing with width).

    >>> classify_attention("1/2").reason
    'scale ~ d_head^-1/2: the logits move like d_head^(1/2) and blow up with width'
    """
    x = exponent(e, "e")
    init, change = Fraction(1, 2) - x, 1 - x
    if change > 0:
        reason = f"scale ~ d_head^-{x}: the logits move like d_head^({change}) and blow up with width"
    elif change < 0:
        reason = f"scale ~ d_head^-{x}: the logits move only like d_head^({change}): attention stops learning"
    else:
        reason = f"scale ~ d_head^-{x}: the logits move by Theta(1) (muP)"
    return AttentionVerdict(x, init, change, change <= 0 and init <= 0, change == 0 and init <= 0, reason)


class ScaledDotProductAttention(nn.Module):
    """``F.scaled_dot_product_attention`` with the parametrization's scale (section 14).

    Args:
        head_dim: d_head at this width.
        param: the parametrization; its ``attention`` exponent e (1 for muP,
            1/2 for SP and NTK) and m give ``scale = alpha * d_head_0^(e - 1/2)
            / d_head^e`` with ``d_head_0 = head_dim / m`` (the usual
            ``1/sqrt(d_head_0)`` at base width).  Pass ``head_dim`` that does
            not grow with width (more heads at a fixed head size) with a
            parametrization at m = 1, or compute the scale yourself.
        alpha: the constant at base width (default 1).

    ``forward(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False,
    enable_gqa=False)`` is torch's call with ``scale`` fixed; it has no
    state (nothing in the state_dict) and costs nothing beyond the fused kernel.
    """

    def __init__(self, head_dim: int, *, param: Parametrization, alpha: float = 1.0) -> None:
        super().__init__()
        if not isinstance(param, Parametrization):
            raise TypeError(f"param: expected an abcparam.Parametrization, got {type(param).__name__}")
        self.head_dim = _positive_int(head_dim, "head_dim")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (alpha > 0 and math.isfinite(alpha)):
            raise ValueError(f"alpha: a finite positive number, got {alpha!r}")
        self.alpha = float(alpha)
        self.attention = param.attention
        self.scale = param.attention_scale(head_dim, alpha=alpha)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: Optional[torch.Tensor] = None,
                dropout_p: float = 0.0, is_causal: bool = False, enable_gqa: bool = False) -> torch.Tensor:
        if query.shape[-1] != self.head_dim:
            raise ValueError(f"query: head dimension {query.shape[-1]}, but this attention was built for head_dim={self.head_dim}")
        kw = {"enable_gqa": True} if enable_gqa else {}
        return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p,
                                              is_causal=is_causal, scale=self.scale, **kw)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, scale={self.scale:.6g} (~ d_head^-{self.attention}), alpha={self.alpha:g}"


class ScaleObserver(TorchFunctionMode):
    """Records (head dimension, scale) of every ``F.scaled_dot_product_attention`` call while active.

    >>> q = torch.randn(1, 2, 3, 8)
    >>> with ScaleObserver() as seen:
    ...     _ = F.scaled_dot_product_attention(q, q, q)
    >>> [(d, round(s, 6)) for d, s in seen.calls]
    [(8, 0.353553)]
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: List[Tuple[int, float]] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            q = args[0] if args else kwargs["query"]
            scale = kwargs.get("scale", args[6] if len(args) > 6 else None)
            d = int(q.shape[-1])
            self.calls.append((d, float(scale) if scale is not None else 1.0 / math.sqrt(d)))
        return func(*args, **kwargs)


def scale_exponent(calls_by_width: List[List[Tuple[int, float]]]) -> List[Tuple[Optional[Fraction], float, str]]:
    """For each attention call (in call order), the exponent e of scale ~ d_head^-e across the widths, exact when
    the scales are powers of the head dimension (snapped to a fraction with denominator <= 4 when within 1e-6),
    with the largest residual and a note; None when the head dimension does not change with width."""
    n_calls = {len(c) for c in calls_by_width}
    if len(n_calls) != 1:
        return []
    out = []
    for i in range(n_calls.pop()):
        ds = [c[i][0] for c in calls_by_width]
        ss = [c[i][1] for c in calls_by_width]
        if len(set(ds)) == 1:
            out.append((None, 0.0, f"head dimension {ds[0]} at every width: the scale does not change with width"))
            continue
        pairs = [(math.log(d / ds[0]), -math.log(s / ss[0])) for d, s in zip(ds[1:], ss[1:]) if d != ds[0]]
        e = sum(y for _, y in pairs) / sum(x for x, _ in pairs) if len(pairs) == 1 else \
            sum(x * y for x, y in pairs) / sum(x * x for x, _ in pairs)
        snapped = Fraction(e).limit_denominator(4)
        residual = max(abs(y - float(snapped) * x) for x, y in pairs)
        out.append((snapped if residual < 1e-6 else None, residual,
                    f"scale ~ d_head^-{snapped}" if residual < 1e-6 else f"scale not a power of d_head (best fit {e:.3f})"))
    return out
