"""Raw tensors: a module's own ``nn.Parameter``s that no layer handler replaces (docs/theory.md section 18).

Mixture-of-experts blocks keep their experts as 3-D tensors (expert, out, in),
state-space layers keep per-channel vectors (``D``, ``dt_bias``) and matrices
(``A_log``: channel x state), attention blocks keep per-head sinks, activations
keep learnt scalars.  Their forward uses them directly, so no abcparam layer
can replace them; but a tensor's abc-exponents depend only on which of its
dimensions grow with the width, which :mod:`abcparam.conversion.widths` tells.
The module is marked in place (an ``abc_scales`` attribute, as for a norm of
the model's own class) and its forward is not changed: the scales are the
parametrization's a = 0 form (``param.canonical()``), whose multipliers are 1
and are folded into the initialisation and the learning rate (the form of
docs/theory.md section 2).

Per tensor, from the dimensions that grow:

- none (per-head sinks, a learnt scalar, a router over a fixed number of
  experts from a fixed size): order one at every width, trained at the base
  rate (``ParamScales`` role ``"none"``, as a readout's bias);
- one (``D``, ``dt_bias`` per channel, ``A_log`` channel x state, a gate
  vector): vector-like, like a norm's gain: its values are kept (their
  initialisation does not change with width).  A tensor whose only growing
  dimension is the last one, with other dimensions above 1, reads as a readout
  (fan-in the width) as well as per-channel values: a ``weight`` outside a
  norm is taken in F.linear's layout (out x in), a readout (a router's
  (experts, width) weight, docs/theory.md section 18), one inside a norm
  per-channel gains, a bias (``gate_up_proj_bias``: one per expert and
  channel) per-channel values; any other is refused by name, to be named in
  ``roles=``;
- two or more (3-D experts, a raw width x width matrix): hidden, fan-in the
  last dimension (the layout of ``F.linear``: out x in); with
  ``init="reinit"`` redrawn from the parametrization (the model's own
  initialisation of a hidden matrix, HF's fixed 0.02, is width-independent,
  which is SP's unstable choice).

A raw tensor that is used as a readout (its fan-in growing, its fan-out
fixed) cannot be told from a per-channel one by its shape: name it in
``roles={"<module>.<tensor>": "output"}``.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

from .. import torch_quiet  # noqa: F401  (torch without the numpy warning)
import torch
from torch import nn

from ..layers import UNIT_SCALES, ParamScales, scales_for
from .plan import Change, Context, VectorScales
from .usage import CONTRACTED, ELEMENTWISE

__all__ = ["MarkRaw", "RawTensor", "plan_raw"]


@dataclass
class RawTensor:
    """One raw tensor's decision: its role and width-sized dimensions."""

    name: str
    role: str
    width_dims: Tuple[int, ...]
    shape: Tuple[int, ...]


def plan_raw(fqn: str, mod: nn.Module, ctx: Context, known: Optional[Mapping[str, str]] = None,
             note: str = "") -> Optional["MarkRaw"]:
    """The tensors a module holds itself, each with its role (``known`` gives some, by tensor name); None (with the
    reason recorded) when the request gives no way to read their widths or the filter says no.  ``note``: why the
    module is marked rather than replaced, for the report."""
    own = list(mod.named_parameters(recurse=False))  # frozen ones too: an optimizer given model.parameters() holds them
    if not own:
        return None
    names = ", ".join(n for n, _ in own)
    if type(mod).__module__.startswith("torch.") and not known:  # torch's own layouts differ (ConvTranspose: in x out)
        ctx.skip(fqn or "<root>", f"{type(mod).__name__} holds tensors of its own ({names}) that no abcparam layer "
                                  "replaces: they keep torch's behaviour and the base learning rate")
        return None
    if ctx.widths is None and not any(_named_role(ctx, fqn, n) for n, _ in own):
        ctx.skip(fqn or "<root>", f"{type(mod).__name__} holds tensors of its own ({names}): give widths= or base= to "
                                  "have their roles read, or name them in roles=")
        return None
    if not ctx.selected(mod, fqn):
        ctx.skip(fqn or "<root>", "filter_fn said no")
        return None
    tensors = []
    for name, p in own:
        role = _named_role(ctx, fqn, name) or (known or {}).get(name)
        if role == "skip":
            ctx.skip(f"{fqn}.{name}" if fqn else name, "role 'skip' in roles")
            continue
        if ctx.widths is None:
            grown: Tuple[int, ...] = ()
        else:
            flags = ctx.widths.grows(fqn, mod, lambda m, name=name: tuple(getattr(m, name).shape))
            grown = tuple(d for d, g in enumerate(flags) if g)
        if role is None:
            full = f"{fqn}.{name}" if fqn else name
            use = ctx.use_of(full) if grown else None
            role = _role_from_shape(full, tuple(p.shape), grown, use or _layout(mod, name))
        if role != "none":
            ctx.param.role(role)  # a role the parametrization lacks fails here
        tensors.append(RawTensor(name, role, grown, tuple(p.shape)))
    return MarkRaw(fqn, mod, tensors, note) if tensors else None


def _layout(mod: nn.Module, name: str) -> str:
    """How the module uses a 2-D-or-more tensor whose only growing dimension is the last: ``"linear"`` for a tensor
    named ``weight`` outside a norm (F.linear's out x in, as a router's (experts, width) weight), ``"channels"`` in a
    norm (one gain per channel, per expert) or for a bias (added to each channel, per expert or per head), ``""``
    when nothing says."""
    if "norm" in type(mod).__name__.lower() or name.endswith("bias"):
        return "channels"
    return "linear" if name == "weight" else ""


def _role_from_shape(full: str, shape: Tuple[int, ...], grown: Tuple[int, ...], layout: str) -> str:
    """The role the width-sized dimensions give a raw tensor (docs/theory.md section 18); ``layout`` is how the
    forward was seen to use it (``"contracted"``, ``"elementwise"``: :mod:`abcparam.conversion.usage`) or, when not
    seen, what its name and module suggest (:func:`_layout`).  The one shape that nothing settles (only the last
    dimension grows, others above 1) is refused by name."""
    if not grown:
        return "none"
    if layout == ELEMENTWISE:
        return "vector"  # values per coordinate (A = -exp(A_log)), however many of its dimensions grow
    if len(grown) > 1:
        return "hidden"
    others = [s for d, s in enumerate(shape) if d != grown[0]]
    if grown[0] != len(shape) - 1 or all(s == 1 for s in others) or layout == "channels":
        return "vector"  # per channel: its fan-in (the last dimension, or none) is fixed
    if layout in ("linear", CONTRACTED):
        return "output"  # summed against the width to a fixed size: a readout (a router's logits)
    raise ValueError(
        f"roles: raw tensor {full} {shape} grows with the width only in its last dimension: a readout (fan-in the "
        "width: output role) or values per channel (vector)? The shape cannot tell, and no forward showed how the "
        "model uses it (pass convert(..., example=an input of the model)); or name it in "
        f"roles={{{full!r}: 'output' or 'vector'}}")


def _named_role(ctx: Context, fqn: str, name: str) -> Optional[str]:
    """The role ``roles`` names for the tensor ``fqn.name`` (a pattern on the tensor's full name)."""
    full = f"{fqn}.{name}" if fqn else name
    hits = {role for pattern, role in ctx.roles.items() if fnmatch.fnmatchcase(full, pattern)}
    if len(hits) > 1:
        raise ValueError(f"roles: tensor {full!r} matches patterns with different roles {sorted(hits)}; make the patterns disjoint")
    return hits.pop() if hits else None


@dataclass
class MarkRaw(Change):
    """Mark a module's raw tensors in place with their scales (the a = 0 form) and, with ``init="reinit"``, redraw
    the hidden and output ones at the parametrization's scale."""

    fqn: str
    mod: nn.Module
    tensors: List[RawTensor]
    note: str = ""
    stage: str = "raw"
    in_place = True
    scales: Dict[str, ParamScales] = field(default_factory=dict)

    def prepare(self, ctx: Context) -> None:
        form = ctx.param.canonical()
        for t in self.tensors:
            self.scales[t.name] = UNIT_SCALES if t.role == "none" else scales_for(form, t.role, t.width_dims)

    def install(self, ctx: Context) -> None:
        form = ctx.param.canonical()
        for t in self.tensors:
            if t.role in ("hidden", "output") and ctx.init == "reinit":
                p = getattr(self.mod, t.name)
                fan_in = t.shape[-1] / (float(form.width_mult) if (len(t.shape) - 1) in t.width_dims else 1.0)
                with torch.no_grad():
                    p.normal_(0.0, form.init_scale(t.role) / math.sqrt(fan_in))
        previous = getattr(self.mod, "abc_scales", None)
        merged = dict(previous()) if callable(previous) else {}
        merged.update(self.scales)
        self.mod.abc_scales = VectorScales(merged)
        ctx.report.raw += [(f"{self.fqn}.{t.name}" if self.fqn else t.name, t.role, t.shape) for t in self.tensors]
        if self.note:
            ctx.report.notes.append((self.fqn, self.note))
