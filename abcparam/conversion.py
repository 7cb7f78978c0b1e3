"""Model conversion: replace ``nn.Linear`` / ``nn.Embedding`` with abcparam layers in place.

One recursive routine, in the style of torchao's ``quantize_``: it walks the
model, asks a filter about each ``(module, qualified name)``, decides each
layer's role (from an explicit ``{name pattern: role}`` map, or from which of
its dimensions are width-sized), and swaps in a freshly initialised abcparam
layer on the same device and dtype.  Existing weights are not carried over:
the point of converting is the parametrization's own initialisation.

>>> import torch, abcparam
>>> net = torch.nn.Sequential(torch.nn.Linear(10, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
...                           torch.nn.ReLU(), torch.nn.Linear(256, 3))
>>> report = abcparam.convert(net, abcparam.mup(256, 64), widths=[256])
>>> [(c.name, c.role) for c in report.converted]
[('0', 'input'), ('2', 'hidden'), ('4', 'output')]
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from torch import nn

from .layers import Embedding, Linear
from .parametrizations import Parametrization

__all__ = ["convert", "ConversionReport", "Converted"]

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

    def __str__(self) -> str:
        lines = [f"converted {len(self.converted)} layer(s):"]
        lines += [f"  {c.name or '<root>'}: {c.kind}{c.shape} -> {c.role}" for c in self.converted]
        if self.skipped:
            lines.append(f"left {len(self.skipped)} layer(s) unchanged:")
            lines += [f"  {n}: {why}" for n, why in self.skipped]
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
    fan_in, fan_out = mod.in_features in widths, mod.out_features in widths
    if fan_in and fan_out:
        return "hidden", ""
    if fan_out:
        return "input", ""
    if fan_in:
        return "output", ""
    return None, f"no width-sized dimension ({mod.in_features} -> {mod.out_features})"


def convert(
    model: nn.Module,
    param: Parametrization,
    roles: Optional[Mapping[str, str]] = None,
    *,
    widths: Optional[Iterable[int]] = None,
    filter_fn: Optional[Callable[[nn.Module, str], bool]] = None,
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
    an error leaves it as it was.
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

    plan: List[Tuple[nn.Module, str, str, nn.Module, str]] = []
    report = ConversionReport()

    def visit(parent: nn.Module, prefix: str) -> None:
        for child_name, child in parent.named_children():
            fqn = f"{prefix}.{child_name}" if prefix else child_name
            if isinstance(child, (Linear, Embedding)):
                report.skipped.append((fqn, "already an abcparam layer"))
                continue
            if type(child) in (nn.Linear, nn.Embedding):
                if filter_fn is not None and not filter_fn(child, fqn):
                    report.skipped.append((fqn, "filter_fn said no"))
                    continue
                role = _role_from_map(fqn, roles)
                why = "role 'skip' in roles"
                if role is None and width_set:
                    role, why = _role_from_widths(fqn, child, width_set)
                elif role is None:
                    why = "matched no pattern in roles"
                if role in (None, "skip"):
                    report.skipped.append((fqn, why))
                    continue
                if isinstance(child, nn.Embedding) and role != "input":
                    raise ValueError(f"roles: embedding {fqn!r} can only be an input layer, got {role!r}")
                param.role(role)  # a missing role (mean field: no hidden) fails here, before any change
                plan.append((parent, child_name, fqn, child, role))
            else:
                visit(child, fqn)

    visit(model, "")
    new_layers = [(parent, name, fqn, _build(child, role, param, layer_kwargs), role, child) for parent, name, fqn, child, role in plan]
    for parent, name, fqn, layer, role, child in new_layers:
        setattr(parent, name, layer)
        kind = type(child).__name__
        shape = (child.in_features, child.out_features) if kind == "Linear" else (child.num_embeddings, child.embedding_dim)
        report.converted.append(Converted(fqn, kind, role, shape))
    return report


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
    return Linear(child.in_features, child.out_features, child.bias is not None, role=role, param=param, device=w.device, dtype=w.dtype, **kwargs)
