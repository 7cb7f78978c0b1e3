"""Model conversion: plain torch layers to abcparam layers (:func:`convert`) and back (:func:`to_torch`).

One recursive routine, in the style of torchao's ``quantize_``: it walks the
model, asks a filter about each ``(module, qualified name)``, decides each
layer's role (from an explicit ``{name pattern: role}`` map, or from which of
its dimensions are width-sized), and swaps in an abcparam layer on the same
device and dtype.  The rule for existing weights is explicit: ``init="reinit"``
(default) draws every converted layer from the parametrization's own
initialisation, which is the point of converting a model you are about to
train, and the report says how many layers' weights were replaced;
``init="keep"`` carries the current weights over as the layers' effective
weights, so the converted model computes the same function at this width (for
a pretrained model).  Norms (``nn.LayerNorm``, ``nn.RMSNorm``) become
:class:`abcparam.LayerNorm` / :class:`abcparam.RMSNorm` with their gains kept
(a gain's init does not change with width).  A readout whose weight *is* a
converted embedding's table (a tie) becomes a :class:`abcparam.TiedReadout`, or
the conversion is refused with the reason.  Every other module that holds
tensors and is left alone is listed in the report, with the reason.

>>> import torch, abcparam
>>> net = torch.nn.Sequential(torch.nn.Linear(10, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
...                           torch.nn.ReLU(), torch.nn.Linear(256, 3))
>>> report = abcparam.convert(net, abcparam.mup(256, 64), widths=[256])
>>> [(c.name, c.role) for c in report.converted]
[('0', 'input'), ('2', 'hidden'), ('4', 'output')]
"""

from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from . import _torch  # noqa: F401  (torch without the numpy warning)
import torch
from torch import nn

from .layers import Conv1D, Embedding, Linear, TiedReadout, _can_tie, abc_modules
from .parametrizations import Parametrization

__all__ = ["convert", "ConversionReport", "Converted", "to_torch", "from_torch", "effective_state_dict"]

_ROLES = ("input", "hidden", "output", "skip")


@dataclass(frozen=True)
class Converted:
    name: str
    kind: str
    role: str
    shape: Tuple[int, int]


@dataclass
class ConversionReport:
    """What :func:`convert` replaced, and what it left alone (with the reason)."""

    converted: List[Converted] = field(default_factory=list)
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    blocks: List[Tuple[str, Tuple[str, ...]]] = field(default_factory=list)
    init: str = "reinit"
    attention: List[Tuple[str, float, float]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"converted {len(self.converted)} layer(s):"]
        lines += [f"  {c.name or '<root>'}: {c.kind}{c.shape} -> {c.role}" for c in self.converted]
        drawn = [c for c in self.converted if c.role in ("input", "hidden", "output") and c.kind != "Linear (tied)"]
        if drawn:
            lines.append(f"weights: {len(drawn)} layer(s) re-initialised by the parametrization, their previous weights "
                         "replaced (init='keep' keeps them)" if self.init == "reinit" else
                         f"weights: the previous weights of {len(drawn)} layer(s) kept as their effective weights (init='keep')")
        if self.skipped:
            lines.append(f"left {len(self.skipped)} layer(s) unchanged:")
            lines += [f"  {n}: {why}" for n, why in self.skipped]
        if self.attention:
            lines.append("attention scales set to the parametrization's (docs/theory.md section 14; the head dimension is "
                         "taken to grow with the width):")
            lines += [f"  {n}: {old:.6g} -> {new:.6g}" for n, old, new in self.attention]
        if self.blocks:
            lines.append(f"residual blocks ({len(self.blocks)}; docs/theory.md section 12): each branch's output scaled by "
                         "m_L^-alpha with a forward hook, every tensor of the block trained with the depth factors; the "
                         "additions themselves stay in the model's forward, which abcparam does not rewrite:")
            lines += [f"  {b}: branches {', '.join(br)}" for b, br in self.blocks]
        return "\n".join(lines)


def _role_from_map(name: str, roles: Mapping[str, str]) -> Optional[str]:
    hits = {role for pattern, role in roles.items() if fnmatch.fnmatchcase(name, pattern)}
    if len(hits) > 1:
        raise ValueError(f"roles: layer {name!r} matches patterns with different roles {sorted(hits)}; make the patterns disjoint")
    return hits.pop() if hits else None


def _role_from_widths(name: str, mod: nn.Module, widths: frozenset) -> Tuple[Optional[str], str]:
    if isinstance(mod, nn.Embedding):
        if mod.num_embeddings in widths:
            raise ValueError(
                f"widths: embedding {name!r} has num_embeddings={mod.num_embeddings}, which is also a width; "
                "cannot tell whether its vocabulary grows with width. Name its role in roles={...}"
            )
        if mod.embedding_dim in widths:
            return "input", ""
        return None, f"embedding_dim {mod.embedding_dim} is not a width"
    d_in, d_out = (mod.in_features, mod.out_features) if isinstance(mod, nn.Linear) else tuple(mod.weight.shape)  # Conv1D: nx x nf
    fan_in, fan_out = d_in in widths, d_out in widths
    if fan_in and fan_out:
        return "hidden", ""
    if fan_out:
        return "input", ""
    if fan_in:
        return "output", ""
    return None, f"no width-sized dimension ({d_in} -> {d_out})"


def convert(
    model: nn.Module,
    param: Parametrization,
    roles: Optional[Mapping[str, str]] = None,
    *,
    widths: Optional[Iterable[int]] = None,
    filter_fn: Optional[Callable[[nn.Module, str], bool]] = None,
    blocks: Optional[str] = None,
    branches: Optional[Iterable[str]] = None,
    init: str = "reinit",
    scale_attention: bool = True,
    **layer_kwargs: Any,
) -> ConversionReport:
    """Replace ``nn.Linear``/``nn.Embedding`` in ``model`` by abcparam layers, in place.

    Each layer's role comes from ``roles`` (``{fnmatch pattern on the qualified
    name: "input" | "hidden" | "output" | "skip"}``), else from ``widths``
    (the sizes that grow with width: a Linear whose both dimensions are widths
    is hidden, only its output is input, only its input is output).  A layer
    neither names is left unchanged and reported.  ``filter_fn(module, name)``
    may veto any layer.  ``layer_kwargs`` (``alpha``, ``sigma``, ...) go to
    every new layer.  Every decision is made before the model is touched, so
    an error leaves it as it was.  ``init``: ``"reinit"`` (default: the
    parametrization's initialisation; the previous weights are replaced, and
    the report says so) or ``"keep"`` (the previous weights become the layers'
    effective weights: the same function at this width).  A roles pattern that
    matches no layer is an error.  ``scale_attention`` (default True): an
    attention module that exposes its logit scale as a numeric ``scaling``
    attribute with a ``head_dim`` (HF transformers' attention classes) gets
    ``param.attention_scale(head_dim)`` (docs/theory.md section 14), which assumes
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
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    if not isinstance(param, Parametrization):
        raise TypeError(f"param: expected an abcparam.Parametrization, got {type(param).__name__}")
    roles = dict(roles or {})
    for pattern, role in roles.items():
        if role not in _ROLES:
            raise ValueError(f"roles: {pattern!r} -> {role!r}; allowed roles: {', '.join(_ROLES)}")
    width_set = frozenset(int(w) for w in widths) if widths is not None else frozenset()
    if not roles and not width_set:
        raise ValueError("widths: name the width-sized dimensions (widths=[d_model, d_ff, ...]) or give roles={pattern: role}")
    if init not in ("reinit", "keep"):
        raise ValueError(f"init: got {init!r}; allowed: 'reinit' (the parametrization's initialisation) or 'keep' (the current weights)")

    plan: List[Tuple[nn.Module, str, str, nn.Module, str]] = []
    norms: List[Tuple[nn.Module, str, str, nn.Module]] = []
    mhas: List[Tuple[nn.Module, str, str, nn.Module]] = []
    foreign_norms: List[Tuple[str, nn.Module]] = []
    report = ConversionReport(init=init)

    def visit(parent: nn.Module, prefix: str) -> None:
        for child_name, child in parent.named_children():
            fqn = f"{prefix}.{child_name}" if prefix else child_name
            if hasattr(child, "abc_scales"):
                report.skipped.append((fqn, "already an abcparam layer"))
                continue
            if type(child) in (nn.LayerNorm, getattr(nn, "RMSNorm", None)) and not (filter_fn and not filter_fn(child, fqn)):
                norms.append((parent, child_name, fqn, child))
                continue
            if isinstance(child, nn.MultiheadAttention):
                role = _role_from_map(fqn, roles)
                if role is None and width_set:
                    role = "hidden" if child.embed_dim in width_set else None
                why = _mha_unsupported(child)
                if why or role in (None, "skip") or (filter_fn is not None and not filter_fn(child, fqn)):
                    report.skipped.append((fqn, why or ("its embed_dim is not a width" if role is None else "not selected")))
                    continue
                if role != "hidden":
                    raise ValueError(f"roles: {fqn!r} is a MultiheadAttention, whose projections are hidden layers; got {role!r}")
                mhas.append((parent, child_name, fqn, child))
                continue
            if isinstance(child, (nn.Linear, nn.Embedding)) and not _plain_subclass(child):
                report.skipped.append((fqn, f"{type(child).__name__} is a subclass of nn.{'Linear' if isinstance(child, nn.Linear) else 'Embedding'} "
                                            "with behaviour of its own, which replacing it would lose: not converted"))
                continue
            if isinstance(child, (nn.Linear, nn.Embedding)) or _is_hf_conv1d(child):
                if filter_fn is not None and not filter_fn(child, fqn):
                    report.skipped.append((fqn, "filter_fn said no"))
                    continue
                role = _role_from_map(fqn, roles)
                why = "role 'skip' in roles"
                if role is None and width_set:
                    role, why = _role_from_widths(fqn, child, width_set)
                    if role == "output":
                        readouts_from_widths.append((fqn, child))
                elif role is None:
                    why = "matched no pattern in roles"
                if role in (None, "skip"):
                    report.skipped.append((fqn, why))
                    continue
                if isinstance(child, nn.Embedding) and role != "input":
                    raise ValueError(f"roles: embedding {fqn!r} can only be an input layer, got {role!r}")
                param.role(role)  # a missing role (mean field: no hidden) fails here, before any change
                plan.append((parent, child_name, fqn, child, role))
            elif _is_foreign_norm(child, width_set) and not (filter_fn and not filter_fn(child, fqn)):
                foreign_norms.append((fqn, child))
            else:
                own = [n for n, _ in child.named_parameters(recurse=False)]
                if own:
                    report.skipped.append((fqn, f"{type(child).__name__} holds tensors of its own ({', '.join(own)}) that no "
                                                "abcparam layer replaces: they keep torch's behaviour and the base learning rate"))
                visit(child, fqn)

    readouts_from_widths: List[Tuple[str, nn.Module]] = []
    visit(model, "")
    if len(readouts_from_widths) > 1:
        sizes = sorted({int(c.out_features if isinstance(c, nn.Linear) else c.weight.shape[1]) for _, c in readouts_from_widths})
        raise ValueError(
            f"widths: {len(readouts_from_widths)} layers would be readouts (only their input is a width): "
            f"{', '.join(n for n, _ in readouts_from_widths)}. A model usually has one; if the others are inside the network "
            f"(grouped keys and values, a bottleneck), add their output size(s) {sizes} to widths, or name the roles in "
            "roles={pattern: role}"
        )
    own_root = [n for n, _ in model.named_parameters(recurse=False)]
    if own_root and not hasattr(model, "abc_scales"):
        report.skipped.append(("<root>", f"{type(model).__name__} holds tensors of its own ({', '.join(own_root)})"))
    unmatched = [pat for pat in roles if not any(fnmatch.fnmatchcase(n, pat) for n, _ in model.named_modules() if n)]
    if unmatched:
        raise ValueError(f"roles: the pattern(s) {', '.join(map(repr, unmatched))} match no module of the model")
    ties = _plan_ties(plan, param)
    block_plan = _plan_blocks(model, blocks, branches, {fqn for _, _, fqn, _, _ in plan}) if blocks is not None else []
    new_layers = [(parent, name, fqn, _build(child, role, param, layer_kwargs), role, child) for parent, name, fqn, child, role in plan
                  if fqn not in ties]
    new_norms = [(parent, name, fqn, _build_norm(child, param)) for parent, name, fqn, child in norms]
    new_mhas = [(parent, name, fqn, child, _build_mha(child, param)) for parent, name, fqn, child in mhas]
    built: Dict[str, nn.Module] = {}
    for parent, name, fqn, layer, role, child in new_layers:
        if init == "keep":
            _keep_weights(layer, child)
        setattr(parent, name, layer)
        built[fqn] = layer
        kind = type(child).__name__
        shape = ((child.in_features, child.out_features) if isinstance(child, nn.Linear) else (child.num_embeddings, child.embedding_dim)
                 if isinstance(child, nn.Embedding) else tuple(child.weight.shape))
        report.converted.append(Converted(fqn, kind, role, shape))
    for readout_fqn, (parent, name, child, emb_fqn) in ties.items():
        tied = TiedReadout(built[emb_fqn], param=param, bias=child.bias is not None)  # type: ignore[arg-type]
        if init == "keep":  # the same logits at this width: the readout's total multiplier on the kept table is 1
            unit = TiedReadout(built[emb_fqn], param=param, bias=child.bias is not None, alpha=1.0)  # type: ignore[arg-type]
            tied = TiedReadout(built[emb_fqn], param=param, bias=child.bias is not None,  # type: ignore[arg-type]
                               alpha=1.0 / unit.weight_multiplier)
        if child.bias is not None:
            with torch.no_grad():
                tied.bias.copy_(child.bias)
        setattr(parent, name, tied)
        report.converted.append(Converted(readout_fqn, "Linear (tied)", "output", (child.in_features, child.out_features)))
    for parent, name, fqn, child, layer in new_mhas:
        if init == "keep":
            with torch.no_grad():
                layer.in_proj_weight.copy_(child.in_proj_weight / layer.in_proj_multiplier)
                layer.out_proj.weight.copy_(child.out_proj.weight / layer.out_proj.weight_multiplier)
                for mine, theirs in ((layer.in_proj_bias, child.in_proj_bias), (layer.out_proj.bias, child.out_proj.bias)):
                    if mine is not None:
                        mine.copy_(theirs)
        setattr(parent, name, layer)
        report.converted.append(Converted(fqn, "MultiheadAttention", "hidden", (child.embed_dim, child.num_heads)))
    for parent, name, fqn, layer in new_norms:
        setattr(parent, name, layer)
        report.converted.append(Converted(fqn, type(layer).__name__, "vector", tuple(layer.normalized_shape)[-1:] * 2))
    if foreign_norms:
        from .layers import _scales

        vector = _scales(param.canonical(), "vector", (0,))
        for fqn, mod in foreign_norms:  # a norm class of the model's own (HF's LlamaRMSNorm): its tensors marked in place
            mod.abc_scales = _VectorScales({n: vector for n, _ in mod.named_parameters(recurse=False)})
            d = next(iter(mod.parameters())).shape[0]
            report.converted.append(Converted(fqn, f"{type(mod).__name__} (gains marked vector-like in place)", "vector", (d, d)))
    if scale_attention:
        for fqn, mod in model.named_modules():
            old, d = getattr(mod, "scaling", None), getattr(mod, "head_dim", None)
            if isinstance(old, float) and isinstance(d, int) and not hasattr(mod, "abc_scales"):
                mod.scaling = param.attention_scale(d)
                report.attention.append((fqn, old, mod.scaling))
            elif "attention" in type(mod).__name__.lower() and not _reached_attention(mod) and fqn not in dict(report.skipped):
                report.skipped.append((fqn, f"{type(mod).__name__} looks like attention, but exposes no scale abcparam can set "
                                            "(a float `scaling` with an int `head_dim`): its logits keep the model's own scale; "
                                            "use param.attention_scale(head_dim) or abcparam.ScaledDotProductAttention in it"))
    for fqn, mod in model.named_modules():
        # torch's fused inference path of a transformer layer reads linear1/linear2's tensors directly, bypassing
        # the abcparam layers' forward (their multipliers); any forward hook on the layer makes torch take the
        # ordinary path, so a no-op one is attached
        if isinstance(mod, _FAST_PATH_LAYERS) and any(hasattr(m, "abc_scales") for m in mod.modules()):
            if not any(isinstance(h, _NoFastPath) for h in mod._forward_pre_hooks.values()):
                mod.register_forward_pre_hook(_NoFastPath())
            attn = getattr(mod, "self_attn", None)
            left = "" if attn is None or hasattr(attn, "abc_scales") else "; its self-attention is not converted"
            report.skipped.append((fqn or "<root>", f"{type(mod).__name__}: torch's fused inference path disabled (it would "
                                                    f"bypass the converted layers' multipliers){left}"))
    if block_plan:
        from .residual import mark_block, mark_branch

        for block_name, block, names in block_plan:
            mark_block(block, param=param)
            for n in names:
                mark_branch(getattr(block, n), param=param)
            report.blocks.append((block_name, tuple(names)))
    return report


_NORM_TYPES = tuple(t for t in (nn.LayerNorm, getattr(nn, "RMSNorm", None), nn.GroupNorm, nn.modules.batchnorm._BatchNorm) if t)


def _is_norm(mod: nn.Module) -> bool:
    return isinstance(mod, _NORM_TYPES) or "norm" in type(mod).__name__.lower()


def _plan_blocks(model: nn.Module, pattern: str, branches: Optional[Iterable[str]], planned: set) -> List[Tuple[str, nn.Module, List[str]]]:
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
            has_layer = any(hasattr(m, "abc_scales") for m in child.modules()) or any(
                f == prefix or f.startswith(prefix + ".") for f in planned)
            if not has_layer:
                raise ValueError(f"blocks: the branch {prefix} has no abcparam layer and none is being converted; a residual "
                                 "branch scales with width too (name its layers in roles= or widths=)")
        out.append((bname, block, chosen))
    return out


_FAST_PATH_LAYERS = (nn.TransformerEncoderLayer,)


class _VectorScales:
    """``abc_scales`` of a norm module of the model's own class, marked in place (a plain object: picklable)."""

    def __init__(self, scales: Dict[str, Any]) -> None:
        self.scales = scales

    def __call__(self) -> Dict[str, Any]:
        return dict(self.scales)


def _is_foreign_norm(mod: nn.Module, widths: frozenset) -> bool:
    """A norm of a class abcparam does not know (HF's LlamaRMSNorm): "norm" in its class name, and its own tensors
    only a width-sized gain (and bias)."""
    own = dict(mod.named_parameters(recurse=False))
    return (bool(own) and "norm" in type(mod).__name__.lower() and set(own) <= {"weight", "bias"}
            and all(p.dim() == 1 and p.shape[0] in widths for p in own.values()) and not hasattr(mod, "abc_scales"))


class _NoFastPath:
    """A forward pre-hook that does nothing: its presence keeps torch's transformer layers off their fused path."""

    def __call__(self, module: nn.Module, args: Any) -> None:
        return None


def _weighted(model: nn.Module) -> Dict[str, nn.Module]:
    """The abcparam layers with a weight multiplier (Linear, Conv1D, Embedding, TiedReadout; not norms)."""
    return {n: m for n, m in abc_modules(model).items() if hasattr(m, "weight_multiplier")}


def _plain_norm(mod: nn.Module) -> nn.Module:
    """torch's own norm holding a copy of an abcparam norm's tensors."""
    from .norms import LayerNorm

    if isinstance(mod, LayerNorm):
        plain: nn.Module = nn.LayerNorm(mod.normalized_shape, mod.eps, mod.elementwise_affine, mod.bias is not None, device="meta")
    else:
        plain = nn.RMSNorm(mod.normalized_shape, mod.eps, mod.elementwise_affine, device="meta")
    for n in ("weight", "bias"):
        t = getattr(mod, n, None)
        if t is not None:
            setattr(plain, n, nn.Parameter(t.detach().clone(), requires_grad=t.requires_grad))
    plain.train(mod.training)
    return plain


def _reached_attention(mod: nn.Module) -> bool:
    """An attention module whose scale is abcparam's already (abcparam's own modules, or one holding them)."""
    from .attention import MultiheadAttention, ScaledDotProductAttention

    return isinstance(mod, (MultiheadAttention, ScaledDotProductAttention)) or any(
        isinstance(m, ScaledDotProductAttention) for m in mod.modules())


def _plain_subclass(mod: nn.Module) -> bool:
    """``nn.Linear``/``nn.Embedding`` itself, or a subclass that keeps its forward and adds no tensors (torch's
    ``NonDynamicallyQuantizableLinear``, a marker class): converting it loses nothing."""
    base = nn.Linear if isinstance(mod, nn.Linear) else nn.Embedding
    own = {n for n, _ in mod.named_parameters(recurse=False)} - {"weight", "bias"}
    return type(mod).forward is base.forward and not own and not list(mod.children())


def _is_hf_conv1d(mod: nn.Module) -> bool:
    """HF transformers' Conv1D, recognised by structure (no import): a weight nx x nf and ``nf`` / ``nx``."""
    w = getattr(mod, "weight", None)
    return (type(mod).__name__ == "Conv1D" and isinstance(w, torch.Tensor) and w.dim() == 2
            and getattr(mod, "nf", None) == w.shape[1] and not hasattr(mod, "abc_scales"))


def _plan_ties(plan: List[Tuple[nn.Module, str, str, nn.Module, str]], param: Parametrization
               ) -> Dict[str, Tuple[nn.Module, str, nn.Module, str]]:
    """Readouts whose weight is an embedding's table: {readout name: (parent, attribute, readout, embedding name)};
    refused with the reason when the parametrization cannot train one tensor for both roles."""
    tables = {id(child.weight): fqn for _, _, fqn, child, _ in plan if isinstance(child, nn.Embedding)}
    ties = {}
    for parent, name, fqn, child, role in plan:
        if isinstance(child, nn.Linear) and id(child.weight) in tables:
            if role != "output":
                raise ValueError(f"roles: {fqn!r} shares its weight with the embedding {tables[id(child.weight)]!r}, so it "
                                 f"is a tied readout; give it the role 'output', not {role!r}")
            if not _can_tie(param):
                raise ValueError(
                    f"param: {fqn!r} is tied to the embedding {tables[id(child.weight)]!r}, but {param.name!r} gives the input "
                    "and output roles different init or learning-rate exponents, so one tensor cannot follow both; convert "
                    "with abcparam.mup(..., form='table8'), or untie the readout first"
                )
            ties[fqn] = (parent, name, child, tables[id(child.weight)])
    return ties


def _keep_weights(layer: nn.Module, child: nn.Module) -> None:
    """init='keep': the previous weight becomes the new layer's effective weight (stored = weight / multiplier);
    the layouts agree (Conv1D is replaced by abcparam's Conv1D, in x out like HF's)."""
    with torch.no_grad():
        layer.weight.copy_(child.weight / layer.weight_multiplier)
        if getattr(child, "bias", None) is not None:
            layer.bias.copy_(child.bias)


def _mha_unsupported(child: nn.MultiheadAttention) -> str:
    """Why abcparam.MultiheadAttention cannot replace this one ("" when it can)."""
    if child.bias_k is not None or child.add_zero_attn:
        return "nn.MultiheadAttention with add_bias_kv or add_zero_attn: not supported by abcparam.MultiheadAttention"
    if not child._qkv_same_embed_dim:
        return "nn.MultiheadAttention with kdim/vdim other than embed_dim: not supported by abcparam.MultiheadAttention"
    return ""


def _build_mha(child: nn.MultiheadAttention, param: Parametrization) -> nn.Module:
    from .attention import MultiheadAttention

    w = child.in_proj_weight
    return MultiheadAttention(child.embed_dim, child.num_heads, child.dropout, child.in_proj_bias is not None,
                              batch_first=child.batch_first, param=param, device=w.device, dtype=w.dtype)


def _build_norm(child: nn.Module, param: Parametrization) -> nn.Module:
    from .norms import LayerNorm, RMSNorm

    w = child.weight if child.weight is not None else None
    kw = {"device": w.device, "dtype": w.dtype} if w is not None else {}
    if isinstance(child, nn.LayerNorm):
        new: nn.Module = LayerNorm(child.normalized_shape, child.eps, child.elementwise_affine, child.bias is not None, param=param, **kw)
    else:
        new = RMSNorm(child.normalized_shape, child.eps, child.elementwise_affine, param=param, **kw)
    with torch.no_grad():  # a gain's init does not change with width: keep what the model had
        for n in ("weight", "bias"):
            if getattr(child, n, None) is not None:
                getattr(new, n).copy_(getattr(child, n))
    return new


def _build(child: nn.Module, role: str, param: Parametrization, kwargs: Dict[str, Any]) -> nn.Module:
    w = child.weight
    if isinstance(child, nn.Embedding):
        return Embedding(
            child.num_embeddings,
            child.embedding_dim,
            child.padding_idx,
            child.max_norm,
            child.norm_type,
            child.scale_grad_by_freq,
            child.sparse,
            param=param,
            device=w.device,
            dtype=w.dtype,
            **kwargs,
        )
    if _is_hf_conv1d(child):
        nx, nf = child.weight.shape
        return Conv1D(nx, nf, getattr(child, "bias", None) is not None, role=role, param=param, device=w.device, dtype=w.dtype,
                      **kwargs)
    return Linear(child.in_features, child.out_features, child.bias is not None, role=role, param=param, device=w.device, dtype=w.dtype, **kwargs)


# ---------------------------------------------------------------------------
# Export: abcparam layers -> plain torch modules that compute the same function, and back
# ---------------------------------------------------------------------------


def effective_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """``model.state_dict()`` with every abcparam weight replaced by its effective value ``multiplier * weight``.

    This is what a plain ``nn.Linear`` / ``nn.Embedding`` needs to compute the
    same function.  Folded layers (input layers and embeddings by default, and
    every layer of a ``param.canonical()`` model) already store it; hidden and
    output layers with a multiplier other than 1 do not, which is why loading
    ``model.state_dict()`` itself into plain modules gives another function
    unless m = 1.
    """
    sd = model.state_dict()
    for prefix, mod in _weighted(model).items():
        key = f"{prefix}.weight" if prefix else "weight"
        if key in sd and mod.weight_multiplier != 1.0:
            sd[key] = sd[key] * mod.weight_multiplier
    return sd


def to_torch(model: nn.Module, *, untie: bool = False) -> nn.Module:
    """A copy of ``model`` with every abcparam layer replaced by the plain torch module computing the same function.

    ``Linear``/``TiedReadout`` become ``nn.Linear`` and ``Embedding`` becomes
    ``nn.Embedding``, holding the effective weights (the multipliers folded in),
    so the copy runs, saves and loads anywhere without abcparam; the model
    itself is not changed.  A tied readout whose multiplier differs from its
    embedding's cannot share one plain tensor: pass ``untie=True`` to give it a
    copy of its own (the plain model then computes the same function but
    trains the two tensors separately), else it is refused.  Go back with
    :func:`from_torch`.

    >>> import torch, abcparam
    >>> p = abcparam.mup(256, 64)
    >>> net = torch.nn.Sequential(abcparam.Linear(8, 256, param=p), torch.nn.Tanh(), abcparam.Linear(256, 3, param=p))
    >>> plain = abcparam.to_torch(net)
    >>> type(plain[2]).__name__, torch.allclose(plain(torch.ones(2, 8)), net(torch.ones(2, 8)))
    ('Linear', True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    if not isinstance(untie, bool):
        raise TypeError(f"untie: expected True or False, got {untie!r}")
    layers = abc_modules(model)
    for name, mod in layers.items():
        if isinstance(mod, TiedReadout) and not untie:
            emb = next((m for m in layers.values() if isinstance(m, Embedding) and m.weight is mod.weight), None)
            if emb is None or emb.weight_multiplier != mod.weight_multiplier:
                raise ValueError(
                    f"model: the tied readout {name!r} multiplies the shared table by {mod.weight_multiplier:g} and its "
                    f"embedding by {1.0 if emb is None else emb.weight_multiplier:g}; one plain tensor cannot hold both. "
                    "Pass untie=True for a plain copy with separate (equal-function) tensors"
                )
    convs = [n for n, m in abc_modules(model).items() if isinstance(m, Conv1D)]
    if convs:
        raise ValueError(f"model: {', '.join(convs)} store their weight in x out (HF's Conv1D layout), which no plain torch "
                         "module has; effective_state_dict(model) gives their effective weights in that layout")
    eff = effective_state_dict(model)
    out = copy.deepcopy(model)
    replaced = abc_modules(out)
    tables: Dict[int, nn.Parameter] = {}
    for name, mod in replaced.items():
        if isinstance(getattr(mod, "abc_scales", None), _VectorScales):  # a foreign norm marked in place: unmark it
            del mod.abc_scales
            continue
        if not hasattr(mod, "weight_multiplier"):  # a norm: the plain torch module with the same tensors
            plain_norm = _plain_norm(mod)
            _set_module(out, name, plain_norm)
            continue
        w = eff[f"{name}.weight" if name else "weight"]
        if isinstance(mod, Embedding):
            plain: nn.Module = nn.Embedding(mod.num_embeddings, mod.embedding_dim, mod.padding_idx, mod.max_norm, mod.norm_type,
                                            mod.scale_grad_by_freq, mod.sparse, _weight=w.detach().clone(), _freeze=not mod.weight.requires_grad)
            tables[id(mod.weight)] = plain.weight
        else:
            plain = nn.Linear(mod.in_features, mod.out_features, mod.bias is not None, device="meta")
            plain.weight = nn.Parameter(w.detach().clone(), requires_grad=mod.weight.requires_grad)
            if mod.bias is not None:
                plain.bias = nn.Parameter(mod.bias.detach().clone(), requires_grad=mod.bias.requires_grad)
        plain.train(mod.training)
        _set_module(out, name, plain)
    if not untie:  # re-tie readouts whose multiplier equals their embedding's (checked above)
        for name, mod in replaced.items():
            if isinstance(mod, TiedReadout) and id(mod.weight) in tables:
                _get_module(out, name).weight = tables[id(mod.weight)]
    return out


def from_torch(model: nn.Module, source: Any) -> nn.Module:
    """Load a plain model's weights (or its state_dict) into ``model``'s abcparam layers, keeping the function.

    The inverse of :func:`to_torch`: ``source`` holds effective weights, and
    each abcparam layer stores ``effective / multiplier``.  Every key and shape
    is checked, and a tied table whose two plain copies disagree is refused,
    before ``model`` changes.  Returns ``model``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    if isinstance(source, nn.Module):
        source = source.state_dict()
    if not isinstance(source, Mapping):
        raise TypeError(f"source: expected an nn.Module or a state_dict, got {type(source).__name__}")
    mine = model.state_dict(keep_vars=True)
    missing = [k for k in mine if k not in source]
    extra = [k for k in source if k not in mine]
    if missing or extra:
        raise ValueError(f"source: keys differ from the model's (missing: {missing[:5]}, unexpected: {extra[:5]})")
    multipliers = {(f"{n}.weight" if n else "weight"): m.weight_multiplier for n, m in _weighted(model).items()}
    new: Dict[str, torch.Tensor] = {}
    by_tensor: Dict[int, Tuple[str, torch.Tensor]] = {}
    for key, tensor in mine.items():
        value = source[key]
        if not isinstance(value, torch.Tensor) or value.shape != tensor.shape:
            raise ValueError(f"source: {key} has shape {getattr(value, 'shape', None)}, the model's has {tuple(tensor.shape)}")
        stored = value.detach().to(tensor.dtype) / multipliers.get(key, 1.0)
        prev = by_tensor.get(id(tensor))
        if prev is not None:
            if not torch.allclose(prev[1], stored, rtol=1e-5, atol=1e-7):
                raise ValueError(f"source: {key} and {prev[0]} are one tied tensor in the model but differ in source")
            continue
        by_tensor[id(tensor)] = (key, stored)
        new[key] = stored
    with torch.no_grad():
        for key, stored in new.items():
            mine[key].copy_(stored)
    return model


def _get_module(root: nn.Module, name: str) -> nn.Module:
    return root.get_submodule(name) if name else root


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    if not name:
        raise ValueError("model: the model itself is an abcparam layer; export it with abcparam.to_torch(nn.Sequential(layer))")
    parent, _, child = name.rpartition(".")
    setattr(_get_module(root, parent), child, module)
