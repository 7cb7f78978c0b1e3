"""The symmetry of docs/theory.md sections 2 and 11 (canonical forms, equivalence) and the largest stable learning rates
(section 6)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Tuple

from .calculus import alignment_exponents
from .exponents import ZERO, Exponents, alignment_name, families_of, family_arg, gamma_offset, kappa, per_layer
from .presets import Preset
from .verdict import classify


# --------------------------------------------------------------------------
# Symmetry, canonical forms, largest learning rates
# --------------------------------------------------------------------------


def _as_exponents(p: Any, family: Any, name: str) -> Exponents:
    if isinstance(p, Preset):
        return p.exponents(family)
    if isinstance(p, Exponents):
        return p
    if hasattr(p, "theory_preset"):
        return p.theory_preset().exponents(family)
    if isinstance(p, (tuple, list)) and len(p) == 3:
        return Exponents.of(*p)
    raise TypeError(f"{name}: expected a Preset, an Exponents object or a tuple (a, b, c), got {type(p).__name__}")


def canonical(a: Any, b: Any = None, c: Any = None, *, optimizer: Any = "sgd") -> Exponents:
    """The a = 0 representative of a parametrization's symmetry class (sections 2 and 11).

    In it b_l = beta_l and c_l = gamma_l minus the family's offset at a = 0
    (0 for SGD- and Adam-like layers, kappa_l for spectral, beta_l for relative).

    >>> from abcparam.theory import preset
    >>> e = canonical(preset("mup", depth=2), optimizer="sgd")
    >>> [str(x) for x in e.b], [str(x) for x in e.c]
    (['0', '1/2', '1'], ['-1', '0', '1'])
    """
    fam_arg = family_arg(optimizer)
    exps = _as_exponents(a if b is None and c is None else (a, b, c), fam_arg, "a")
    L1 = len(exps.a)
    fams = families_of(fam_arg, L1)
    beta, gamma, ks = exps.beta(), exps.gamma(fams), kappa(L1 - 1)
    c0 = tuple(g - gamma_offset(f, ZERO, bt, k) for f, g, bt, k in zip(fams, gamma, beta, ks))
    return Exponents((ZERO,) * L1, beta, c0)


def equivalent(p: Any, q: Any, optimizer: Any = "sgd") -> bool:
    """True iff two parametrizations have the same beta_l and gamma_l (sections 2 and 11).

    >>> from abcparam.theory import preset
    >>> equivalent(preset("mup"), preset("mup_table8"), "adam")
    True
    """
    fam_arg = family_arg(optimizer)
    e1, e2 = _as_exponents(p, fam_arg, "p"), _as_exponents(q, fam_arg, "q")
    return len(e1.a) == len(e2.a) and e1.beta() == e2.beta() and e1.gamma(fam_arg) == e2.gamma(fam_arg)


def max_stable_lr_exponents(a: Any, b: Any, optimizer: Any = "sgd", alignment: str = "tp4") -> Tuple[Fraction, ...]:
    """Smallest stable c_l per layer (the largest learning rates) for given a, b (sections 6 and 11).

    ``a`` and ``b`` must be stable at initialisation; ``optimizer`` is one family
    or one per layer.

    Examples:
        >>> [str(x) for x in max_stable_lr_exponents([0, 0, 0], [0, "1/2", "1/2"], "sgd")]
        ['0', '1', '1']
        >>> [str(x) for x in max_stable_lr_exponents([0, 0, 0], [0, "1/2", "1/2"], "muon")]
        ['0', '1/2', '1/2']
    """
    align = alignment_name(alignment)
    a_ = per_layer(a, "a")
    b_ = per_layer(b, "b", len(a_))
    fams = families_of(optimizer, len(a_))
    # stability at initialisation depends on a and b only (not on c, the family or the alignment): any c will do
    probe = classify(a_, b_, (ZERO,) * len(a_))
    if not probe.stable_at_init:
        bad = [x for x in probe.reasons if "init:" in x]  # (not "init x feature change", which depends on c)
        raise ValueError("a, b: not stable at initialisation, no learning rate is stable: " + "; ".join(bad))
    L = len(a_) - 1
    A, O, _ = alignment_exponents(align, L)
    beta_out = a_[L] + b_[L]
    rho = max(ZERO, O[L] - beta_out)
    # smallest stable gamma_l: the readout's makes its own update Theta(1); an earlier layer's makes its own update
    # (carried by the backward signal g, zero for normalised families) move the readout by Theta(1)
    g = min(beta_out, A[L])
    gl = [g if f == "sgd" else ZERO for f in fams]
    gamma = [rho - gl[0]] + [rho + A[i] - gl[i] for i in range(1, L)] + [A[L]]
    ks = kappa(L)
    return tuple(gm - gamma_offset(f, x, y, k) for gm, f, x, y, k in zip(gamma, fams, a_, b_, ks))
