"""What :func:`abcparam.convert` did: the layers it replaced, the ones it left alone (with the reason), the rest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

__all__ = ["Converted", "ConversionReport"]


@dataclass(frozen=True)
class Converted:
    """One replaced (or marked) module: its qualified name, its kind, its role and its two sizes."""

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
    raw: List[Tuple[str, str, Tuple[int, ...]]] = field(default_factory=list)  # (tensor, role, shape)
    notes: List[Tuple[str, str]] = field(default_factory=list)  # (module, what was done to it instead of replacing it)
    # (embedding, its output factor, the factor abcparam.Embedding's alpha holds: the base width's)
    scales: List[Tuple[str, float, float]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"converted {len(self.converted)} layer(s):"]
        lines += [f"  {c.name or '<root>'}: {c.kind}{c.shape} -> {c.role}" for c in self.converted]
        drawn = [c for c in self.converted if c.role in ("input", "hidden", "output") and c.kind != "Linear (tied)"
                 or c.role == "vector" and c.kind.startswith("Conv")]  # a depthwise convolution's kernels are drawn too
        if drawn:
            lines.append(f"weights: {len(drawn)} layer(s) re-initialised by the parametrization, their previous weights "
                         "replaced (init='keep' keeps them)" if self.init == "reinit" else
                         f"weights: the previous weights of {len(drawn)} layer(s) kept as their effective weights (init='keep')")
        if self.raw:
            lines.append(f"raw tensors marked in place ({len(self.raw)}; their module's forward unchanged, the "
                         "multipliers folded into init and learning rate):")
            lines += [f"  {n}: {tuple(shape)} -> {role}" for n, role, shape in self.raw]
            lines += [f"  note: {n}: {why}" for n, why in self.notes]
        if self.skipped:
            lines.append(f"left {len(self.skipped)} layer(s) unchanged:")
            lines += [f"  {n}: {why}" for n, why in self.skipped]
        if self.attention:
            lines.append("attention scales set to the parametrization's (docs/theory.md section 14; the head dimension is "
                         "taken to grow with the width):")
            lines += [f"  {n}: {old:.6g} -> {new:.6g}" for n, old, new in self.attention]
        if self.scales:
            lines.append("embeddings that scale their output: the factor held at its base width's value as alpha "
                         "(docs/theory.md section 1):")
            lines += [f"  {n}: {old:.6g} -> {new:.6g}" for n, old, new in self.scales]
        if self.blocks:
            lines.append(f"residual blocks ({len(self.blocks)}; docs/theory.md section 12): each branch's output scaled by "
                         "m_L^-alpha with a forward hook, every tensor of the block trained with the depth factors; the "
                         "additions themselves stay in the model's forward, which abcparam does not rewrite:")
            lines += [f"  {b}: branches {', '.join(br)}" for b, br in self.blocks]
        return "\n".join(lines)
