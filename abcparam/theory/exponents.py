"""Exponents in, exponents out: parsing, optimizer families and the per-layer invariants beta_l and gamma_l
(docs/theory.md sections 2, 3 and 11).

Every exponent is a :class:`fractions.Fraction`; a float is accepted only where it is exactly a simple binary fraction.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple
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


def per_layer(values: Any, name: str, length: Optional[int] = None) -> Tuple[Fraction, ...]:
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


def families_of(optimizer: Any, n_layers: int) -> Tuple[str, ...]:
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


def gamma_offset(family: str, a: Fraction, b: Fraction, k: Fraction) -> Fraction:
    """gamma_l - c_l for one layer of ``family`` (docs/theory.md sections 2 and 11)."""
    if family == "sgd":
        return 2 * a
    if family == "adam":
        return a
    if family == "spectral":
        return a + k
    return a + b  # relative


def family_arg(optimizer: Any) -> Any:
    """``optimizer`` as the calculus takes it: a list of per-layer entries as given, else its family."""
    return optimizer if isinstance(optimizer, (list, tuple)) else optimizer_family(optimizer)


def family_label(families: Tuple[str, ...]) -> str:
    """The family of a verdict: the family itself when every layer shares it, else ``"hybrid"``."""
    return families[0] if len(set(families)) == 1 else "hybrid"


def alignment_name(alignment: Any) -> str:
    if not isinstance(alignment, str) or alignment.lower() not in ALIGNMENTS:
        raise ValueError(f"alignment: got {alignment!r}; allowed: 'tp4' (the theorems) or 'full' (Everett et al.)")
    return alignment.lower()


# --------------------------------------------------------------------------
# Exponent containers and presets
# --------------------------------------------------------------------------


def power_text(x: Fraction) -> str:
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
        a_ = per_layer(a, "a")
        b_ = per_layer(b, "b", len(a_))
        c_ = per_layer(c, "c", len(a_))
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
        fams = families_of(optimizer, len(self.a))
        ks = kappa(self.depth)
        return tuple(gamma_offset(f, x, y, k) + z for f, x, y, z, k in zip(fams, self.a, self.b, self.c, ks))

    def to_dict(self) -> Dict[str, Any]:
        return {k: [str(x) for x in getattr(self, k)] for k in ("a", "b", "c")}
