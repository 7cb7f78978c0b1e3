"""The coordinate check's decision on synthetic tables with a known slope, correction and spread."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abcparam.check import stats as cs

W = [128, 256, 512, 1024]


def table(fn, seeds=2, jitter=0.0):
    """per_width[i][k]: fn(width) times a fixed, seed-dependent factor exp(+-jitter) (alternating by width)."""
    return [[fn(w) * math.exp(jitter * (1 if (i + k) % 2 else -1)) for k in range(seeds)] for i, w in enumerate(W)]


@given(st.sampled_from([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0]), st.floats(-0.15, 0.15))
@settings(max_examples=60, deadline=None)
def test_a_power_law_within_the_tolerance_agrees(p, off):
    j = cs.judge(W, table(lambda w: 3.0 * w ** (p + off)), p, 0.2)
    assert j.status == "agree" and j.slope == pytest.approx(p + off, abs=1e-9)
    assert j.margin == pytest.approx(0.2 - abs(off), abs=1e-9)


@pytest.mark.parametrize("off", [-0.5, 0.5, 1.0, -1.0])
def test_a_power_law_off_by_a_half_or_more_disagrees(off):
    j = cs.judge(W, table(lambda w: w ** (off)), 0.0, 0.2)
    assert j.status == "disagree" and j.margin > 0


@pytest.mark.parametrize("off", [-0.3, 0.3])
def test_between_the_tolerance_and_the_fail_band_is_inconclusive_without_a_bend(off):
    j = cs.judge(W, table(lambda w: w ** off), 0.0, 0.2)
    assert j.status == "inconclusive" and "wider widths" in j.settle


def test_a_fading_correction_is_recognised():
    # Theta(1) plus a part n^-1/2 smaller: the plain slope reads -0.36, far past the tolerance
    j = cs.judge(W, table(lambda w: math.sqrt(1 + 1000 / w)), 0.0, 0.2)
    assert j.slope == pytest.approx(-0.36, abs=0.01)
    assert j.status == "agree" and "finite-width" in j.reason and j.leading_share == pytest.approx(0.71, abs=0.02)
    # a correction that swamps the leading part (share 13% at n = 1024) is not excused
    j = cs.judge(W, table(lambda w: math.sqrt(1 + 60000 / w)), 0.0, 0.2)
    assert j.status != "agree"
    # an escalated pass excuses no correction: the same table is inconclusive there, in judge and judge_between
    j = cs.judge(W, table(lambda w: math.sqrt(1 + 1000 / w)), 0.0, 0.2, excuse=False)
    assert j.status == "inconclusive" and "wider widths" in j.settle
    assert cs.judge_between(W, table(lambda w: math.sqrt(1 + 1000 / w)), 0.0, 0.5, 0.2, excuse=False).status == "inconclusive"
    assert cs.judge_between(W, table(lambda w: math.sqrt(1 + 1000 / w)), 0.0, 0.5, 0.2).status == "agree"


def test_noise_blocks_both_answers():
    j = cs.judge(W, table(lambda w: w ** -0.1, jitter=0.6), 0.0, 0.2)
    assert j.noise > 0.2 and j.status == "inconclusive" and "more seeds" in j.settle
    assert cs.judge(W, table(lambda w: w ** 2.0, jitter=0.6), 0.0, 0.2).status == "disagree"  # a huge deviation still shows


def test_non_finite_and_zero_tables():
    assert cs.judge(W, [[1.0, 1.0], [2.0, 2.0], [float("inf"), 3.0], [1.0, 1.0]], 0.0, 0.2).status == "disagree"
    assert cs.judge(W, [[0.0, 0.0]] * 4, 0.0, 0.2).status == "inconclusive"


def test_growth_for_an_unstable_prediction():
    assert cs.judge_growth(W, table(lambda w: w ** 1.0), 0.2).status == "agree"
    assert cs.judge_growth(W, table(lambda w: w ** 0.0), 0.2).status == "-"
    assert cs.judge_growth(W, table(lambda w: w ** 0.15, jitter=0.3), 0.2).status == "inconclusive"


def test_fit_slope_and_curvature_on_exact_curves():
    slope, spread = cs.fit_slope(W, [[w ** -0.5, 2 * w ** -0.3] for w in W])
    assert spread == pytest.approx(0.2 / math.sqrt(2), rel=1e-9)
    mx = sum(math.log(w) for w in W) / len(W)
    c, se = cs.curvature(W, [math.exp(0.7 * (math.log(w) - mx) ** 2 - 0.2 * math.log(w)) for w in W], 0.0)
    assert c == pytest.approx(0.7, rel=1e-9) and se > 0
    assert cs.curvature(W, [w ** 0.4 for w in W], 0.01)[0] == pytest.approx(0.0, abs=1e-9)
    assert cs.two_part_fit(W, [w ** -0.25 * math.sqrt(4 + 512 / w) for w in W], -0.25)[1] == pytest.approx(2 / math.sqrt(4.5), abs=0.01)


@given(st.floats(-1.0, 1.0), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
@settings(max_examples=60, deadline=None)
def test_an_interval_prediction_agrees_inside_and_is_judged_by_the_nearer_end_outside(low, width, t):
    high = low + width
    p = low + t * width
    j = cs.judge_between(W, table(lambda w: 2.0 * w ** p), low, high, 0.2)
    assert j.status == cs.AGREE and abs(j.slope - p) < 1e-9 and j.margin == pytest.approx(0.2)  # inside: the whole tolerance
    for q, end in ((high + 0.9, high), (low - 0.9, low)):  # far outside: the nearer end's judgement, a disagreement
        out = cs.judge_between(W, table(lambda w: w ** q), low, high, 0.2)
        assert out.status == cs.DISAGREE and out == cs.judge(W, table(lambda w: w ** q), end, 0.2)
