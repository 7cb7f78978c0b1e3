"""The named parametrizations of docs/theory.md section 5 (SP, NTK, muP in both forms, mean field, UP_s), and which of
them a pair (beta, gamma) is equivalent to (section 2)."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Dict, Optional, Tuple

from .exponents import HALF, ZERO, Exponents, exponent, families_of, gamma_offset, kappa, optimizer_family


@dataclass(frozen=True)
class Preset:
    """A named parametrization at a fixed depth, with c for every optimizer family.

    ``c_spectral`` and ``c_relative`` default to the learning rates that give
    the same gamma_l as ``c_adam`` (docs/theory.md section 11: c_adam - kappa_l
    and c_adam - b_l), so the same training dynamics under Muon or Adafactor.

    Examples:
        >>> p = preset("mup", depth=2)
        >>> [str(x) for x in p.exponents("adam").c], [str(x) for x in p.exponents("muon").c]
        (['1/2', '1', '1/2'], ['0', '0', '0'])
        >>> [str(x) for x in p.exponents(["adam", "muon", "adam"]).c]
        ['1/2', '0', '1/2']
    """

    name: str
    a: Tuple[Fraction, ...]
    b: Tuple[Fraction, ...]
    c_sgd: Tuple[Fraction, ...]
    c_adam: Tuple[Fraction, ...]
    description: str = ""
    c_spectral: Optional[Tuple[Fraction, ...]] = None
    c_relative: Optional[Tuple[Fraction, ...]] = None

    @property
    def depth(self) -> int:
        return len(self.a) - 1

    def c(self, family: str) -> Tuple[Fraction, ...]:
        """c per layer for one family (``"sgd"``, ``"adam"``, ``"spectral"``, ``"relative"`` or an optimizer name)."""
        fam = optimizer_family(family)
        if fam == "sgd":
            return self.c_sgd
        if fam == "adam":
            return self.c_adam
        given = self.c_spectral if fam == "spectral" else self.c_relative
        if given is not None:
            return given
        ks = kappa(self.depth)
        return tuple(c - gamma_offset(fam, a, b, k) + a for c, a, b, k in zip(self.c_adam, self.a, self.b, ks))

    def exponents(self, optimizer: Any = "sgd") -> Exponents:
        """The (a, b, c) this preset trains with under ``optimizer`` (one family, or one per layer)."""
        fams = families_of(optimizer, len(self.a))
        cols = {f: self.c(f) for f in set(fams)}
        return Exponents(self.a, self.b, tuple(cols[f][i] for i, f in enumerate(fams)))


def _layers(depth: int, inp: Any, hidden: Any, out: Any) -> Tuple[Fraction, ...]:
    middle = (exponent(hidden),) * (depth - 1) if depth > 1 else ()
    return (exponent(inp),) + middle + (exponent(out),)


def uniform(depth: int, s: Fraction) -> Preset:
    # TP4-style uniform parametrization: interpolates muP (TP4 form, s = 0) and NTK (s = 1/2).
    a = _layers(depth, s - HALF, s, HALF)
    b = _layers(depth, HALF - s, HALF - s, HALF - s)
    return Preset(
        f"up({s})",
        a,
        b,
        _layers(depth, 0, 0, 0),
        _layers(depth, HALF, 1, HALF),
        f"uniform parametrization UP_{s}: every r_l = {s}, a+b = {1 - s} at the readout",
    )


_PRESET_TABLE: Dict[str, Tuple[str, Tuple[Any, Any, Any], Tuple[Any, Any, Any], Tuple[Any, Any, Any], Tuple[Any, Any, Any]]] = {
    # name: (description, a, b, c_sgd, c_adam) as (input, hidden, output); docs/theory.md section 5.
    "sp": ("standard parametrization, constant learning rate", (0, 0, 0), (0, HALF, HALF), (0, 0, 0), (0, 0, 0)),
    "sp_inv_n": ("standard parametrization, learning rate ~ 1/n", (0, 0, 0), (0, HALF, HALF), (1, 1, 1), (1, 1, 1)),
    "ntk": ("neural tangent parametrization (Adam: TP4b)", (0, HALF, HALF), (0, 0, 0), (0, 0, 0), (HALF, 1, HALF)),
    "mup": ("maximal update parametrization, TP4 form", (-HALF, 0, HALF), (HALF, HALF, HALF), (0, 0, 0), (HALF, 1, HALF)),
    "mup_table8": (
        "maximal update parametrization, TP5 Table 8 form (microsoft/mup; tied embeddings)",
        (0, 0, 1),
        (0, HALF, 0),
        (-1, 0, -1),
        (0, 1, 0),
    ),
    # Mean field has no Adam column in TP4; its Adam c is the muP one moved by the symmetry.
    "mean_field": ("mean-field parametrization (L = 1 only)", (0, None, 1), (0, None, 0), (-1, None, -1), (0, None, 0)),
}
_PRESET_ALIASES = {
    "standard": "sp",
    "sp_1/n": "sp_inv_n",
    "mup_tp4": "mup",
    "mup_tp5": "mup_table8",
    "mf": "mean_field",
    "meanfield": "mean_field",
}
PRESET_NAMES = tuple(_PRESET_TABLE) + ("up",)
# Presets defined by their learning-rate rule (constant, ~1/n) rather than by their dynamics: the same c for
# every family, where the others keep Adam's gamma_l (docs/theory.md section 11).
_CONSTANT_LR = ("sp", "sp_inv_n")


def preset(name: str, depth: int = 2, *, s: Any = None) -> Preset:
    """The named parametrization of docs/theory.md section 5 with ``depth`` hidden layers.

    ``name`` is one of ``sp``, ``sp_inv_n``, ``ntk``, ``mup``, ``mup_table8``,
    ``mean_field`` (depth 1 only) or ``up`` (the uniform family UP_s, which needs
    ``s`` in [0, 1/2]).

    >>> preset("up", depth=3, s="1/4").name
    'up(1/4)'
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a preset name, got {type(name).__name__}")
    key = _PRESET_ALIASES.get(name.lower(), name.lower())
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 1:
        raise ValueError(f"depth: the number of hidden layers L must be an integer >= 1, got {depth!r}")
    depth = int(depth)
    if key == "up":
        if s is None:
            raise ValueError("s: the uniform family 'up' needs s, a value in [0, 1/2] (UP_0 = muP, UP_1/2 = NTK)")
        s_ = exponent(s, "s")
        if not ZERO <= s_ <= HALF:
            raise ValueError(f"s: UP_s needs 0 <= s <= 1/2, got {s_}")
        return uniform(depth, s_)
    if s is not None:
        raise ValueError(f"s: only the preset 'up' takes s, not {name!r}")
    if key not in _PRESET_TABLE:
        raise ValueError(f"name: unknown preset {name!r}; allowed: {', '.join(PRESET_NAMES)}")
    if key == "mean_field" and depth != 1:
        raise ValueError(f"depth: the mean-field preset exists for depth 1 only, got {depth}; use 'mup' for deeper nets")
    desc, *cols = _PRESET_TABLE[key]
    a, b, c_sgd, c_adam = (_layers(depth, *col) for col in cols)
    if key in _CONSTANT_LR:
        # a constant learning-rate rule is the same rule whatever the optimizer
        return Preset(key, a, b, c_sgd, c_adam, desc, c_sgd, c_sgd)
    return Preset(key, a, b, c_sgd, c_adam, desc)


def equivalent_preset(beta: Tuple[Fraction, ...], gamma: Tuple[Fraction, ...], families: Tuple[str, ...]) -> Optional[str]:
    L = len(beta) - 1
    names = ["mup", "ntk", "sp", "sp_inv_n"] + (["mean_field"] if L == 1 else [])
    candidates = [preset(nm, L) for nm in names]
    s = 1 - beta[L]
    if ZERO < s < HALF:
        candidates.append(uniform(L, s))
    for p in candidates:
        e = p.exponents(families)
        if e.beta() == beta and e.gamma(families) == gamma:
            return p.name
    return None
