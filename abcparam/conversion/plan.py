"""What a conversion plans before it changes anything: the :class:`Context` every handler reads, the :class:`Change`
each plans, and the ``abc_scales`` of a module marked in place (:class:`VectorScales`).

The handlers (:mod:`abcparam.conversion.handlers`), the raw-tensor planner (:mod:`abcparam.conversion.raw`) and the
passes after the walk (:mod:`abcparam.conversion.passes`) build on these; nothing here knows a module kind.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import torch_quiet  # noqa: F401  (torch without the numpy warning)
from torch import nn

from ..theory.parametrizations import Parametrization
from .report import ConversionReport
from .usage import TensorUses
from .widths import WidthSource

__all__ = ["Change", "Context", "ROLES", "STAGES", "VectorScales"]

ROLES = ("input", "hidden", "output", "vector", "skip")  # "vector": a depthwise convolution

# the order in which changes of each kind are installed (and listed in the report)
STAGES = ("layer", "tie", "attention", "norm", "marked norm", "raw", "attention scale", "fast path", "block")


@dataclass
class Context:
    """The request every handler reads, and what the conversion collects as it goes."""

    param: Parametrization
    roles: Dict[str, str]
    widths: Optional[WidthSource]  # None: every role comes from roles=
    filter_fn: Optional[Callable[[nn.Module, str], bool]]
    layer_kwargs: Dict[str, Any]
    init: str
    report: ConversionReport
    uses: Optional[TensorUses] = None  # how the forward uses each tensor (observed when a raw tensor needs it)
    readouts_from_widths: List[Tuple[str, nn.Module]] = field(default_factory=list)
    built: Dict[str, nn.Module] = field(default_factory=dict)

    def selected(self, mod: nn.Module, fqn: str) -> bool:
        """Whether ``filter_fn`` (if any) lets this module be converted."""
        return self.filter_fn is None or bool(self.filter_fn(mod, fqn))

    def skip(self, fqn: str, why: str) -> None:
        self.report.skipped.append((fqn, why))

    def role_of(self, fqn: str, mod: nn.Module,
                from_widths: Callable[[WidthSource], Tuple[Optional[str], str]]) -> Optional[str]:
        """The role ``roles`` names for ``fqn``, else the one ``from_widths(self.widths)`` reads off the widths (a
        readout found that way is recorded); None, with the reason recorded as a skip, when there is none or it is
        ``"skip"``."""
        role, why = self.role_from_map(fqn), "role 'skip' in roles"
        if role is None and self.widths is not None:
            role, why = from_widths(self.widths)
            if role == "output":
                self.readouts_from_widths.append((fqn, mod))
        elif role is None:
            why = "matched no pattern in roles"
        if role in (None, "skip"):
            self.skip(fqn, why)
            return None
        if role != "fixed":
            self.param.role(role)  # a missing role (mean field: no hidden) fails here, before any change
        return role

    def use_of(self, name: str) -> Optional[str]:
        """``"contracted"``, ``"elementwise"`` or None for the parameter ``name`` (:mod:`abcparam.conversion.usage`)."""
        return self.uses.of(name) if self.uses is not None else None

    def role_from_map(self, fqn: str) -> Optional[str]:
        """The role ``roles`` gives the module named ``fqn`` (None when no pattern matches)."""
        hits = {role for pattern, role in self.roles.items() if fnmatch.fnmatchcase(fqn, pattern)}
        if len(hits) > 1:
            raise ValueError(f"roles: layer {fqn!r} matches patterns with different roles {sorted(hits)}; make the patterns disjoint")
        return hits.pop() if hits else None


class Change:
    """One planned change.  ``prepare`` builds what the change needs and may refuse; ``install`` changes the model.

    ``convert`` prepares every change (in stage order) before it installs any.
    """

    stage = "layer"
    in_place = False  # True: the module stays (its tensors marked), so the walk goes on into its children

    def prepare(self, ctx: Context) -> None:
        """Build the new module(s); raise here, never in install."""

    def install(self, ctx: Context) -> None:
        raise NotImplementedError


class VectorScales:
    """``abc_scales`` of a module marked in place: a norm of the model's own class, or a module's raw tensors
    (:mod:`abcparam.conversion.raw`).  A plain object: picklable."""

    def __init__(self, scales: Dict[str, Any]) -> None:
        self.scales = scales

    def __call__(self) -> Dict[str, Any]:
        return dict(self.scales)
