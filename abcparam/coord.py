"""The coordinate check: measure how each layer scales with width, test it against the theory.

:func:`coord_check` trains a model built at several widths for a few steps on
fixed inputs, records per layer the RMS of the pre-activations ``h^l`` and of
their change since initialisation, and of the output ``f`` and its change,
fits the log-log slope against width, and compares every slope with the
prediction of :func:`abcparam.classify` for the exponents the model's
abcparam layers declare (docs/theory.md section 8).  The result is a
:class:`CoordReport`: a table of measured against predicted slopes, the regime
the measurements indicate and the one the theory predicts, and pass/fail with
the tolerance used.

>>> import torch, abcparam
>>> build = lambda n: abcparam.models.MLP(8, n, 1, depth=2, param=abcparam.mup(n, 64))
>>> x = torch.randn(16, 8); y = torch.randn(16, 1)
>>> report = coord_check(build, [64, 128, 256], (x, y), optimizer=torch.optim.Adam, lr=1e-2, steps=2, seeds=[0])
>>> report.theory_regime
'feature_learning'
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

from . import _torch  # noqa: F401  (torch without the numpy warning)
import torch
from torch import nn

from . import coord_stats, theory, validate
from .text import signed
from .depthcheck import DepthReport, depth_check
from .layers import abc_modules, is_abc_layer
from .check.decision import DEFAULT_TOLERANCE, TOLERANCE_IS, Decision, Fit
from .check.plot import slopes_figure
from .check.escalation import DEFAULT_BUDGET, escalate
from .check.engine import (Batch, default_loss, make_optimizer, observe, output_tensor, rms, seeded_build, split_batch,
                           train_step)

__all__ = ["coord_check", "CoordReport", "Fit", "DEFAULT_TOLERANCE", "QUANTITIES"]

CHAIN_ROLES = ("input", "hidden", "output")  # the roles of the layers the classifier's chain is made of

LOSS_RISE = 2.0  # the loss at the smallest width rising past this factor of its start: the learning rate is too large
# ... or at a wider width past this one: there a few steps move a correct model's features less, so a rise that the
# smallest width does not show is a rate past the edge of stability at those widths (a catapult: the loss climbs
# until the kernel adapts, more slowly the wider the network), not an asymptotic effect
WIDE_LOSS_RISE = 1.5
# A change that grows past the fail band at every step, at the first by DECISIVE_MARGIN tolerances (and twice its
# noise) more, is a blow-up that a rising loss does not excuse: the loss rises because of it
DECISIVE_MARGIN = 1.0

# What the check measures: each quantity, what it is, and (in brackets) the prediction it is compared with; the
# predictions themselves are computed in one place, _prediction (and _attention_fits for the scale).
QUANTITIES: Dict[str, str] = {
    "h": "RMS of a layer's output at initialisation [0 below the readout; f_0's exponent for the readout]",
    "h_own": "a tied readout's logit of each position's own input token at initialisation (the other tokens' logits are "
             "its h) [between f_0's exponent and 1/2 more: docs/theory.md section 14]",
    "dh": "RMS of a layer's output change since initialisation after a step [Delta h of section 8; the readout's: Delta f]",
    "f": "RMS of the model output at initialisation (a tied readout's: the other tokens' logits) [f_0's exponent]",
    "f_own": "the model output's logit of each position's own input token at initialisation, with a tied readout [as h_own]",
    "df": "RMS of the model output's change after a step [Delta f of section 8]",
    "dw": "RMS of a trained tensor's own contribution after the steps: M (W_t - W_0) x for a weight on its layer's input, "
          "Delta b for a bias (abcparam.check.maximal) [0 for every tensor under muP: each updated maximally, "
          "docs/theory.md section 4]",
    "scale": "the exponent in d_head of an F.scaled_dot_product_attention call's scale, read exactly across widths "
             "[the parametrization's attention exponent; a scale that makes the logits grow fails a stable model]",
}


@dataclass
class CoordReport(Decision):
    """What :func:`coord_check` measured, what the theory predicts, and whether they agree."""

    widths: List[int]
    steps: int
    seeds: List[int]
    family: Optional[str]
    lr: float
    tolerance: float
    fits: List[Fit]
    rms: Dict[Tuple[str, str, int], List[List[float]]]
    verdict: Optional[theory.Verdict]
    measured_regime: str
    expect: Optional[str] = None
    notes: List[str] = field(default_factory=list)
    nonfinite: List[Tuple[int, int, int, str]] = field(default_factory=list)
    no_prediction: Optional[str] = None
    unowned: List[str] = field(default_factory=list)
    lr_too_large: Optional[Tuple[int, float]] = None
    escalation: List[str] = field(default_factory=list)
    suggestion: Dict[str, str] = field(default_factory=dict)

    @property
    def theory_regime(self) -> Optional[str]:
        return self.verdict.regime if self.verdict is not None else None

    @property
    def decisive(self) -> List[Fit]:
        """The changes (``dh``/``df``) that blow up: faster than predicted past the fail band at every step, and at
        the first step (one update from initialisation) by ``DECISIVE_MARGIN`` tolerances and twice the noise more.
        Decisive even when the loss rises: it rises because of the blow-up.  An unowned module's growth counts
        the same way (nothing may grow in a stable model).  So does any disagreement at initialisation (step 0):
        no learning rate acts before the first step.  Initialisation first, then the changes."""
        out: List[Fit] = [f for f in self.fits if f.step == 0 and f.status == "disagree"]
        by_change: Dict[Tuple[str, str], List[Fit]] = {}
        for f in self.fits:
            if f.quantity in ("dh", "df") and f.step >= 1:
                by_change.setdefault((f.layer, f.quantity), []).append(f)
        for fs in by_change.values():
            fs = sorted(fs, key=lambda f: f.step)
            if len(fs) == self.steps and all(map(self._grows_past_band, fs)) and self._wide(fs[0]):
                out.extend(fs)
        return out

    @staticmethod
    def _grows_past_band(f: Fit) -> bool:
        predicted = 0.0 if f.predicted is None else float(f.predicted)  # unowned: a stable model's changes do not grow
        return f.status == "disagree" and f.slope > predicted

    def _wide(self, f: Fit) -> bool:
        return math.isinf(f.slope) or f.margin >= max(DECISIVE_MARGIN * self.tolerance, coord_stats.NOISE_FACTOR * f.noise)

    @property
    def growing(self) -> List[Fit]:
        """Slopes that grow with width (beyond the tolerance)."""
        return [f for f in self.fits if f.quantity in ("dh", "df", "h", "f") and (math.isinf(f.slope) or f.slope > self.tolerance)]

    def _decide(self) -> Tuple[str, str]:
        if self.diverged:
            first = self.nonfinite[0]
            return "fail", (f"non-finite values (the run diverged), first at width {first[0]}, seed {first[1]}, "
                            f"step {first[2]} in {first[3]}")
        if self.verdict is None:
            if self.expect is None:
                return "fail", "no prediction to compare with"
            ok = self.measured_regime == self.expect
            return ("pass" if ok else "fail"), f"measured {self.measured_regime}, expected {self.expect} (no prediction)"
        if self.expect is not None and self.verdict.regime != self.expect:
            return "fail", f"the theory predicts {self.verdict.regime}, expected {self.expect}"
        comparison = self.comparison
        if comparison == "disagree" and self.lr_too_large is not None:
            w, rise = self.lr_too_large
            first = self.decisive[0]
            if first.step == 0:
                return "fail", (f"{first.layer} {first.quantity} at initialisation grows like n^{signed(first.slope)} where "
                                f"the theory says n^{first.predicted}, past the fail band: no learning rate acts before the "
                                f"first step (the loss rises {rise:.1f}x at width {w})")
            return "fail", (f"{first.layer} {first.quantity} grows faster than predicted past the fail band at every step "
                            f"(n^{signed(first.slope)} vs n^{first.predicted or 0} at step 1, by {first.margin:.2f} more than "
                            f"the band): a blow-up, which is why the loss rises {rise:.1f}x at width {w}")
        if comparison == "disagree":
            return "fail", "the measurements disagree with the theory"
        if comparison == "inconclusive" and self.lr_too_large is not None and self.verdict.regime != "unstable":
            w, rise = self.lr_too_large
            return "inconclusive", (f"the loss rises {rise:.1f}x during the steps at width {w}: the learning rate is too large "
                                    "for the asymptotics at these widths; would settle it: a smaller learning rate" + self._try())
        if comparison == "inconclusive":
            return "inconclusive", "nothing disagrees, but the measurements " + self._cannot_decide(
                [f"{f.layer} {f.quantity}@{f.step}" for f in self.undecided])
        if self.verdict.regime == "unstable":
            if self.expect == "unstable":
                return "pass", "unstable, as expected (it measurably grows with width)"
            return "fail", "the measurements agree with the theory that the model is UNSTABLE (it blows up as width grows)"
        # here the measured regime is the verdict's (comparison "agree"), which is ``expect`` when one is given
        return "pass", f"the measurements agree with the theory ({self.verdict.regime})"

    @property
    def comparison(self) -> str:
        """``"agree"``, ``"disagree"``, ``"inconclusive"``: the measurements against the verdict, before ``expect``
        (``"none"`` without a prediction; a diverged run disagrees)."""
        if self.verdict is None:
            return "none"
        if self.diverged:
            return "disagree"
        if self.lr_too_large is not None and self.verdict.regime != "unstable":
            # outside the asymptotic regime nothing passes or fails, but a decisive blow-up (the loss rises because of it)
            return "disagree" if self.decisive else "inconclusive"
        if self.verdict.regime == "unstable":
            growth = [f.status for f in self.fits]
            if "agree" in growth:
                return "agree"  # something measurably grows: the lower bound holds
            return "inconclusive" if "inconclusive" in growth else "disagree"
        statuses = {f.status for f in self.fits}
        if "disagree" in statuses:
            return "disagree"
        if "inconclusive" in statuses:
            return "inconclusive"
        return "agree" if self.measured_regime == self.verdict.regime else "disagree"

    @property
    def diverged(self) -> bool:
        """True when some measurement was NaN or infinite (see :attr:`nonfinite`)."""
        return bool(self.nonfinite)

    @property
    def agrees(self) -> bool:
        """True when the measurements agree with the theory's prediction for the declared exponents.

        For a stable parametrization every compared quantity must agree with
        its prediction (within the tolerance, allowing for the noise and the
        leading finite-width correction: :mod:`abcparam.coord_stats`).  For an
        unstable one the prediction is only a lower bound (docs/theory.md
        section 8): the measurements agree when something measurably grows with
        width.  A run with non-finite values never agrees: a slope through an
        overflow is no measurement.  Without a prediction there is nothing to
        agree with (False).  An inconclusive comparison does not agree.
        """
        return self.comparison == "agree"  # "none" without a verdict, "disagree" when diverged

    @property
    def passed(self) -> bool:
        """True when the model checks out: the measurements agree with the theory, the model is
        not unstable (unless ``expect="unstable"``), nothing diverged, and the regime is ``expect``.

        Without a prediction (no abcparam layers, or a role missing) the check
        passes only when ``expect`` is given and measured.  An inconclusive
        check does not pass (see :attr:`status`).
        """
        return self.status == "pass"

    @property
    def smallest_margin(self) -> Optional[float]:
        """The smallest distance of an agreeing quantity to the tolerance (how close the pass was)."""
        margins = [f.margin for f in self.fits if f.status == "agree" and self.verdict is not None and self.verdict.regime != "unstable"]
        return min(margins) if margins else None

    # -- rendering ------------------------------------------------------------

    def _rows(self) -> List[Tuple[str, ...]]:
        rows = [("layer", "role", "quantity", "step", "measured", "noise", "predicted", "decision")]
        for f in self.fits:
            pred = "-" if f.predicted is None else (f"{f.predicted}" + (" (bound)" if self._bound(f) else ""))
            if f.predicted_low is not None and not self._bound(f):
                pred = f"{f.predicted_low}..{f.predicted}"
            decision = {"agree": "yes", "disagree": "NO", "inconclusive": "?"}.get(f.status, "-")
            if f.status == "agree" and f.reason and self.verdict is not None and self.verdict.regime != "unstable":
                decision = "yes (corrected)"
            rows.append((f.layer, f.role, f.quantity, str(f.step), signed(f.slope), f"{f.noise:.2f}" if f.noise and math.isfinite(f.noise) else "-", pred, decision))
        return rows

    def _bound(self, f: Fit) -> bool:
        return self.verdict is not None and self.verdict.regime == "unstable" and f.predicted is not None and f.predicted > 0

    def summary(self) -> str:
        theory_txt = self.theory_regime or f"no prediction ({self.no_prediction or 'unknown reason'})"
        lines = [
            f"coordinate check: widths {self.widths}, {self.steps} step(s), seeds {self.seeds}, "
            f"optimizer {self.family or '?'}, lr {self.lr:g}, tolerance {self.tolerance:g}",
            f"theory: {theory_txt}; measured: {self.measured_regime}" + (f"; expected: {self.expect}" if self.expect else ""),
            self.outcome(),
        ]
        if self.nonfinite:
            shown = ", ".join(f"width {w} seed {sd} step {t}: {what}" for w, sd, t, what in self.nonfinite[:6])
            more = f" (+{len(self.nonfinite) - 6} more)" if len(self.nonfinite) > 6 else ""
            lines.append(f"non-finite: {shown}{more}")
        if self.growing:
            lines.append("growing with width: " + ", ".join(
                f"{f.layer} {f.quantity}@{f.step} " + (f"~ n^{signed(f.slope)}" if math.isfinite(f.slope) else "non-finite")
                for f in self.growing))
        if self.mismatches:
            lines.append("disagreeing with the theory: " + ", ".join(
                f"{f.layer} {f.quantity}@{f.step}: {signed(f.slope)} vs {f.predicted} ({f.reason})" for f in self.mismatches))
        if self.undecided:
            lines.append("undecided: " + ", ".join(
                f"{f.layer} {f.quantity}@{f.step}: {signed(f.slope)} vs {f.predicted} ({f.reason})" for f in self.undecided))
        if self.escalation:
            lines.append("added after an inconclusive pass: " + "; ".join(self.escalation))
        if self.unowned:
            lines.append(f"owned by no abcparam layer (trained at the base learning rate, not predicted): {', '.join(self.unowned)}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "widths": self.widths,
            "steps": self.steps,
            "seeds": self.seeds,
            "family": self.family,
            "lr": self.lr,
            "tolerance": self.tolerance,
            "theory_regime": self.theory_regime,
            "measured_regime": self.measured_regime,
            "expect": self.expect,
            "passed": self.passed,
            "status": self.status,
            "agrees": self.agrees,
            "unowned": self.unowned,
            "lr_too_large": None if self.lr_too_large is None else {"width": self.lr_too_large[0], "loss_rise": self.lr_too_large[1]},
            "decisive": [{"layer": f.layer, "quantity": f.quantity, "step": f.step} for f in self.decisive],
            "escalation": self.escalation,
            "suggestion": self.suggestion,
            "outcome": self.outcome(),
            "nonfinite": [{"width": w, "seed": sd, "step": t, "where": what} for w, sd, t, what in self.nonfinite],
            "no_prediction": self.no_prediction,
            "fits": self.fit_records(),
            "verdict": None if self.verdict is None else self.verdict.to_dict(),
            "notes": self.notes,
        }

    def plot(self, path: Optional[str] = None) -> Any:
        """The coordinate-check figure: one panel per step, log RMS against log width,
        a line per layer, dotted lines with the predicted slopes.  Needs matplotlib
        (``pip install abcparam[plot]``); returns the figure and saves it to ``path``."""
        layers = list(dict.fromkeys(f.layer for f in self.fits))

        def lines(step: int) -> List[Tuple[str, Tuple[str, str, int]]]:
            out = "output"
            return [(layer, (layer, ("h" if layer != out else "f") if step == 0 else ("dh" if layer != out else "df"), step))
                    for layer in layers]

        return slopes_figure(self.widths, self.rms, self.fits, [0] + list(range(1, self.steps + 1)), lines,
                             lambda step: "init: RMS h, f" if step == 0 else f"step {step}: RMS of change", "width",
                             f"theory {self.theory_regime}, measured {self.measured_regime}: {self.outcome()}", path)


# ----------------------------------------------------------------------------
# Measurement
# ----------------------------------------------------------------------------


def _readout_bias(mod: nn.Module) -> Optional[torch.Tensor]:
    """The bias of an abcparam readout (role output), which the theory's f_0 and Delta f leave out."""
    if getattr(mod, "role", None) == "output" and is_abc_layer(mod) and isinstance(getattr(mod, "bias", None), torch.Tensor):
        return mod.bias
    return None


class _Declared:
    """A module that is not an abcparam layer, seen through exponents declared for it (``coord_check(exponents=...)``,
    as :func:`abcparam.inspect` infers them): what the prediction reads from an abcparam layer."""

    def __init__(self, module: nn.Module, role: str, a: Fraction, b: Fraction, c: Fraction, family: str) -> None:
        self.module, self.role, self.a, self.b = module, role, a, b
        setattr(self, "c_" + family, c)
        bias = getattr(module, "bias", None)  # a tensor, or None, or (in some model code) a flag such as bias=True
        self.bias = bias if isinstance(bias, torch.Tensor) else None

    def abc_scales(self) -> Dict[str, Any]:
        return {}


def _check_declared(exponents: Any) -> Dict[str, Tuple[str, Fraction, Fraction, Fraction, str]]:
    if exponents is None:
        return {}
    if not isinstance(exponents, Mapping):
        raise TypeError(f"exponents: expected a mapping module name -> (role, a, b, c, family), got {type(exponents).__name__}")
    out = {}
    for name, v in exponents.items():
        if not (isinstance(v, (tuple, list)) and len(v) == 5 and v[0] in ("input", "hidden", "output")):
            raise ValueError(f"exponents: {name!r} -> {v!r}; expected (role, a, b, c, family) with role input, hidden or output")
        out[name] = (v[0], theory.exponent(v[1], f"{name}.a"), theory.exponent(v[2], f"{name}.b"),
                     theory.exponent(v[3], f"{name}.c"), theory.optimizer_family(v[4]))
    return out


class _Recorder:
    """Forward hooks that keep every call's output of the tracked modules (a module called twice is kept twice)."""

    def __init__(self, modules: Dict[str, nn.Module], views: Optional[Dict[str, "_Declared"]] = None):
        self.views = views or {}  # modules seen through declared exponents: their readout bias is left out too
        self.order: List[str] = []
        self.outputs: Dict[str, List[torch.Tensor]] = {}
        self.handles = [m.register_forward_hook(self._hook(name)) for name, m in modules.items()]

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(mod: nn.Module, _inp: Any, out: Any) -> None:
            t = output_tensor(out)
            if t is None:
                return
            bias = _readout_bias(self.views.get(name, mod))
            if bias is not None:
                t = t - bias.detach()  # the weight term: a readout bias is order one at every width
            if name not in self.outputs:
                self.outputs[name] = []
                self.order.append(name)
            self.outputs[name].append(t.detach().float().clone())

        return hook

    def take(self) -> Dict[str, List[torch.Tensor]]:
        """Every call's output since the last take, by module, in call order, as shaped."""
        out, self.outputs = self.outputs, {}
        return out

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def _main_tensor(mod: nn.Module) -> Any:
    """The tensor whose optimizer family stands for an abcparam module's: its weight, else (abcparam's
    MultiheadAttention) the first tensor it owns."""
    if hasattr(mod, "weight"):
        return mod.weight
    owned = list(mod.abc_scales())
    return getattr(mod, owned[0]) if owned else None


def _flat(ts: List[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.flatten() for t in ts])


def _token_ids(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Optional[torch.Tensor]:
    """The model's input token ids: its first positional input or ``input_ids=``, when an integer tensor."""
    ids = args[0] if args else kwargs.get("input_ids")
    if isinstance(ids, torch.Tensor) and not ids.is_floating_point() and not ids.is_complex() and ids.dtype != torch.bool:
        return ids
    return None


def _record_init(values: Dict[Tuple[str, str, int], float], name: str, q: str, ts: List[torch.Tensor],
                 ids: Optional[torch.Tensor]) -> None:
    """The RMS of a quantity at initialisation; for the logits of a tied readout (``ids`` given), split by token:
    ``q`` over the tokens other than each position's input token, ``q + "_own"`` over the input token's own logit
    (docs/theory.md section 14: the residual stream carries the input token's embedding, so its logit is larger)."""
    t = ts[0] if len(ts) == 1 else None
    if (ids is not None and t is not None and t.dim() >= 1 and t.shape[:-1] == ids.shape and ids.numel()
            and int(ids.min()) >= 0 and int(ids.max()) < t.shape[-1]):
        own = nn.functional.one_hot(ids.long(), t.shape[-1]).bool()
        values[(name, q, 0)] = rms(t[~own])
        values[(name, q + "_own", 0)] = rms(t[own])
        return
    values[(name, q, 0)] = rms(_flat(ts))


class Measurement(NamedTuple):
    """What one model at one width and seed gave: ``values[(module, quantity, step)]`` (the RMS of each measured
    quantity, and the training loss as ``("loss", "loss", step)``), the measured modules in call order and by
    name, their optimizer families (by tensor name, or None), and the trained tensors no abcparam layer owns."""

    values: Dict[Tuple[str, str, int], float]
    order: List[str]
    modules: Dict[str, nn.Module]
    families: Optional[Dict[str, str]]
    unowned: List[str]


def _measure(
    build: Callable[[int], nn.Module],
    width: int,
    seed: int,
    batch: Batch,
    optimizer: Any,
    lr: float,
    steps: int,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    extra: Sequence[str],
    family: Optional[str],
    attention_calls: Optional[List[Tuple[int, float]]] = None,
    declared: Optional[Dict[str, Tuple[str, Fraction, Fraction, Fraction, str]]] = None,
) -> Measurement:
    model = seeded_build(build, width, seed)
    tracked = dict(abc_modules(model))
    named = dict(model.named_modules())
    declared = declared or {}
    for name in list(extra) + list(declared):
        if name not in named:
            raise ValueError(f"{'modules' if name in extra else 'exponents'}: the model has no module named {name!r}")
        tracked.setdefault(name, named[name])
    owned_ids = {id(p) for m in abc_modules(model).values() for n in m.abc_scales() for p in [getattr(m, n, None)] if p is not None}
    owned_ids |= {id(p) for n in declared for p in named[n].parameters(recurse=False)}  # predicted from their exponents
    fam: Optional[Dict[str, str]] = None
    if steps == 0:  # initialisation only: no optimizer needed
        opts: List[torch.optim.Optimizer] = []
        trained = {id(p) for p in model.parameters() if p.requires_grad}
    else:
        opts = make_optimizer(optimizer, model, lr, family)
        trained = {id(p) for o in opts for g in o.param_groups for p in g["params"]}
        # the family that trains each abcparam layer's weight (a hybrid set-up has several)
        by_tensor = {id(p): g.get("abc_family") for o in opts for g in o.param_groups for p in g["params"]}
        fam = {n: by_tensor.get(id(_main_tensor(m))) for n, m in abc_modules(model).items()}
        fam.update({n: d[4] for n, d in declared.items() if by_tensor.get(id(getattr(named[n], "weight", None)))})
    unowned_names = [n for n, p in model.named_parameters() if id(p) in trained and id(p) not in owned_ids]
    # Modules that train tensors no abcparam layer owns are measured too (not predicted): a plain
    # nn.Linear whose learning rate is not scaled shows itself by growing with width.
    for name, mod in named.items():
        if name and name not in tracked and any(id(p) in trained and id(p) not in owned_ids for p in mod.parameters(recurse=False)):
            tracked[name] = mod
    args, kwargs, y = split_batch(batch)
    # what the prediction reads: abcparam layers themselves, other modules through their declared exponents
    views = {n: _Declared(named[n], *d) for n, d in declared.items() if not is_abc_layer(named[n])}
    seen_as = {n: views.get(n, m) for n, m in tracked.items()}
    rec = _Recorder(tracked, views)
    values: Dict[Tuple[str, str, int], float] = {}
    ids = _token_ids(args, kwargs)
    tables = {id(m.weight) for m in named.values() if isinstance(m, nn.Embedding)}
    tied = [n for n, m in tracked.items() if getattr(seen_as[n], "role", None) == "output" and id(getattr(m, "weight", None)) in tables]
    tied = tied if ids is not None else []  # readouts sharing an embedding's table: their logits are split by token
    try:
        def look() -> Tuple[Dict[str, List[torch.Tensor]], Optional[torch.Tensor]]:
            f = output_tensor(observe(model, args, kwargs))
            return rec.take(), None if f is None else f.detach().float().clone()

        if attention_calls is not None:  # every F.scaled_dot_product_attention call of the first forward, with its scale
            from .attention import ScaleObserver

            with ScaleObserver() as seen:
                h0, f0 = look()
            attention_calls.extend(seen.calls)
        else:
            h0, f0 = look()
        order = list(rec.order)
        for name, ts in h0.items():
            _record_init(values, name, "h", ts, ids if name in tied else None)
        if f0 is not None:
            _record_init(values, "output", "f", [f0], ids if tied else None)
        h0 = {name: _flat(ts) for name, ts in h0.items()}
        if steps == 0:
            return Measurement(values, order, seen_as, fam, unowned_names)
        for step in range(1, steps + 1):
            values[("loss", "loss", step - 1)] = train_step(model, opts, loss_fn, args, kwargs, y)
            rec.take()  # the training forward's outputs: not measured
            ht, ft = look()
            for name, ts in ht.items():
                t = _flat(ts)
                values[(name, "dh", step)] = rms(t - h0[name]) if t.shape == h0[name].shape else math.nan
            if ft is not None and f0 is not None:
                values[("output", "df", step)] = rms(ft - f0)
    finally:
        rec.close()
    return Measurement(values, order, seen_as, fam, unowned_names)


# ----------------------------------------------------------------------------
# Theory for the model as built
# ----------------------------------------------------------------------------


def _layer_exponents(mod: nn.Module, family: str) -> Tuple[Fraction, Fraction, Fraction, str]:
    return mod.a, mod.b, getattr(mod, "c_" + family), family


def _family_text(families: Dict[str, str]) -> Optional[str]:
    """The report's family: one name, or "hybrid (...)" listing which layers each family trains."""
    fams = sorted(set(families.values()), key=str)
    if not fams or None in fams:
        return None
    if len(fams) == 1:
        return fams[0]
    return "hybrid (" + "; ".join(f"{f}: {', '.join(n for n, x in families.items() if x == f)}" for f in fams) + ")"


def _predict(
    order: List[str], tracked: Dict[str, nn.Module], families: Dict[str, str], alignment: str
) -> Tuple[Optional[theory.Verdict], Dict[str, int], List[str], Optional[str]]:
    """Classify the model's abcparam layers, each with the family of the optimizer that trains it; map each layer
    to its index in the classified chain.

    Returns the verdict, the index map, notes, and (when there is no verdict) the reason.
    """
    notes: List[str] = []
    # the layers of the chain: a vector-like layer (a depthwise convolution) is trained like a bias, not predicted
    layers = [(n, tracked[n]) for n in order if is_abc_layer(tracked[n]) and getattr(tracked[n], "role", None) in CHAIN_ROLES]
    if not layers:
        return None, {}, [], "the model has no abcparam layers (or none ran in the forward pass)"
    untrained = [n for n, _ in layers if families.get(n) is None]
    if untrained:
        return None, {}, [], f"no optimizer trains the weight of {', '.join(untrained)}, so its learning-rate exponent is unknown"
    roles = [m.role for _, m in layers]
    missing = [r for r in ("input", "output") if r not in roles]
    if missing:
        return None, {}, [], (
            f"no abcparam layer has the {' or '.join(missing)} role (abcparam layers: "
            f"{', '.join(f'{n} ({m.role})' for n, m in layers)}); the theory needs the whole chain input -> output"
        )
    if roles[0] == "input" and roles[-1] == "output" and roles.count("input") == 1 and roles.count("output") == 1:
        exps = [_layer_exponents(m, families[n]) for n, m in layers]
        v = theory.classify([e[0] for e in exps], [e[1] for e in exps], [e[2] for e in exps], optimizer=[e[3] for e in exps],
                            alignment=alignment)
        return v, {n: i for i, (n, _) in enumerate(layers)}, notes, None
    # Not a chain (several inputs or outputs, parallel branches): predict per role.
    by_role: Dict[str, Dict[Tuple[Fraction, Fraction, Fraction, str], List[str]]] = {}
    for n, m in layers:
        by_role.setdefault(m.role, {}).setdefault(_layer_exponents(m, families[n]), []).append(n)
    mixed = {r: e for r, e in by_role.items() if len(e) > 1}
    if mixed:
        role, groups = next(iter(mixed.items()))
        detail = "; ".join(f"{', '.join(names)}: (a, b, c) = ({a}, {b}, {c}) under {f}" for (a, b, c, f), names in groups.items())
        return None, {}, [], f"the {role} layers declare different exponents ({detail}): no single prediction per role"
    cols = [next(iter(by_role["input"]))] + ([next(iter(by_role["hidden"]))] if "hidden" in by_role else []) + [next(iter(by_role["output"]))]
    v = theory.classify([c[0] for c in cols], [c[1] for c in cols], [c[2] for c in cols], optimizer=[c[3] for c in cols],
                        alignment=alignment)
    index = {"input": 0, "hidden": 1, "output": len(cols) - 1}
    notes.append("the layers are not one chain input -> hidden... -> output: predictions are per role")
    return v, {n: index[m.role] for n, m in layers}, notes, None


# ----------------------------------------------------------------------------
# Fitting and the public entry point
# ----------------------------------------------------------------------------


def coord_check(
    build: Callable[[int], nn.Module],
    widths: Optional[Sequence[int]] = None,
    batch: Optional[Batch] = None,
    *,
    depths: Optional[Sequence[int]] = None,
    optimizer: Any,
    lr: float,
    steps: int = 3,
    seeds: Sequence[int] = (0, 1),
    loss: Optional[Callable[[Any, Any], torch.Tensor]] = None,
    modules: Sequence[str] = (),
    tolerance: float = DEFAULT_TOLERANCE,
    expect: Optional[str] = None,
    family: Optional[str] = None,
    alignment: str = "tp4",
    progress: Optional[Callable[[str], None]] = None,
    init_seeds: int = 8,
    exponents: Optional[Mapping[str, Tuple[Any, ...]]] = None,
    budget: Optional[float] = DEFAULT_BUDGET,
) -> Union[CoordReport, DepthReport]:
    """Train ``build(width)`` for each width and seed, fit width exponents, compare with the theory.

    Args:
        build: ``build(width) -> nn.Module``, typically of abcparam layers
            (their declared exponents give the prediction).
        widths: at least 3 distinct widths (e.g. 128 to 2048).
        batch: fixed inputs: a tensor ``x``, a tuple ``(x, y)`` or a dict of
            keyword inputs; the same batch is used at every step.
        optimizer: a torch optimizer class, or a factory ``params -> optimizer``
            (or ``(params, lr) -> optimizer``); it is wrapped with
            :func:`abcparam.wrap` unless it already is.
        lr: the base learning rate.
        steps: number of updates (step 1 differs from later ones for SGD).
        seeds: the seeds to average over; the spread of the slopes is reported.
        loss: ``loss(output, y)``; default MSE (float ``y``), cross-entropy
            (integer ``y``) or, without ``y``, the model's scalar output.
        modules: names of other modules to record (measured, not predicted).
        tolerance: the largest allowed |measured - predicted| slope.
        expect: a regime the check must also find (``"feature_learning"``, ...).
        family: the optimizer family when it cannot be detected.
        progress: called with a short text after each width and seed.
        init_seeds: seeds for the quantities at initialisation (h and f at
            step 0), which need one forward pass each and no training: the
            ``seeds`` plus extra ones up to this number (default 8).
        exponents: predictions for modules that are not abcparam layers, by
            module name: ``(role, a, b, c, family)`` of the weight each uses,
            as :func:`abcparam.inspect` infers them (the optimizer is then
            not rescaled for them: they are measured as built).
        budget: seconds the check may spend in all (default 30) when its
            first pass is inconclusive: it then adds seeds, then moves the
            widths up an octave (:mod:`abcparam.check.escalation`), each only
            when its predicted cost fits, and reports what it added.  ``0`` or
            ``None``: one pass only.

    With ``depths=`` instead of ``widths`` (``build(depth) -> model`` at a
    fixed width) this is the depth check of docs/theory.md section 12,
    :func:`abcparam.depthcheck.depth_check`, and returns its report; ``expect``
    is then a depth regime (``"feature_learning"`` or ``"lazy"``).
    """
    if depths is not None:
        if widths is not None:
            raise ValueError("widths, depths: give widths or depths, not both (a width-and-depth grid is two checks: one "
                             "across widths at a fixed depth, one across depths at a fixed width)")
        if batch is None:
            raise TypeError("batch: required")
        return depth_check(build, depths, batch, optimizer=optimizer, lr=lr, steps=steps, seeds=seeds, loss=loss,
                           tolerance=tolerance, expect=expect, family=family)
    if widths is None or batch is None:
        raise TypeError("widths, batch: required (or depths= for the depth check)")
    widths = _check_widths(widths)
    validate.count(steps, "steps")
    seeds = validate.int_list(seeds, "seeds")
    validate.number(lr, "lr")
    validate.number(tolerance, "tolerance", what=TOLERANCE_IS)
    if expect is not None:
        validate.choice(expect, "expect", theory.REGIMES)
    if not callable(build):
        raise TypeError("build: expected a function width -> model")
    validate.count(init_seeds, "init_seeds")
    loss_fn = loss or default_loss
    declared = _check_declared(exponents)
    validate.number(budget, "budget", zero_ok=True, none_ok=True, what="a time in seconds")

    def run(widths: List[int], seeds: List[int], escalated: bool) -> CoordReport:
        return _check_once(build, widths, batch, optimizer, lr, steps, seeds, loss_fn, modules, tolerance, expect, family,
                           alignment, progress, init_seeds, declared, escalated)

    return escalate(run, widths, seeds, budget)


def _check_once(build: Callable[[int], nn.Module], widths: List[int], batch: Batch, optimizer: Any, lr: float, steps: int,
                seeds: List[int], loss_fn: Callable[[Any, Any], torch.Tensor], modules: Sequence[str], tolerance: float,
                expect: Optional[str], family: Optional[str], alignment: str, progress: Optional[Callable[[str], None]],
                init_seeds: int, declared: Dict[str, Tuple[str, Fraction, Fraction, Fraction, str]],
                escalated: bool = False) -> CoordReport:
    """One pass of the width check at these widths and seeds (validated): measure, fit, predict, report.  An
    ``escalated`` pass excuses no slope as a finite-width correction: it must agree outright."""
    raw: Dict[Tuple[str, str, int], List[List[float]]] = {}
    nonfinite: List[Tuple[int, int, int, str]] = []
    unowned: List[str] = []
    losses_by_width: List[List[List[float]]] = [[] for _ in widths]  # per width and seed, the loss at each step
    order: List[str] = []
    tracked: Dict[str, nn.Module] = {}
    fams: Dict[str, str] = {}
    attention_calls: List[List[Tuple[int, float]]] = []
    for wi, width in enumerate(widths):
        for si, seed in enumerate(seeds):
            calls: Optional[List[Tuple[int, float]]] = [] if si == 0 else None
            m = _measure(build, width, seed, batch, optimizer, lr, steps, loss_fn, modules, family, calls, declared)
            values = m.values
            if calls is not None:
                attention_calls.append(calls)
            if wi == 0 and si == 0:
                order, tracked, unowned, fams = m.order, m.modules, m.unowned, m.families or {}
            step_losses = [values.pop(("loss", "loss", t), math.nan) for t in range(steps)]
            losses_by_width[wi].append(step_losses)
            for key, v in values.items():
                raw.setdefault(key, [[math.nan] * len(seeds) for _ in widths])[wi][si] = v
            bad = sorted((k[2], f"{k[0]} {k[1]}") for k, v in values.items() if not math.isfinite(v))
            if bad:
                first_step = bad[0][0]
                nonfinite.append((width, seed, first_step, ", ".join(w for t, w in bad if t == first_step)))
            if progress is not None:
                progress(f"width {width}, seed {seed}")
        # Quantities at initialisation need no training: more seeds cost one forward pass each.
        for k in range(max(0, init_seeds - len(seeds))):
            extra = 7919 * (k + 1) + seeds[0]
            values = _measure(build, width, extra, batch, optimizer, lr, 0, loss_fn, modules, family, None, declared).values
            for key, v in values.items():
                if key in raw:
                    raw[key][wi].append(v)

    verdict, index, notes, no_prediction = _predict(order, tracked, fams, alignment)
    fam = _family_text(fams)

    unowned_modules = {n for n in order if not is_abc_layer(tracked.get(n)) and n not in modules}
    readouts = [n for n in order if getattr(tracked.get(n), "role", None) == "output"]
    readout_bias = any(_readout_bias(tracked[n]) is not None for n in readouts)
    if readout_bias:
        notes.append("the readout has a bias (order one at every width): f_0 and Delta f are judged on the readout's "
                     "weight term (its output minus the bias); the model output is measured, not predicted")
    fits = _judge_all(widths, raw, order, tracked, verdict, index, steps, tolerance, unowned_modules, readout_bias, escalated)
    fits.extend(_attention_fits(attention_calls, tracked, verdict))

    # The learning rate is too large for the asymptotics when the loss at the smallest width rises
    # during the check's steps (the steps are not small there): such a check can neither pass nor fail.
    lr_too_large = _loss_rise(widths, losses_by_width, steps)

    report = CoordReport(
        widths=list(widths),
        steps=int(steps),
        seeds=seeds,
        family=fam,
        lr=float(lr),
        tolerance=float(tolerance),
        fits=fits,
        rms=raw,
        verdict=verdict,
        measured_regime=_measured_regime(fits, order, tracked, steps, tolerance, verdict, readouts[-1] if readout_bias else None),
        expect=expect,
        notes=notes,
        nonfinite=nonfinite,
        no_prediction=None if verdict is not None else no_prediction,
        unowned=unowned,
        lr_too_large=lr_too_large,
    )
    return report


def _judge_all(widths: List[int], raw: Dict[Tuple[str, str, int], List[List[float]]], order: List[str],
               tracked: Dict[str, nn.Module], verdict: Optional[theory.Verdict], index: Dict[str, int], steps: int,
               tolerance: float, unowned_modules: set, readout_bias: bool, escalated: bool) -> List[Fit]:
    """A :class:`Fit` for every measured quantity of every module (in call order) and of the output: its slope
    judged against the prediction, or (a module no abcparam layer owns, under a stable verdict) whether it grows
    past the fail band; quantities with no prediction are fitted and shown, not compared."""
    slopes_by_step = {t: verdict.predicted_slopes(t) for t in range(1, steps + 1)} if verdict is not None else {}
    unstable = verdict is not None and verdict.regime == "unstable"
    fits: List[Fit] = []
    for name in order + ["output"]:
        role = getattr(tracked.get(name), "role", "output" if name == "output" else "-")
        init, change = ("h", "dh") if name != "output" else ("f", "df")
        for q, step in [(init, 0), (init + "_own", 0)] + [(change, t) for t in range(1, steps + 1)]:
            key = (name, q, step)
            if key not in raw:
                continue
            pred, low = _prediction(verdict, slopes_by_step, index, name, q, step)
            if name == "output" and readout_bias:
                pred = low = None
            if _structural_zero(raw, name, q, step, steps):
                fits.append(Fit(name, role, q, step, math.nan, 0.0, pred, None, "-", 0.0, 0.0,
                                "exactly zero at every width and seed before a later step moves it (a zero-initialised "
                                "layer): no slope, not compared"))
                continue
            if pred is None:
                if name in unowned_modules and q == "dh" and verdict is not None and not unstable:
                    # not predicted, but a stable verdict means nothing may grow: growth past the fail band counts
                    j = coord_stats.judge_growth(widths, raw[key], tolerance, least=coord_stats.FAIL_FACTOR * tolerance)
                    if j.status == "agree":
                        fits.append(Fit(name, role, q, step, j.slope, j.spread, None, False, "disagree", j.noise, j.margin,
                                        "grows with width (owned by no abcparam layer, so not predicted; the model is unstable)"))
                        continue
                slope, spread = coord_stats.fit_slope(widths, raw[key])
                fits.append(Fit(name, role, q, step, slope, spread, None, None))
                continue
            if unstable:
                # only a lower bound (section 8): what counts is whether something measurably grows
                j = coord_stats.judge_growth(widths, raw[key], tolerance)
            elif low is not None:
                j = coord_stats.judge_between(widths, raw[key], float(low), float(pred), tolerance, at_init=(step == 0),
                                              excuse=not escalated)
            else:
                j = coord_stats.judge(widths, raw[key], float(pred), tolerance, at_init=(step == 0), excuse=not escalated)
            ok = {"agree": True, "disagree": False}.get(j.status) if not unstable else None
            fits.append(Fit(name, role, q, step, j.slope, j.spread, pred, ok, j.status, j.noise, j.margin, j.reason, j.settle,
                            predicted_low=low))
    return fits


def _attention_fits(calls_by_width: List[List[Tuple[int, float]]], tracked: Dict[str, nn.Module],
                    verdict: Optional[theory.Verdict]) -> List[Fit]:
    """One row per F.scaled_dot_product_attention call: the exponent of its scale in d_head, observed exactly across
    the widths (docs/theory.md section 14), against the exponent the model's abcparam modules declare; a scale that
    makes the logits blow up fails a model the theory calls stable."""
    from .attention import classify_attention, scale_exponent

    if not calls_by_width or not calls_by_width[0]:
        return []
    declared = {getattr(m, "attention") for m in tracked.values() if isinstance(getattr(m, "attention", None), Fraction)}
    want = next(iter(declared)) if len(declared) == 1 else None
    rows = []
    results = scale_exponent(calls_by_width)
    if not results:
        return [Fit("attention", "-", "scale", 0, math.nan, 0.0, None, None, "inconclusive", 0.0, 0.0,
                    "the number of attention calls changes with width", "the same number of attention calls at every width")]
    for i, (e, residual, note) in enumerate(results):
        name = f"attention {i}"
        pred = None if want is None else -want
        if e is None and "does not change" in note:
            rows.append(Fit(name, "-", "scale", 0, 0.0, 0.0, pred, None, "-", 0.0, 0.0, note))
            continue
        if e is None:
            rows.append(Fit(name, "-", "scale", 0, math.nan, 0.0, pred, None, "inconclusive", 0.0, 0.0, note,
                            "an attention scale that is a power of the head dimension"))
            continue
        v = classify_attention(e)
        if not v.stable and verdict is not None and verdict.regime != "unstable":
            status, why = "disagree", v.reason
        elif want is not None and e != want:
            status, why = "disagree", f"{note}, but the parametrization says d_head^-{want}"
        else:
            status, why = ("agree" if want is not None else "-"), note
        rows.append(Fit(name, "-", "scale", 0, -float(e), 0.0, pred, {"agree": True, "disagree": False}.get(status), status,
                        0.0, 0.0 if status != "agree" else 1.0, "" if status == "agree" else why))
    return rows


def _loss_rise(widths: List[int], losses: List[List[List[float]]], steps: int) -> Optional[Tuple[int, float]]:
    """(width, factor) of the first width whose training loss (mean over seeds) rises during the steps past
    :data:`LOSS_RISE` of its start at the smallest width or :data:`WIDE_LOSS_RISE` at a wider one; None if none."""
    for wi, (width, per_seed) in enumerate(zip(widths, losses)):
        mean = [sum(v[t] for v in per_seed) / len(per_seed) for t in range(steps)]
        if len(mean) < 2 or not all(math.isfinite(v) for v in mean) or mean[0] <= 0:
            continue
        if max(mean[1:]) > (LOSS_RISE if wi == 0 else WIDE_LOSS_RISE) * mean[0]:
            return width, max(mean[1:]) / mean[0]
    return None


def _all_zero(table: List[List[float]]) -> bool:
    return all(v == 0.0 for row in table for v in row)


def _structural_zero(raw: Dict[Tuple[str, str, int], List[List[float]]], name: str, q: str, step: int, steps: int) -> bool:
    """A quantity that is exactly zero at every width and seed because of a zero initialisation: the output of a
    zero-initialised readout at step 0, or the change of the layers below it after the first step (its backward
    signal is exactly zero).  Such a zero says nothing about width; a change that stays zero at every step, a layer
    that never trains, is not excused."""
    if not _all_zero(raw[(name, q, step)]):
        return False
    if step == 0:
        return True
    return any(not _all_zero(raw[(name, q, t)]) for t in range(step + 1, steps + 1) if (name, q, t) in raw)


def _check_widths(widths: Sequence[int]) -> List[int]:
    try:
        ws = [int(w) for w in widths]
    except (TypeError, ValueError):
        raise TypeError(f"widths: expected a list of positive ints, got {widths!r}") from None
    if any(isinstance(w, bool) or not isinstance(w, numbers.Integral) for w in widths):
        raise TypeError(f"widths: expected ints, got {list(widths)!r}")
    if len(set(ws)) < 3 or min(ws) <= 0:
        raise ValueError(f"widths: need at least 3 distinct positive widths to fit a slope, got {ws}")
    return sorted(set(ws))


def _prediction(
    verdict: Optional[theory.Verdict], slopes: Dict[int, theory.Slopes], index: Dict[str, int], name: str, q: str, step: int
) -> Tuple[Optional[Fraction], Optional[Fraction]]:
    """The predicted exponent of ``q`` (a key of :data:`QUANTITIES`) for layer ``name`` after ``step`` updates, as
    ``(predicted, None)``, or ``(upper, lower)`` for a quantity predicted to lie between two exponents; ``(None,
    None)`` when there is no prediction."""
    if verdict is None:
        return None, None
    L = verdict.depth
    own = q.endswith("_own")
    if name == "output":
        p = verdict.f0_exponent if q in ("f", "f_own") else slopes[step].delta_f
    elif name not in index:
        return None, None
    elif q in ("h", "h_own"):
        # pre-activations at init: Theta(1) for l <= L when stable at init; the readout's is f_0
        if index[name] != L:
            return (Fraction(0) if verdict.stable_at_init else None), None
        p = verdict.f0_exponent
    elif index[name] == L:
        p = slopes[step].delta_f  # the readout layer's own output change
    else:
        p = slopes[step].delta_h[index[name]]
    if own:
        # the input token's own logit: its embedding, carried by a residual stream, meets itself in the readout (a sum
        # of n correlated terms, n^(1/2) more than the others' n^f0); without such a path it is like the others
        return p + Fraction(1, 2), p
    return p, None


def _measured_regime(fits: List[Fit], order: List[str], tracked: Dict[str, nn.Module], steps: int, tol: float,
                     verdict: Optional[theory.Verdict], readout: Optional[str]) -> str:
    """The regime the measurements indicate (docs/theory.md section 8).

    When every compared quantity agrees with a stable verdict, that verdict's
    regime is what was measured.  Otherwise the slopes at the last step decide:
    significant growth (beyond the tolerance and twice the noise) is unstable,
    an output change that falls is trivial, a last hidden layer whose change
    falls is kernel.  ``readout`` names the layer whose weight term stands for
    the output when the readout has a bias.
    """
    compared = [f for f in fits if f.status != "-"]
    if verdict is not None and compared and all(f.status == "agree" for f in compared):
        return verdict.regime  # (an unstable verdict: something measurably grows, its only "agree")
    if verdict is not None and verdict.regime == "unstable" and any(f.status == "agree" for f in fits):
        return "unstable"  # a quantity measurably grows (coord_stats.judge_growth)

    def grows(f: Fit) -> bool:
        return math.isinf(f.slope) or f.slope > tol + coord_stats.NOISE_FACTOR * f.noise

    out = readout or "output"
    out_q = {"f": "h", "df": "dh"} if readout else {"f": "f", "df": "df"}
    last = {(f.layer, f.quantity): f for f in fits if f.step in (0, steps)}
    if any(grows(f) for f in fits if f.quantity in ("dh", "df") and not math.isnan(f.slope)):
        return "unstable"  # something grows with width at some step
    roles = {n: getattr(tracked.get(n), "role", None) for n in order}
    init = [f for (layer, q), f in last.items() if q == "h" and roles.get(layer) != "output" and not math.isnan(f.slope)]
    if any(abs(f.slope) > tol + coord_stats.NOISE_FACTOR * f.noise for f in init):
        return "unstable"  # pre-activations vanish or blow up at initialisation
    f0 = next((f for f in fits if (f.layer, f.quantity, f.step) == (out, out_q["f"], 0)), None)
    if f0 is not None and grows(f0):
        return "unstable"
    df = last.get((out, out_q["df"]))
    if df is not None and not math.isnan(df.slope) and df.slope < -tol - coord_stats.NOISE_FACTOR * df.noise and df.status != "agree":
        return "trivial"
    hidden = [n for n in order if roles.get(n) in ("hidden", "input")]
    if hidden:
        r = last.get((hidden[-1], "dh"))
        if r is not None and not math.isnan(r.slope):
            return "feature_learning" if (r.slope >= -tol or r.status == "agree" and r.predicted == 0) else "kernel"
    changes = [f for (layer, q), f in last.items() if q in ("dh", "df")]
    return "feature_learning" if all(abs(f.slope) <= tol for f in changes) else "kernel"
