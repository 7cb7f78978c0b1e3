""":func:`convert`: walk the model, let the handlers plan, check the plan as a whole, then apply it in one step."""

from __future__ import annotations

from typing import Any, Callable, Iterable, List, Mapping, Optional

from .. import torch_quiet  # noqa: F401  (torch without the numpy warning)
from torch import nn

from ..layers import is_abc_layer
from ..theory.parametrizations import Parametrization
from .handlers import HANDLERS, unmatched_patterns
from .plan import ROLES, STAGES, Change, Context
from .passes import AttentionScales, FusedPathOff, plan_blocks, plan_ties
from .raw import plan_raw
from .report import ConversionReport
from .usage import TensorUses
from .widths import BaseModel, ListedWidths, WidthSource

__all__ = ["convert"]


def convert(
    model: nn.Module,
    param: Parametrization,
    roles: Optional[Mapping[str, str]] = None,
    *,
    widths: Optional[Iterable[int]] = None,
    base: Optional[nn.Module] = None,
    filter_fn: Optional[Callable[[nn.Module, str], bool]] = None,
    blocks: Optional[str] = None,
    branches: Optional[Iterable[str]] = None,
    init: str = "reinit",
    scale_attention: bool = True,
    example: Any = None,
    **layer_kwargs: Any,
) -> ConversionReport:
    """Replace ``nn.Linear``/``nn.Embedding`` in ``model`` by abcparam layers, in place.

    Each layer's role comes from ``roles`` (``{fnmatch pattern on the qualified
    name: "input" | "hidden" | "output" | "skip"}``), else from ``widths``
    (the sizes that grow with width: a Linear whose both dimensions are widths
    is hidden, only its output is input, only its input is output), else from
    ``base``: the same model built at another width, a size being a width when
    it differs between the two (microsoft/mup's workflow: nothing listed by
    hand; :mod:`abcparam.conversion.widths`).  ``base`` is only read, and a
    size that changes in a ratio other than the widths' is refused by name.
    ``widths`` and ``base`` are alternatives.  A layer none of them names is
    left unchanged and reported.  Tensors a module of the model's own holds
    itself (3-D experts, a router's weight, per-channel state-space tensors),
    and the tensors of a layer subclass that cannot be replaced, are marked in
    place with the role their growing dimensions give, the forward unchanged
    (:mod:`abcparam.conversion.raw`, docs/theory.md section 18); whether the
    forward sums such a tensor against the features or applies it coordinate
    by coordinate is read off one forward on ``example`` (a tensor, a tuple of
    arguments or a dict of keyword arguments; default: the model's
    ``dummy_inputs``, which HF transformers' models have), run only when a raw
    tensor's role depends on it (:mod:`abcparam.conversion.usage`).  ``filter_fn(module, name)``
    may veto any layer.  ``layer_kwargs`` (``alpha``, ``sigma``, ...) go to
    every new layer.  Every decision is made before the model is touched, so
    an error leaves it as it was.  ``init``: ``"reinit"`` (default: the
    parametrization's initialisation; the previous weights are replaced, and
    the report says so) or ``"keep"`` (the previous weights become the layers'
    effective weights: the same function at this width).  A roles pattern that
    matches no layer is an error.  ``scale_attention`` (default True): an
    attention module that exposes its logit scale as a float ``scaling``
    attribute equal to 1/sqrt of its head size (``head_dim``, ``head_size``,
    ``attention_head_size``, ...: HF transformers' attention classes) gets
    ``param.attention_scale(d_head)`` (docs/theory.md section 14), which assumes
    a fixed number of heads whose size grows with the width; pass False to
    keep the model's scales.

    ``blocks`` (an fnmatch pattern such as ``"transformer.h.*"``) names the
    residual blocks for depth scaling (docs/theory.md section 12, with a
    ``param`` built with ``depth=``): in each block, the children listed in
    ``branches`` (default: every child that holds tensors and is not a norm,
    e.g. ``attn`` and ``mlp``) become residual branches (their output scaled by
    m_L^-alpha with a forward hook, :func:`abcparam.mark_branch`) and every
    tensor of the block, norms included, trains with the depth factors
    (:func:`abcparam.mark_block`).  The residual additions written in the
    block's ``forward`` are not rewritten; a branch computed inline rather than
    by a child module cannot be reached: wrap it in :class:`abcparam.Residual`
    in your own code.  A pattern that matches no module is an error.

    Which module kinds are replaced, and how, is the table
    :data:`abcparam.conversion.handlers.HANDLERS` (one handler per kind).
    """
    ctx = _context(model, param, roles, widths, base, filter_fn, init, layer_kwargs)
    ctx.uses = TensorUses(model, example)
    changes: List[Change] = []
    _walk(model, "", ctx, changes)
    _check_readouts(ctx)
    if not is_abc_layer(model):
        root = plan_raw("", model, ctx)
        if root is not None:
            changes.append(root)
    unmatched = unmatched_patterns(model, ctx.roles)
    if unmatched:
        raise ValueError(f"roles: the pattern(s) {', '.join(map(repr, unmatched))} match no module of the model")
    changes = plan_ties(changes, ctx)
    if blocks is not None:
        changes.append(plan_blocks(model, blocks, branches, {c.fqn for c in changes if c.stage in ("layer", "tie")}))  # type: ignore[attr-defined]
    if scale_attention:
        changes.append(AttentionScales(model))
    changes.append(FusedPathOff(model))
    changes.sort(key=lambda c: STAGES.index(c.stage))  # stable: walk order within a kind
    for change in changes:  # every new module built (and every refusal raised) before the model changes
        change.prepare(ctx)
    for change in changes:
        change.install(ctx)
    if ctx.uses.failure:
        ctx.report.notes.append(("", f"the model's forward failed on its dummy_inputs ({ctx.uses.failure}): its raw "
                                     "tensors' roles were read from their shapes alone"))
    return ctx.report


def _context(model: nn.Module, param: Parametrization, roles: Optional[Mapping[str, str]], widths: Optional[Iterable[int]],
             base: Optional[nn.Module], filter_fn: Optional[Callable[[nn.Module, str], bool]], init: str, layer_kwargs: dict) -> Context:
    """The request, checked."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    Parametrization.require(param)
    roles = dict(roles or {})
    for pattern, role in roles.items():
        if role not in ROLES:
            raise ValueError(f"roles: {pattern!r} -> {role!r}; allowed roles: {', '.join(ROLES)}")
    if widths is not None and base is not None:
        raise ValueError("widths, base: give one of them (base= reads the widths off the second build; widths= lists them)")
    source: Optional[WidthSource] = None
    listed = frozenset(int(w) for w in widths) if widths is not None else frozenset()
    if base is not None:
        source = BaseModel(model, base)
    elif listed:
        source = ListedWidths(listed)
    if not roles and source is None:
        raise ValueError("widths: name the width-sized dimensions (widths=[d_model, d_ff, ...]), pass base= (the model "
                         "built at another width) or give roles={pattern: role}")
    if init not in ("reinit", "keep"):
        raise ValueError(f"init: got {init!r}; allowed: 'reinit' (the parametrization's initialisation) or 'keep' (the current weights)")
    return Context(param, roles, source, filter_fn, dict(layer_kwargs), init, ConversionReport(init=init))


def _walk(parent: nn.Module, prefix: str, ctx: Context, changes: List[Change]) -> None:
    """Offer each child to the handlers; the first that claims it decides; a child none claims is walked into."""
    for attr, child in parent.named_children():
        fqn = f"{prefix}.{attr}" if prefix else attr
        handler = next((h for h in HANDLERS if h.claims(child, fqn, ctx)), None)
        if handler is not None:
            change = handler.plan(parent, attr, fqn, child, ctx)
            if change is not None:
                changes.append(change)
                if change.in_place:  # marked, not replaced: what it holds is walked too
                    _walk(child, fqn, ctx, changes)
            continue
        raw = plan_raw(fqn, child, ctx)  # the tensors it holds itself (its children are walked into)
        if raw is not None:
            changes.append(raw)
        _walk(child, fqn, ctx, changes)


def _check_readouts(ctx: Context) -> None:
    """From listed widths a model has one readout; more means some width is missing from ``widths`` (with ``base=``
    every size is compared, so a second readout is one)."""
    found = ctx.readouts_from_widths
    if len(found) > 1 and ctx.widths is not None and not ctx.widths.certain:
        sizes = sorted({int(getattr(c, 'out_features', None) or getattr(c, 'out_channels', None) or c.weight.shape[1]) for _, c in found})
        raise ValueError(
            f"widths: {len(found)} layers would be readouts (only their input is a width): "
            f"{', '.join(n for n, _ in found)}. A model usually has one; if the others are inside the network "
            f"(grouped keys and values, a bottleneck), add their output size(s) {sizes} to widths, or name the roles in "
            "roles={pattern: role}"
        )
