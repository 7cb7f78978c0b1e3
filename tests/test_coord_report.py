"""The coordinate check's report on hand-made fits: its decision, in every branch and with its exact words, and
its renderings (summary, table, markdown, JSON).

No model is trained here: each report is built from :class:`abcparam.check.decision.Fit` rows whose statuses are chosen,
so each test pins down one rule of the decision or one detail of a rendering (what a user reads and a script
parses).  The whole file runs in well under a second.
"""

import functools
import json
import math
import warnings
from fractions import Fraction as F

import pytest

import abcparam
from abcparam.check import width as coord
from abcparam.check.report import DECISIVE_MARGIN
from abcparam.check import decision

@functools.cache
def _verdict(name):
    """muP under Adam (feature learning, f_0 ~ n^-1/2), _verdict("ntk") under SGD (kernel), SP under Adam (unstable); computed
    when a test first asks (a module that classifies at import turns a broken classify into a collection error)."""
    preset, family = {"mup": ("mup", "adam"), "ntk": ("ntk", "sgd"), "sp": ("sp", "adam")}[name]
    return abcparam.classify(abcparam.preset(preset, 2), optimizer=family)


def fit(layer="layers.1", quantity="dh", step=1, slope=0.0, status="agree", predicted=F(0), **kw):
    ok = {"agree": True, "disagree": False}.get(status)
    args = dict(role="hidden", spread=0.01, noise=0.05, margin=0.1, reason="", settle="", predicted_low=None)
    args.update(kw)
    return coord.Fit(layer, args.pop("role"), quantity, step, slope, args.pop("spread"), predicted, ok, status, **args)


def report(fits, verdict="mup", measured=None, **kw):
    verdict = _verdict(verdict) if isinstance(verdict, str) else verdict
    measured = measured if measured is not None else (verdict.regime if verdict is not None else "feature_learning")
    args = dict(widths=[64, 128, 256], steps=2, seeds=[0, 1], family="adam", lr=0.01, tolerance=0.2, fits=fits, rms={},
                verdict=verdict, measured_regime=measured)
    args.update(kw)
    return coord.CoordReport(**args)


# -- the decision ---------------------------------------------------------------------------------------------------


def test_every_agreeing_fit_and_the_predicted_regime_pass():
    r = report([fit(), fit("output", "df", role="output")])
    assert (r.status, r.comparison, r.agrees, r.passed, r.inconclusive) == ("pass", "agree", True, True, False)
    assert r.outcome() == "PASS: the measurements agree with the theory (feature_learning)"


def test_agreeing_fits_with_another_measured_regime_disagree():
    r = report([fit()], measured="kernel")
    assert (r.status, r.comparison, r.agrees) == ("fail", "disagree", False)
    assert r.outcome() == "FAIL: the measurements disagree with the theory"


def test_one_disagreeing_fit_fails_even_beside_undecided_ones():
    r = report([fit(), fit(status="inconclusive"), fit(status="disagree", slope=0.9)])
    assert (r.status, r.comparison) == ("fail", "disagree")
    assert [f.slope for f in r.mismatches] == [0.9] and len(r.undecided) == 1


def test_a_diverged_run_fails_and_names_its_first_non_finite_value():
    r = report([fit()], nonfinite=[(128, 1, 2, "layers.1 dh, output df"), (256, 0, 1, "output df")])
    assert (r.diverged, r.comparison, r.agrees, r.status) == (True, "disagree", False, "fail")
    assert r.outcome() == ("FAIL: non-finite values (the run diverged), first at width 128, seed 1, step 2 in "
                           "layers.1 dh, output df")
    assert not report([fit()]).diverged


def test_without_a_prediction_only_an_expected_regime_that_is_measured_passes():
    r = report([fit(predicted=None, status="-")], verdict=None, measured="kernel")
    assert (r.comparison, r.agrees, r.theory_regime) == ("none", False, None)
    assert r.outcome() == "FAIL: no prediction to compare with" and r.status == "fail"
    r = report([], verdict=None, measured="kernel", expect="kernel")
    assert r.outcome() == "PASS: measured kernel, expected kernel (no prediction)" and r.passed
    r = report([], verdict=None, measured="unstable", expect="kernel")
    assert r.outcome() == "FAIL: measured unstable, expected kernel (no prediction)" and r.status == "fail"


def test_an_expected_regime_the_theory_does_not_predict_fails_whatever_was_measured():
    r = report([fit()], expect="kernel")
    assert r.outcome() == "FAIL: the theory predicts feature_learning, expected kernel" and r.status == "fail"
    assert report([fit()], expect="feature_learning").passed


def test_undecided_fits_are_listed_four_at_most_with_what_would_settle_them():
    undecided = [fit(f"l{k}", step=k % 2 + 1, status="inconclusive", settle=s) for k, s in enumerate(["wider", "seeds", "wider", "", "x"])]
    r = report([fit(), *undecided])
    assert (r.status, r.comparison, r.inconclusive, r.passed) == ("inconclusive", "inconclusive", True, False)
    assert r.outcome() == ("INCONCLUSIVE: nothing disagrees, but the measurements cannot decide l0 dh@1, l1 dh@2, l2 dh@1, "
                           "l3 dh@2 (+1 more); would settle it: seeds; wider; x")
    r = report([fit("a", status="inconclusive")])
    assert r.outcome() == "INCONCLUSIVE: nothing disagrees, but the measurements cannot decide a dh@1"
    r = report([fit(f"l{k}", status="inconclusive") for k in range(4)])  # four are all shown: nothing more
    assert r.outcome() == "INCONCLUSIVE: nothing disagrees, but the measurements cannot decide l0 dh@1, l1 dh@1, l2 dh@1, l3 dh@1"


def test_a_rising_loss_makes_a_stable_check_inconclusive_but_not_an_unstable_one():
    # outside the asymptotic regime outright agreement everywhere still passes, and says the loss rose
    r = report([fit(), fit("output", "df", role="output")], lr_too_large=(64, 3.04))
    assert (r.comparison, r.status) == ("agree", "pass")
    assert r.outcome() == ("PASS: the measurements agree with the theory (feature_learning): every quantity at every step, "
                           "outright, although the loss rises 3.0x at width 64")
    # ... but an agreement that excuses a finite-width correction, an undecided quantity, or another measured regime
    # does not pass there
    for fits, measured in [([fit(reason="agrees after the leading 1/sqrt(n) correction")], None),
                           ([fit(), fit("layers.2", status="inconclusive")], None), ([fit()], "kernel")]:
        r = report(fits, lr_too_large=(64, 3.04), measured=measured)
        assert (r.comparison, r.status) == ("inconclusive", "inconclusive")
    r = report([fit(), fit("layers.2", status="disagree", slope=0.6, margin=0.05)], lr_too_large=(64, 3.04))
    assert (r.comparison, r.status) == ("inconclusive", "inconclusive")
    assert r.outcome() == ("INCONCLUSIVE: the loss rises 3.0x during the steps at width 64: the learning rate is too "
                           "large for the asymptotics at these widths; would settle it: a smaller learning rate")
    grows = fit(status="agree", predicted=F(1), slope=1.0)
    r = report([grows], verdict="sp", lr_too_large=(64, 3.04), expect="unstable")
    assert (r.comparison, r.status) == ("agree", "pass")
    # an unstable model's loss may rise: the undecided growth is reported, not the learning rate
    undecided = fit(status="inconclusive", predicted=F(1), slope=0.3)
    r = report([undecided], verdict="sp", lr_too_large=(64, 3.04))
    assert r.outcome() == "INCONCLUSIVE: nothing disagrees, but the measurements cannot decide layers.1 dh@1"


def test_a_decisive_blow_up_fails_even_when_the_loss_rises():
    # steps=2, tolerance 0.2: past the fail band at both steps, at step 1 by >= DECISIVE_MARGIN * tolerance and 2 noise
    blow = [fit("layers.2", step=t, slope=s, status="disagree", margin=m, noise=0.03) for t, s, m in ((2, 0.65, 0.03), (1, 0.96, 0.44))]
    r = report([fit("layers.1"), *blow], lr_too_large=(64, 2.2))
    assert (r.comparison, r.status) == ("disagree", "fail") and r.decisive == blow[::-1]
    assert r.outcome() == ("FAIL: layers.2 dh grows faster than predicted past the fail band at every step (n^+0.96 vs "
                           "n^0 at step 1, by 0.44 more than the band): a blow-up, which is why the loss rises 2.2x at width 64")
    assert r.to_dict()["decisive"] == [{"layer": "layers.2", "quantity": "dh", "step": 1}, {"layer": "layers.2", "quantity": "dh", "step": 2}]
    # an unowned module's growth (no prediction: nothing may grow) counts the same way, and so does an overflow
    unowned = [fit("plain", step=t, slope=1.0, status="disagree", margin=0.5, predicted=None) for t in (1, 2)]
    assert report(unowned, lr_too_large=(64, 2.2)).status == "fail"
    inf = [fit("layers.2", step=t, slope=math.inf, status="disagree", margin=math.inf) for t in (1, 2)]
    assert report(inf, lr_too_large=(64, 2.2)).decisive == inf
    assert DECISIVE_MARGIN == 1.0


def test_a_disagreement_at_initialisation_fails_even_when_the_loss_rises():
    at_init = fit("layers.2", "h", 0, 0.06, "disagree", F(-1, 2), margin=0.16, noise=0.01)
    later = fit("layers.2", "dh", 1, 0.2, "inconclusive", F(0))
    r = report([fit("layers.1"), later, at_init], lr_too_large=(512, 2.3))
    assert (r.comparison, r.status, r.decisive) == ("disagree", "fail", [at_init])
    assert r.outcome() == ("FAIL: layers.2 h at initialisation grows like n^+0.06 where the theory says n^-1/2, past the "
                           "fail band: no learning rate acts before the first step (the loss rises 2.3x at width 512)")
    # an undecided quantity at initialisation is no evidence
    r = report([fit("layers.1"), fit("layers.2", "h", 0, 0.06, "inconclusive", F(-1, 2))], lr_too_large=(512, 2.3))
    assert (r.decisive, r.status) == ([], "inconclusive")


@pytest.mark.parametrize("first, second, why", [
    (dict(margin=0.19), {}, "the first step's margin is under one tolerance"),
    (dict(margin=0.25, noise=0.13), {}, "the first step's margin is under twice its noise"),
    ({}, dict(slope=-1.2), "a later step falls faster: no blow-up"),
    ({}, dict(status="inconclusive"), "a later step does not disagree"),
    (dict(slope=-1.0, predicted=F(-1, 2), margin=0.5), {}, "the first step falls faster than predicted"),
])
def test_evidence_short_of_decisive_leaves_a_rising_loss_inconclusive(first, second, why):
    base = dict(slope=1.0, status="disagree", margin=0.5, noise=0.03)
    fits = [fit("layers.2", step=1, **{**base, **first}), fit("layers.2", step=2, **{**base, "margin": 0.01, **second})]
    r = report(fits, lr_too_large=(64, 2.2))
    assert (r.decisive, r.status) == ([], "inconclusive"), why
    assert r.outcome().startswith("INCONCLUSIVE: the loss rises 2.2x")
    # every step, not one of them
    assert report([fit("layers.2", step=1, **base)], lr_too_large=(64, 2.2)).status == "inconclusive"
    # without the rising loss a disagreement fails as always
    assert report(fits).outcome() == "FAIL: the measurements disagree with the theory"


def test_an_unstable_prediction_is_a_lower_bound_met_when_something_measurably_grows():
    grows, flat = fit(status="agree", predicted=F(1), slope=1.0), fit(status="disagree", predicted=F(1), slope=0.0)
    undecided = fit(status="inconclusive", predicted=F(1), slope=0.3)
    assert report([flat, grows], verdict="sp").comparison == "agree"
    assert report([flat, undecided], verdict="sp").comparison == "inconclusive"
    assert report([flat], verdict="sp").comparison == "disagree"
    r = report([flat, grows], verdict="sp", expect="unstable")
    assert r.outcome() == "PASS: unstable, as expected (it measurably grows with width)"
    r = report([flat, grows], verdict="sp")
    assert r.status == "fail" and r.outcome() == ("FAIL: the measurements agree with the theory that the model is UNSTABLE (it blows up as width "
                           "grows)")
    assert r.agrees and not r.passed


def test_growing_lists_the_four_rms_quantities_past_the_tolerance():
    fits = [fit(slope=0.21), fit(slope=0.2), fit(quantity="df", slope=math.inf), fit(quantity="h", step=0, slope=0.5),
            fit(quantity="f", step=0, slope=0.3), fit(quantity="h_own", step=0, slope=0.5), fit(quantity="scale", slope=1.0)]
    assert [(f.quantity, f.slope) for f in report(fits).growing] == [("dh", 0.21), ("df", math.inf), ("h", 0.5), ("f", 0.3)]


def test_the_smallest_margin_is_over_agreeing_fits_of_a_stable_verdict():
    fits = [fit(margin=0.3), fit(margin=0.07), fit(status="disagree", margin=-1.0), fit(status="inconclusive", margin=0.01)]
    assert report(fits).smallest_margin == 0.07
    assert report([fit(status="disagree")]).smallest_margin is None
    assert report(fits, verdict="sp").smallest_margin is None
    assert report(fits, verdict=None).smallest_margin is None


# -- the renderings -------------------------------------------------------------------------------------------------


def test_the_table_shows_each_fit_with_its_decision_and_prediction():
    fits = [
        fit("layers.0", "h", 0, 0.01, "agree", F(0), role="input", noise=0.0),
        fit("layers.1", "dh", 1, -0.4949, "agree", F(-1, 2), reason="corrected"),
        fit("layers.1", "dh", 2, 0.7, "disagree", F(0), noise=0.125),
        fit("output", "f_own", 0, 0.1, "inconclusive", F(0), role="output", predicted_low=F(-1, 2)),
        fit("layers.2", "dh", 2, math.nan, "-", None, noise=math.nan),
    ]
    r = report(fits)
    assert r._rows() == [
        ("layer", "role", "quantity", "step", "measured", "noise", "predicted", "decision"),
        ("layers.0", "input", "h", "0", "+0.01", "-", "0", "yes"),
        ("layers.1", "hidden", "dh", "1", "-0.49", "0.05", "-1/2", "yes (corrected)"),
        ("layers.1", "hidden", "dh", "2", "+0.70", "0.12", "0", "NO"),
        ("output", "output", "f_own", "0", "+0.10", "0.05", "-1/2..0", "?"),
        ("layers.2", "hidden", "dh", "2", "n/a", "-", "-", "-"),
    ]
    assert r.table() == "\n".join([
        "layer     role    quantity  step  measured  noise  predicted  decision",
        "--------  ------  --------  ----  --------  -----  ---------  ---------------",
        "layers.0  input   h         0     +0.01     -      0          yes",
        "layers.1  hidden  dh        1     -0.49     0.05   -1/2       yes (corrected)",
        "layers.1  hidden  dh        2     +0.70     0.12   0          NO",
        "output    output  f_own     0     +0.10     0.05   -1/2..0    ?",
        "layers.2  hidden  dh        2     n/a       -      -          -",
    ])


def test_an_unstable_verdicts_positive_predictions_are_shown_as_bounds():
    fits = [fit(predicted=F(1), slope=1.0), fit(predicted=F(0), status="disagree"),
            fit(predicted=F(1, 2), predicted_low=F(0), status="agree", reason="corrected"), fit(predicted=None, status="-")]
    rows = report(fits, verdict="sp")._rows()[1:]
    # a bound replaces an interval; "corrected" is a stable verdict's word, not a lower bound's
    assert [(r[6], r[7]) for r in rows] == [("1 (bound)", "yes"), ("0", "NO"), ("1/2 (bound)", "yes"), ("-", "-")]
    assert [report(fits)._bound(f) for f in fits] == [False] * 4


def test_the_summary_says_what_ran_what_was_decided_and_everything_that_did_not_agree():
    fits = [fit("layers.1", "dh", 2, 0.7, "disagree", F(0), reason="off by 0.7"),
            fit("layers.2", "dh", 2, 0.3, "inconclusive", F(0), reason="between"),
            fit("layers.3", "dh", 1, -0.25, "inconclusive", F(0), reason="noisy"),
            fit("output", "df", 2, math.inf, "disagree", F(0), reason="non-finite")]
    nonfinite = [(64 * k, k % 2, 1, f"l{k} dh") for k in range(1, 8)]
    r = report(fits, family=None, lr=0.5, tolerance=0.25, expect="feature_learning", notes=["one", "two"],
               nonfinite=nonfinite, unowned=["emb.weight", "ln.bias"])
    assert r.summary().split("\n") == [
        "coordinate check: widths [64, 128, 256], 2 step(s), seeds [0, 1], optimizer ?, lr 0.5, tolerance 0.25",
        "theory: feature_learning; measured: feature_learning; expected: feature_learning",
        "FAIL: non-finite values (the run diverged), first at width 64, seed 1, step 1 in l1 dh",
        "non-finite: width 64 seed 1 step 1: l1 dh, width 128 seed 0 step 1: l2 dh, width 192 seed 1 step 1: l3 dh, "
        "width 256 seed 0 step 1: l4 dh, width 320 seed 1 step 1: l5 dh, width 384 seed 0 step 1: l6 dh (+1 more)",
        "growing with width: layers.1 dh@2 ~ n^+0.70, layers.2 dh@2 ~ n^+0.30, output df@2 non-finite",
        "disagreeing with the theory: layers.1 dh@2: +0.70 vs 0 (off by 0.7), output df@2: +inf vs 0 (non-finite)",
        "undecided: layers.2 dh@2: +0.30 vs 0 (between), layers.3 dh@1: -0.25 vs 0 (noisy)",
        "owned by no abcparam layer (trained at the base learning rate, not predicted): emb.weight, ln.bias",
        "note: one",
        "note: two",
    ]
    assert str(r) == r.summary() + "\n\n" + r.table()


def test_a_summary_without_a_prediction_says_why_and_a_clean_one_has_three_lines():
    r = report([], verdict=None, no_prediction="the model has no abcparam layers")
    assert r.summary().split("\n")[1] == "theory: no prediction (the model has no abcparam layers); measured: feature_learning"
    assert report([], verdict=None).summary().split("\n")[1] == "theory: no prediction (unknown reason); measured: feature_learning"
    assert report([fit()], lr=1e-3).summary().split("\n") == [
        "coordinate check: widths [64, 128, 256], 2 step(s), seeds [0, 1], optimizer adam, lr 0.001, tolerance 0.2",
        "theory: feature_learning; measured: feature_learning",
        "PASS: the measurements agree with the theory (feature_learning)",
    ]
    nonfinite = [(64, 0, 1, "x")] * 6  # six are shown whole
    assert report([fit()], nonfinite=nonfinite).summary().split("\n")[3] == "non-finite: " + ", ".join(["width 64 seed 0 step 1: x"] * 6)


def test_the_markdown_is_the_summary_with_hard_breaks_and_the_table_as_a_markdown_table():
    r = report([fit("layers.1", "dh", 1, -0.5, "agree", F(-1, 2)), fit("output", "df", 1, 0.0, "agree", F(0), role="output")])
    assert r.to_markdown() == "\n".join([
        "coordinate check: widths [64, 128, 256], 2 step(s), seeds [0, 1], optimizer adam, lr 0.01, tolerance 0.2  ",
        "theory: feature_learning; measured: feature_learning  ",
        "PASS: the measurements agree with the theory (feature_learning)",
        "",
        "| layer | role | quantity | step | measured | noise | predicted | decision |",
        "|---|---|---|---|---|---|---|---|",
        "| layers.1 | hidden | dh | 1 | -0.50 | 0.05 | -1/2 | yes |",
        "| output | output | df | 1 | +0.00 | 0.05 | 0 | yes |",
    ])


def test_the_json_form_has_every_field_with_exact_exponents_and_no_non_finite_number():
    fits = [fit("layers.1", "dh", 1, -0.5, "agree", F(-1, 2), spread=0.02, noise=0.04, margin=0.15, reason="r", settle="s"),
            fit("output", "f_own", 0, math.inf, "disagree", F(0), role="output", spread=math.nan, noise=-math.inf,
                margin=math.nan, predicted_low=F(-1, 2)),
            fit("x", "h", 0, math.nan, "-", None)]
    r = report(fits, expect="feature_learning", notes=["n"], nonfinite=[(64, 0, 1, "x h")], no_prediction=None,
               unowned=["w"], lr_too_large=(64, 2.5))
    d = json.loads(r.to_json())
    assert d == {
        "widths": [64, 128, 256], "steps": 2, "seeds": [0, 1], "family": "adam", "lr": 0.01, "tolerance": 0.2,
        "theory_regime": "feature_learning", "measured_regime": "feature_learning", "expect": "feature_learning",
        "passed": False, "status": "fail", "agrees": False, "unowned": ["w"], "lr_too_large": {"width": 64, "loss_rise": 2.5},
        "decisive": [{"layer": "output", "quantity": "f_own", "step": 0}],  # a disagreement at init: no lr acts there
        "escalation": [], "suggestion": {}, "lowered_from": None,
        "outcome": "FAIL: non-finite values (the run diverged), first at width 64, seed 0, step 1 in x h",
        "nonfinite": [{"width": 64, "seed": 0, "step": 1, "where": "x h"}], "no_prediction": None,
        "fits": [
            {"layer": "layers.1", "role": "hidden", "quantity": "dh", "step": 1, "slope": -0.5, "spread": 0.02,
             "predicted": "-1/2", "predicted_low": None, "ok": True, "status": "agree", "noise": 0.04, "margin": 0.15,
             "reason": "r", "settle": "s"},
            {"layer": "output", "role": "output", "quantity": "f_own", "step": 0, "slope": 1e308, "spread": None,
             "predicted": "0", "predicted_low": "-1/2", "ok": False, "status": "disagree", "noise": -1e308, "margin": None,
             "reason": "", "settle": ""},
            {"layer": "x", "role": "hidden", "quantity": "h", "step": 0, "slope": None, "spread": 0.01, "predicted": None,
             "predicted_low": None, "ok": None, "status": "-", "noise": 0.05, "margin": 0.1, "reason": "", "settle": ""},
        ],
        "verdict": _verdict("mup").to_dict(), "notes": ["n"],
    }
    assert abcparam.Verdict.from_dict(d["verdict"]) == _verdict("mup")
    d = report([], verdict=None).to_dict()
    assert d["verdict"] is None and d["lr_too_large"] is None and d["theory_regime"] is None
    assert report([fit()]).to_json(indent=2) == json.dumps(report([fit()]).to_dict(), indent=2)  # options reach json.dumps


@pytest.mark.parametrize("x,expected", [(0.25, 0.25), (-3.0, -3.0), (math.inf, 1e308), (-math.inf, -1e308), (math.nan, None)])
def test_json_numbers_are_finite_or_null(x, expected):
    assert decision.json_float(x) == expected


def test_the_figure_draws_each_layers_mean_rms_and_its_predicted_slope_panel_by_panel(tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    from matplotlib.image import imread

    monkeypatch.setitem(matplotlib.rcParams, "image.cmap", "magma")  # the figure's colours are its own, not the default map
    nan = math.nan
    widths = [64, 128, 256]
    rms = {("layers.0", "h", 0): [[1.0, 3.0], [2.0, 2.0], [2.0, 2.0]],  # mean over seeds: 2, 2, 2
           ("layers.0", "dh", 1): [[0.0, 0.0], [0.1, 0.1], [0.2, 0.2]],  # starts at zero: no predicted line through it
           ("layers.0", "dh", 2): [[0.5, 0.5]] * 3,
           ("layers.1", "h", 0): [[1.0, 1.0]] * 3,  # measured, but no fit: drawn without a prediction
           ("layers.1", "dh", 1): [[0.5, 0.5], [0.25, 0.25], [0.0, 0.25]], ("layers.1", "dh", 2): [[0.5, 0.5]] * 3,
           ("layers.2", "h", 0): [[1.0, 1.0]] * 3,  # no change measured: nothing drawn at steps 1 and 2
           ("output", "f", 0): [[0.5, 0.5], [0.25, 0.25], [0.125, 0.125]], ("output", "df", 1): [[1.0, 1.0], [nan, nan], [1.0, 1.0]],
           ("output", "df", 2): [[1.0, 1.0]] * 3}
    fits = [fit("layers.0", "h", 0, predicted=F(0)), fit("layers.0", "dh", 1, predicted=F(0)),
            fit("layers.0", "dh", 2, predicted=None, status="-"), fit("layers.1", "dh", 1, predicted=F(-1)),
            fit("layers.1", "dh", 2, predicted=F(1, 2)), fit("layers.2", "h", 0, predicted=None, status="-"),
            fit("output", "f", 0, predicted=F(-1, 2), role="output"), fit("output", "df", 1, predicted=F(0), role="output"),
            fit("output", "df", 2, predicted=F(0), role="output")]
    r = report(fits, widths=widths, steps=2, rms=rms)
    path = tmp_path / "coord.png"
    fig = r.plot(str(path))
    assert tuple(fig.get_size_inches()) == pytest.approx((10.8, 3.4))
    assert imread(str(path)).shape[:2] == (round(3.4 * 120), round(10.8 * 120))  # saved at 120 dpi
    assert fig._suptitle.get_text() == f"theory feature_learning, measured feature_learning: {r.outcome()}"
    assert fig._suptitle.get_fontsize() == 9
    assert [ax.get_title() for ax in fig.axes] == ["init: RMS h, f", "step 1: RMS of change", "step 2: RMS of change"]
    assert [ax.get_ylabel() for ax in fig.axes] == ["RMS (dotted: predicted slope)", "", ""]
    assert not any(a.get_shared_y_axes().joined(a, b) for a in fig.axes for b in fig.axes if a is not b)  # own y ranges
    for ax in fig.axes:
        assert (ax.get_xscale(), ax.get_yscale(), ax.get_xlabel()) == ("log", "log", "width")
        assert ax.xaxis.get_transform().base == 2
    viridis = matplotlib.colormaps["viridis"]
    colours = {"layers.0": viridis(0.0), "layers.1": viridis(1 / 3), "layers.2": viridis(2 / 3), "output": "black"}
    drawn = {0: ["layers.0", "layers.1", "layers.2", "output"], 1: ["layers.0", "layers.1", "output"],
             2: ["layers.0", "layers.1", "output"]}
    # the predicted lines through each first point: init, layers.0 flat from 2, output like n^-1/2 from 0.5; step 1,
    # layers.1 like n^-1 from 0.5, output flat from 1; step 2, layers.1 like n^1/2, output flat
    predicted = {0: [("layers.0", [2.0, 2.0, 2.0]), ("output", [0.5, 0.5 / 2 ** 0.5, 0.25])],
                 1: [("layers.1", [0.5, 0.25, 0.125]), ("output", [1.0, 1.0, 1.0])],
                 2: [("layers.1", [0.5, 0.5 * 2 ** 0.5, 1.0]), ("output", [1.0, 1.0, 1.0])]}
    for step, ax in enumerate(fig.axes):
        solid = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
        dotted = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
        assert [ln.get_label() for ln in solid] == drawn[step]
        for ln in solid:
            name = ln.get_label()
            q = ("h" if name != "output" else "f") if step == 0 else ("dh" if name != "output" else "df")
            assert list(ln.get_xdata()) == widths
            assert list(ln.get_ydata()) == pytest.approx([sum(row) / len(row) for row in rms[(name, q, step)]], nan_ok=True)
            assert (ln.get_marker(), ln.get_markersize(), ln.get_color()) == ("o", 3, colours[name])
        assert [(ln.get_color(), list(ln.get_ydata())) for ln in dotted] == [(colours[n], pytest.approx(y)) for n, y in predicted[step]]
        assert all(ln.get_linewidth() == 1 and list(ln.get_xdata()) == widths for ln in dotted)
    *others, last = fig.axes
    assert [t.get_text() for t in last.get_legend().get_texts()] == ["layers.0", "layers.1", "output"]
    assert last.get_legend().get_texts()[0].get_fontsize() == 7 and all(ax.get_legend() is None for ax in others)
    plt.close(fig)
    # with two layers and no output, the second takes the colour map's far end
    two = report([fit("a", "h", 0), fit("b", "h", 0)], widths=widths, steps=1, rms={("a", "h", 0): [[1.0]] * 3, ("b", "h", 0): [[1.0]] * 3})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # its last panel is empty: no legend, and no warning about one
        fig = two.plot()
    assert fig.axes[-1].get_legend() is None
    assert [ln.get_color() for ln in fig.axes[0].get_lines() if ln.get_linestyle() == "-"] == [viridis(0.0), viridis(1.0)]
    plt.close(fig)


def test_the_figure_without_matplotlib_says_how_to_install_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"^report\.plot needs matplotlib: pip install 'abcparam\[plot\]' \(or pip install "
                                          r"matplotlib\)$"):
        report([fit()]).plot()
