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
from fractions import Fraction
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .. import torch_quiet  # noqa: F401  (torch without the numpy warning)
import torch
from torch import nn

from .. import theory, validate
from ..layers import is_abc_layer
from . import stats
from .decision import DEFAULT_TOLERANCE, TOLERANCE_IS, Fit
from .depth import DepthReport, depth_check
from .engine import Batch, default_loss
from .escalation import DEFAULT_BUDGET, escalate
from .measure import check_declared, measure, readout_bias
from .prediction import QUANTITIES, attention_fits, family_text, measured_regime, predict, prediction
from .report import CoordReport

__all__ = ["coord_check", "CoordReport", "Fit", "DEFAULT_TOLERANCE", "QUANTITIES"]

LOSS_RISE = 2.0  # the loss at the smallest width rising past this factor of its start: the learning rate is too large
# ... or at a wider width past this one: there a few steps move a correct model's features less, so a rise that the
# smallest width does not show is a rate past the edge of stability at those widths (a catapult: the loss climbs
# until the kernel adapts, more slowly the wider the network), not an asymptotic effect
WIDE_LOSS_RISE = 1.5


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
            first pass is inconclusive: it then adds seeds, lowers a
            learning rate under which the loss rises (to a quarter, twice at
            most: the report's ``lowered_from`` says so), then moves the
            widths up an octave, twice (:mod:`abcparam.check.escalation`),
            each only when its predicted cost fits, and reports what it
            added.  ``0`` or ``None``: one pass only.

    With ``depths=`` instead of ``widths`` (``build(depth) -> model`` at a
    fixed width) this is the depth check of docs/theory.md section 12,
    :func:`abcparam.check.depth.depth_check`, and returns its report; ``expect``
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
    declared = check_declared(exponents)
    validate.number(budget, "budget", zero_ok=True, none_ok=True, what="a time in seconds")

    def run(widths: List[int], seeds: List[int], escalated: bool, scale: Fraction) -> CoordReport:
        return _check_once(build, widths, batch, optimizer, lr * float(scale), steps, seeds, loss_fn, modules, tolerance, expect, family,
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
            m = measure(build, width, seed, batch, optimizer, lr, steps, loss_fn, modules, family, calls, declared)
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
            values = measure(build, width, extra, batch, optimizer, lr, 0, loss_fn, modules, family, None, declared).values
            for key, v in values.items():
                if key in raw:
                    raw[key][wi].append(v)

    verdict, index, notes, no_prediction = predict(order, tracked, fams, alignment)
    fam = family_text(fams)

    unowned_modules = {n for n in order if not is_abc_layer(tracked.get(n)) and n not in modules}
    readouts = [n for n in order if getattr(tracked.get(n), "role", None) == "output"]
    has_readout_bias = any(readout_bias(tracked[n]) is not None for n in readouts)
    if has_readout_bias:
        notes.append("the readout has a bias (order one at every width): f_0 and Delta f are judged on the readout's "
                     "weight term (its output minus the bias); the model output is measured, not predicted")
    fits = _judge_all(widths, raw, order, tracked, verdict, index, steps, tolerance, unowned_modules, has_readout_bias, escalated)
    fits.extend(attention_fits(attention_calls, tracked, verdict))

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
        measured_regime=measured_regime(fits, order, tracked, steps, tolerance, verdict, readouts[-1] if has_readout_bias else None),
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
               tolerance: float, unowned_modules: set, has_readout_bias: bool, escalated: bool) -> List[Fit]:
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
            pred, low = prediction(verdict, slopes_by_step, index, name, q, step)
            if name == "output" and has_readout_bias:
                pred = low = None
            if _structural_zero(raw, name, q, step, steps):
                fits.append(Fit(name, role, q, step, math.nan, 0.0, pred, None, "-", 0.0, 0.0,
                                "exactly zero at every width and seed before a later step moves it (a zero-initialised "
                                "layer): no slope, not compared"))
                continue
            if pred is None:
                if name in unowned_modules and q == "dh" and verdict is not None and not unstable:
                    # not predicted, but a stable verdict means nothing may grow: growth past the fail band counts
                    j = stats.judge_growth(widths, raw[key], tolerance, least=stats.FAIL_FACTOR * tolerance)
                    if j.status == "agree":
                        fits.append(Fit(name, role, q, step, j.slope, j.spread, None, False, "disagree", j.noise, j.margin,
                                        "grows with width (owned by no abcparam layer, so not predicted; the model is unstable)"))
                        continue
                slope, spread = stats.fit_slope(widths, raw[key])
                fits.append(Fit(name, role, q, step, slope, spread, None, None))
                continue
            if unstable:
                # only a lower bound (section 8): what counts is whether something measurably grows
                j = stats.judge_growth(widths, raw[key], tolerance)
            elif low is not None:
                j = stats.judge_between(widths, raw[key], float(low), float(pred), tolerance, at_init=(step == 0),
                                              excuse=not escalated)
            else:
                j = stats.judge(widths, raw[key], float(pred), tolerance, at_init=(step == 0), excuse=not escalated)
            ok = {"agree": True, "disagree": False}.get(j.status) if not unstable else None
            fits.append(Fit(name, role, q, step, j.slope, j.spread, pred, ok, j.status, j.noise, j.margin, j.reason, j.settle,
                            predicted_low=low))
    return fits


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
