"""The exact theory of abc-parametrizations: fractions in, verdicts out.

This module owns docs/theory.md sections 2-6, 8 and 11: the invariants beta and gamma
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
"""

from __future__ import annotations

import json
import math
import numbers
import re
from dataclasses import dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple

from .text import table as text_table

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
]

HALF = Fraction(1, 2)
ONE = Fraction(1)
ZERO = Fraction(0)

ALIGNMENTS = ("tp4", "full")
REGIMES = ("feature_learning", "kernel", "trivial", "unstable")

# docs/theory.md sections 1 and 11: the optimizers each family covers.  Names
# are matched case-insensitively, with "_" and "-" ignored, so "AdamW", "adam_w"
# and "torch.optim.AdamW" all resolve.
FAMILIES = ("sgd", "adam", "spectral", "relative")
OPTIMIZER_FAMILIES: Dict[str, Tuple[str, ...]] = {
    "sgd": ("sgd", "momentum", "nesterov", "asgd"),
    "adam": (
        "adam",
        "adamw",
        "rmsprop",
        "adagrad",
        "adamax",
        "nadam",
        "radam",
        "signsgd",
        "sign",
        "lion",
        "sparseadam",
        "rprop",
    ),
    "spectral": ("spectral", "muon"),
    "relative": ("relative", "adafactor", "lamb", "lars"),
}
# Optimizers the theory does not cover, with the reason (docs/theory.md section 11).
_OUT_OF_THEORY: Dict[str, str] = {
    "lbfgs": "L-BFGS builds its step from curvature pairs over all tensors at once and keeps one param group, "
    "so no per-layer learning rate exists",
    "adadelta": "Adadelta's step is set by one eps that is both the step size (through the accumulated updates) "
    "and the floor of the gradient normaliser, so no learning-rate exponent makes it width-correct",
    "shampoo": "Shampoo preconditions with Kronecker factors whose width scaling is not derived here",
    "soap": "SOAP runs Adam in Shampoo's eigenbasis; its width scaling is not derived here",
    "sophia": "Sophia clips a Hessian-scaled step; its width scaling is not derived here",
}

# Largest denominator accepted for a float exponent: 0.5, 0.25, -1.5 are exact
# binary fractions; 0.1 or 1/3 as floats are not what the user meant.
_MAX_FLOAT_DENOMINATOR = 1024
_FRACTION_RE = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)(\s*/\s*\d+)?\s*$")


# --------------------------------------------------------------------------
# Input parsing
# --------------------------------------------------------------------------


def exponent(value: Any, name: str = "exponent") -> Fraction:
    """Convert one exponent to an exact :class:`Fraction`.

    Accepts ints, Fractions (any :class:`numbers.Rational`), strings such as
    ``"1/2"``, ``"-1"`` or ``"0.25"``, finite Decimals, and floats that are
    exactly a fraction with denominator at most 1024 (``0.5``).  Raises
    ``TypeError`` for bools and other types and ``ValueError`` for NaN,
    infinities, ``0.1`` (not exactly 1/10 as a float) and malformed strings.
    The string path never calls ``eval``.

    >>> exponent("-1/2")
    Fraction(-1, 2)
    >>> exponent(0.25)
    Fraction(1, 4)
    """
    if isinstance(value, bool):
        raise TypeError(f"{name}: got the bool {value!r}; exponents are numbers such as 0, 1, '1/2'")
    if isinstance(value, numbers.Integral):
        return Fraction(int(value))
    if isinstance(value, numbers.Rational):
        return Fraction(value.numerator, value.denominator)
    if isinstance(value, str):
        if not _FRACTION_RE.match(value):
            raise ValueError(
                f"{name}: cannot read {value!r} as an exponent; "
                "write an integer, a fraction such as '-1/2', or a decimal such as '0.25'"
            )
        try:
            return Fraction(value.replace(" ", ""))
        except ZeroDivisionError:
            raise ValueError(f"{name}: {value!r} has a zero denominator") from None
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{name}: got {value!r}; exponents must be finite")
        return Fraction(value)
    if isinstance(value, numbers.Real):
        x = float(value)
        if not math.isfinite(x):
            raise ValueError(f"{name}: got {x!r}; exponents must be finite numbers")
        frac = Fraction(x)
        if frac.denominator > _MAX_FLOAT_DENOMINATOR:
            approx = frac.limit_denominator(100)
            raise ValueError(
                f"{name}: the float {x!r} is not exactly a simple fraction; "
                f"pass it exactly, e.g. as the string '{approx}' or Fraction({approx.numerator}, "
                f"{approx.denominator})"
            )
        return frac
    raise TypeError(
        f"{name}: got {type(value).__name__} {value!r}; allowed: int, Fraction, "
        "a string such as '1/2', or a float that is exactly a simple fraction"
    )


def _exponents(values: Any, name: str, length: Optional[int] = None) -> Tuple[Fraction, ...]:
    """Parse a per-layer sequence (or, if ``length`` is given, one number) of exponents."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        if length is None:
            raise TypeError(
                f"{name}: expected a sequence of exponents over the layers (input, hidden..., output), "
                f"got {type(values).__name__} {values!r}"
            )
        return (exponent(values, name),) * length
    if isinstance(values, (set, frozenset, Mapping)):
        raise TypeError(f"{name}: expected an ordered sequence (list or tuple), got {type(values).__name__}")
    out = tuple(exponent(v, f"{name}[{i}]") for i, v in enumerate(values))
    if length is None and len(out) < 2:
        raise ValueError(
            f"{name}: needs at least 2 layers (input and output), got {len(out)}; depth L = len - 1 >= 1"
        )
    if length is not None and len(out) != length:
        raise ValueError(f"{name}: has {len(out)} layers but a has {length}; give one value per layer")
    return out


def optimizer_family(optimizer: Any) -> str:
    """Return ``"sgd"``, ``"adam"``, ``"spectral"`` or ``"relative"`` for an optimizer name, class or instance.

    A class or instance that derives from a torch optimizer takes that
    optimizer's family (a subclass of ``torch.optim.Adam`` is Adam-like).
    Optimizers outside the theory (L-BFGS, Adadelta, Shampoo, ...) are refused
    with the reason (docs/theory.md section 11).

    >>> optimizer_family("AdamW"), optimizer_family("sgd"), optimizer_family("Muon"), optimizer_family("adafactor")
    ('adam', 'sgd', 'spectral', 'relative')
    """
    if isinstance(optimizer, str):
        names = [optimizer]
    elif optimizer is not None and not isinstance(optimizer, (bool, numbers.Number)):
        cls = optimizer if isinstance(optimizer, type) else type(optimizer)
        # the class itself first, then the torch optimizers it derives from (never torch's base Optimizer)
        names = [cls.__name__] + [
            k.__name__ for k in cls.__mro__[1:] if k.__module__.startswith("torch.optim") and k.__name__ != "Optimizer"
        ]
    else:
        raise TypeError(f"optimizer: expected a name such as 'sgd' or 'adam', got {optimizer!r}")
    raw = names[0]
    for name in names:
        key = _family_key(name)
        for family, members in OPTIMIZER_FAMILIES.items():
            if key in members:
                return family
        if key in _OUT_OF_THEORY:
            raise ValueError(f"optimizer: {raw!r} is outside the theory (docs/theory.md section 11): {_OUT_OF_THEORY[key]}")
    known = ", ".join(n for members in OPTIMIZER_FAMILIES.values() for n in members)
    raise ValueError(
        f"optimizer: unknown optimizer {raw!r}. Declare its family: 'sgd' (update proportional to the "
        "gradient), 'adam' (entrywise normalised), 'spectral' (orthogonalised matrix update, like Muon) or "
        f"'relative' (update proportional to the weight's RMS, like Adafactor or LAMB); known names: {known}"
    )


def _family_key(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower().replace("_", "").replace("-", "")


def _families(optimizer: Any, n_layers: int) -> Tuple[str, ...]:
    """One family per layer: a single optimizer (name, class, instance) for every layer, or a sequence of them
    (one per layer, input first), for a model trained by several optimizers (docs/theory.md section 11)."""
    if isinstance(optimizer, (list, tuple)):
        if len(optimizer) != n_layers:
            raise ValueError(
                f"optimizer: got {len(optimizer)} families for {n_layers} layers; give one per layer "
                "(input, hidden..., output) or a single optimizer for all"
            )
        return tuple(optimizer_family(o) for o in optimizer)
    return (optimizer_family(optimizer),) * n_layers


def kappa(depth: int) -> Tuple[Fraction, ...]:
    """Spectral exponents kappa_l (docs/theory.md section 11): half the number of width-sized dimensions of
    w^l, so 1/2 for the input layer and the readout, 1 for hidden n x n matrices.

    >>> [str(k) for k in kappa(2)]
    ['1/2', '1', '1/2']
    """
    return (HALF,) + (ONE,) * (depth - 1) + (HALF,)


def _gamma_offset(family: str, a: Fraction, b: Fraction, k: Fraction) -> Fraction:
    """gamma_l - c_l for one layer of ``family`` (docs/theory.md sections 2 and 11)."""
    if family == "sgd":
        return 2 * a
    if family == "adam":
        return a
    if family == "spectral":
        return a + k
    return a + b  # relative


def _family_arg(optimizer: Any) -> Any:
    """``optimizer`` as the calculus takes it: a list of per-layer entries as given, else its family."""
    return optimizer if isinstance(optimizer, (list, tuple)) else optimizer_family(optimizer)


def _family_label(families: Tuple[str, ...]) -> str:
    """The family of a verdict: the family itself when every layer shares it, else ``"hybrid"``."""
    return families[0] if len(set(families)) == 1 else "hybrid"


def _alignment_name(alignment: Any) -> str:
    if not isinstance(alignment, str) or alignment.lower() not in ALIGNMENTS:
        raise ValueError(f"alignment: got {alignment!r}; allowed: 'tp4' (the theorems) or 'full' (Everett et al.)")
    return alignment.lower()


# --------------------------------------------------------------------------
# Exponent containers and presets
# --------------------------------------------------------------------------


def _power(x: Fraction) -> str:
    """Render n^x."""
    return f"n^{x}" if x.denominator == 1 else f"n^({x})"


@dataclass(frozen=True)
class Exponents:
    """Exact per-layer exponents (a, b, c) of one abc-parametrization.

    ``a``, ``b`` and ``c`` are tuples of :class:`Fraction` over the L+1 layers.
    Build with :meth:`of` to parse user input.

    >>> Exponents.of([0, 0, 1], [0, "1/2", 0], -1).c
    (Fraction(-1, 1), Fraction(-1, 1), Fraction(-1, 1))
    """

    a: Tuple[Fraction, ...]
    b: Tuple[Fraction, ...]
    c: Tuple[Fraction, ...]

    @classmethod
    def of(cls, a: Any, b: Any, c: Any) -> "Exponents":
        a_ = _exponents(a, "a")
        b_ = _exponents(b, "b", len(a_))
        c_ = _exponents(c, "c", len(a_))
        return cls(a_, b_, c_)

    @property
    def depth(self) -> int:
        """L, the number of hidden layers (len - 1)."""
        return len(self.a) - 1

    def beta(self) -> Tuple[Fraction, ...]:
        """beta_l = a_l + b_l (docs/theory.md section 2)."""
        return tuple(x + y for x, y in zip(self.a, self.b))

    def gamma(self, optimizer: Any = "sgd") -> Tuple[Fraction, ...]:
        """gamma_l: 2a_l + c_l (SGD-like), a_l + c_l (Adam-like), a_l + c_l + kappa_l (spectral) or
        a_l + b_l + c_l (relative) (sections 2 and 11); ``optimizer`` is one family or one per layer."""
        fams = _families(optimizer, len(self.a))
        ks = kappa(self.depth)
        return tuple(_gamma_offset(f, x, y, k) + z for f, x, y, z, k in zip(fams, self.a, self.b, self.c, ks))

    def to_dict(self) -> Dict[str, Any]:
        return {k: [str(x) for x in getattr(self, k)] for k in ("a", "b", "c")}


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
        return tuple(c - _gamma_offset(fam, a, b, k) + a for c, a, b, k in zip(self.c_adam, self.a, self.b, ks))

    def exponents(self, optimizer: Any = "sgd") -> Exponents:
        """The (a, b, c) this preset trains with under ``optimizer`` (one family, or one per layer)."""
        fams = _families(optimizer, len(self.a))
        cols = {f: self.c(f) for f in set(fams)}
        return Exponents(self.a, self.b, tuple(cols[f][i] for i, f in enumerate(fams)))


def _layers(depth: int, inp: Any, hidden: Any, out: Any) -> Tuple[Fraction, ...]:
    middle = (exponent(hidden),) * (depth - 1) if depth > 1 else ()
    return (exponent(inp),) + middle + (exponent(out),)


def _up(depth: int, s: Fraction) -> Preset:
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
        return _up(depth, s_)
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


# --------------------------------------------------------------------------
# The exponent calculus (docs/theory.md sections 3 and 8)
# --------------------------------------------------------------------------


def _alignment_exponents(alignment: str, depth: int) -> Tuple[Tuple[Fraction, ...], ...]:
    """(A, O, U) indexed by layer 1..L+1 (index 0 unused: the input layer has none)."""
    L = depth
    A = (ZERO,) + (ONE,) * L
    U = (ZERO,) + (ONE,) * L
    O = (ZERO,) + (HALF,) * (L - 1) + ((ONE if alignment == "tp4" else HALF),)
    return A, O, U


@dataclass(frozen=True)
class _Analysis:
    g: Fraction
    s: Tuple[Fraction, ...]
    r: Tuple[Fraction, ...]
    q_terms: Tuple[Fraction, Fraction, Fraction]

    @property
    def q(self) -> Fraction:
        return min(self.q_terms)


def _analyse(
    beta: Sequence[Fraction], gamma: Sequence[Fraction], families: Sequence[str], alignment: str, step: Optional[int]
) -> _Analysis:
    """Sections 3 and 11.  ``g`` is the backward signal an SGD-like layer sees; a layer of a normalised
    family (Adam-like, spectral, relative) sees 0 whatever the gradient's scale."""
    L = len(beta) - 1
    A, O, U = _alignment_exponents(alignment, L)
    if "sgd" not in families:
        g = ZERO
    elif step == 1:
        g = beta[L]
    else:
        g = min(beta[L], gamma[L])
    gl = [g if f == "sgd" else ZERO for f in families]
    s = [gamma[0] + gl[0]]
    r = [s[0]]
    for i in range(1, L):  # hidden layers l = i + 1
        s.append(gamma[i] + gl[i] - A[i])
        r.append(min(s[i], gamma[i] + gl[i] + r[i - 1] - U[i], r[i - 1] + HALF - O[i]))
    rr = r[-1]
    q_terms = (beta[L] + rr - O[L], gamma[L] - A[L], gamma[L] + rr - U[L])
    return _Analysis(g, tuple(s), tuple(r), q_terms)


@dataclass(frozen=True)
class Slopes:
    """Width exponents a coordinate check should measure (docs/theory.md section 8).

    Each value is the predicted slope of log RMS against log n: ``delta_h[l-1]``
    for Delta h^l (that is, -r_l), ``delta_f`` for the output change (-q) and
    ``f0`` for the initial output (1/2 - beta_{L+1}).  For unstable
    parametrizations the positive slopes are a lower bound, not a value.
    """

    step: int
    delta_h: Tuple[Fraction, ...]
    delta_f: Fraction
    f0: Fraction

    def to_dict(self) -> Dict[str, Any]:
        return {"step": self.step, "delta_h": [str(x) for x in self.delta_h], "delta_f": str(self.delta_f), "f0": str(self.f0)}


@dataclass(frozen=True)
class Verdict:
    """The exact verdict on one abc-parametrization (docs/theory.md section 4).

    Exponents are decay exponents: Delta h^l = Theta(n^-r_l), Delta f = Theta(n^-q).
    ``f0_exponent`` is the growth exponent of the initial output,
    f_0 = Theta(n^f0_exponent).  ``updated_maximally`` has one flag per layer
    (the readout last), ``features_evolve`` one per layer l <= L.  ``faithful``
    is ``None`` unless the readout is trained by an Adam-like optimizer.
    ``families`` has the optimizer family of each layer; ``optimizer`` is that
    family when all layers share it, else ``"hybrid"``.  Every number is a Fraction; use
    :meth:`to_dict` / :meth:`to_json` for a serialisable form.
    """

    regime: str
    stable_at_init: bool
    stable: bool
    nontrivial: bool
    r: Fraction
    q: Fraction
    f0_exponent: Fraction
    r_layers: Tuple[Fraction, ...]
    s_layers: Tuple[Fraction, ...]
    beta: Tuple[Fraction, ...]
    gamma: Tuple[Fraction, ...]
    g: Fraction
    updated_maximally: Tuple[bool, ...]
    features_evolve: Tuple[bool, ...]
    readout_initialised_maximally: bool
    faithful: Optional[bool]
    reasons: Tuple[str, ...]
    equivalent_to: Optional[str]
    exponents: Exponents
    optimizer: str
    alignment: str
    linear: bool = False
    name: Optional[str] = field(default=None, compare=False)
    families: Tuple[str, ...] = ()

    @property
    def depth(self) -> int:
        return len(self.r_layers)

    @property
    def feature_learning(self) -> bool:
        return self.regime == "feature_learning"

    @property
    def kernel(self) -> bool:
        return self.regime == "kernel"

    @property
    def dichotomy_applies(self) -> bool:
        """TP4 Cor 3.9 holds for nonlinear networks only."""
        return not self.linear

    def predicted_slopes(self, step: int = 2) -> Slopes:
        """Slopes a coordinate check should measure after ``step`` updates (>= 1).

        For SGD-like optimizers step 1 differs from later steps: only the
        initial readout carries the backward signal (g = beta_{L+1}).

        >>> v = classify(preset("ntk", depth=2))
        >>> [str(x) for x in v.predicted_slopes(1).delta_h], str(v.predicted_slopes(1).delta_f)
        (['-1/2', '-1/2'], '0')
        """
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 1:
            raise ValueError(f"step: the number of updates taken, an integer >= 1; got {step!r}")
        an = _analyse(self.beta, self.gamma, self.families, self.alignment, 1 if step == 1 else None)
        return Slopes(int(step), tuple(-x for x in an.r), -an.q, self.f0_exponent)

    # -- rendering ---------------------------------------------------------

    def table(self) -> str:
        """A per-layer table: exponents, invariants, s_l, r_l and flags."""
        L = self.depth
        hybrid = len(set(self.families)) > 1
        rows = [("layer", "role") + (("family",) if hybrid else ()) + ("a", "b", "c", "beta", "gamma", "s_l", "r_l", "flags")]
        e = self.exponents
        for i in range(L + 1):
            role = "input" if i == 0 else ("output" if i == L else "hidden")
            flags = []
            if self.updated_maximally[i]:
                flags.append("updated maximally")
            if i < L:
                if self.features_evolve[i]:
                    flags.append("features evolve")
                s_l, r_l = str(self.s_layers[i]), str(self.r_layers[i])
            else:
                if self.readout_initialised_maximally:
                    flags.append("initialised maximally")
                s_l, r_l = "-", "-"
            rows.append(
                (str(i + 1), role) + ((self.families[i],) if hybrid else ()) + (str(e.a[i]), str(e.b[i]), str(e.c[i]), str(self.beta[i]), str(self.gamma[i]), s_l, r_l, ", ".join(flags))
            )
        return text_table(rows)

    def __str__(self) -> str:
        head = f"{self.name + ': ' if self.name else ''}{self.regime}"
        lines = [
            f"verdict: {head}  (optimizer {self._optimizer_text()}, alignment {self.alignment}, depth L = {self.depth})",
            f"r = {self.r}, q = {self.q}, f_0 ~ {_power(self.f0_exponent)}, stable at init: {_yes(self.stable_at_init)}, "
            f"stable: {_yes(self.stable)}, nontrivial: {_yes(self.nontrivial)}"
            + ("" if self.faithful is None else f", faithful: {_yes(self.faithful)}"),
        ]
        if self.equivalent_to:
            lines.append(f"equivalent to: {self.equivalent_to}")
        lines.append("")
        lines.append(self.table())
        lines.append("")
        lines.append("reasons:")
        lines.extend(f"  - {x}" for x in self.reasons)
        return "\n".join(lines)

    def _optimizer_text(self) -> str:
        if self.optimizer != "hybrid":
            return self.optimizer
        return "hybrid: " + ", ".join(self.families)

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict: Fractions become strings such as ``"-1/2"``."""
        s = lambda xs: [str(x) for x in xs]  # noqa: E731
        return {
            "name": self.name,
            "regime": self.regime,
            "stable_at_init": self.stable_at_init,
            "stable": self.stable,
            "nontrivial": self.nontrivial,
            "r": str(self.r),
            "q": str(self.q),
            "f0_exponent": str(self.f0_exponent),
            "r_layers": s(self.r_layers),
            "s_layers": s(self.s_layers),
            "beta": s(self.beta),
            "gamma": s(self.gamma),
            "g": str(self.g),
            "updated_maximally": list(self.updated_maximally),
            "features_evolve": list(self.features_evolve),
            "readout_initialised_maximally": self.readout_initialised_maximally,
            "faithful": self.faithful,
            "reasons": list(self.reasons),
            "equivalent_to": self.equivalent_to,
            "exponents": self.exponents.to_dict(),
            "optimizer": self.optimizer,
            "families": list(self.families),
            "alignment": self.alignment,
            "linear": self.linear,
            "predicted_slopes": {str(t): self.predicted_slopes(t).to_dict() for t in (1, 2)},
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Verdict":
        """Rebuild a verdict from :meth:`to_dict` output, re-deriving and checking every field."""
        try:
            e = data["exponents"]
            fams = data.get("families") or data["optimizer"]
            v = classify(e["a"], e["b"], e["c"], optimizer=fams, alignment=data["alignment"], linear=data.get("linear", False))
        except KeyError as err:
            raise ValueError(f"data: missing key {err}; expected the output of Verdict.to_dict()") from None
        v = replace(v, name=data.get("name"))
        if v.to_dict() != dict(data):
            bad = sorted(k for k, x in v.to_dict().items() if data.get(k) != x)
            raise ValueError(f"data: fields {bad} disagree with the verdict their exponents give; the data was altered")
        return v

    @classmethod
    def from_json(cls, text: str) -> "Verdict":
        return cls.from_dict(json.loads(text))


def _yes(x: bool) -> str:
    return "yes" if x else "no"


# --------------------------------------------------------------------------
# The classifier
# --------------------------------------------------------------------------


def _coerce(a: Any, b: Any, c: Any, family: Any) -> Tuple[Exponents, Optional[str]]:
    if isinstance(a, Preset):
        if b is not None or c is not None:
            raise TypeError("b, c: give either a preset or the exponents (a, b, c), not both")
        return a.exponents(family), a.name
    if isinstance(a, Exponents):
        if b is not None or c is not None:
            raise TypeError("b, c: give either an Exponents object or the exponents (a, b, c), not both")
        return a, None
    if hasattr(a, "theory_preset") and b is None and c is None:
        p = a.theory_preset()
        return p.exponents(family), p.name
    if b is None or c is None:
        raise TypeError("classify: give the exponents a, b and c (or a preset from abcparam.preset(...))")
    return Exponents.of(a, b, c), None


def classify(
    a: Any,
    b: Any = None,
    c: Any = None,
    *,
    optimizer: Any = "sgd",
    alignment: str = "tp4",
    linear: bool = False,
) -> Verdict:
    """Decide exactly whether an abc-parametrization is stable, trivial, feature learning or kernel.

    ``a``, ``b``, ``c`` are sequences over the layers (input, hidden..., output),
    so the depth is L = len - 1; ``c`` may be one number for every layer.  ``a``
    may instead be a :class:`Preset` (then omit ``b`` and ``c``).  ``optimizer``
    is a family (``"sgd"``, ``"adam"``, ``"spectral"``, ``"relative"``), a torch
    optimizer name or class, or a sequence of them with one per layer for a
    model trained by several optimizers (docs/theory.md sections 1 and 11);
    ``alignment`` is ``"tp4"`` (the theorems) or ``"full"`` (Everett et al.).
    ``linear=True`` records that the network is linear, for which the dynamical
    dichotomy of TP4 Cor 3.9 does not hold (section 4).

    >>> v = classify([0, 0, 0], [0, "1/2", "1/2"], 0)
    >>> v.regime
    'unstable'
    >>> print(v.reasons[0])
    layer 2 features: r_2 = -1 < 0, Delta h^2 blows up like n^1 (own update s_2 = -1)
    """
    optimizer = _family_arg(optimizer)
    align = _alignment_name(alignment)
    if not isinstance(linear, bool):
        raise TypeError(f"linear: expected True or False, got {linear!r}")
    exps, name = _coerce(a, b, c, optimizer)
    L = exps.depth
    families = _families(optimizer, L + 1)
    beta, gamma = exps.beta(), exps.gamma(families)
    an = _analyse(beta, gamma, families, align, None)
    A, O, U = _alignment_exponents(align, L)
    r, q = an.r[-1], an.q
    reasons = []

    # 1. stability at initialisation
    init_ok = True
    if beta[0] != 0:
        init_ok = False
        reasons.append(
            f"input layer init: beta_1 = a_1+b_1 = {beta[0]} != 0, h^1 {'vanishes' if beta[0] > 0 else 'blows up'} "
            f"like {_power(-beta[0])}"
        )
    for i in range(1, L):
        if beta[i] != HALF:
            init_ok = False
            reasons.append(
                f"layer {i + 1} init: beta_{i + 1} = a+b = {beta[i]} != 1/2, W^{i + 1} x scales like "
                f"{_power(HALF - beta[i])} ({'vanishes' if beta[i] > HALF else 'blows up'})"
            )
    if beta[L] < HALF:
        init_ok = False
        reasons.append(f"readout init: beta_{L + 1} = a+b = {beta[L]} < 1/2, f_0 blows up like {_power(HALF - beta[L])}")

    # 2. stability in training
    train_ok = True
    for i, r_l in enumerate(an.r):
        if r_l < 0:
            train_ok = False
            reasons.append(
                f"layer {i + 1} features: r_{i + 1} = {r_l} < 0, Delta h^{i + 1} blows up like {_power(-r_l)} "
                f"(own update s_{i + 1} = {an.s[i]})"
            )
    gname = {"sgd": "2a+c", "adam": "a+c", "spectral": "a+c+kappa", "relative": "a+b+c"}[families[L]]
    term_text = (
        f"readout init x feature change: beta_{L + 1}+r-O = {an.q_terms[0]}",
        "",  # the readout-update term has its own wording below
        f"readout update x feature change: {gname}+r-U = {an.q_terms[2]}",
    )
    for k, t in enumerate(an.q_terms):
        if t < 0:
            train_ok = False
            if k == 1:
                reasons.append(f"readout update: {gname} = {gamma[L]} < {A[L]}, logits blow up like {_power(-t)}")
            else:
                reasons.append(f"{term_text[k]} < 0, logits blow up like {_power(-t)}")

    stable = init_ok and train_ok
    nontrivial = stable and q == 0
    if not stable:
        regime = "unstable"
    elif q > 0:
        regime = "trivial"
        reasons.append(f"output change: q = {q} > 0, the function moves only like {_power(-q)} (trivial)")
    else:
        for k, t in enumerate(an.q_terms):
            if t == 0 and k == 1:
                reasons.append(f"readout update: {gname} = {gamma[L]} = A_{L + 1}, the output moves by Theta(1) (nontrivial)")
            elif t == 0:
                reasons.append(f"{term_text[k]}, the output moves by Theta(1) (nontrivial)")
        if r == 0:
            regime = "feature_learning"
            evolving = [str(i + 1) for i, x in enumerate(an.r) if x == 0]
            reasons.append(f"r = 0: the features of layer(s) {', '.join(evolving)} move by Theta(1) (feature learning)")
        else:
            regime = "kernel"
            reasons.append(f"r = {r} > 0: the features move only like {_power(-r)} (kernel regime)")

    faithful: Optional[bool] = None
    if families[L] == "adam":
        bL, cL = exps.b[L], exps.c[L]
        faithful = bL <= cL
        if not faithful:
            reasons.append(
                f"note: Adam not faithful: b_{L + 1} - c_{L + 1} = {bL - cL} > 0, gradients fed to the normaliser "
                "change with width and epsilon starts to matter (TP4b Thm 2.8.12)"
            )
    if linear:
        reasons.append("note: linear network: the feature-learning/kernel dichotomy (TP4 Cor 3.9) does not apply")

    updated = tuple(x == 0 for x in an.s) + (gamma[L] == A[L],)
    v = Verdict(
        regime=regime,
        stable_at_init=init_ok,
        stable=stable,
        nontrivial=nontrivial,
        r=r,
        q=q,
        f0_exponent=HALF - beta[L],
        r_layers=an.r,
        s_layers=an.s,
        beta=beta,
        gamma=gamma,
        g=an.g,
        updated_maximally=updated,
        features_evolve=tuple(x == 0 for x in an.r),
        readout_initialised_maximally=beta[L] + r == O[L],
        faithful=faithful,
        reasons=tuple(reasons),
        equivalent_to=_equivalent_preset(beta, gamma, families),
        exponents=exps,
        optimizer=_family_label(families),
        alignment=align,
        linear=linear,
        name=name,
        families=families,
    )
    return v


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

    >>> e = canonical(preset("mup", depth=2), optimizer="sgd")
    >>> [str(x) for x in e.b], [str(x) for x in e.c]
    (['0', '1/2', '1'], ['-1', '0', '1'])
    """
    fam_arg = _family_arg(optimizer)
    exps = _as_exponents(a if b is None and c is None else (a, b, c), fam_arg, "a")
    L1 = len(exps.a)
    fams = _families(fam_arg, L1)
    beta, gamma, ks = exps.beta(), exps.gamma(fams), kappa(L1 - 1)
    c0 = tuple(g - _gamma_offset(f, ZERO, bt, k) for f, g, bt, k in zip(fams, gamma, beta, ks))
    return Exponents((ZERO,) * L1, beta, c0)


def equivalent(p: Any, q: Any, optimizer: Any = "sgd") -> bool:
    """True iff two parametrizations have the same beta_l and gamma_l (sections 2 and 11).

    >>> equivalent(preset("mup"), preset("mup_table8"), "adam")
    True
    """
    fam_arg = _family_arg(optimizer)
    e1, e2 = _as_exponents(p, fam_arg, "p"), _as_exponents(q, fam_arg, "q")
    return len(e1.a) == len(e2.a) and e1.beta() == e2.beta() and e1.gamma(fam_arg) == e2.gamma(fam_arg)


def _equivalent_preset(beta: Tuple[Fraction, ...], gamma: Tuple[Fraction, ...], families: Tuple[str, ...]) -> Optional[str]:
    L = len(beta) - 1
    names = ["mup", "ntk", "sp", "sp_inv_n"] + (["mean_field"] if L == 1 else [])
    candidates = [preset(nm, L) for nm in names]
    s = 1 - beta[L]
    if ZERO < s < HALF:
        candidates.append(_up(L, s))
    for p in candidates:
        e = p.exponents(families)
        if e.beta() == beta and e.gamma(families) == gamma:
            return p.name
    return None


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
    align = _alignment_name(alignment)
    a_ = _exponents(a, "a")
    b_ = _exponents(b, "b", len(a_))
    fams = _families(optimizer, len(a_))
    # stability at initialisation depends on a and b only (not on c, nor on the alignment)
    probe = classify(a_, b_, (ZERO,) * len(a_), optimizer=list(fams))
    if not probe.stable_at_init:
        bad = [x for x in probe.reasons if "init:" in x]  # (not "init x feature change", which depends on c)
        raise ValueError("a, b: not stable at initialisation, no learning rate is stable: " + "; ".join(bad))
    L = len(a_) - 1
    A, O, _ = _alignment_exponents(align, L)
    beta_out = a_[L] + b_[L]
    rho = max(ZERO, O[L] - beta_out)
    # smallest stable gamma_l: the readout's makes its own update Theta(1); an earlier layer's makes its own update
    # (carried by the backward signal g, zero for normalised families) move the readout by Theta(1)
    g = min(beta_out, A[L])
    gl = [g if f == "sgd" else ZERO for f in fams]
    gamma = [rho - gl[0]] + [rho + A[i] - gl[i] for i in range(1, L)] + [A[L]]
    ks = kappa(L)
    return tuple(gm - _gamma_offset(f, x, y, k) for gm, f, x, y, k in zip(gamma, fams, a_, b_, ks))
