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

__version__ = "0.1.0"

__all__ = [
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
