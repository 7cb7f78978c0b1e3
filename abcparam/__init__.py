"""abcparam: the abc-parametrizations of Tensor Programs IV for PyTorch.

The exact theory (``classify``, ``preset``, ...) is pure Python; the layers,
optimizer wrapper and coordinate check build on it.

>>> import abcparam
>>> abcparam.classify(abcparam.preset("mup", depth=3), optimizer="adam").regime
'feature_learning'
"""

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

from .parametrization import Parametrization, RoleExponents, mean_field, mup, ntk, parametrization, sp, sp_inv_n, up
from .layers import Embedding, Linear, ParamScales, TiedReadout, abc_modules
from .optim import per_group, wrap
from .convert import ConversionReport, convert
from . import models

__version__ = "0.1.0"

__all__ = [
    "Parametrization",
    "RoleExponents",
    "parametrization",
    "sp",
    "sp_inv_n",
    "ntk",
    "mup",
    "mean_field",
    "up",
    "Linear",
    "Embedding",
    "TiedReadout",
    "ParamScales",
    "abc_modules",
    "wrap",
    "per_group",
    "convert",
    "ConversionReport",
    "Exponents",
    "Preset",
    "Slopes",
    "Verdict",
    "canonical",
    "classify",
    "equivalent",
    "max_stable_lr_exponents",
    "optimizer_family",
    "preset",
]
