"""The exact theory of depth: residual branches scaled by L^-alpha (docs/theory.md section 12).

A residual network ``h^{k+1} = h^k + L^-alpha F_k(h^k)``, k = 1..L, whose block
tensors train with learning rate ``eta L^-c_L``.  Depth acts exactly as width
does, through exponents of L, and this module decides, with exact fractions,
what happens as L grows:

* the residual stream at initialisation: L blocks of size L^-alpha add up like
  a random walk, ``L^(1/2 - alpha)`` next to the Theta(1) embedding;
* a block's own update acting on its input, ``(W_t - W_0) x``: of size
  ``L^u`` with ``u = -c_L`` for normalised optimizers (Adam-like, spectral,
  relative: the branch factor L^-alpha in the gradient is normalised away) and
  ``u = -(c_L + alpha)`` for SGD-like ones (the gradient keeps it);
* the change of the residual stream: L blocks, each moving it by
  ``L^(-alpha + u)``, all in a correlated direction: ``L^(1 - alpha + u)``.

Stable in depth: the stream neither blows up at init (alpha >= 1/2) nor in
training (1 - alpha + u <= 0), and no block's own update blows up (u <= 0).
Nontrivial: the blocks together move the stream by Theta(1)
(1 - alpha + u = 0).  Then every block *learns features* when u = 0
(CompleteP, alpha = 1) and is *lazy* (linear around its initialisation) when
u < 0 (Depth-muP, alpha = 1/2: u = -1/2).

Pure Python, no torch.

>>> v = classify_depth(1, optimizer="adam")
>>> v.regime, str(v.lr_exponent), str(v.block_update)
('feature_learning', '0', '0')
>>> classify_depth("1/2", optimizer="adam").regime
'lazy'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Dict, Optional, Tuple

from .exponents import exponent, optimizer_family

__all__ = ["DepthVerdict", "classify_depth", "depth_lr_exponent", "DEPTH_REGIMES"]

HALF = Fraction(1, 2)


def _L(x: Fraction) -> str:
    """Render L^x."""
    return f"L^{x}" if x.denominator == 1 and x >= 0 else f"L^({x})"


DEPTH_REGIMES = ("feature_learning", "lazy", "trivial", "unstable")


def depth_lr_exponent(alpha: Any, optimizer: Any = "adam") -> Fraction:
    """c_L of the maximal-update rule for branch exponent ``alpha``: the block learning rate is eta L^-c_L with
    c_L = 1 - alpha (normalised families) or 1 - 2 alpha (SGD-like), section 12.

    >>> str(depth_lr_exponent("1/2", "adam")), str(depth_lr_exponent(1, "sgd"))
    ('1/2', '-1')
    """
    a = exponent(alpha, "alpha")
    return 1 - 2 * a if optimizer_family(optimizer) == "sgd" else 1 - a


@dataclass(frozen=True)
class DepthVerdict:
    """The verdict on a depth rule (docs/theory.md section 12).

    Exponents are growth exponents in L (the number of blocks): the residual
    stream at init is Theta(L^stream_init), its change Theta(L^stream_change),
    a block's own update acting on its input Theta(L^block_update).  The
    branch multiplier is L^-alpha and the block learning rate eta L^-lr_exponent.
    """

    alpha: Fraction
    lr_exponent: Fraction
    optimizer: str
    stream_init: Fraction
    stream_change: Fraction
    block_update: Fraction
    stable_at_init: bool
    stable: bool
    nontrivial: bool
    regime: str
    reasons: Tuple[str, ...]
    name: Optional[str] = None

    @property
    def blocks_learn_features(self) -> bool:
        return self.regime == "feature_learning"

    def predicted(self) -> Dict[str, Fraction]:
        """Slopes against log L a depth coordinate check should measure, by quantity name."""
        return {"stream": self.stream_init, "dstream": self.stream_change, "block": self.block_update}

    def __str__(self) -> str:
        head = f"{self.name + ': ' if self.name else ''}{self.regime}"
        lines = [
            f"depth verdict: {head}  (branch multiplier {_L(-self.alpha)}, block learning rate ~ {_L(-self.lr_exponent)}, "
            f"optimizer {self.optimizer})",
            f"residual stream at init ~ {_L(self.stream_init)}, its change ~ {_L(self.stream_change)}, "
            f"a block's own update ~ {_L(self.block_update)}; "
            f"stable in depth: {'yes' if self.stable else 'no'}, nontrivial: {'yes' if self.nontrivial else 'no'}",
            "reasons:",
        ]
        lines.extend(f"  - {r}" for r in self.reasons)
        return "\n".join(lines)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name, "alpha": str(self.alpha), "lr_exponent": str(self.lr_exponent), "optimizer": self.optimizer,
            "stream_init": str(self.stream_init), "stream_change": str(self.stream_change),
            "block_update": str(self.block_update), "stable_at_init": self.stable_at_init, "stable": self.stable,
            "nontrivial": self.nontrivial, "regime": self.regime, "reasons": list(self.reasons),
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)


_NAMES = {Fraction(1): "completep", HALF: "depth_mup"}


def classify_depth(alpha: Any, *, optimizer: Any = "adam", lr_exponent: Any = None) -> DepthVerdict:
    """Decide exactly what a depth rule does as the number of blocks L grows (section 12).

    ``alpha``: the branch multiplier is L^-alpha (0: no depth scaling, what
    most code does; 1/2 Depth-muP; 1 CompleteP).  ``lr_exponent``: c_L, the
    block learning rate being eta L^-c_L; default the rule's own
    (:func:`depth_lr_exponent`), so the verdict is that of the published rule.

    >>> v = classify_depth(0, lr_exponent=0)
    >>> v.regime, str(v.stream_change)
    ('unstable', '1')
    """
    a = exponent(alpha, "alpha")
    fam = optimizer_family(optimizer)
    c = depth_lr_exponent(a, fam) if lr_exponent is None else exponent(lr_exponent, "lr_exponent")
    u = -c if fam != "sgd" else -(c + a)
    init = max(Fraction(0), HALF - a)
    change = 1 - a + u
    reasons = []
    init_ok = a >= HALF
    if not init_ok:
        reasons.append(f"stream at init: alpha = {a} < 1/2, the L branches add up to {_L(HALF - a)}: it blows up with depth")
    train_ok = True
    if change > 0:
        train_ok = False
        reasons.append(f"stream change: 1 - alpha + u = {change} > 0, the blocks together move the stream by {_L(change)}: it blows up")
    if u > 0:
        train_ok = False
        reasons.append(f"block update: u = {u} > 0, each block's own update blows up like {_L(u)}")
    stable = init_ok and train_ok
    nontrivial = stable and change == 0
    why_u = "u = -c_L" if fam != "sgd" else "u = -(c_L + alpha) (an SGD-like gradient keeps the branch factor)"
    if not stable:
        regime = "unstable"
    elif change < 0:
        regime = "trivial"
        reasons.append(f"stream change: 1 - alpha + u = {change} < 0, the blocks' updates vanish like {_L(change)} (trivial in depth)")
    else:
        reasons.append("stream change: 1 - alpha + u = 0, the blocks together move the stream by Theta(1) (nontrivial)")
        if u == 0:
            regime = "feature_learning"
            reasons.append(f"block update: {why_u} = 0, every block's own update moves its features by Theta(1) (blocks learn features)")
        else:
            regime = "lazy"
            reasons.append(f"block update: {why_u} = {u} < 0, each block's own update vanishes like {_L(u)}: the blocks are lazy "
                           "(linear around their initialisation) as depth grows")
    return DepthVerdict(a, c, fam, init, change, u, init_ok, stable, nontrivial, regime, tuple(reasons),
                        _NAMES.get(a) if c == depth_lr_exponent(a, fam) else None)
