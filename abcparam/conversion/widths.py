"""Which sizes of a model grow with its width: listed by the user, or read off a second build of the model.

:func:`abcparam.convert` reads a layer's role from which of its dimensions are
widths (docs/theory.md section 7: a matrix with both dimensions width-sized is
hidden, one whose output only is width-sized is an input layer, one whose
input only is a readout).  Two sources answer "is this size a width?":

- :class:`ListedWidths` (``widths=[d_model, d_ff, ...]``): a size is a width
  when it is one of the listed numbers.  Short to write, but a size that
  happens to equal a width (a vocabulary of 256 in a model of width 256) is
  ambiguous, and a size left off the list silently turns a layer into a
  readout.
- :class:`BaseModel` (``base=the same model built at another width``, the
  workflow of microsoft/mup's ``set_base_shapes``): a size is a width when it
  differs between the two builds.  Nothing is listed by hand, and a
  vocabulary equal to a width is no longer ambiguous.  A tensor missing from
  the base or of another rank is refused, and so is a size that moves in a
  ratio other than the widths' (``ceil(n / 16)``, ``n + 1``) when its module's
  role would be read off it: with the tensor's name, before the model changes.
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from typing import Callable, Dict, Iterable, Optional, Tuple

from .. import torch_quiet  # noqa: F401  (torch without the numpy warning)
from torch import nn

__all__ = ["BaseModel", "ListedWidths", "WidthSource"]

Sizes = Callable[[nn.Module], Tuple[int, ...]]


class WidthSource:
    """Answers which of a module's sizes grow with width (``sizes(module)`` picks the sizes, in order)."""

    # the argument that gave the widths, and how a size that is a width is described, for error messages
    argument = ""
    evidence = ""
    # whether a size that does not grow is known to be fixed (two builds compared), rather than maybe a width the
    # user left off a list: a layer with no growing size is then a fixed-size layer, a second readout a real one, and
    # a role one width's shapes alone would refuse is trusted
    certain = False

    def grows(self, fqn: str, mod: nn.Module, sizes: Sizes, any_ratio: bool = False) -> Tuple[bool, ...]:
        """Whether each of ``sizes(mod)`` grows with the width.  ``any_ratio``: the caller needs only whether a size
        changes (a per-channel tensor is vector-like whatever its channel count), so a size that moves in another
        ratio than the widths' is not refused."""
        raise NotImplementedError

    def counterpart(self, fqn: str, mod: nn.Module) -> Optional[nn.Module]:
        """The same module in the other build (None when the widths are listed, not read off a build)."""
        return None


class ListedWidths(WidthSource):
    """``widths=[...]``: a size is a width when it is one of the listed numbers."""

    argument, evidence = "widths", "is also a width"

    def __init__(self, widths: Iterable[int]) -> None:
        self.widths = frozenset(int(w) for w in widths)

    def grows(self, fqn: str, mod: nn.Module, sizes: Sizes, any_ratio: bool = False) -> Tuple[bool, ...]:
        return tuple(s in self.widths for s in sizes(mod))


class BaseModel(WidthSource):
    """``base=``: a size is a width when it differs from the same size of the same module in ``base``.

    Built from the model and its base; refuses (``ValueError`` naming the
    tensor) a parameter the base lacks or has with another rank.  A dimension
    that changes in a ratio other than the one most dimensions change in is
    refused when its module's role is read off the widths (a module named in
    ``roles=`` is not asked).
    """

    argument, evidence = "base", "differs from base's (it changes with width)"
    certain = True

    def __init__(self, model: nn.Module, base: nn.Module) -> None:
        if not isinstance(base, nn.Module):
            raise TypeError(f"base: expected the model built at another width (an nn.Module), got {type(base).__name__}")
        if base is model:
            raise ValueError("base: got the model itself; pass the same model built at another width")
        self.base = base
        changed = _changed_dimensions(model, base)
        self.ratio = Counter(changed.values()).most_common(1)[0][0]
        self.odd = {key: r for key, r in changed.items() if r != self.ratio}

    def counterpart(self, fqn: str, mod: nn.Module) -> nn.Module:
        try:
            other = self.base.get_submodule(fqn)
        except AttributeError:
            raise ValueError(f"base: has no module {fqn!r}; the base must be the same model built at another width") from None
        if type(other) is not type(mod):
            raise ValueError(f"base: {fqn!r} is a {type(other).__name__} there and a {type(mod).__name__} in the model; "
                             "the base must be the same model built at another width")
        return other

    def grows(self, fqn: str, mod: nn.Module, sizes: Sizes, any_ratio: bool = False) -> Tuple[bool, ...]:
        other = self.counterpart(fqn, mod)
        odd = [f"{fqn}.{n} dim {d} ({r.numerator}/{r.denominator})" for n, _ in mod.named_parameters(recurse=False)
               for (name, d), r in self.odd.items() if name == (f"{fqn}.{n}" if fqn else n)]
        if odd and not any_ratio:
            r = self.ratio
            raise ValueError(
                f"base: most dimensions change by {r.numerator}/{r.denominator} between base and model, but "
                f"{', '.join(odd)} change(s) in another ratio: neither a width nor fixed (ceil(n / k), n + k, ...). "
                f"Build both at widths where every width-sized dimension is proportional to the width, or name the "
                f"role of {fqn!r} in roles={{pattern: role}}")
        return tuple(a != b for a, b in zip(sizes(mod), sizes(other)))


def _changed_dimensions(model: nn.Module, base: nn.Module) -> Dict[Tuple[str, int], Fraction]:
    """{(parameter name, dimension): model's size / base's} for every dimension that differs; refuses a parameter
    the base lacks or has with another rank, and a base that differs nowhere."""
    theirs = dict(base.named_parameters())
    changed: Dict[Tuple[str, int], Fraction] = {}
    for name, p in model.named_parameters():
        q = theirs.get(name)
        if q is None:
            raise ValueError(f"base: has no parameter {name!r}; the base must be the same model built at another width")
        if q.dim() != p.dim():
            raise ValueError(f"base: {name!r} has {q.dim()} dimensions there and {p.dim()} in the model")
        for d, (a, b) in enumerate(zip(p.shape, q.shape)):
            if a != b:
                if a == 0 or b == 0:
                    raise ValueError(f"base: {name!r} is empty in one build ({tuple(p.shape)} vs {tuple(q.shape)})")
                changed[(name, d)] = Fraction(a, b)
    if not changed:
        raise ValueError("base: no parameter's shape differs from the model's; build the base at another width")
    return changed
