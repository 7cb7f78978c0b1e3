"""The exact theory of abc-parametrizations: fractions in, verdicts out.

This subpackage owns docs/theory.md sections 2-6, 8 and 11: the invariants beta and gamma
(for every optimizer family, one per layer in hybrid set-ups),
the symmetry, the feature-update exponents r_l, the logit exponent q, the
stability / triviality / regime verdict, the named presets and the largest
stable learning rates.  It is pure Python (no torch import) and every exponent
is a :class:`fractions.Fraction`; no verdict ever depends on float rounding.

Layers are numbered l = 1 (input), 2..L (hidden), L+1 (readout), so a sequence
of L+1 exponents describes a network with L hidden layers ("depth" L).

Example:

>>> v = classify(["-1/2", 0, "1/2"], ["1/2", "1/2", "1/2"], 0)
>>> v.regime, str(v.r), str(v.q)
('feature_learning', '0', '0')
>>> classify(preset("sp", depth=2), optimizer="adam").regime
'unstable'

The subpackage is the boundary that keeps ``abcparam classify`` and the pytest plugin light: nothing below it
imports torch (tests/test_theory.py checks it).  Its modules: :mod:`.exponents` (parsing, optimizer families,
beta and gamma), :mod:`.presets`, :mod:`.calculus` (r_l, q, slopes), :mod:`.verdict` (the classifier),
:mod:`.symmetry` (canonical forms, largest stable learning rates), :mod:`.depth` (the depth calculus) and
:mod:`.parametrizations` (the per-role exponents and multipliers the layers use).
"""

from .calculus import Slopes
from .exponents import ALIGNMENTS, FAMILIES, OPTIMIZER_FAMILIES, REGIMES, Exponents, exponent, kappa, optimizer_family
from .presets import PRESET_NAMES, Preset, preset
from .symmetry import canonical, equivalent, max_stable_lr_exponents
from .verdict import Verdict, classify

__all__ = [
    "Exponents",
    "Preset",
    "Slopes",
    "Verdict",
    "canonical",
    "classify",
    "equivalent",
    "exponent",
    "max_stable_lr_exponents",
    "optimizer_family",
    "preset",
    "PRESET_NAMES",
    "OPTIMIZER_FAMILIES",
    "FAMILIES",
    "ALIGNMENTS",
    "kappa",
    "REGIMES",
]
