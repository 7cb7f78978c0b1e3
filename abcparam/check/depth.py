"""The depth coordinate check: measure how a residual network scales with its number of blocks.

``depth_check(build, depths, batch, ...)`` (also ``coord_check(build,
depths=..., batch=...)``) builds ``build(depth)`` at a fixed width for each
depth, trains it for a few steps and fits slopes against log depth of the
quantities of docs/theory.md section 12, then compares them with
:func:`abcparam.classify_depth` for the model's depth rule.  The output alone
cannot tell the rules apart when the network ends in a norm, so the check
looks inside.  What it measures and what it predicts is declared in one place,
:data:`QUANTITIES`:

``stream``   the residual stream after the last residual branch, at
             initialisation: predicted L^(max(0, 1/2 - alpha)).
``dstream``  the change of that stream after t steps: L^(1 - alpha + u).
``block``    each branch's own update acting on its input,
             RMS((W_t - W_0) x_t) of the branch's first abcparam layer,
             averaged (in square) over the branches: L^u.
``embed``    the change of every abcparam input layer outside the branches
             (embeddings): L^0, since depth rules leave it alone.
``readout``  the readout's own update, RMS of its effective W_t - W_0: L^0
             (its entries, not their action on the features: a readout to a
             few outputs gives too few numbers for a steady action).
``df``       the output's change: measured, not predicted (a final norm hides
             the stream's growth).

The depth rule comes from the model: the residual branches' alpha (from their
parametrization's ``depth_alpha``) when their m_L grows in proportion to the
depth, or "no depth scaling" (alpha = 0) when it does not (branches built
without ``depth=``); ``alpha=`` overrides it.  The optimizer family comes from
the wrapped optimizer.  Decisions use :mod:`abcparam.check.stats` with depth in
place of width.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .. import torch_quiet  # noqa: F401  (torch without the numpy warning)
import torch
import torch.nn.functional as F
from torch import nn

from .. import validate
from . import stats
from .decision import DEFAULT_TOLERANCE, TOLERANCE_IS, Fit, SizeRun
from .engine import Batch, default_loss, make_optimizer, observe, output_tensor, rms, seeded_build, split_batch, train_step
from .plot import slopes_figure
from ..theory.depth import DepthVerdict, classify_depth
from ..layers import Conv1D, abc_modules, is_abc_layer
from ..residual import DepthScales, Residual, depth_of, is_branch

__all__ = ["depth_check", "DepthReport", "QUANTITIES"]

# name: (what is measured, the verdict's prediction or None for "measured only"); docs/theory.md section 12.
QUANTITIES: Dict[str, Tuple[str, Optional[Callable[[DepthVerdict], Fraction]]]] = {
    "stream": ("RMS of the residual stream after the last branch, at init", lambda v: v.stream_init),
    "dstream": ("RMS of the change of that stream", lambda v: v.stream_change),
    "block": ("RMS of (W_t - W_0) x_t at each branch's first abcparam layer, over the branches", lambda v: v.block_update),
    "embed": ("RMS of the change of an abcparam input layer outside the branches", lambda v: Fraction(0)),
    "readout": ("RMS of the readout's effective update W_t - W_0", lambda v: Fraction(0)),
    "df": ("RMS of the change of the model output", None),
}


@dataclass
class DepthReport(SizeRun):
    """Result of :func:`depth_check`: fitted slopes against log depth, the depth verdict, the decision."""

    depths: List[int]
    verdict: DepthVerdict
    expect: Optional[str] = None
    notes: List[str] = field(default_factory=list)
    nonfinite: List[Tuple[int, int]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def _decide(self) -> Tuple[str, str]:
        v = self.verdict
        if self.nonfinite:
            return "fail", f"non-finite values (the run diverged), first at depth {self.nonfinite[0][0]}, seed {self.nonfinite[0][1]}"
        if self.expect is not None and v.regime != self.expect:
            return "fail", f"the depth rule is {v.regime} in theory, expected {self.expect}"
        if self.mismatches:
            return "fail", "the measurements disagree with the depth theory"
        if v.regime == "unstable":
            if any(f.status == "agree" for f in self.fits):
                return "fail", "the measurements agree with the theory that the network is UNSTABLE in depth"
            return "inconclusive", "the theory says unstable in depth, but nothing measurably grows at these depths"
        if self.undecided:
            settle = sorted({f.settle for f in self.undecided if f.settle})
            return "inconclusive", ("nothing disagrees, but the measurements cannot decide "
                                    + ", ".join(f"{f.layer} {f.quantity}@{f.step}" for f in self.undecided[:4])
                                    + (f"; would settle it: {'; '.join(settle)}" if settle else ""))
        return "pass", f"the measurements agree with the depth theory ({v.regime})"

    def summary(self) -> str:
        lines = [
            f"depth check: depths {self.depths}, {self.steps} step(s), seeds {self.seeds}, optimizer {self.family}, "
            f"lr {self.lr:g}, tolerance {self.tolerance:g}",
            f"theory: {self.verdict.regime} (alpha = {self.verdict.alpha}, block lr ~ L^({-self.verdict.lr_exponent}))"
            + (f"; expected: {self.expect}" if self.expect else ""),
            self.outcome(),
        ]
        if self.mismatches:
            lines.append("disagreeing with the theory: " + ", ".join(
                f"{f.layer} {f.quantity}@{f.step}: {f.slope:+.2f} vs {f.predicted} ({f.reason})" for f in self.mismatches))
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _rows(self) -> List[Tuple[str, ...]]:
        rows: List[Tuple[str, ...]] = [("what", "quantity", "step", "measured", "noise", "predicted", "decision")]
        for f in self.fits:
            pred = "-" if f.predicted is None else str(f.predicted) + (" (bound)" if self.verdict.regime == "unstable" else "")
            dec = {"agree": "yes", "disagree": "NO", "inconclusive": "?"}.get(f.status, "-")
            rows.append((f.layer, f.quantity, str(f.step), "n/a" if not math.isfinite(f.slope) else f"{f.slope:+.2f}",
                         f"{f.noise:.2f}" if f.predicted is not None else "-", pred, dec))
        return rows

    def to_dict(self) -> Dict[str, Any]:
        v = self.verdict
        return {
            "depths": self.depths, "steps": self.steps, "seeds": self.seeds, "family": self.family, "lr": self.lr,
            "tolerance": self.tolerance, "theory_regime": v.regime, "alpha": str(v.alpha),
            "block_lr_exponent": str(v.lr_exponent), "expect": self.expect, "passed": self.passed, "status": self.status,
            "outcome": self.outcome(), "nonfinite": [{"depth": d, "seed": sd} for d, sd in self.nonfinite],
            "fits": self.fit_records(), "notes": self.notes,
        }

    def plot(self, path: Optional[str] = None) -> Any:
        """The depth-check figure: one panel per step, log RMS against log depth, a line per measured quantity,
        dotted lines with the predicted slopes.  Needs matplotlib; returns the figure and saves it to ``path``."""
        keys = list(dict.fromkeys((f.layer, f.quantity, f.step) for f in self.fits))
        return slopes_figure(self.depths, self.rms, self.fits, sorted({k[2] for k in keys}),
                             lambda step: [(f"{k[0]} {k[1]}", k) for k in keys if k[2] == step],
                             lambda step: "init" if step == 0 else f"step {step}", "depth",
                             f"depth theory {self.verdict.regime}: {self.outcome()}", path)


def _branches(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """Residual branches in module order: :class:`abcparam.Residual` modules and modules marked with mark_branch."""
    return [(n, m) for n, m in model.named_modules() if is_branch(m)]


def _first_layer(branch: nn.Module) -> Optional[nn.Module]:
    for m in branch.modules():
        if is_abc_layer(m) and hasattr(m, "role") and isinstance(getattr(m, "weight", None), torch.Tensor) \
                and getattr(m, "weight").dim() == 2:
            return m
    return None


def _own_update(layer: nn.Module, w0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(W_t - W_0) x through the layer's effective weight (its multiplier applied)."""
    dw = (layer.weight.detach() - w0) * float(getattr(layer, "weight_multiplier", 1.0))
    return x @ dw if isinstance(layer, Conv1D) else F.linear(x, dw)  # Conv1D stores its weight in x out


def _measure(build: Callable[[int], nn.Module], depth: int, seed: int, batch: Batch, optimizer: Any, lr: float, steps: int,
             loss_fn: Callable[[Any, Any], torch.Tensor], family: Optional[str], perturb: Optional[Callable[..., None]]
             ) -> Tuple[Dict[Tuple[str, str, int], float], Dict[str, Any]]:
    model = seeded_build(build, depth, seed)
    branches = _branches(model)
    if not branches:
        raise ValueError(
            "build: the model has no residual branch (abcparam.Residual, or a module marked with abcparam.mark_branch); "
            "the depth check measures the residual stream and the blocks, which it finds through them"
        )
    in_branch = {id(m) for _, b in branches for m in b.modules()}
    layers = abc_modules(model)
    embeds = {n: m for n, m in layers.items() if getattr(m, "role", None) == "input" and id(m) not in in_branch}
    readouts = {n: m for n, m in layers.items() if getattr(m, "role", None) == "output" and id(m) not in in_branch}
    firsts = [(n, _first_layer(b)) for n, b in branches]
    firsts = [(n, f) for n, f in firsts if f is not None]
    opts = make_optimizer(optimizer, model, lr, family)
    if perturb is not None:
        perturb(model, opts)
    fam = None
    for o in opts:
        for g in o.param_groups:
            if firsts and any(p is firsts[0][1].weight for p in g["params"]):
                fam = g.get("abc_family")
    info = {"family": fam, "depth_scales": [depth_of(b) for _, b in branches], "n_branches": len(branches)}

    # hooks: the last branch's input and output (the stream after it), inputs of the first layers and readouts,
    # outputs of the embeddings
    seen: Dict[str, Any] = {}
    handles = []
    last_name, last = branches[-1]

    def keep_io(key: str) -> Callable[..., None]:
        def hook(mod: nn.Module, args: Any, out: Any) -> None:
            seen[key + ".in"] = args[0] if args and isinstance(args[0], torch.Tensor) else None
            seen[key + ".out"] = out[0] if isinstance(out, (tuple, list)) else out
        return hook

    stream_ok = isinstance(last, Residual)
    handles.append(last.register_forward_hook(keep_io("last")))
    for n, f in firsts:
        handles.append(f.register_forward_hook(keep_io("first:" + n)))
    for n, m in {**embeds, **readouts}.items():
        handles.append(m.register_forward_hook(keep_io("layer:" + n)))
    args, kwargs, y = split_batch(batch)
    w0 = {n: f.weight.detach().clone() for n, f in firsts}
    r0 = {n: m.weight.detach().clone() for n, m in readouts.items()}
    values: Dict[Tuple[str, str, int], float] = {}

    def look() -> Dict[str, torch.Tensor]:
        seen.clear()
        out = observe(model, args, kwargs)
        snap = {k: v.detach().clone() for k, v in seen.items() if isinstance(v, torch.Tensor)}
        f = output_tensor(out)
        if f is not None:
            snap["output"] = f.detach().float().clone()
        return snap

    try:
        s0 = look()
        if stream_ok and "last.in" in s0 and "last.out" in s0 and s0["last.in"].shape == s0["last.out"].shape:
            values[("stream", "stream", 0)] = rms(s0["last.in"] + s0["last.out"])
        for step in range(1, steps + 1):
            train_step(model, opts, loss_fn, args, kwargs, y)
            _record_step(values, step, look(), s0, firsts, w0, embeds, readouts, r0)
    finally:
        for h in handles:
            h.remove()
    info["stream_ok"] = stream_ok
    return values, info



def _record_step(values: Dict[Tuple[str, str, int], float], step: int, st: Dict[str, torch.Tensor], s0: Dict[str, torch.Tensor],
                 firsts: List[Tuple[str, nn.Module]], w0: Dict[str, torch.Tensor], embeds: Dict[str, nn.Module],
                 readouts: Dict[str, nn.Module], r0: Dict[str, torch.Tensor]) -> None:
    """The depth check's quantities after ``step`` updates, from the snapshot ``st`` against the initial ``s0``: the
    residual stream's change, the blocks' own updates (RMS over the branches' first layers), the embeddings' and
    readouts' changes and the output's."""
    if ("stream", "stream", 0) in values:
        values[("stream", "dstream", step)] = rms((st["last.in"] + st["last.out"]) - (s0["last.in"] + s0["last.out"]))
    sq = [float(_own_update(f, w0[n], st["first:" + n + ".in"]).double().pow(2).mean())
          for n, f in firsts if "first:" + n + ".in" in st]
    if sq:
        values[("blocks", "block", step)] = math.sqrt(sum(sq) / len(sq))
    for n in embeds:
        values[(n, "embed", step)] = rms(st["layer:" + n + ".out"] - s0["layer:" + n + ".out"])
    for n, m in readouts.items():
        values[(n, "readout", step)] = rms((m.weight.detach() - r0[n]) * float(getattr(m, "weight_multiplier", 1.0)))
    if "output" in st and "output" in s0:
        values[("output", "df", step)] = rms(st["output"] - s0["output"])


def _rule(infos: List[Dict[str, Any]], depths: List[int], alpha: Any) -> Tuple[Fraction, bool, str]:
    """The model's depth rule: (alpha, whether the branches scale with depth, a note)."""
    scales = [ds for info in infos for ds in info["depth_scales"] if isinstance(ds, DepthScales)]
    alphas = {ds.alpha for ds in scales}
    if len(alphas) > 1:
        raise ValueError(f"build: the residual branches declare different depth_alpha values ({', '.join(sorted(alphas))})")
    ratios = [Fraction(info["depth_scales"][0].depth, info["depth_scales"][0].base_depth) for info in infos]
    proportional = all(r * depths[0] == ratios[0] * d for r, d in zip(ratios, depths))
    constant = len(set(ratios)) == 1
    if alpha is not None:
        return Fraction(alpha), True, f"depth rule given: alpha = {alpha}"
    if proportional and not constant:
        return Fraction(next(iter(alphas))), True, ""
    if constant:
        return Fraction(0), False, ("the residual branches do not scale with depth (their parametrization has no depth=, or "
                                    "the same depth at every size): the rule is 'no depth scaling'")
    raise ValueError(f"build: the branches' m_L ({', '.join(map(str, ratios))}) is not proportional to the depths {depths}; "
                     "build each model with param.at_depth(depth)")


def depth_check(
    build: Callable[[int], nn.Module],
    depths: Sequence[int],
    batch: Batch,
    *,
    optimizer: Any,
    lr: float,
    steps: int = 3,
    seeds: Sequence[int] = (0, 1),
    loss: Optional[Callable[[Any, Any], torch.Tensor]] = None,
    tolerance: float = DEFAULT_TOLERANCE,
    expect: Optional[str] = None,
    alpha: Any = None,
    family: Optional[str] = None,
    perturb: Optional[Callable[..., None]] = None,
) -> DepthReport:
    """Train ``build(depth)`` at each depth, fit slopes against log depth, compare with the depth theory.

    Args:
        build: ``build(depth) -> nn.Module`` at a fixed width, its residual
            branches made with :class:`abcparam.Residual` (or marked with
            :func:`abcparam.mark_branch`) from a parametrization with
            ``depth=depth`` (e.g. ``param.at_depth(depth)``).
        depths: at least 3 distinct depths, e.g. 2, 4, 8, 16.
        batch: the fixed batch, as for :func:`abcparam.coord_check`.
        optimizer: as for :func:`abcparam.coord_check` (or a factory
            returning several optimizers).
        lr: the base learning rate.
        steps: the number of training steps.
        seeds: the seeds (one model per depth and seed).
        loss: as for :func:`abcparam.coord_check`.
        tolerance: as for :func:`abcparam.coord_check`.
        family: as for :func:`abcparam.coord_check`.
        expect: a depth regime the rule must have (``"feature_learning"``:
            blocks learn features, CompleteP; ``"lazy"``: Depth-muP).
        alpha: the depth rule to predict with, instead of the model's own.
        perturb: called as ``perturb(model, optimizers)`` after wrapping, to
            build deliberately broken variants in tests.
    """
    ds = sorted({int(d) for d in depths})
    if any(isinstance(d, bool) or not isinstance(d, numbers.Integral) for d in depths) or len(ds) < 3 or ds[0] < 1:
        raise ValueError(f"depths: need at least 3 distinct positive int depths to fit a slope, got {list(depths)!r}")
    validate.count(steps, "steps")
    seeds = validate.int_list(seeds, "seeds")
    validate.number(lr, "lr")
    validate.number(tolerance, "tolerance", what=TOLERANCE_IS)
    from ..theory.depth import DEPTH_REGIMES

    if expect is not None:
        validate.choice(expect, "expect", DEPTH_REGIMES)
    loss_fn = loss or default_loss
    raw: Dict[Tuple[str, str, int], List[List[float]]] = {}
    infos: List[Dict[str, Any]] = []
    nonfinite: List[Tuple[int, int]] = []
    for di, d in enumerate(ds):
        for si, seed in enumerate(seeds):
            values, info = _measure(build, d, seed, batch, optimizer, lr, steps, loss_fn, family, perturb)
            if si == 0:
                infos.append(info)
            for key, v in values.items():
                raw.setdefault(key, [[float("nan")] * len(seeds) for _ in ds])[di][si] = v
            if any(not math.isfinite(v) for v in values.values()):
                nonfinite.append((d, seed))
    fam = infos[0]["family"]
    if fam is None:
        raise ValueError("optimizer: the branches' first layers are trained by no wrapped optimizer; cannot tell the family")
    a, scaled, note = _rule(infos, ds, alpha)
    verdict = classify_depth(a, optimizer=fam, lr_exponent=None if scaled else 0)
    notes = [note] if note else []
    if not infos[0]["stream_ok"]:
        notes.append("the last residual branch is marked, not an abcparam.Residual: the stream (its input plus its output) "
                     "is not measured")
    unstable = verdict.regime == "unstable"
    fits: List[Fit] = []
    order = ["stream", "blocks"] + sorted({k[0] for k in raw if k[1] in ("embed", "readout")}) + ["output"]
    for name in order:
        for (n, q, step) in sorted(k for k in raw if k[0] == name):
            desc, predict = QUANTITIES[q]
            pred = predict(verdict) if predict is not None else None
            if pred is None:
                slope, spread = stats.fit_slope(ds, raw[(n, q, step)])
                fits.append(Fit(n, "-", q, step, slope, spread, None, None))
                continue
            if unstable:
                j = stats.judge_growth(ds, raw[(n, q, step)], tolerance)
            else:
                j = stats.judge(ds, raw[(n, q, step)], float(pred), tolerance, at_init=(step == 0))
            fits.append(Fit(n, "-", q, step, j.slope, j.spread, pred, {"agree": True, "disagree": False}.get(j.status),
                            j.status, j.noise, j.margin, j.reason, j.settle))
    return DepthReport(depths=ds, steps=int(steps), seeds=seeds, family=fam, lr=float(lr), tolerance=float(tolerance), fits=fits,
                       rms=raw, verdict=verdict, expect=expect, notes=notes, nonfinite=nonfinite)
