"""One handler per module kind that :func:`abcparam.convert` replaces or marks (docs/theory.md sections 7, 14).

The walk in :mod:`abcparam.conversion.walk` offers every child module to the
handlers of :data:`HANDLERS` in order; the first that claims it decides what
happens to it (a planned :class:`Change`, or a reason to leave it, recorded in
the report) and the walk does not go inside it.  A module no handler claims is
walked into.  Adding a module kind to ``convert`` is adding a handler here.

Every handler only *plans*: nothing changes in the model until every change
of the whole model has been prepared (built) without error, so a refusal
leaves the model as it was.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, List, Mapping, Optional, Tuple

from .. import torch_quiet  # noqa: F401  (torch without the numpy warning)
import torch
from torch import nn

from .. import conv
from ..conv import TORCH_CONVS, torch_conv
from ..attention import MultiheadAttention
from ..layers import Conv1D, Embedding, Linear, is_abc_layer, scales_for
from ..norms import LayerNorm, RMSNorm
from ..roles import refusal
from .plan import Change, Context, VectorScales
from .raw import plan_raw
from .report import Converted
from .widths import WidthSource

__all__ = ["Convolutions", "Handler", "HANDLERS", "ScaledEmbeddings", "Swap", "embedding_factor", "is_hf_conv1d"]

@dataclass
class Swap(Change):
    """Replace ``parent.attr`` (the module ``old``, named ``fqn``) by the module ``build(ctx)`` returns.

    With ``init="keep"``, ``keep(new, old)`` carries the old weights over first.
    """

    parent: nn.Module
    attr: str
    fqn: str
    old: nn.Module
    build: Callable[[Context], nn.Module]
    entry: Converted
    stage: str = "layer"
    role: str = ""
    keep: Optional[Callable[[nn.Module, nn.Module], None]] = None
    new: Optional[nn.Module] = None

    def prepare(self, ctx: Context) -> None:
        try:
            self.new = ctx.built[self.fqn] = self.build(ctx)
        except (ValueError, TypeError) as e:  # the layer's own check refused: say which module
            raise type(e)(f"convert: {self.fqn!r}: {e}") from e

    def install(self, ctx: Context) -> None:
        assert self.new is not None, "install before prepare"
        if ctx.init == "keep" and self.keep is not None:
            self.keep(self.new, self.old)
        setattr(self.parent, self.attr, self.new)
        ctx.report.converted.append(self.entry)


class Handler:
    """A module kind: ``claims`` says whether a module is of it; ``plan`` decides (a Change, or None with a reason)."""

    def claims(self, mod: nn.Module, fqn: str, ctx: Context) -> bool:
        raise NotImplementedError

    def plan(self, parent: nn.Module, attr: str, fqn: str, mod: nn.Module, ctx: Context) -> Optional[Change]:
        raise NotImplementedError


class AbcLayers(Handler):
    """A module that is an abcparam layer already: left as it is."""

    def claims(self, mod, fqn, ctx):
        return is_abc_layer(mod)

    def plan(self, parent, attr, fqn, mod, ctx):
        ctx.skip(fqn, "already an abcparam layer")
        return None


class TorchNorms(Handler):
    """``nn.LayerNorm`` / ``nn.RMSNorm``: abcparam's own, with the gains kept (a gain's init does not change with width)."""

    def claims(self, mod, fqn, ctx):
        return type(mod) in (nn.LayerNorm, getattr(nn, "RMSNorm", None)) and ctx.selected(mod, fqn)

    def plan(self, parent, attr, fqn, mod, ctx):
        def build(ctx: Context) -> nn.Module:
            w = mod.weight
            kw = {"device": w.device, "dtype": w.dtype} if w is not None else {}
            if isinstance(mod, nn.LayerNorm):
                new: nn.Module = LayerNorm(mod.normalized_shape, mod.eps, mod.elementwise_affine, mod.bias is not None,
                                           param=ctx.param, **kw)
            else:
                new = RMSNorm(mod.normalized_shape, mod.eps, mod.elementwise_affine, param=ctx.param, **kw)
            with torch.no_grad():
                for n in ("weight", "bias"):
                    if getattr(mod, n, None) is not None:
                        getattr(new, n).copy_(getattr(mod, n))
            return new

        d = tuple(mod.normalized_shape)[-1]
        return Swap(parent, attr, fqn, mod, build, Converted(fqn, type(mod).__name__, "vector", (d, d)), stage="norm")


class MultiheadAttentions(Handler):
    """``nn.MultiheadAttention`` whose embed_dim is a width: :class:`abcparam.MultiheadAttention` (hidden projections)."""

    def claims(self, mod, fqn, ctx):
        return isinstance(mod, nn.MultiheadAttention)

    def plan(self, parent, attr, fqn, mod, ctx):
        role = ctx.role_from_map(fqn)
        if role is None and ctx.widths is not None:
            role = "hidden" if ctx.widths.grows(fqn, mod, lambda m: (m.embed_dim,))[0] else None
        why = _mha_unsupported(mod)
        if why or role in (None, "skip") or not ctx.selected(mod, fqn):
            ctx.skip(fqn, why or ("its embed_dim is not a width" if role is None else "not selected"))
            return None
        if role != "hidden":
            raise ValueError(f"roles: {fqn!r} is a MultiheadAttention, whose projections are hidden layers; got {role!r}")

        def build(ctx: Context) -> nn.Module:
            w = mod.in_proj_weight
            return MultiheadAttention(mod.embed_dim, mod.num_heads, mod.dropout, mod.in_proj_bias is not None,
                                      batch_first=mod.batch_first, param=ctx.param, device=w.device, dtype=w.dtype)

        return Swap(parent, attr, fqn, mod, build, Converted(fqn, "MultiheadAttention", "hidden", (mod.embed_dim, mod.num_heads)),
                    stage="attention", keep=_keep_mha)


class WeightedLayers(Handler):
    """``nn.Linear``, ``nn.Embedding`` and HF's ``Conv1D``: abcparam's layer of the role ``roles`` or ``widths`` gives.

    A subclass with behaviour of its own is refused (replacing it would lose
    that behaviour); a marker subclass (torch's ``NonDynamicallyQuantizableLinear``)
    is converted.
    """

    def claims(self, mod, fqn, ctx):
        return isinstance(mod, (nn.Linear, nn.Embedding)) or is_hf_conv1d(mod)

    def plan(self, parent, attr, fqn, mod, ctx):
        if isinstance(mod, (nn.Linear, nn.Embedding)) and not _plain_subclass(mod):
            return _mark_subclass(fqn, mod, ctx)
        role, left = _role_or_left(fqn, mod, ctx, _role_from_widths)
        if role is None:
            return left
        if isinstance(mod, nn.Embedding) and role != "input":
            raise ValueError(f"roles: embedding {fqn!r} can only be an input layer, got {role!r}")
        shape = ((mod.in_features, mod.out_features) if isinstance(mod, nn.Linear) else
                 (mod.num_embeddings, mod.embedding_dim) if isinstance(mod, nn.Embedding) else tuple(mod.weight.shape))
        if not isinstance(mod, nn.Embedding) and ctx.widths is not None and ctx.widths.certain:
            refused = refusal(shape[0], shape[1], role, ctx.param)  # judged by one width's sizes alone
            if refused:  # the base build knows the role better than one width's shapes: keep the layer, mark it
                            return plan_raw(fqn, mod, ctx, known={"weight": role}, note=(
                    f"abcparam.Linear's shape check refuses role {role!r} ({refused}), which the base build gives it: "
                    "its tensors are marked in place"))
        return Swap(parent, attr, fqn, mod, lambda ctx: _build_layer(mod, role, ctx), Converted(fqn, type(mod).__name__, role, shape),
                    role=role, keep=_keep_weights)


class ScaledEmbeddings(Handler):
    """An ``nn.Embedding`` subclass whose forward is the table's rows times one constant factor c (HF's Gemma family
    multiplies by sqrt(embedding_dim)): :class:`abcparam.Embedding` with ``alpha`` = c as it is at the base width.

    Claims every ``nn.Embedding`` subclass with behaviour of its own; one whose forward is not a scaled table goes to
    :func:`_mark_subclass`, as :class:`WeightedLayers` would send it.

    A factor that grows with the width (c = sqrt(embedding_dim), in this build and in the base build) is a power of
    the width the model computes itself, which no parametrization predicts; a constant of the practical form is what
    it is at the base width (docs/theory.md section 1), so alpha = sqrt(embedding_dim / m) and the model is unchanged
    at the base width.  A factor that is the same in both builds (``base=``) stays as it is.  One that follows neither
    law, or any other factor when the widths are listed (one build cannot tell a constant from a power of the width),
    is left to :func:`_mark_subclass` (marked in place, its forward kept).  Replacing the module (rather than marking it)
    gives the width check its input layer and lets a readout that shares the table be tied.
    """

    def claims(self, mod, fqn, ctx):
        return isinstance(mod, nn.Embedding) and not is_abc_layer(mod) and not _plain_subclass(mod)

    def plan(self, parent, attr, fqn, mod, ctx):
        factor = embedding_factor(mod)
        held = None if factor is None else _held_factor(fqn, mod, factor, ctx)
        if held is None:  # not a scaled table, or a factor of another law: kept, its tensors marked
            return _mark_subclass(fqn, mod, ctx)
        what = f"{type(mod).__name__} (output x {factor:.6g})"
        role, left = _role_or_left(fqn, mod, ctx, _role_from_widths, what)
        if role is None:
            return left
        if role != "input":
            raise ValueError(f"roles: embedding {fqn!r} can only be an input layer, got {role!r}")

        def keep(layer: nn.Module, child: nn.Module) -> None:  # init='keep': the same output at the base width
            with torch.no_grad():
                layer.weight.copy_(child.weight * held / layer.weight_multiplier)

        def build(ctx: Context) -> nn.Module:
            layer = _build_layer(mod, role, ctx, alpha=held)
            ctx.report.scales.append((fqn, float(factor), held))  # type: ignore[arg-type]
            return layer

        shape = (mod.num_embeddings, mod.embedding_dim)
        return Swap(parent, attr, fqn, mod, build, Converted(fqn, what, role, shape), role=role, keep=keep)


def embedding_factor(mod: nn.Embedding) -> Optional[float]:
    """c when the module's own forward gives c times ``nn.Embedding.forward`` on a fixed probe (to float rounding; c
    not 1), else None.  The forward is called unbound, so no hook runs."""
    w = mod.weight
    if w.is_meta or w.dim() != 2 or list(mod.children()) or set(n for n, _ in mod.named_parameters(recurse=False)) != {"weight"}:
        return None
    probe = torch.randint(0, w.shape[0], (3, 4), generator=torch.Generator(device=w.device).manual_seed(0), device=w.device)
    try:
        with torch.no_grad():
            theirs, ours = type(mod).forward(mod, probe), nn.Embedding.forward(mod, probe)
    except Exception:  # a forward that needs more than the ids: not a scaled table
        return None
    if not isinstance(theirs, torch.Tensor) or theirs.shape != ours.shape or not float((ours * ours).sum()) > 0:
        return None
    c = float((theirs * ours).sum() / (ours * ours).sum())
    same = torch.allclose(theirs, c * ours, rtol=1e-4, atol=1e-6)
    return c if same and math.isfinite(c) and not math.isclose(c, 1.0, rel_tol=1e-6) else None


def _held_factor(fqn: str, mod: nn.Embedding, factor: float, ctx: Context) -> Optional[float]:
    """The factor at the base width: sqrt(embedding_dim / m) for one that is sqrt(embedding_dim) (in the base build
    too, when there is one), the factor itself when the base build has the same; None for any other law."""
    def is_root(emb: nn.Embedding, c: float) -> bool:
        return math.isclose(c, math.sqrt(emb.embedding_dim), rel_tol=1e-5)

    held_root = math.sqrt(float(Fraction(mod.embedding_dim) / ctx.param.width_mult)) if is_root(mod, factor) else None
    other = ctx.widths.counterpart(fqn, mod) if ctx.widths is not None else None
    if other is None:  # listed widths: one build, in which only the sqrt law can be told
        return held_root
    theirs = embedding_factor(other)
    if theirs is None:
        return None
    if math.isclose(theirs, factor, rel_tol=1e-5):
        return factor  # the same in both builds: a constant
    return held_root if is_root(other, theirs) else None


class ForeignNorms(Handler):
    """A norm of the model's own class (HF's ``LlamaRMSNorm``): its gains marked vector-like in place.

    Recognised by structure: "norm" in its class name, and its own tensors only
    a width-sized gain (and bias).
    """

    def claims(self, mod, fqn, ctx):
        own = dict(mod.named_parameters(recurse=False))
        return (bool(own) and "norm" in type(mod).__name__.lower() and set(own) <= {"weight", "bias"}
                and all(p.dim() == 1 for p in own.values()) and ctx.widths is not None
                and all(ctx.widths.grows(fqn, mod, lambda m: tuple(p.shape[0] for p in m.parameters(recurse=False))))
                and ctx.selected(mod, fqn))

    def plan(self, parent, attr, fqn, mod, ctx):
        return MarkVector(fqn, mod)


@dataclass
class MarkVector(Change):
    """Mark a foreign norm's tensors vector-like in place (an ``abc_scales`` attribute on the module)."""

    fqn: str
    mod: nn.Module
    stage: str = "marked norm"

    def install(self, ctx: Context) -> None:
        vector = scales_for(ctx.param.canonical(), "vector", (0,))
        self.mod.abc_scales = VectorScales({n: vector for n, _ in self.mod.named_parameters(recurse=False)})
        d = next(iter(self.mod.parameters())).shape[0]
        ctx.report.converted.append(Converted(self.fqn, f"{type(self.mod).__name__} (gains marked vector-like in place)",
                                              "vector", (d, d)))


class Convolutions(Handler):
    """``nn.Conv1d`` / ``Conv2d`` / ``Conv3d``: abcparam's convolution of the role ``roles`` or ``widths`` gives
    (docs/theory.md section 17): the channel counts decide as a Linear's features do, and a convolution whose number
    of groups is a width (depthwise) is vector-like.  A subclass with behaviour of its own is refused."""

    def claims(self, mod, fqn, ctx):
        return isinstance(mod, TORCH_CONVS)

    def plan(self, parent, attr, fqn, mod, ctx):
        base = torch_conv(mod)
        if type(mod).forward is not base.forward or list(mod.children()):
            ctx.skip(fqn, f"{type(mod).__name__} is a subclass of nn.{base.__name__} with behaviour of its own, which "
                          "replacing it would lose: not converted")
            return None
        role, left = _role_or_left(fqn, mod, ctx, _conv_role_from_widths)
        if role is None:
            return left

        def build(ctx: Context) -> nn.Module:
            w = mod.weight
            new = getattr(conv, base.__name__)(
                mod.in_channels, mod.out_channels, mod.kernel_size, mod.stride, mod.padding, mod.dilation, mod.groups,
                mod.bias is not None, mod.padding_mode, role=role, param=ctx.param, device=w.device, dtype=w.dtype,
                **ctx.layer_kwargs)
            return new

        shape = (mod.in_channels, mod.out_channels)
        return Swap(parent, attr, fqn, mod, build, Converted(fqn, base.__name__, role, shape), role=role, keep=_keep_weights)


# the kinds, in the order they are asked: the first that claims a module decides for it
HANDLERS: Tuple[Handler, ...] = (AbcLayers(), TorchNorms(), MultiheadAttentions(), ScaledEmbeddings(), WeightedLayers(),
                                 Convolutions(), ForeignNorms())


def is_hf_conv1d(mod: nn.Module) -> bool:
    """HF transformers' Conv1D, recognised by structure (no import): a weight nx x nf and ``nf`` / ``nx``."""
    w = getattr(mod, "weight", None)
    return (type(mod).__name__ == "Conv1D" and isinstance(w, torch.Tensor) and w.dim() == 2
            and getattr(mod, "nf", None) == w.shape[1] and not is_abc_layer(mod))


def _mark_subclass(fqn: str, mod: nn.Module, ctx: Context) -> Optional[Change]:
    """A Linear/Embedding subclass with behaviour of its own (Gemma's scaled embedding, a router with a forward of its
    own): replacing it would lose that behaviour, so its tensors are marked in place with the role its sizes give
    (:mod:`abcparam.conversion.raw`), its forward kept and said so."""
    base = "Linear" if isinstance(mod, nn.Linear) else "Embedding"
    what = (f"{type(mod).__name__} is a subclass of nn.{base} with behaviour of its own (its output on a probe "
            f"differs from nn.{base}'s)")
    role, left = _role_or_left(fqn, mod, ctx, _role_from_widths, what)
    if role is None:
        return left
    return plan_raw(fqn, mod, ctx, known={"weight": role},
                    note=f"{what}: its tensors are marked in place and its forward kept, with whatever scale or offset "
                         "of its own it applies")


def _role_or_left(fqn: str, mod: nn.Module, ctx: Context,
                  from_widths: Callable[[str, nn.Module, WidthSource], Tuple[Optional[str], str]],
                  what: str = "") -> Tuple[Optional[str], Optional[Change]]:
    """``(role, None)`` for a claimed module to convert; ``(None, change)`` for one left as it is: ``filter_fn`` or
    ``roles=`` leave it (no change; the skip is recorded, after ``what`` when given), or none of its sizes grows
    (marked in place at the base rate)."""
    if not ctx.selected(mod, fqn):
        ctx.skip(fqn, f"{what}; filter_fn said no" if what else "filter_fn said no")
        return None, None
    role = ctx.role_of(fqn, mod, lambda widths: from_widths(fqn, mod, widths))
    if role in (None, "fixed"):
        return None, (_mark_fixed(fqn, mod, ctx) if role else None)
    return role, None


def _mark_fixed(fqn: str, mod: nn.Module, ctx: Context) -> Optional[Change]:
    """A layer none of whose sizes changes between the model and its base (a low-rank projection of a fixed rank, a
    state-space layer's fixed heads): width-independent, its tensors are marked in place at the base rate."""
    return plan_raw(fqn, mod, ctx, known={n: "none" for n, _ in mod.named_parameters(recurse=False)},
                    note="no size changes between the model and its base: a fixed-size layer, trained at the base rate")


def _role_from_widths(name: str, mod: nn.Module, widths: WidthSource) -> Tuple[Optional[str], str]:
    if isinstance(mod, nn.Embedding):
        vocab, dim = widths.grows(name, mod, lambda m: (m.num_embeddings, m.embedding_dim))
        if vocab:
            raise ValueError(
                f"{widths.argument}: embedding {name!r} has num_embeddings={mod.num_embeddings}, which {widths.evidence}; "
                "cannot tell whether its vocabulary grows with width. Name its role in roles={...}"
            )
        if dim:
            return "input", ""
        if widths.certain:  # the builds compared: a fixed-size table (a factorised embedding's)
            return "fixed", ""
        return None, f"embedding_dim {mod.embedding_dim} is not a width"
    sizes: Callable[[nn.Module], Tuple[int, ...]] = (
        (lambda m: (m.in_features, m.out_features)) if isinstance(mod, nn.Linear) else (lambda m: tuple(m.weight.shape)))  # Conv1D: nx x nf
    d_in, d_out = sizes(mod)
    fan_in, fan_out = widths.grows(name, mod, sizes)
    if fan_in and fan_out:
        return "hidden", ""
    if fan_out:
        return "input", ""
    if fan_in:
        return "output", ""
    if widths.certain:  # the builds compared: nothing grows, for certain
        return "fixed", ""
    return None, f"no width-sized dimension ({d_in} -> {d_out})"


def _conv_role_from_widths(name: str, mod: nn.Module, widths: WidthSource) -> Tuple[Optional[str], str]:
    """A convolution's role from which channel counts are widths; vector-like when its number of groups is one."""
    c_in, c_out = mod.in_channels, mod.out_channels
    if mod.groups > 1 and mod.groups == c_in == c_out:
        # depthwise: one kernel per channel, of fan-in the kernel size, vector-like whatever the channel count, so a
        # count that moves in another ratio than the widths' (n + 2 d_state in a state-space layer) is no ambiguity
        changes = widths.grows(name, mod, lambda m: (m.groups,), any_ratio=True)[0]
        return ("vector" if changes else "fixed" if widths.certain else None), ("" if changes else f"no width-sized channel count ({c_in} -> {c_out})")
    wide_in, wide_out, wide_groups = widths.grows(name, mod, lambda m: (m.in_channels, m.out_channels, m.groups))
    if mod.groups > 1 and wide_groups:
        return "vector", ""
    role = {(True, True): "hidden", (False, True): "input", (True, False): "output"}.get((wide_in, wide_out))
    if role is None and not wide_groups and widths.certain:  # the builds compared: nothing grows
        return "fixed", ""
    return role, ("" if role else f"no width-sized channel count ({c_in} -> {c_out})")


def _plain_subclass(mod: nn.Module) -> bool:
    """``nn.Linear``/``nn.Embedding`` itself, or a subclass that adds no tensors and either keeps its forward (torch's
    ``NonDynamicallyQuantizableLinear``, a marker class) or computes the same function (Falcon's ``FalconLinear``
    writes its own matmul): converting it loses nothing."""
    base = nn.Linear if isinstance(mod, nn.Linear) else nn.Embedding
    own = {n for n, _ in mod.named_parameters(recurse=False)} - {"weight", "bias"}
    if own or list(mod.children()):
        return False
    return type(mod).forward is base.forward or _computes_as_base(mod, base)


def _computes_as_base(mod: nn.Module, base: type) -> bool:
    """Whether the subclass's own forward gives ``base.forward``'s output on a fixed probe (agreement to float
    rounding: the same function written another way).  The forward is called unbound, so no hook runs."""
    w = mod.weight
    if w.is_meta or w.dim() != 2:
        return False
    g = torch.Generator(device=w.device).manual_seed(0)
    if base is nn.Linear:
        probe = torch.randn(3, w.shape[1], generator=g, device=w.device).to(w.dtype)
    else:
        probe = torch.randint(0, w.shape[0], (3, 4), generator=g, device=w.device)
    try:
        with torch.no_grad():
            theirs, ours = type(mod).forward(mod, probe), base.forward(mod, probe)
    except Exception:  # a forward that needs more than one input, or another kind of input: not a plain layer
        return False
    return isinstance(theirs, torch.Tensor) and theirs.shape == ours.shape and torch.allclose(theirs, ours, rtol=1e-4, atol=1e-6)


def _mha_unsupported(child: nn.MultiheadAttention) -> str:
    """Why abcparam.MultiheadAttention cannot replace this one ("" when it can)."""
    if child.bias_k is not None or child.add_zero_attn:
        return "nn.MultiheadAttention with add_bias_kv or add_zero_attn: not supported by abcparam.MultiheadAttention"
    if not child._qkv_same_embed_dim:
        return "nn.MultiheadAttention with kdim/vdim other than embed_dim: not supported by abcparam.MultiheadAttention"
    return ""


def _build_layer(child: nn.Module, role: str, ctx: Context, alpha: float = 1.0) -> nn.Module:
    """abcparam's layer for ``child`` in ``role``; ``alpha`` multiplies the multiplier ``layer_kwargs`` give (default 1)."""
    w, kwargs = child.weight, dict(param=ctx.param, device=child.weight.device, dtype=child.weight.dtype, **ctx.layer_kwargs)
    if alpha != 1.0:
        kwargs["alpha"] = kwargs.get("alpha", 1.0) * alpha
    if isinstance(child, nn.Embedding):
        return Embedding(child.num_embeddings, child.embedding_dim, child.padding_idx, child.max_norm, child.norm_type,
                         child.scale_grad_by_freq, child.sparse, **kwargs)
    if is_hf_conv1d(child):
        nx, nf = w.shape
        return Conv1D(nx, nf, getattr(child, "bias", None) is not None, role=role, **kwargs)
    return Linear(child.in_features, child.out_features, child.bias is not None, role=role, **kwargs)


def _keep_weights(layer: nn.Module, child: nn.Module) -> None:
    """init='keep': the previous weight becomes the new layer's effective weight (stored = weight / multiplier);
    the layouts agree (Conv1D is replaced by abcparam's Conv1D, in x out like HF's)."""
    with torch.no_grad():
        layer.weight.copy_(child.weight / layer.weight_multiplier)
        if getattr(child, "bias", None) is not None:
            layer.bias.copy_(child.bias)


def _keep_mha(layer: nn.Module, child: nn.Module) -> None:
    """init='keep' for attention: the packed input projection and the output projection, each over its multiplier."""
    with torch.no_grad():
        layer.in_proj_weight.copy_(child.in_proj_weight / layer.in_proj_multiplier)
        layer.out_proj.weight.copy_(child.out_proj.weight / layer.out_proj.weight_multiplier)
        for mine, theirs in ((layer.in_proj_bias, child.in_proj_bias), (layer.out_proj.bias, child.out_proj.bias)):
            if mine is not None:
                mine.copy_(theirs)


def unmatched_patterns(model: nn.Module, roles: Mapping[str, str]) -> List[str]:
    """The ``roles`` patterns that name no module of ``model`` and no tensor (a raw tensor's role is named by its
    full name)."""
    names = [n for n, _ in model.named_modules() if n] + [n for n, _ in model.named_parameters()]
    return [pat for pat in roles if not any(fnmatch.fnmatchcase(n, pat) for n in names)]
