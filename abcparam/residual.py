"""Residual branches scaled with depth (docs/theory.md section 12).

:class:`Residual` wraps a residual branch ``F`` so that user code writes
``h = h + self.res(h)`` and gets ``h + m_L^-alpha F(h)``, with
``m_L = depth / base_depth`` and alpha from the parametrization (1 CompleteP,
1/2 Depth-muP).  Every tensor inside a ``Residual`` (its abcparam layers, and
norm gains or any other tensor in it) then trains, under :func:`abcparam.wrap`,
with the depth factors of section 12: learning rate ``m_L^(2 alpha - 1)``
SGD-like and ``m_L^(alpha - 1)`` for every normalised family, Adam's epsilon
(and Adafactor's eps1) ``m_L^-alpha``.  Tensors outside residual branches
(embeddings, readout, final norm) are untouched.

Model code whose residual additions are written inline (``h = h + attn(h)``
inside a block's ``forward``) cannot be rewritten; :func:`mark_branch` scales
an existing submodule's output in place with a forward hook (the state_dict
keys do not change), and :func:`mark_block` gives every tensor under a module
the depth factors without scaling anything (for the norms of a block).
:func:`abcparam.convert` uses both for ``blocks=``.

At m_L = 1 (depth == base_depth, or no depth given) the multiplier is exactly
1 and is not applied: the model is bit-identical to one without ``Residual``.

>>> import torch, abcparam
>>> p = abcparam.mup(256, 64, depth=8, base_depth=2)            # CompleteP: alpha = 1
>>> res = abcparam.Residual(abcparam.Linear(256, 256, param=p), param=p)
>>> res.multiplier
0.25
"""

from __future__ import annotations

from typing import Any, Dict, NamedTuple, Optional, Tuple

from . import torch_quiet  # noqa: F401  (torch without the numpy warning)
import torch
from torch import nn

from .layers import abc_modules
from .theory.parametrizations import Parametrization
from .theory import FAMILIES

__all__ = ["Residual", "DepthScales", "mark_branch", "mark_block", "depth_scales"]


class DepthScales(NamedTuple):
    """The depth factors of every tensor inside a residual branch (section 12), read by :func:`abcparam.wrap`."""

    depth: int
    base_depth: int
    alpha: str
    lr_sgd: float
    lr_adam: float
    lr_spectral: float
    lr_relative: float
    eps: float

    def lr(self, family: str) -> float:
        return getattr(self, "lr_" + family)


def _scales_of(param: Parametrization) -> DepthScales:
    depth = param.depth if param.depth is not None else 1
    base = param.base_depth if param.base_depth is not None else 1
    return DepthScales(depth, base, str(param.depth_alpha), *(param.depth_lr_scale(f) for f in FAMILIES), param.depth_eps_scale())


def _check(module: Any, param: Any, what: str) -> Parametrization:
    if not isinstance(module, nn.Module):
        raise TypeError(f"{what}: expected an nn.Module, got {type(module).__name__}")
    return Parametrization.require(param)


def _scale_output(out: Any, factor: float) -> Any:
    """``factor * out`` for a tensor; for a tuple or list (HF attention returns (output, weights, ...)) the first
    element only."""
    if isinstance(out, torch.Tensor):
        return out * factor
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return type(out)([out[0] * factor, *out[1:]])
    raise TypeError(f"a residual branch returned {type(out).__name__}; expected a tensor or a tuple whose first element is one")


class Residual(nn.Module):
    """A residual branch whose output is scaled by ``m_L^-alpha`` (docs/theory.md section 12).

    Args:
        branch: the branch ``F`` (a block of layers, e.g. norm -> linear ->
            activation -> linear); it must contain at least one abcparam layer.
        param: the parametrization, built with ``depth=`` and ``base_depth=``
            (and ``depth_alpha=``, default 1, CompleteP).  Without depth the
            multiplier is 1 and nothing scales with depth.

    ``forward(*args, **kwargs)`` returns ``multiplier * branch(*args, **kwargs)``
    (for a tuple output, its first element is scaled).  The depth numbers are
    plain attributes (``depth``, ``base_depth``, ``depth_alpha``,
    ``multiplier``), shown by ``repr``; the state_dict holds the branch's
    tensors only, under ``branch.``, whatever the depth.
    """

    def __init__(self, branch: nn.Module, *, param: Parametrization) -> None:
        param = _check(branch, param, "branch")
        if not abc_modules(branch):
            raise ValueError(
                f"branch: {type(branch).__name__} contains no abcparam layer; a residual branch scales with width as well as "
                "depth, so build it from abcparam.Linear (or convert it with abcparam.convert) before wrapping it"
            )
        super().__init__()
        self.branch = branch
        self._abc_depth = _scales_of(param)
        self.depth, self.base_depth = self._abc_depth.depth, self._abc_depth.base_depth
        self.depth_alpha = param.depth_alpha
        self.multiplier = param.branch_multiplier()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.branch(*args, **kwargs)
        return out if self.multiplier == 1.0 else _scale_output(out, self.multiplier)

    def extra_repr(self) -> str:
        return f"m_L={self.depth}/{self.base_depth}, alpha={self.depth_alpha}, multiplier={self.multiplier:g}"


class _BranchScale:
    """A forward hook scaling a module's output by a constant (a plain object: picklable, deep-copyable)."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def __call__(self, module: nn.Module, args: Any, out: Any) -> Any:
        return _scale_output(out, self.factor)


def mark_branch(module: nn.Module, *, param: Parametrization) -> nn.Module:
    """Make an existing submodule a residual branch in place: its output is scaled by m_L^-alpha (a forward hook)
    and its tensors train with the depth factors.  The state_dict keys do not change.  Returns ``module``.

    For models whose residual additions are inline (``h = h + self.attn(h)``), mark ``attn``.  Marking twice
    is refused.
    """
    param = _check(module, param, "module")
    if is_branch(module):
        raise ValueError(f"module: {type(module).__name__} is already a residual branch; marking twice would scale twice")
    module._abc_depth = _scales_of(param)
    module._abc_branch = True
    mult = param.branch_multiplier()
    if mult != 1.0:  # at m_L = 1 nothing is registered: bit-identical to the unmarked module
        module.register_forward_hook(_BranchScale(mult))
    return module


def mark_block(module: nn.Module, *, param: Parametrization) -> nn.Module:
    """Give every tensor under ``module`` the depth factors of section 12 without scaling its output (a transformer
    block whose branches are marked with :func:`mark_branch`, so that its norms train like its branches)."""
    param = _check(module, param, "module")
    module._abc_depth = _scales_of(param)
    return module


def is_branch(module: nn.Module) -> bool:
    """Whether ``module`` is a residual branch: an :class:`abcparam.Residual` or a module marked with :func:`mark_branch`."""
    return isinstance(module, Residual) or getattr(module, "_abc_branch", False)


def depth_of(module: nn.Module) -> Optional[DepthScales]:
    """The depth factors a branch or a block was marked with (None for a module never marked)."""
    ds = getattr(module, "_abc_depth", None)
    return ds if isinstance(ds, DepthScales) else None


def depth_scales(model: nn.Module) -> Dict[int, Tuple[str, DepthScales]]:
    """id(tensor) -> (the residual module's name, its depth factors) for every tensor inside a residual branch or
    marked block.  A tensor under two marks with different factors is refused."""
    out: Dict[int, Tuple[str, DepthScales]] = {}
    for name, mod in model.named_modules():
        ds = depth_of(mod)
        if ds is None:
            continue
        for p in mod.parameters():
            prev = out.get(id(p))
            if prev is not None and prev[1] != ds:
                raise ValueError(f"model: a tensor of {name} is inside {prev[0]} too, with other depth factors")
            out.setdefault(id(p), (name, ds))
    return out
