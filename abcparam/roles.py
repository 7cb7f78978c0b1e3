"""Which role a layer has, from which of its dimensions grow with the width (docs/theory.md section 1).

A dimension that is a whole multiple of the width grows; one smaller than the width and not a large divisor of it is
a data size; anything else the shapes alone cannot tell.  Pure Python: the layers, the convolutions and
:func:`abcparam.convert` ask it.
"""

from __future__ import annotations

from typing import Optional, Tuple

from . import validate
from .theory.parametrizations import Parametrization

LINEAR_ROLES = ("input", "hidden", "output")


def size_kind(d: int, width: int) -> str:
    """Whether a dimension of size ``d`` grows with a network of this ``width``.

    ``"width"``: d is a whole multiple of the width (the width itself, 3 x width
    for fused q, k, v, 4 x width for an MLP); ``"fixed"``: smaller than the width
    and not a divisor of it, or a divisor no larger than width / 16 (a data size
    such as 20 inputs, 10 classes or 1 output at width 256); ``"unknown"``: a
    larger divisor of the width (32 inputs at width 96, or a head of width / 4?)
    or larger than the width but no multiple of it (784 pixels, or a d_ff
    rounded to 64?): the shapes cannot tell.  Without width information
    (``width == 1``) every dimension is ``"unknown"``.
    """
    if width <= 1:
        return "unknown"
    if d % width == 0:
        return "width"
    if d < width and (width % d != 0 or _SMALL_DIVISOR * d <= width):
        return "fixed"
    return "unknown"


_SMALL_DIVISOR = 16  # a divisor of the width at most width / 16 (1 output, 16 inputs at width 256) is a data size


_KIND_WORDS = {
    "width": "is a multiple of the width",
    "fixed": "is a fixed size",
    "unknown": "may or may not grow with the width",
}

_ROLE_SHAPES = {  # (fan-in, fan-out) that each role needs: True = width-sized, False = fixed
    "input": (False, True),
    "hidden": (True, True),
    "output": (True, False),
}


def infer_role(in_features: int, out_features: int, role: Optional[str], param: Parametrization,
                 layer: str = "Linear", names: Tuple[str, str] = ("in_features", "out_features")) -> str:
    """The role of a Linear layer (or of a convolution's channels: ``layer`` and ``names`` say which): ``role``
    checked against the shapes, or inferred from them.

    A given role is refused only when the shapes rule it out (a dimension the
    role needs to be width-sized is a fixed, non-width size); a missing role is
    inferred when the shapes decide it, and refused with the candidates when
    they do not (docs/theory.md section 1: which dimensions grow with n decide
    the role).
    """
    kin, kout = size_kind(in_features, param.width), size_kind(out_features, param.width)
    shape = f"{layer}({in_features}, {out_features}) at width {param.width} (base width {param.base_width})"

    if role is not None:
        validate.choice(role, "role", LINEAR_ROLES)
        why = refusal(in_features, out_features, role, param, layer, names)
        if why:
            raise ValueError(f"{why}. Pass the role the layer has, or build the parametrization at this layer's width")
        return role
    if param.width == 1 and param.base_width == 1:
        raise ValueError(
            f"role: required for {shape}: the parametrization carries no width (m = 1), so the shapes cannot tell "
            "which dimensions grow; pass role='input', 'hidden' or 'output'"
        )
    decided = {
        ("width", "width"): "hidden",
        ("fixed", "width"): "input",
        ("width", "fixed"): "output",
    }.get((kin, kout))
    if decided is not None:
        return decided
    candidates = [r for r in LINEAR_ROLES if _fits(r, kin, kout)]
    if not candidates:
        raise ValueError(
            f"role: neither dimension of {shape} grows with the width; a layer of fixed size is an ordinary "
            f"nn.{layer} (or pass role= explicitly if one of its sizes does scale)"
        )
    raise ValueError(
        f"role: cannot tell the role of {shape} from its shapes ({names[0]} {in_features} {_KIND_WORDS[kin]}, "
        f"{names[1]} {out_features} {_KIND_WORDS[kout]}); pass role= one of {', '.join(repr(r) for r in candidates)}"
    )


def refusal(in_features: int, out_features: int, role: str, param: Parametrization, layer: str = "Linear",
            names: Tuple[str, str] = ("in_features", "out_features")) -> str:
    """Why a layer of these sizes cannot have ``role`` at this parametrization's width, in one sentence ("" when it
    can): a dimension the role needs width-sized is a fixed size.  A data size may coincide with a multiple of the
    width, so a width-sized dimension where the role needs a fixed one rules nothing out."""
    validate.choice(role, "role", LINEAR_ROLES)
    kin, kout = size_kind(in_features, param.width), size_kind(out_features, param.width)
    need_in, need_out = _ROLE_SHAPES[role]
    if not (need_in and kin == "fixed") and not (need_out and kout == "fixed"):
        return ""
    which = names[0] if need_in and kin == "fixed" else names[1]
    size = in_features if which == names[0] else out_features
    plausible = [r for r in LINEAR_ROLES if _fits(r, kin, kout)]
    hint = f"; the shapes fit role={plausible[0]!r}" if len(plausible) == 1 else ""
    shape = f"{layer}({in_features}, {out_features}) at width {param.width} (base width {param.base_width})"
    return f"role: {role!r} needs a width-sized {which}, but {shape} has {which}={size}, a fixed size (a data size: smaller than the width){hint}"


def _fits(role: str, kin: str, kout: str) -> bool:
    """Whether the size kinds fit ``role`` both ways: no fixed size where it needs a width, no width where it needs a
    fixed size."""
    need_in, need_out = _ROLE_SHAPES[role]
    return kin != ("fixed" if need_in else "width") and kout != ("fixed" if need_out else "width")
