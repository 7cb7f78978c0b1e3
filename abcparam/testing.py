"""Assertions for users' own test suites: guard a model's regime in CI.

Each helper runs :func:`abcparam.coord_check` with defaults sized for CPU CI
(widths 128 to 1024, 3 steps, 2 seeds: about a second for an MLP) and raises an
``AssertionError`` whose message is the report's table when the check fails,
and :class:`Inconclusive` (also an ``AssertionError``, so it never passes
silently) when the measurements cannot decide; its message says what would
settle it (more seeds, wider widths, a smaller learning rate).  Pass
``inconclusive="skip"`` to turn that into ``pytest.skip`` instead (the test
shows as skipped, with the reason).

    def test_my_model_learns_features():
        abcparam.testing.assert_regime(build, "feature_learning", batch=(x, y),
                                       optimizer=torch.optim.AdamW, lr=1e-2)
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from torch import nn

from . import validate
from .check.width import CoordReport, coord_check
from .theory import REGIMES

__all__ = ["CI_WIDTHS", "CI_DEPTHS", "CI_SEEDS", "CI_STEPS", "Inconclusive", "assert_regime", "assert_mup", "check_mup", "assert_stable",
           "assert_feature_learning", "assert_matches_theory", "assert_depth_regime", "assert_inferred_regime"]

_INCONCLUSIVE_MODES = ("raise", "skip")


class Inconclusive(AssertionError):
    """The coordinate check could not decide (see ``report.outcome()`` for what would settle it)."""

    def __init__(self, message: str, report: CoordReport) -> None:
        super().__init__(message)
        self.report = report

CI_WIDTHS = (128, 256, 512, 1024)
CI_SEEDS = (0, 1)
CI_STEPS = 3


def _run(build: Callable[[int], nn.Module], batch: Any, optimizer: Any, lr: float, widths: Sequence[int], expect: Optional[str],
         inconclusive: str, **kw: Any) -> CoordReport:
    if inconclusive not in _INCONCLUSIVE_MODES:
        raise ValueError(f"inconclusive: got {inconclusive!r}; allowed: {', '.join(map(repr, _INCONCLUSIVE_MODES))}")
    kw.setdefault("seeds", CI_SEEDS)
    kw.setdefault("steps", CI_STEPS)
    return coord_check(build, widths, batch, optimizer=optimizer, lr=lr, expect=expect, **kw)


def _undecided(report: CoordReport, headline: str, inconclusive: str) -> None:
    """Raise Inconclusive (or skip the calling pytest test) for an inconclusive report."""
    message = f"{headline}: inconclusive\n" + str(report)
    if inconclusive == "skip":
        import pytest

        pytest.skip(message)
    raise Inconclusive(message, report)


def assert_matches_theory(build: Callable[[int], nn.Module], *, batch: Any, optimizer: Any, lr: float,
                          widths: Sequence[int] = CI_WIDTHS, inconclusive: str = "raise", **kw: Any) -> CoordReport:
    """Every measured slope agrees with the theory's prediction for the model's declared exponents.

    An unstable model whose measurements grow as the theory says agrees; use
    :func:`assert_stable` or :func:`assert_regime` to require a good model.
    A run with non-finite values, or a model without a prediction, fails.
    """
    report = _run(build, batch, optimizer, lr, widths, None, inconclusive, **kw)
    if report.agrees:
        return report
    if report.comparison == "inconclusive":
        _undecided(report, "coordinate check against the theory", inconclusive)
    raise AssertionError("coordinate check disagrees with the theory\n" + str(report))


def assert_regime(build: Callable[[int], nn.Module], regime: str, *, batch: Any, optimizer: Any, lr: float,
                  widths: Sequence[int] = CI_WIDTHS, inconclusive: str = "raise", **kw: Any) -> CoordReport:
    """The theory predicts ``regime`` for the model, and the measurements agree."""
    validate.choice(regime, "regime", REGIMES)
    report = _run(build, batch, optimizer, lr, widths, regime, inconclusive, **kw)
    if report.status == "inconclusive":
        _undecided(report, f"expected regime {regime!r}", inconclusive)
    if not report.passed:
        raise AssertionError(f"expected regime {regime!r}\n" + str(report))
    return report


def assert_stable(build: Callable[[int], nn.Module], *, batch: Any, optimizer: Any, lr: float,
                  widths: Sequence[int] = CI_WIDTHS, inconclusive: str = "raise", **kw: Any) -> CoordReport:
    """The theory calls the model stable, nothing grows with width, and the measurements agree with the theory."""
    report = _run(build, batch, optimizer, lr, widths, None, inconclusive, **kw)
    if report.status == "inconclusive":
        _undecided(report, "expected a stable parametrization", inconclusive)
    if not report.passed:
        raise AssertionError("expected a stable parametrization whose measurements agree with the theory\n" + str(report))
    return report


def check_mup(build: Callable[[int], nn.Module], *, batch: Any, optimizer: Any, lr: float,
              widths: Sequence[int] = CI_WIDTHS, **kw: Any) -> Any:
    """The report that decides :func:`assert_mup`: the width check expecting feature learning, then (unless it
    fails) every tensor's own update (:mod:`abcparam.check.maximal`).

    A failing width check decides; so does a failing maximal-update check, even when the width check could not
    decide (a tensor whose own update vanishes with width is evidence enough); an undecided width check with no
    failing tensor is inconclusive.  Returns the :class:`CoordReport` or the maximal-update report, whichever decided.
    """
    from .check.maximal import maximal_check

    kw.setdefault("seeds", CI_SEEDS)
    kw.setdefault("steps", CI_STEPS)
    regime = coord_check(build, widths, batch, optimizer=optimizer, lr=lr, expect="feature_learning", **kw)
    if regime.status == "fail":
        return regime
    shared = {k: kw[k] for k in ("steps", "loss", "tolerance", "family", "budget") if k in kw}
    report = maximal_check(build, regime.widths, batch, optimizer=optimizer, lr=lr, seeds=regime.seeds, **shared)
    return regime if regime.status == "inconclusive" and report.status != "fail" else report


def assert_mup(build: Callable[[int], nn.Module], *, batch: Any, optimizer: Any, lr: float,
               widths: Sequence[int] = CI_WIDTHS, inconclusive: str = "raise", **kw: Any) -> Any:
    """muP itself: the regime is feature learning (:func:`assert_regime`) *and* every trained tensor is updated
    maximally, its own update of order one at every width (:mod:`abcparam.check.maximal`; docs/theory.md section 4).

    Catches what the regime alone cannot: a tensor trained too slowly while the others keep the features moving
    (a plain ``nn.Linear`` input layer, or a plain hidden layer's bias, under SGD; a norm's gains trained at a
    matrix's rate).  The failure names the tensors.  Takes :func:`assert_regime`'s arguments (``seeds``, ``steps``,
    ``tolerance``, ``loss``, ``family`` also reach the maximal-update check); decided as :func:`check_mup` says;
    returns the maximal-update report.
    """
    if inconclusive not in _INCONCLUSIVE_MODES:
        raise ValueError(f"inconclusive: got {inconclusive!r}; allowed: {', '.join(map(repr, _INCONCLUSIVE_MODES))}")
    report = check_mup(build, batch=batch, optimizer=optimizer, lr=lr, widths=widths, **kw)
    what = ("expected regime 'feature_learning'" if isinstance(report, CoordReport)
            else "expected every tensor updated maximally (muP)")
    if report.status == "fail":
        raise AssertionError(f"{what}\n" + str(report))
    if report.status == "inconclusive":
        _undecided(report, what, inconclusive)
    return report


def assert_feature_learning(build: Callable[[int], nn.Module], **kw: Any) -> CoordReport:
    """Shorthand for ``assert_regime(build, "feature_learning", ...)``."""
    return assert_regime(build, "feature_learning", **kw)


def assert_inferred_regime(build: Callable[[int], nn.Module], regime: str, *, optimizer: Any, lr: float,
                           widths: Sequence[int] = (64, 128, 256), **kw: Any) -> Any:
    """The parametrization :func:`abcparam.inspect` infers from ``build`` (any model code) has ``regime``; the
    failure message is the whole inspection, naming the tensors to blame.  Returns the :class:`Inspection`."""
    from .inspection import inspect

    validate.choice(regime, "regime", REGIMES)
    result = inspect(build, optimizer=optimizer, lr=lr, widths=widths, **kw)
    if result.regime != regime:
        raise AssertionError(f"expected the inferred regime {regime!r}, got {result.regime!r}\n{result}")
    if result.coord is not None and result.confirmed is False:
        raise AssertionError(f"the coordinate check contradicts the inferred regime {regime!r}\n{result}")
    return result


CI_DEPTHS = (2, 4, 8, 16, 32)


def assert_depth_regime(build: Callable[[int], nn.Module], regime: str, *, batch: Any, optimizer: Any, lr: float,
                        depths: Sequence[int] = CI_DEPTHS, inconclusive: str = "raise", **kw: Any) -> Any:
    """The depth rule of ``build(depth)``'s residual branches is ``regime`` in theory (``"feature_learning"``:
    CompleteP; ``"lazy"``: Depth-muP), and the depth check's measurements agree (docs/theory.md section 12)."""
    from .theory.depth import DEPTH_REGIMES
    from .check.depth import depth_check

    validate.choice(regime, "regime", DEPTH_REGIMES)
    if inconclusive not in _INCONCLUSIVE_MODES:
        raise ValueError(f"inconclusive: got {inconclusive!r}; allowed: {', '.join(map(repr, _INCONCLUSIVE_MODES))}")
    kw.setdefault("seeds", CI_SEEDS)
    kw.setdefault("steps", CI_STEPS)
    report = depth_check(build, depths, batch, optimizer=optimizer, lr=lr, expect=regime, **kw)
    if report.status == "inconclusive":
        _undecided(report, f"expected depth regime {regime!r}", inconclusive)
    if not report.passed:
        raise AssertionError(f"expected depth regime {regime!r}\n" + str(report))
    return report
