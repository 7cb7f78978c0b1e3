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

from . import torch_quiet  # noqa: F401  (torch without the numpy warning)
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .theory.parametrizations import Parametrization
from . import validate
from .validate import positive_int as _positive_int
from .theory import exponent

__all__ = ["HEAD_SIZES", "ScaledDotProductAttention", "ScaleObserver", "AttentionVerdict", "classify_attention", "head_sizes",
           "module_scales", "scale_exponent"]

# the names attention classes give their head size (HF transformers: head_dim in most, head_size in GPT-NeoX,
# attention_head_size in BERT-like ones, qk_head_dim where queries and keys have their own, as in multi-latent attention)
HEAD_SIZES = ("head_dim", "head_size", "attention_head_size", "attention_head_dim", "qk_head_dim")


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
        Parametrization.require(param)
        self.head_dim = _positive_int(head_dim, "head_dim")
        self.alpha = validate.number(alpha, "alpha")
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


def head_sizes(mod: nn.Module) -> List[int]:
    """The head sizes a module exposes: its positive int attributes named in :data:`HEAD_SIZES`, in that order."""
    sizes = (getattr(mod, name, None) for name in HEAD_SIZES)
    return [d for d in sizes if isinstance(d, int) and not isinstance(d, bool) and d > 0]


def module_scales(model: nn.Module) -> List[Tuple[int, float]]:
    """``(head size, scale)`` of every module of ``model`` (in module order) that exposes a float ``scaling`` and an int
    head size (:func:`head_sizes`): the attention scales of a model that computes its logits inline (HF's eager
    attention), which :class:`ScaleObserver` cannot see.  The first head-size attribute present is read."""
    out = []
    for mod in model.modules():
        scaling = getattr(mod, "scaling", None)
        if isinstance(scaling, float) and not isinstance(mod, (MultiheadAttention, ScaledDotProductAttention)):
            sizes = head_sizes(mod)
            if sizes:
                out.append((sizes[0], scaling))
    return out


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


class MultiheadAttention(nn.Module):
    """``nn.MultiheadAttention`` with an abc-parametrization: the same call signature, outputs and state_dict keys
    (``in_proj_weight``, ``in_proj_bias``, ``out_proj.weight``, ``out_proj.bias``), the projections as hidden
    layers of ``param`` (vector-like biases) and the logit scale ``param.attention_scale(head_dim)``
    (docs/theory.md section 14).  It always runs through ``F.scaled_dot_product_attention`` (or, with
    ``need_weights=True``, the same computation written out), never torch's fused path, so its multipliers
    apply; ``nn.TransformerEncoderLayer`` sees ``_qkv_same_embed_dim = False`` and keeps off its fused path too.

    Not supported (refused): ``add_bias_kv``, ``add_zero_attn``, ``kdim``/``vdim`` other than ``embed_dim``.

    >>> import torch, abcparam
    >>> mha = MultiheadAttention(256, 4, batch_first=True, param=abcparam.mup(256, 64))
    >>> out, w = mha(*(torch.randn(2, 5, 256),) * 3)
    >>> out.shape, w.shape
    (torch.Size([2, 5, 256]), torch.Size([2, 5, 5]))
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True, add_bias_kv: bool = False,
                 add_zero_attn: bool = False, kdim: Optional[int] = None, vdim: Optional[int] = None, batch_first: bool = False,
                 *, param: Parametrization, alpha_attn: float = 1.0, device: Any = None, dtype: Any = None) -> None:
        from .layers import Linear

        param = Parametrization.require(param)
        E = _positive_int(embed_dim, "embed_dim")
        H = _positive_int(num_heads, "num_heads")
        if E % H:
            raise ValueError(f"num_heads: must divide embed_dim={E}, got {H}")
        for flag, name in ((add_bias_kv, "add_bias_kv"), (add_zero_attn, "add_zero_attn")):
            if flag:
                raise ValueError(f"{name}: not supported by abcparam.MultiheadAttention (its extra key/value rows have no role)")
        if kdim not in (None, E) or vdim not in (None, E):
            raise ValueError(f"kdim, vdim: abcparam.MultiheadAttention needs keys and values of embed_dim={E}, got {kdim}, {vdim}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout: a probability in [0, 1), got {dropout!r}")
        super().__init__()
        self.embed_dim, self.num_heads, self.head_dim = E, H, E // H
        self.kdim = self.vdim = E
        self.dropout, self.batch_first = float(dropout), bool(batch_first)
        self._qkv_same_embed_dim = False  # keeps nn.TransformerEncoderLayer off its fused path (it reads raw tensors)
        template = Linear(E, 3 * E, bias, role="hidden", param=param, device="meta")
        self.in_proj_multiplier = template.weight_multiplier
        self._init_std, self._bias_bound = template.init_std, template.bias_bound
        self._in_scales = {"in_proj_weight": template._weight_scales}
        if bias:
            self._in_scales["in_proj_bias"] = template._bias_scales
        self.param_name, self.attention = param.name, param.attention
        self.scale = param.attention_scale(self.head_dim, alpha=alpha_attn)
        self.in_proj_weight = nn.Parameter(torch.empty(3 * E, E, device=device, dtype=dtype))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * E, device=device, dtype=dtype)) if bias else None
        self.out_proj = Linear(E, E, bias, role="hidden", param=param, device=device, dtype=dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """In-projection ~ N(0, init_std^2) of a hidden layer, biases 0 (as torch's); the out-projection is a Linear."""
        with torch.no_grad():
            self.in_proj_weight.normal_(0.0, self._init_std)
            if self.in_proj_bias is not None:
                self.in_proj_bias.zero_()
            if self.out_proj.bias is not None:
                self.out_proj.bias.zero_()

    def abc_scales(self) -> Any:
        """The in-projection's width factors, for :func:`abcparam.wrap` (the out-projection is its own layer)."""
        return dict(self._in_scales)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, key_padding_mask: Optional[torch.Tensor] = None,
                need_weights: bool = True, attn_mask: Optional[torch.Tensor] = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        from .layers import scaled_linear

        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        L, N, E = query.shape
        S = key.shape[0]
        H, D = self.num_heads, self.head_dim
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None, None, None)
        wm = self.in_proj_multiplier
        q = scaled_linear(query, w_q, b_q, wm).reshape(L, N * H, D).transpose(0, 1).reshape(N, H, L, D)
        k = scaled_linear(key, w_k, b_k, wm).reshape(S, N * H, D).transpose(0, 1).reshape(N, H, S, D)
        v = scaled_linear(value, w_v, b_v, wm).reshape(S, N * H, D).transpose(0, 1).reshape(N, H, S, D)
        mask = _merge_masks(attn_mask, key_padding_mask, is_causal, N, H, L, S, q.dtype)
        p = self.dropout if self.training else 0.0
        if need_weights:
            logits = self.scale * q @ k.transpose(-2, -1)
            if mask is not None:
                logits = logits + mask
            weights = torch.softmax(logits, dim=-1)
            out = F.dropout(weights, p) @ v if p else weights @ v
        else:
            weights = None
            causal_only = is_causal and attn_mask is None and key_padding_mask is None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=None if causal_only else mask, dropout_p=p,
                                                 is_causal=causal_only, scale=self.scale)
        out = out.permute(2, 0, 1, 3).reshape(L, N, E)
        out = self.out_proj(out)
        if unbatched:
            out = out.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        if weights is not None:
            weights = weights.mean(1) if average_attn_weights else weights
            if unbatched:
                weights = weights.squeeze(0)
        return out, weights

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}, param={self.param_name}, "
                f"scale={self.scale:.6g} (~ d_head^-{self.attention}), in_proj multiplier={self.in_proj_multiplier:g}")


def _merge_masks(attn_mask: Optional[torch.Tensor], key_padding_mask: Optional[torch.Tensor], is_causal: bool, N: int, H: int,
                 L: int, S: int, dtype: torch.dtype) -> Optional[torch.Tensor]:
    """nn.MultiheadAttention's masks (boolean: True = not allowed; or additive floats) as one additive mask that
    broadcasts over (N, H, L, S)."""
    def additive(m: torch.Tensor) -> torch.Tensor:
        if m.dtype == torch.bool:
            return torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill(m, float("-inf"))
        return m.to(dtype)

    out: Optional[torch.Tensor] = None
    if attn_mask is not None:
        a = additive(attn_mask)
        out = a.reshape(N, H, L, S) if a.dim() == 3 else a.reshape(1, 1, L, S)
    elif is_causal:
        out = additive(torch.ones(L, S, dtype=torch.bool).triu(1)).reshape(1, 1, L, S)
    if key_padding_mask is not None:
        kp = additive(key_padding_mask).reshape(N, 1, 1, S)
        out = kp if out is None else out + kp
    return out
