"""abcparam: the abc-parametrizations of Tensor Programs IV for PyTorch.

The exact theory (``classify``, ``preset``, ...) is pure Python and imported
eagerly; the torch-based parts (layers, optimizer wrapper, coordinate check)
are imported on first use, so ``abcparam classify`` and the pytest plugin stay
light.

>>> import abcparam
>>> abcparam.classify(abcparam.preset("mup", depth=3), optimizer="adam").regime
'feature_learning'
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from . import theory
from .theory import (
    Exponents,
    Preset,
    Slopes,
    Verdict,
    canonical,
    classify,
    equivalent,
    max_stable_lr_exponents,
    optimizer_family,
    preset,
)

__version__ = "0.1.0"

# name -> module that defines it (imported lazily, PEP 562)
_LAZY = {
    "Parametrization": "theory.parametrizations",
    "RoleExponents": "theory.parametrizations",
    "parametrization": "theory.parametrizations",
    "sp": "theory.parametrizations",
    "sp_inv_n": "theory.parametrizations",
    "ntk": "theory.parametrizations",
    "mup": "theory.parametrizations",
    "mean_field": "theory.parametrizations",
    "up": "theory.parametrizations",
    "Linear": "layers",
    "Embedding": "layers",
    "TiedReadout": "layers",
    "ParamScales": "layers",
    "abc_modules": "layers",
    "AbcLayer": "layers",
    "is_abc_layer": "layers",
    "Conv1d": "conv",
    "Conv2d": "conv",
    "Conv3d": "conv",
    "wrap": "optim",
    "per_group": "optim",
    "convert": "conversion",
    "ConversionReport": "conversion",
    "to_torch": "conversion",
    "from_torch": "conversion",
    "effective_state_dict": "conversion",
    "coord_check": "check.width",
    "inspect": "inspection",
    "Inspection": "inspection",
    "Residual": "residual",
    "mark_branch": "residual",
    "mark_block": "residual",
    "LayerNorm": "norms",
    "RMSNorm": "norms",
    "BatchNorm1d": "norms",
    "BatchNorm2d": "norms",
    "BatchNorm3d": "norms",
    "GroupNorm": "norms",
    "classify_depth": "theory.depth",
    "ScaledDotProductAttention": "attention",
    "MultiheadAttention": "attention",
    "DepthVerdict": "theory.depth",
    "CoordReport": "check.width",
    "depth_check": "check.depth",
    "DepthReport": "check.depth",
}
# submodules reachable as attributes (``abcparam.layers``), imported on first use; a value names where a module lives
# when it is not at the top level
_SUBMODULES = {name: name for name in ("theory", "layers", "optim", "conversion", "models", "data", "testing", "limits",
                                      "cli", "residual", "norms", "meanfield", "attention", "maml", "kernels", "validate",
                                      "text", "check", "conv", "inspection")}
_SUBMODULES.update(parametrizations="theory.parametrizations", depth="theory.depth", coord="check.width",
                   depthcheck="check.depth", coord_stats="check.stats")

# the calculus's names imported above, then the lazy ones
__all__ = [name for name in theory.__all__ if name in globals()] + list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return import_module(f".{_SUBMODULES[name]}", __name__)
    raise AttributeError(f"module 'abcparam' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


if TYPE_CHECKING:  # pragma: no cover
    from .conversion import ConversionReport, convert, effective_state_dict, from_torch, to_torch
    from .check.width import CoordReport, coord_check
    from .check.depth import DepthReport, depth_check
    from .attention import MultiheadAttention, ScaledDotProductAttention
    from .theory.depth import DepthVerdict, classify_depth
    from .norms import BatchNorm1d, BatchNorm2d, BatchNorm3d, GroupNorm, LayerNorm, RMSNorm
    from .conv import Conv1d, Conv2d, Conv3d
    from .residual import Residual, mark_block, mark_branch
    from .layers import AbcLayer, Embedding, Linear, ParamScales, TiedReadout, abc_modules, is_abc_layer
    from .optim import per_group, wrap
    from .theory.parametrizations import Parametrization, RoleExponents, mean_field, mup, ntk, parametrization, sp, sp_inv_n, up
