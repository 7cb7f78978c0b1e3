"""The changes :func:`abcparam.convert` plans for the model as a whole, after the walk (docs/theory.md sections 7, 12, 14).

- :func:`plan_ties`: a planned readout whose weight is a planned embedding's
  table becomes a :class:`abcparam.TiedReadout` (or the conversion is refused
  with the reason);
- :class:`AttentionScales`: an attention module exposing a float ``scaling``
  equal to 1/sqrt of its head size (HF's attention classes: ``head_dim``,
  ``head_size``, ...) gets the parametrization's scale; one that looks like
  attention but exposes none is reported;
- :class:`FusedPathOff`: torch's transformer layers are kept off their fused
  inference path, which would bypass the converted layers' multipliers;
- :func:`plan_blocks`: residual blocks and their branches, for depth scaling.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Any, Iterable, List, Optional, Set, Tuple

from .. import torch_quiet  # noqa: F401  (torch without the numpy warning)
import torch
from torch import nn

from ..attention import HEAD_SIZES, head_sizes
from ..layers import TiedReadout, can_tie, is_abc_layer
from ..norms import TORCH_NORMS
from .handlers import Swap
from .plan import Change, Context
from .raw import MarkRaw
from .report import Converted

__all__ = ["AttentionScales", "FusedPathOff", "HEAD_SIZES", "MarkBlocks", "Tie", "head_size", "plan_blocks", "plan_ties"]


@dataclass
class Tie(Change):
    """Replace the readout ``parent.attr`` by a :class:`TiedReadout` on the converted embedding ``embedding``."""

    parent: nn.Module
    attr: str
    fqn: str
    old: nn.Linear
    embedding: str
    stage: str = "tie"
    new: Optional[nn.Module] = None

    def prepare(self, ctx: Context) -> None:
        emb, bias = ctx.built[self.embedding], self.old.bias is not None
        alpha = None
        if ctx.init == "keep":  # the same logits at this width: the readout's total multiplier on the kept table is 1
            alpha = 1.0 / TiedReadout(emb, param=ctx.param, bias=False, alpha=1.0).weight_multiplier  # type: ignore[arg-type]
        self.new = TiedReadout(emb, param=ctx.param, bias=bias, alpha=alpha)  # type: ignore[arg-type]
        if bias:
            with torch.no_grad():
                self.new.bias.copy_(self.old.bias)

    def install(self, ctx: Context) -> None:
        setattr(self.parent, self.attr, self.new)
        ctx.report.converted.append(Converted(self.fqn, "Linear (tied)", "output", (self.old.in_features, self.old.out_features)))


def plan_ties(changes: List[Change], ctx: Context) -> List[Change]:
    """``changes`` with each readout whose weight is a converted embedding's table planned as a :class:`Tie`.

    Refused with the reason when the readout is not in the output role, or when
    the parametrization cannot train one tensor for both roles (docs/theory.md section 7).
    """
    swaps = [c for c in changes if isinstance(c, Swap) and c.stage == "layer"]
    tables = {id(c.old.weight): c.fqn for c in swaps if isinstance(c.old, nn.Embedding)}
    marked = {id(getattr(c.mod, t.name)): f"{c.fqn}.{t.name}" if c.fqn else t.name
              for c in changes if isinstance(c, MarkRaw) for t in c.tensors}
    out: List[Change] = []
    for c in changes:
        emb = tables.get(id(c.old.weight)) if isinstance(c, Swap) and c.stage == "layer" and isinstance(c.old, nn.Linear) else None
        shared = marked.get(id(getattr(c.old, "weight", None))) if isinstance(c, Swap) else None
        if shared is not None:  # replacing the layer would give it a weight of its own: the tie would be lost
            raise ValueError(f"convert: {c.fqn!r} shares its weight with {shared!r}, which is marked in place rather "
                             "than replaced, so replacing it would untie them; untie them first, or leave it with "
                             f"roles={{{c.fqn!r}: 'skip'}}")
        if emb is None:
            out.append(c)
            continue
        if c.role != "output":
            raise ValueError(f"roles: {c.fqn!r} shares its weight with the embedding {emb!r}, so it "
                             f"is a tied readout; give it the role 'output', not {c.role!r}")
        if not can_tie(ctx.param):
            raise ValueError(
                f"param: {c.fqn!r} is tied to the embedding {emb!r}, but {ctx.param.name!r} gives the input "
                "and output roles different init or learning-rate exponents, so one tensor cannot follow both; convert "
                "with abcparam.mup(..., form='table8'), or untie the readout first"
            )
        out.append(Tie(c.parent, c.attr, c.fqn, c.old, emb))  # type: ignore[arg-type]
    return out


@dataclass
class AttentionScales(Change):
    """Set every reachable attention scale to ``param.attention_scale(d_head)`` (docs/theory.md section 14).

    Reachable: a module with a float ``scaling`` equal to 1/sqrt of one of its
    integer head-size attributes (:data:`HEAD_SIZES`: HF's attention classes
    spell it ``head_dim``, ``head_size``, ``attention_head_size``, ...).  A
    ``scaling`` of any other value (1, applied elsewhere; a config's own
    multiplier) is left alone and reported, as is a module that looks like
    attention and exposes no scale.
    """

    model: nn.Module
    stage: str = "attention scale"

    def install(self, ctx: Context) -> None:
        from ..attention import MultiheadAttention, ScaledDotProductAttention

        for fqn, mod in self.model.named_modules():
            old = getattr(mod, "scaling", None)
            # abcparam's own layers are left alone; a module of the model's whose raw tensors were marked in place
            # (attention sinks, a differential attention's lambdas) is still the model's, and its scale is set
            if isinstance(old, float) and not type(mod).__module__.startswith("abcparam."):
                d = head_size(mod)
                if d is not None:
                    mod.scaling = ctx.param.attention_scale(d)
                    ctx.report.attention.append((fqn, old, mod.scaling))
                else:
                    ctx.skip(fqn, f"{type(mod).__name__} has scaling={old:g}, which is not 1/sqrt of a head size it "
                                  f"exposes ({', '.join(HEAD_SIZES)}): left as the model sets it")
            elif ("attention" in type(mod).__name__.lower() and fqn not in dict(ctx.report.skipped)
                  and not isinstance(mod, (MultiheadAttention, ScaledDotProductAttention))
                  and not any(isinstance(m, ScaledDotProductAttention) for m in mod.modules())):
                ctx.skip(fqn, f"{type(mod).__name__} looks like attention, but exposes no scale abcparam can set "
                              "(a float `scaling` with an int head size): its logits keep the model's own scale; "
                              "in its forward, use param.attention_scale(head_dim) as the scale, or "
                              "abcparam.ScaledDotProductAttention")


def head_size(mod: nn.Module) -> Optional[int]:
    """The head size whose 1/sqrt is the module's ``scaling`` (None when no head-size attribute gives it)."""
    return next((d for d in head_sizes(mod) if math.isclose(mod.scaling, d ** -0.5, rel_tol=1e-9)), None)


class _NoFastPath:
    """A forward pre-hook that does nothing: its presence keeps torch's transformer layers off their fused path."""

    def __call__(self, module: nn.Module, args: Any) -> None:
        return None


@dataclass
class FusedPathOff(Change):
    """torch's fused inference path of a transformer layer reads linear1/linear2's tensors directly, bypassing the
    abcparam layers' forward (their multipliers); any forward hook on the layer makes torch take the ordinary path,
    so a no-op one is attached to every such layer holding an abcparam layer."""

    model: nn.Module
    stage: str = "fast path"

    def install(self, ctx: Context) -> None:
        for fqn, mod in self.model.named_modules():
            if isinstance(mod, nn.TransformerEncoderLayer) and any(is_abc_layer(m) for m in mod.modules()):
                if not any(isinstance(h, _NoFastPath) for h in mod._forward_pre_hooks.values()):
                    mod.register_forward_pre_hook(_NoFastPath())
                attn = getattr(mod, "self_attn", None)
                left = "" if attn is None or is_abc_layer(attn) else "; its self-attention is not converted"
                ctx.skip(fqn or "<root>", f"{type(mod).__name__}: torch's fused inference path disabled (it would "
                                          f"bypass the converted layers' multipliers){left}")


def _is_norm(mod: nn.Module) -> bool:
    return isinstance(mod, TORCH_NORMS) or "norm" in type(mod).__name__.lower()


@dataclass
class MarkBlocks(Change):
    """Mark each block for depth scaling and its branches as residual branches (docs/theory.md section 12)."""

    blocks: List[Tuple[str, nn.Module, List[str]]]
    stage: str = "block"

    def install(self, ctx: Context) -> None:
        from ..residual import mark_block, mark_branch

        for block_name, block, names in self.blocks:
            mark_block(block, param=ctx.param)
            for n in names:
                mark_branch(getattr(block, n), param=ctx.param)
            ctx.report.blocks.append((block_name, tuple(names)))


def plan_blocks(model: nn.Module, pattern: str, branches: Optional[Iterable[str]], planned: Set[str]) -> MarkBlocks:
    """The blocks matching ``pattern`` and their branches, checked before anything changes."""
    if not isinstance(pattern, str):
        raise TypeError(f"blocks: expected an fnmatch pattern such as 'transformer.h.*', got {pattern!r}")
    found: List[Tuple[str, nn.Module]] = []
    for n, m in model.named_modules():  # the outermost matches: "blocks.*" also matches blocks.0.ln1 (fnmatch's * spans dots)
        if n and fnmatch.fnmatchcase(n, pattern) and not any(n.startswith(f + ".") for f, _ in found):
            found.append((n, m))
    if not found:
        raise ValueError(f"blocks: the pattern {pattern!r} matches no module of the model")
    names = list(branches) if branches is not None else None
    out = []
    for bname, block in found:
        chosen = names if names is not None else [
            c for c, m in block.named_children() if not _is_norm(m) and any(True for _ in m.parameters())]
        if not chosen:
            raise ValueError(f"blocks: {bname} has no child that could be a residual branch (children with tensors, not norms)")
        for c in chosen:
            child = getattr(block, c, None)
            if not isinstance(child, nn.Module):
                raise ValueError(f"branches: {bname} has no child module {c!r}")
            prefix = f"{bname}.{c}"
            has_layer = any(is_abc_layer(m) for m in child.modules()) or any(
                f == prefix or f.startswith(prefix + ".") for f in planned)
            if not has_layer:
                raise ValueError(f"blocks: the branch {prefix} has no abcparam layer and none is being converted; a residual "
                                 "branch scales with width too (name its layers in roles= or widths=)")
        out.append((bname, block, chosen))
    return MarkBlocks(out)
