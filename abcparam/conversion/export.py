"""Back from abcparam layers to plain torch modules computing the same function, and forth (the multipliers folded).

:func:`effective_state_dict` is the state_dict a plain model needs;
:func:`to_torch` builds that plain model; :func:`from_torch` loads a plain
model's weights back into abcparam layers.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, Mapping, Tuple

from .. import torch_quiet  # noqa: F401  (torch without the numpy warning)
import torch
from torch import nn

from ..conv import TORCH_CONVS, torch_conv
from ..layers import Conv1D, Embedding, TiedReadout, abc_modules
from .plan import VectorScales

__all__ = ["effective_state_dict", "from_torch", "to_torch"]


def _weighted(model: nn.Module) -> Dict[str, nn.Module]:
    """The abcparam layers with a weight multiplier (Linear, Conv1D, Embedding, TiedReadout, convolutions; not norms)."""
    return {n: m for n, m in abc_modules(model).items() if hasattr(m, "weight_multiplier")}


def _plain_norm(mod: nn.Module) -> nn.Module:
    """torch's own norm holding a copy of an abcparam norm's tensors (and running statistics)."""
    from ..norms import LayerNorm

    if isinstance(mod, LayerNorm):
        plain: nn.Module = nn.LayerNorm(mod.normalized_shape, mod.eps, mod.elementwise_affine, mod.bias is not None, device="meta")
    elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
        plain = type(mod)._torch_norm(mod.num_features, mod.eps, mod.momentum, mod.affine, mod.track_running_stats, device="meta")
    elif isinstance(mod, nn.GroupNorm):
        plain = nn.GroupNorm(mod.num_groups, mod.num_channels, mod.eps, mod.affine, device="meta")
    else:
        plain = nn.RMSNorm(mod.normalized_shape, mod.eps, mod.elementwise_affine, device="meta")
    for n in ("weight", "bias"):
        t = getattr(mod, n, None)
        if t is not None:
            setattr(plain, n, nn.Parameter(t.detach().clone(), requires_grad=t.requires_grad))
    for n, b in mod.named_buffers(recurse=False):
        setattr(plain, n, None if b is None else b.detach().clone())
    plain.train(mod.training)
    return plain


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

    ``Linear``/``TiedReadout`` become ``nn.Linear``, ``Embedding`` becomes
    ``nn.Embedding``, convolutions and norms torch's own, holding the effective weights (the multipliers folded in),
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
        if isinstance(getattr(mod, "abc_scales", None), VectorScales):  # a foreign norm marked in place: unmark it
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
            if isinstance(mod, TORCH_CONVS):
                plain = torch_conv(mod)(mod.in_channels, mod.out_channels, mod.kernel_size, mod.stride, mod.padding,
                                        mod.dilation, mod.groups, mod.bias is not None, mod.padding_mode, device="meta")
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
