"""The coordinate check's statistics: from RMS tables to *agree*, *disagree* or *inconclusive*.

:func:`abcparam.coord_check` measures, for each layer and step, the RMS of a
quantity at several widths and seeds; this module turns one such table and the
theory's predicted exponent p into a decision (docs/theory.md section 8).  It
owns three ideas, explained in the README's "How the check decides":

1. **The slope and its noise.**  The measured exponent is the least-squares
   slope of log(mean RMS over seeds) against log(width).  Its noise is the
   standard error of the per-seed slopes combined with the standard error of
   the fit itself.  A slope within the tolerance of the prediction agrees (when
   the noise itself is within the tolerance).
2. **What finite widths can do.**  A quantity of order n^p is, at finite
   width, typically the RMS of a leading part and a part n^-1/2 smaller (the
   kernel-like part of a small learning rate, for instance), or of parts that
   cancel: over widths 128 to 1024 its log-log slope can read 0.2 to 0.4 away
   from p although it is of order n^p.  So a deviation counts as a
   *disagreement* only beyond twice the tolerance plus twice the noise (0.4 +
   2 noise at the default tolerance): the broken models a check must catch are
   off by 1/2 or more (a kernel-like layer, an unscaled learning rate, a
   missing multiplier).  Between the tolerance and that, the check looks for
   the correction itself: when the two-part curve n^p sqrt(A^2 + B^2 / n) fits
   the measurements within their noise, they bend toward the prediction as
   the width grows (a convex log-log curve, significantly), and the leading
   part carries at least a quarter of the RMS at the widest width, the
   quantity agrees ("corrected").
3. **A third outcome.**  Otherwise the answer is *inconclusive*, with what
   would settle it: wider widths (the corrections fade like n^-1/2), more seeds
   (the noise), or a smaller learning rate (seeds that disagree by more than
   the tolerance at a large learning rate: chaotic dynamics at small width).

>>> import math
>>> widths = [128, 256, 512, 1024]
>>> j = judge(widths, [[w ** -0.5, 1.1 * w ** -0.5] for w in widths], -0.5, 0.2)
>>> j.status, round(j.slope, 3)
('agree', -0.5)
>>> judge(widths, [[math.sqrt(1 + 1000 / w)] * 2 for w in widths], 0, 0.2).status   # Theta(1) + n^-1/2 part
'agree'
>>> judge(widths, [[w ** -0.5] * 2 for w in widths], 0, 0.2).status                 # n^-1/2 where 1 is predicted
'disagree'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

__all__ = ["AGREE", "DISAGREE", "INCONCLUSIVE", "Judgement", "fit_slope", "judge", "judge_between", "NOISE_FACTOR"]

AGREE, DISAGREE, INCONCLUSIVE = "agree", "disagree", "inconclusive"
NO_GROWTH = "-"  # judge_growth: this quantity does not grow (not a disagreement: one grower satisfies a lower bound)
NOISE_FACTOR = 2.0  # a deviation counts when it exceeds FAIL_FACTOR * tolerance + NOISE_FACTOR * noise
FAIL_FACTOR = 2.0  # between tolerance and FAIL_FACTOR * tolerance, finite-width corrections can move a slope
NOISE_FLOOR = 0.01  # slopes are never known better than this
LEADING_SHARE_AGREE = 0.25  # the leading part's share of the RMS at the widest width, to excuse a low slope
LEADING_SHARE_ABSENT = 0.10  # below this the leading part is taken to be absent
CURVE_RESIDUAL_FLOOR = 0.012  # RMS residual (in log) the two-part curve may leave without noise to explain it


@dataclass(frozen=True)
class Judgement:
    """The decision on one measured quantity.

    ``margin`` is the distance to the nearest decision boundary, in slope
    units: how far inside the tolerance an agreement is, or how far past
    ``tolerance + 2 * noise`` a disagreement is (0 for inconclusive results).
    ``leading_share`` is the share of the RMS the predicted leading part
    carries at the widest width when the finite-width correction was used.
    """

    status: str
    slope: float
    spread: float
    noise: float
    margin: float
    reason: str = ""
    settle: str = ""
    leading_share: Optional[float] = None


def ols(xs: Sequence[float], ys: Sequence[float]) -> Tuple[float, float]:
    """Least-squares slope and its standard error (0 with fewer than 3 points)."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    if len(xs) < 3:
        return slope, 0.0
    resid = [y - my - slope * (x - mx) for x, y in zip(xs, ys)]
    return slope, math.sqrt(sum(r * r for r in resid) / (len(xs) - 2) / sxx)


def _slope_of(widths: Sequence[int], values: Sequence[float]) -> float:
    if any(not math.isfinite(v) for v in values):
        return float("inf")  # overflowed: grew without bound
    if any(v <= 0 for v in values):
        return float("nan")  # identically zero (e.g. a zero-initialised readout)
    return ols([math.log(w) for w in widths], [math.log(v) for v in values])[0]


def fit_slope(widths: Sequence[int], per_width: List[List[float]]) -> Tuple[float, float]:
    """Slope of log(mean over seeds) against log width, and the standard deviation of the per-seed slopes.

    ``per_width[i][k]`` is the RMS at ``widths[i]`` for seed k.
    """
    mean = [sum(v) / len(v) for v in per_width]
    slopes = [_slope_of(widths, list(s)) for s in zip(*per_width)]
    finite = [s for s in slopes if math.isfinite(s)]
    spread = 0.0
    if len(finite) > 1:
        m = sum(finite) / len(finite)
        spread = math.sqrt(sum((s - m) ** 2 for s in finite) / (len(finite) - 1))
    return _slope_of(widths, mean), spread


def _noise(widths: Sequence[int], per_width: List[List[float]], spread: float) -> float:
    """Standard error of the fitted slope: seed-to-seed (spread / sqrt(seeds)) and lack of fit, combined."""
    seeds = len(per_width[0])
    mean = [sum(v) / len(v) for v in per_width]
    _, se_fit = ols([math.log(w) for w in widths], [math.log(v) for v in mean])
    se_seed = spread / math.sqrt(seeds) if seeds > 1 else 0.0
    return max(NOISE_FLOOR, math.sqrt(se_seed ** 2 + se_fit ** 2))


def _log_noise(per_width: List[List[float]]) -> float:
    """Typical standard error of log(mean RMS) at one width, from the seeds."""
    if len(per_width[0]) < 2:
        return 0.0
    errs = []
    for v in per_width:
        logs = [math.log(x) for x in v]
        m = sum(logs) / len(logs)
        errs.append(math.sqrt(sum((x - m) ** 2 for x in logs) / (len(logs) - 1) / len(logs)))
    return sum(errs) / len(errs)


def two_part_fit(widths: Sequence[int], values: Sequence[float], p: float) -> Tuple[float, float]:
    """Fit values = n^p sqrt(A^2 + B^2 / n) (A, B >= 0); return (RMS residual in log, A's share at the widest width).

    The share is A / sqrt(A^2 + B^2 / n_max): 1 when the correction has faded,
    0 when only the n^-1/2-smaller part is there.  The fit scans rho = B^2 / A^2
    on a log grid (plus rho = 0 and rho = infinity), solving log A exactly for each.
    """
    z = [math.log(v) - p * math.log(w) for w, v in zip(widths, values)]
    best = (float("inf"), 1.0)
    candidates = [0.0] + [widths[0] * 10 ** (k / 40) for k in range(-160, 161)] + [float("inf")]
    for rho in candidates:
        if rho == float("inf"):
            shape = [-0.5 * math.log(w) for w in widths]
            share = 0.0
        else:
            shape = [0.5 * math.log1p(rho / w) for w in widths]
            share = 1.0 / math.sqrt(1.0 + rho / widths[-1])
        offset = sum(a - b for a, b in zip(z, shape)) / len(z)
        rms = math.sqrt(sum((a - b - offset) ** 2 for a, b in zip(z, shape)) / len(z))
        if rms < best[0] - 1e-12:
            best = (rms, share)
    return best


def judge(widths: Sequence[int], per_width: List[List[float]], predicted: float, tolerance: float, *, at_init: bool = False,
          excuse: bool = True) -> Judgement:
    """Decide whether the measured table agrees with a quantity of order n^predicted (see the module docstring).

    ``at_init``: a quantity at initialisation (no training), whose finite-width
    corrections are of relative order 1/n, not n^-1/2: it disagrees as soon as
    it is past the tolerance plus twice the noise.  ``excuse=False``: a slope below the prediction is never
    excused as a finite-width correction (an escalated pass must agree outright: abcparam.check.escalation).
    """
    slope, spread = fit_slope(widths, per_width)
    if not math.isfinite(slope):
        if math.isinf(slope):
            return Judgement(DISAGREE, slope, spread, float("inf"), float("inf"), "non-finite values: it grew without bound")
        return Judgement(INCONCLUSIVE, slope, spread, float("nan"), 0.0, "zero values: no slope to fit",
                         "a nonzero initialisation of this layer")
    noise = _noise(widths, per_width, spread)
    dev = slope - predicted
    fail_at = (1.0 if at_init else FAIL_FACTOR) * tolerance + NOISE_FACTOR * noise
    if abs(dev) <= tolerance and noise <= tolerance:
        return Judgement(AGREE, slope, spread, noise, tolerance - abs(dev))
    if abs(dev) > fail_at:
        return Judgement(DISAGREE, slope, spread, noise, abs(dev) - fail_at,
                         f"{'grows faster' if dev > 0 else 'falls faster'} than predicted by {abs(dev):.2f}, more than a "
                         f"finite-width correction or the noise ({noise:.2f}) explains")
    if dev < 0 and excuse:
        # Below the prediction: a finite-width correction explains it if the two-part curve fits, the
        # measurements bend toward the prediction as the width grows, and the leading part is still there.
        mean = [sum(v) / len(v) for v in per_width]
        log_noise = _log_noise(per_width)
        residual, share = two_part_fit(widths, mean, predicted)
        curve_ok = residual <= max(NOISE_FACTOR * log_noise, CURVE_RESIDUAL_FLOOR)
        bend, bend_se = curvature(widths, mean, log_noise)
        if curve_ok and bend > NOISE_FACTOR * bend_se and share >= LEADING_SHARE_AGREE and noise <= tolerance:
            return Judgement(AGREE, slope, spread, noise, min(tolerance, share - LEADING_SHARE_AGREE),
                             f"order n^{predicted:g} with a finite-width n^-1/2 correction (leading part {share:.0%} at the "
                             "widest width)", leading_share=share)
    if abs(dev) > tolerance:
        return Judgement(INCONCLUSIVE, slope, spread, noise, 0.0,
                         f"{dev:+.2f} from the prediction: past the tolerance, but within what finite-width corrections and "
                         f"the noise ({noise:.2f}) can do at these widths",
                         "wider widths (finite-width corrections fade like n^-1/2)" + ("; more seeds" if noise > tolerance / 2 else ""))
    return Judgement(INCONCLUSIVE, slope, spread, noise, 0.0, f"{dev:+.2f} from the prediction, but the noise ({noise:.2f}) is "
                     "larger than the tolerance", _settle_noise(noise, tolerance))


def judge_between(widths: Sequence[int], per_width: List[List[float]], low: float, high: float, tolerance: float, *,
                  at_init: bool = False, excuse: bool = True) -> Judgement:
    """Decide whether the table agrees with a quantity of order between n^low and n^high (``low <= high``).

    Inside the interval (widened by the tolerance) it agrees; outside, it is
    judged against the nearer end by :func:`judge`.
    """
    slope, spread = fit_slope(widths, per_width)
    if math.isfinite(slope) and low - tolerance <= slope <= high + tolerance:
        noise = _noise(widths, per_width, spread)
        if noise <= tolerance:
            return Judgement(AGREE, slope, spread, noise, min(tolerance, slope - low + tolerance, high + tolerance - slope),
                             f"between n^{low:g} and n^{high:g}")
    return judge(widths, per_width, low if math.isfinite(slope) and slope < low else high, tolerance, at_init=at_init,
                 excuse=excuse)


def curvature(widths: Sequence[int], log_values_or_values: Sequence[float], log_noise: float) -> Tuple[float, float]:
    """Quadratic coefficient c of log(value) = a + b x + c x^2 (x = log width, centred) and its standard error.

    A fading n^-1/2 correction below the leading part makes the log-log curve
    convex (c > 0: the local slope rises toward the prediction).  The standard
    error propagates ``log_noise`` (the standard error of each log value),
    floored at half the two-part fit's residual floor.  With three widths or fewer
    there is no error estimate and the bend counts as unmeasured (c = 0).
    """
    if len(widths) < 4:
        return 0.0, float("inf")
    xs = [math.log(w) for w in widths]
    mx = sum(xs) / len(xs)
    xs = [x - mx for x in xs]
    ys = [math.log(v) for v in log_values_or_values]
    # weights w_k with c = sum w_k y_k: the third row of (X^T X)^-1 X^T for X = [1, x, x^2]
    s0, s1, s2, s3, s4 = (sum(x ** k for x in xs) for k in range(5))
    m = [[s0, s1, s2], [s1, s2, s3], [s2, s3, s4]]
    det = (m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
           + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]))
    # third row of the inverse (cofactors)
    r0 = (m[1][0] * m[2][1] - m[1][1] * m[2][0]) / det
    r1 = -(m[0][0] * m[2][1] - m[0][1] * m[2][0]) / det
    r2 = (m[0][0] * m[1][1] - m[0][1] * m[1][0]) / det
    weights = [r0 + r1 * x + r2 * x * x for x in xs]
    c = sum(w * y for w, y in zip(weights, ys))
    sigma = max(log_noise, CURVE_RESIDUAL_FLOOR / 2)
    return c, sigma * math.sqrt(sum(w * w for w in weights))


def judge_growth(widths: Sequence[int], per_width: List[List[float]], tolerance: float, *,
                 least: Optional[float] = None) -> Judgement:
    """For an unstable prediction (a lower bound only): does the quantity measurably grow with width?

    ``agree`` when its slope exceeds ``least`` (default half the tolerance)
    plus twice the noise, ``inconclusive`` when it exceeds ``least`` only,
    ``"-"`` otherwise.
    """
    least = tolerance / 2 if least is None else least
    slope, spread = fit_slope(widths, per_width)
    if math.isinf(slope):
        return Judgement(AGREE, slope, spread, float("inf"), float("inf"), "grew without bound")
    if math.isnan(slope):
        return Judgement(INCONCLUSIVE, slope, spread, float("nan"), 0.0, "zero values")
    noise = _noise(widths, per_width, spread)
    threshold = least + NOISE_FACTOR * noise  # a lower bound: any clear growth will do
    if slope > threshold:
        return Judgement(AGREE, slope, spread, noise, slope - threshold, "grows")
    if slope > least:
        return Judgement(INCONCLUSIVE, slope, spread, noise, 0.0, "grows within the noise", _settle_noise(noise, tolerance))
    return Judgement(NO_GROWTH, slope, spread, noise, 0.0, "does not grow")  # no disagreement by itself: a bound needs one grower


def _settle_noise(noise: float, tolerance: float) -> str:
    if noise > tolerance:
        return "more seeds or a smaller learning rate (the seeds disagree by more than the tolerance)"
    return "more seeds"
