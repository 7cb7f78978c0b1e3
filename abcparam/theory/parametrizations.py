"""The parametrization object: exponents per role plus the width multiplier.

A :class:`Parametrization` holds, for each *role* (``input``, ``hidden``,
``output``; ``vector`` for biases and gains, which take the input layer's
exponents, docs/theory.md section 7), the exact exponents (a, b, c) for every
optimizer family (SGD-like, Adam-like, spectral, relative: section 11), and the width multiplier m = width / base_width of the
"Practical form" of docs/theory.md section 1.  Layers read it once, when they are
built; nothing here touches tensors.

>>> p = mup(width=1024, base_width=256)
>>> p.width_mult, p.multiplier("input"), p.lr_scale("hidden", "adam")
(Fraction(4, 1), 2.0, 0.25)
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, Dict, Optional, Tuple

from .. import validate
from .verdict import Verdict, classify
from .depth import depth_lr_exponent
from .exponents import exponent, optimizer_family
from .presets import Preset, preset
from ..validate import positive_int as _positive_int

__all__ = [
    "ROLES",
    "RoleExponents",
    "Parametrization",
    "parametrization",
    "sp",
    "sp_inv_n",
    "ntk",
    "mup",
    "mean_field",
    "up",
]

ROLES = ("input", "hidden", "output", "vector")


# kappa of docs/theory.md section 11 per role: half the number of width-sized dimensions of the tensor.
_KAPPA = {"input": Fraction(1, 2), "hidden": Fraction(1), "output": Fraction(1, 2), "vector": Fraction(1, 2)}


@dataclass(frozen=True)
class RoleExponents:
    """Exact exponents of one role: a, b and c for each optimizer family.

    ``c_spectral`` (Muon) and ``c_relative`` (Adafactor, LAMB) default, in
    :meth:`of`, to the rates that give the role the same gamma as ``c_adam``
    (docs/theory.md section 11): ``c_adam - kappa`` and ``c_adam - b``.
    """

    a: Fraction
    b: Fraction
    c_sgd: Fraction
    c_adam: Fraction
    c_spectral: Fraction
    c_relative: Fraction

    @classmethod
    def of(cls, a: Any, b: Any, c_sgd: Any, c_adam: Any, c_spectral: Any = None, c_relative: Any = None,
           role: str = "role") -> "RoleExponents":
        a_, b_ = exponent(a, f"{role}.a"), exponent(b, f"{role}.b")
        ca = exponent(c_adam, f"{role}.c_adam")
        if c_spectral is None:
            if role not in _KAPPA:
                raise ValueError(f"{role}.c_spectral: required for a role other than {', '.join(_KAPPA)}")
            cs = ca - _KAPPA[role]
        else:
            cs = exponent(c_spectral, f"{role}.c_spectral")
        cr = ca - b_ if c_relative is None else exponent(c_relative, f"{role}.c_relative")
        return cls(a_, b_, exponent(c_sgd, f"{role}.c_sgd"), ca, cs, cr)

    def c(self, family: str) -> Fraction:
        """c for ``family`` (or an optimizer name)."""
        return getattr(self, "c_" + optimizer_family(family))


def _power(m: Fraction, e: Fraction) -> float:
    """m^e as a float (m > 0, e exact)."""
    return float(m) ** float(e) if e else 1.0


@dataclass(frozen=True)
class Parametrization:
    """An abc-parametrization in practical form: exponents per role and m = width / base_width.

    Build one with the presets (:func:`mup`, :func:`sp`, :func:`ntk`,
    :func:`mean_field`, :func:`up`, ...) or :func:`parametrization` for explicit
    exponents.  ``hidden`` is ``None`` for depth-1 parametrizations (mean field).
    """

    name: str
    input: RoleExponents
    hidden: Optional[RoleExponents]
    output: RoleExponents
    width: int = 1
    base_width: int = 1
    depth: Optional[int] = None
    base_depth: Optional[int] = None
    depth_alpha: Fraction = Fraction(1)
    allow_any_alpha: bool = False
    attention: Fraction = Fraction(1, 2)

    @classmethod
    def require(cls, value: Any, name: str = "param") -> "Parametrization":
        """``value`` if it is a :class:`Parametrization`, else a ``TypeError`` naming ``name`` (for None: how to build
        one).  Every layer and helper that takes a parametrization checks it here."""
        if value is None:
            raise TypeError(f"{name}: required, e.g. {name}=abcparam.mup(width=1024, base_width=128)")
        if not isinstance(value, cls):
            raise TypeError(f"{name}: expected an abcparam.Parametrization, got {type(value).__name__}")
        return value

    def __post_init__(self) -> None:
        _positive_int(self.width, "width")
        _positive_int(self.base_width, "base_width")
        _check_depth(self.depth, self.base_depth, self.depth_alpha, self.allow_any_alpha)
        if not isinstance(self.attention, Fraction):
            raise TypeError(f"attention: expected a Fraction, got {type(self.attention).__name__}")
        for role in ("input", "output"):
            if not isinstance(getattr(self, role), RoleExponents):
                raise TypeError(f"{role}: expected RoleExponents, got {type(getattr(self, role)).__name__}")
        if self.hidden is not None and not isinstance(self.hidden, RoleExponents):
            raise TypeError(f"hidden: expected RoleExponents or None, got {type(self.hidden).__name__}")

    @property
    def width_mult(self) -> Fraction:
        """m = width / base_width, exact."""
        return Fraction(self.width, self.base_width)

    def at_width(self, width: int, base_width: Optional[int] = None) -> "Parametrization":
        """The same exponents at another width (and optionally base width)."""
        return replace(self, width=width, base_width=self.base_width if base_width is None else base_width)

    def attention_scale(self, head_dim: int, alpha: float = 1.0) -> float:
        """The attention logit scale for heads of dimension ``head_dim`` (docs/theory.md section 14):
        ``alpha * d_head_0^(e - 1/2) / d_head^e`` with ``d_head_0 = head_dim / m`` and e = ``attention``
        (1 muP, 1/2 SP and NTK): the usual ``alpha / sqrt(d_head_0)`` at base width.

        >>> mup(256, 64).attention_scale(64) == 16 ** 0.5 / 64, sp(256, 64).attention_scale(64) == 64 ** -0.5
        (True, True)
        """
        d = _positive_int(head_dim, "head_dim")
        d0 = d / float(self.width_mult)
        e = float(self.attention)
        return float(alpha) * d0 ** (e - 0.5) / d ** e

    # Depth (docs/theory.md section 12): residual branches scale by m_L^-alpha, m_L = depth / base_depth.
    @property
    def depth_mult(self) -> Fraction:
        """m_L = depth / base_depth, exact (1 when no depth was given: no depth scaling)."""
        if self.depth is None:
            return Fraction(1)
        return Fraction(self.depth, self.base_depth)  # type: ignore[arg-type]

    def at_depth(self, depth: int, base_depth: Optional[int] = None) -> "Parametrization":
        """The same parametrization at another depth (and optionally base depth)."""
        base = self.base_depth if base_depth is None else base_depth
        return replace(self, depth=depth, base_depth=base)

    def branch_multiplier(self) -> float:
        """m_L^-alpha, the factor on every residual branch's output (1.0 without depth)."""
        return _power(self.depth_mult, -self.depth_alpha)

    def depth_lr_scale(self, optimizer: str) -> float:
        """The depth factor on the learning rate of a tensor inside a residual branch (section 12):
        m_L^(2 alpha - 1) SGD-like, m_L^(alpha - 1) for every normalised family."""
        return _power(self.depth_mult, -depth_lr_exponent(self.depth_alpha, optimizer))

    def depth_eps_scale(self) -> float:
        """The depth factor on Adam's epsilon (and Adafactor's eps1) inside a residual branch: m_L^-alpha."""
        return _power(self.depth_mult, -self.depth_alpha)

    def role(self, role: str) -> RoleExponents:
        """Exponents of ``role`` (``vector`` means the input layer's, docs/theory.md section 7)."""
        validate.choice(role, "role", ROLES)
        if role == "vector":
            return self.input
        ex = getattr(self, role)
        if ex is None:
            raise ValueError(f"role: the parametrization {self.name!r} has no hidden layers (depth 1); use role 'input' or 'output'")
        return ex

    # Practical-form factors, docs/theory.md section 1.
    def multiplier(self, role: str) -> float:
        """Forward multiplier m^-a of ``role`` (times the layer's alpha)."""
        return _power(self.width_mult, -self.role(role).a)

    def init_scale(self, role: str) -> float:
        """Init std factor m^-b of ``role`` (times the layer's sigma)."""
        return _power(self.width_mult, -self.role(role).b)

    def lr_scale(self, role: str, optimizer: str) -> float:
        """Learning-rate factor m^-c of ``role`` for the optimizer's family."""
        return _power(self.width_mult, -self.role(role).c(optimizer))

    def eps_exponent(self, role: str) -> Fraction:
        """d of docs/theory.md section 10: the width exponent of the gradient of ``role``'s tensor."""
        out = self.output
        if role == "output":
            return out.a
        return self.role(role).a + out.a + out.b

    def eps_scale(self, role: str) -> float:
        """Adam epsilon factor m^-d (docs/theory.md section 10)."""
        return _power(self.width_mult, -self.eps_exponent(role))

    def theory_preset(self, depth: Optional[int] = None) -> Preset:
        """The per-layer exponents at ``depth`` hidden layers (default 2, or 1 without a hidden role),
        for :func:`abcparam.classify`."""
        if depth is None:
            depth = 1 if self.hidden is None else 2
        if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 1:
            raise ValueError(f"depth: an integer >= 1, got {depth!r}")
        if depth > 1 and self.hidden is None:
            raise ValueError(f"depth: {self.name!r} exists for depth 1 only, got {depth}")
        cols = [self.input] + [self.hidden] * (depth - 1) + [self.output]  # type: ignore[list-item]
        return Preset(
            self.name,
            tuple(x.a for x in cols),
            tuple(x.b for x in cols),
            tuple(x.c_sgd for x in cols),
            tuple(x.c_adam for x in cols),
            "",
            tuple(x.c_spectral for x in cols),
            tuple(x.c_relative for x in cols),
        )

    def classify(self, depth: Optional[int] = None, optimizer: Any = "sgd", alignment: str = "tp4") -> Verdict:
        """Shortcut for ``abcparam.classify(self.theory_preset(depth), ...)``."""
        return classify(self.theory_preset(depth), optimizer=optimizer, alignment=alignment)

    def canonical(self) -> "Parametrization":
        """The equivalent a = 0 form (docs/theory.md section 2): multipliers folded into init and learning rates.

        Each role's (a, b, c) becomes (0, a + b, c + 2a) for SGD-like,
        (0, a + b, c + a) for Adam-like and spectral, and (0, a + b, c) for
        relative optimizers (section 11), so layers built from it have
        no width-dependent forward multiplier (zero forward cost) and store the
        effective weights themselves.  Training is unchanged: exactly for SGD,
        and for Adam because the wrapper's epsilon exponent d shifts with a
        (section 10; with ``scale_eps=False`` Adam's eps is seen against gradients
        m^a times larger or smaller).  Decoupled weight decay (AdamW) and SGD's, in
        either convention, is a per-step shrink of the stored tensor and is
        unchanged; Adam's L2 decay (``Adam(weight_decay=...)``), which passes
        through the normaliser, is not symmetric and changes.

        >>> c = mup(1024, 256).canonical()
        >>> c.multiplier("input"), c.init_scale("input"), c.lr_scale("input", "sgd")
        (1.0, 1.0, 4.0)
        """

        def fold(ex: Optional[RoleExponents]) -> Optional[RoleExponents]:
            if ex is None:
                return None
            return RoleExponents(Fraction(0), ex.a + ex.b, ex.c_sgd + 2 * ex.a, ex.c_adam + ex.a, ex.c_spectral + ex.a,
                                 ex.c_relative)

        name = self.name if self.name.endswith("(a=0)") else f"{self.name}(a=0)"  # depth fields are kept by replace
        return replace(self, name=name, input=fold(self.input), hidden=fold(self.hidden), output=fold(self.output))  # type: ignore[arg-type]

    def describe(self) -> str:
        rows = []
        for role in ("input", "hidden", "output"):
            ex = getattr(self, role)
            if ex is not None:
                rows.append(f"{role}: a={ex.a} b={ex.b} c_sgd={ex.c_sgd} c_adam={ex.c_adam} "
                            f"c_spectral={ex.c_spectral} c_relative={ex.c_relative}")
        depth = "" if self.depth is None else f", m_L = {self.depth}/{self.base_depth}, alpha = {self.depth_alpha}"
        return (f"{self.name} (m = {self.width}/{self.base_width}{depth}, attention scale ~ d_head^-{self.attention}): "
                + "; ".join(rows))


def _from_preset(p: Preset, width: int, base_width: int, name: Optional[str] = None) -> Parametrization:
    def col(i: int) -> RoleExponents:
        return RoleExponents(p.a[i], p.b[i], p.c_sgd[i], p.c_adam[i], p.c("spectral")[i], p.c("relative")[i])

    hidden = col(1) if p.depth >= 2 else None
    return Parametrization(name or p.name, col(0), hidden, col(p.depth), width, base_width)


def _widths(width: Optional[int], base_width: Optional[int]) -> Tuple[int, int]:
    """(width, base_width) of a preset: both given, or neither (m = 1, an ordinary network).

    A width without a base width is refused: silently taking base width 1 would
    make m equal to the width and scale every layer as if it were that many
    times wider than the network the hyperparameters were tuned on.
    """
    if width is None and base_width is None:
        return 1, 1
    if base_width is None:
        raise ValueError(
            f"base_width: required with width={width!r} (m = width / base_width is what the layers scale by); "
            "pass the width the hyperparameters were tuned at, e.g. mup(width=1024, base_width=128), "
            "or base_width=width for an ordinary network at this width (m = 1)"
        )
    if width is None:
        raise ValueError(f"width: required with base_width={base_width!r}, e.g. mup(width=1024, base_width={base_width!r})")
    return _positive_int(width, "width"), _positive_int(base_width, "base_width")


DEPTH_RULES = {"completep": Fraction(1), "depth_mup": Fraction(1, 2)}


def _check_depth(depth: Any, base_depth: Any, alpha: Any, allow_any_alpha: bool = False) -> None:
    """Both depths or neither; alpha a Fraction in [1/2, 1] (section 12) unless ``allow_any_alpha``."""
    if (depth is None) != (base_depth is None):
        missing = "base_depth" if base_depth is None else "depth"
        raise ValueError(
            f"{missing}: required with {'depth' if missing == 'base_depth' else 'base_depth'}="
            f"{depth if depth is not None else base_depth!r} (m_L = depth / base_depth is what residual branches scale by); "
            "give both, e.g. mup(1024, 128, depth=16, base_depth=2), or neither (no depth scaling)"
        )
    if depth is not None:
        _positive_int(depth, "depth")
        _positive_int(base_depth, "base_depth")
    if not isinstance(alpha, Fraction):
        raise TypeError(f"depth_alpha: expected a Fraction, got {type(alpha).__name__}")
    if not allow_any_alpha and not Fraction(1, 2) <= alpha <= 1:
        raise ValueError(
            f"depth_alpha: got {alpha}; allowed: 1/2 <= alpha <= 1 (1/2 Depth-muP, 1 CompleteP; docs/theory.md section 12). "
            "Below 1/2 the residual stream blows up at init, above 1 the blocks' own updates blow up; pass "
            "allow_any_alpha=True to study such a rule anyway"
        )


def _depth_fields(depth: Any, base_depth: Any, depth_alpha: Any, allow_any_alpha: bool) -> Dict[str, Any]:
    """The depth arguments of a preset, checked: ``depth_alpha`` is 1 (CompleteP, default), 1/2 (Depth-muP), a rule
    name ("completep", "depth_mup") or any exact exponent."""
    if isinstance(depth_alpha, str) and depth_alpha.lower() in DEPTH_RULES:
        alpha = DEPTH_RULES[depth_alpha.lower()]
    else:
        alpha = exponent(depth_alpha, "depth_alpha")
    if not isinstance(allow_any_alpha, bool):
        raise TypeError(f"allow_any_alpha: expected True or False, got {allow_any_alpha!r}")
    _check_depth(depth, base_depth, alpha, allow_any_alpha)
    return {"depth": depth, "base_depth": base_depth, "depth_alpha": alpha, "allow_any_alpha": allow_any_alpha}


def _named(name: str, width: Optional[int], base_width: Optional[int], depth: Optional[int] = None,
           base_depth: Optional[int] = None, depth_alpha: Any = 1, allow_any_alpha: bool = False, **kw: Any) -> Parametrization:
    layers = 1 if name == "mean_field" else 2
    w, b = _widths(width, base_width)
    fields = _depth_fields(depth, base_depth, depth_alpha, allow_any_alpha)
    # attention logits scale like 1/d_head under muP (TP5 section 4), like 1/sqrt(d_head) everywhere else
    muP_like = name in ("mup", "mup_table8", "mean_field") or (name == "up" and exponent(kw["s"], "s") == 0)
    fields["attention"] = Fraction(1) if muP_like else Fraction(1, 2)
    return replace(_from_preset(preset(name, layers, **kw), w, b), **fields)


_DEPTH_DOC = """

    Depth (docs/theory.md section 12): ``depth`` and ``base_depth`` (both or
    neither) give m_L = depth / base_depth; every :class:`abcparam.Residual`
    branch then scales by m_L^-depth_alpha and trains with the depth factors of
    section 12.  ``depth_alpha`` is 1 (CompleteP, the default), 1/2
    (Depth-muP), a rule name (``"completep"``, ``"depth_mup"``) or any exponent
    in [1/2, 1] (outside it only with ``allow_any_alpha=True``).  Without depth
    nothing scales with depth."""


def sp(width: Optional[int] = None, base_width: Optional[int] = None, **depth: Any) -> Parametrization:
    """Standard parametrization, constant learning rate (unstable as width grows)."""
    return _named("sp", width, base_width, **depth)


def sp_inv_n(width: Optional[int] = None, base_width: Optional[int] = None, **depth: Any) -> Parametrization:
    """Standard parametrization with learning rate ~ 1/n (kernel regime under SGD)."""
    return _named("sp_inv_n", width, base_width, **depth)


def ntk(width: Optional[int] = None, base_width: Optional[int] = None, **depth: Any) -> Parametrization:
    """Neural tangent parametrization (kernel regime, r = 1/2)."""
    return _named("ntk", width, base_width, **depth)


def mup(width: Optional[int] = None, base_width: Optional[int] = None, *, form: str = "tp4", **depth: Any) -> Parametrization:
    """Maximal update parametrization: ``form="tp4"`` (TP4) or ``"table8"`` (TP5 Table 8, microsoft/mup).

    The two forms are equivalent (docs/theory.md section 2); ``table8`` is the one
    compatible with tied input/output embeddings.

    >>> mup(512, 128, form="table8").multiplier("output")
    0.25
    """
    forms = {"tp4": "mup", "table8": "mup_table8"}
    if form not in forms:
        raise ValueError(f"form: got {form!r}; allowed: 'tp4' or 'table8'")
    return _named(forms[form], width, base_width, **depth)


def mean_field(width: Optional[int] = None, base_width: Optional[int] = None, **depth: Any) -> Parametrization:
    """Mean-field parametrization (one hidden layer only: no hidden role)."""
    return _named("mean_field", width, base_width, **depth)


def up(s: Any, width: Optional[int] = None, base_width: Optional[int] = None, **depth: Any) -> Parametrization:
    """The uniform parametrization UP_s, 0 <= s <= 1/2 (UP_0 = muP, UP_1/2 = NTK)."""
    return _named("up", width, base_width, s=s, **depth)


for _f in (sp, sp_inv_n, ntk, mup, mean_field, up):
    _f.__doc__ = (_f.__doc__ or "") + _DEPTH_DOC
del _f


def parametrization(
    *,
    input: Tuple[Any, Any, Any, Any],
    output: Tuple[Any, Any, Any, Any],
    hidden: Optional[Tuple[Any, Any, Any, Any]] = None,
    width: Optional[int] = None,
    base_width: Optional[int] = None,
    name: str = "custom",
    depth: Optional[int] = None,
    base_depth: Optional[int] = None,
    depth_alpha: Any = 1,
    allow_any_alpha: bool = False,
    attention: Any = "1/2",
) -> Parametrization:
    """A parametrization from explicit exponents ``(a, b, c_sgd, c_adam)`` per role.

    ``attention`` is the exponent e of the attention logit scale ~ d_head^-e
    (docs/theory.md section 14; 1/2, the usual 1/sqrt(d_head), by default; 1 for muP).
    A role may also give ``(a, b, c_sgd, c_adam, c_spectral, c_relative)``;
    with four values the spectral and relative rates keep Adam's gamma
    (docs/theory.md section 11).

    >>> p = parametrization(input=(0, 0, -1, 0), hidden=(0, "1/2", 0, 1), output=(1, 0, -1, 0))
    >>> p.classify(depth=3).regime
    'feature_learning'
    """
    cols: Dict[str, Optional[RoleExponents]] = {}
    for role, value in (("input", input), ("hidden", hidden), ("output", output)):
        if value is None:
            cols[role] = None
            continue
        if isinstance(value, RoleExponents):
            cols[role] = value
            continue
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) not in (4, 6):
            raise ValueError(f"{role}: expected (a, b, c_sgd, c_adam) or (a, b, c_sgd, c_adam, c_spectral, c_relative), got {value!r}")
        cols[role] = RoleExponents.of(*value, role=role)
    if cols["input"] is None or cols["output"] is None:
        raise ValueError("input, output: both roles are required")
    w, b = _widths(width, base_width)
    fields = _depth_fields(depth, base_depth, depth_alpha, allow_any_alpha)
    fields["attention"] = exponent(attention, "attention")
    return Parametrization(name, cols["input"], cols["hidden"], cols["output"], w, b, **fields)  # type: ignore[arg-type]
