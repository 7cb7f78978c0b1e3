"""Assertions for users' own test suites: guard a model's regime in CI.

Each helper runs :func:`abcparam.coord_check` with defaults sized for CPU CI
(widths 128 to 1024, 3 steps, 2 seeds: seconds for an MLP) and raises an
``AssertionError`` whose message is the report's table.

    def test_my_model_learns_features():
        abcparam.testing.assert_regime(build, "feature_learning", batch=(x, y),
                                       optimizer=torch.optim.AdamW, lr=1e-2)
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from torch import nn

from .coord import CoordReport, coord_check
from .theory import REGIMES

__all__ = ["CI_WIDTHS", "assert_regime", "assert_stable", "assert_feature_learning", "assert_matches_theory"]

CI_WIDTHS = (128, 256, 512, 1024)


def _run(build: Callable[[int], nn.Module], batch: Any, optimizer: Any, lr: float, widths: Sequence[int], expect: Optional[str], **kw: Any) -> CoordReport:
    kw.setdefault("seeds", (0, 1))
    kw.setdefault("steps", 3)
    return coord_check(build, widths, batch, optimizer=optimizer, lr=lr, expect=expect, **kw)


def assert_matches_theory(build: Callable[[int], nn.Module], *, batch: Any, optimizer: Any, lr: float,
                          widths: Sequence[int] = CI_WIDTHS, **kw: Any) -> CoordReport:
    """Every measured slope agrees with the theory's prediction for the model's declared exponents.

    An unstable model whose measurements grow as the theory says agrees; use
    :func:`assert_stable` or :func:`assert_regime` to require a good model.
    A run with non-finite values, or a model without a prediction, fails.
    """
    report = _run(build, batch, optimizer, lr, widths, None, **kw)
    if not report.agrees:
        raise AssertionError("coordinate check disagrees with the theory\n" + str(report))
    return report


def assert_regime(build: Callable[[int], nn.Module], regime: str, *, batch: Any, optimizer: Any, lr: float,
                  widths: Sequence[int] = CI_WIDTHS, **kw: Any) -> CoordReport:
    """The theory predicts ``regime`` for the model, and the measurements agree."""
    if regime not in REGIMES:
        raise ValueError(f"regime: got {regime!r}; allowed: {', '.join(REGIMES)}")
    report = _run(build, batch, optimizer, lr, widths, regime, **kw)
    if not report.passed:
        raise AssertionError(f"expected regime {regime!r}\n" + str(report))
    return report


def assert_stable(build: Callable[[int], nn.Module], *, batch: Any, optimizer: Any, lr: float,
                  widths: Sequence[int] = CI_WIDTHS, **kw: Any) -> CoordReport:
    """The theory calls the model stable, nothing grows with width, and the measurements agree with the theory."""
    report = _run(build, batch, optimizer, lr, widths, None, **kw)
    if not report.passed:
        raise AssertionError("expected a stable parametrization whose measurements agree with the theory\n" + str(report))
    return report


def assert_feature_learning(build: Callable[[int], nn.Module], **kw: Any) -> CoordReport:
    """Shorthand for ``assert_regime(build, "feature_learning", ...)``."""
    return assert_regime(build, "feature_learning", **kw)
