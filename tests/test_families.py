"""Optimizer families beyond SGD and Adam (docs/theory.md section 11): spectral (Muon), relative (Adafactor),
hybrid set-ups with several optimizers, and the other torch optimizers."""

import math
import warnings
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import abcparam
from abcparam import classify, max_stable_lr_exponents, optimizer_family, preset
from abcparam.theory import FAMILIES, canonical, equivalent

H = Fraction(1, 2)
WIDTH, BASE = 512, 128


# ---------------------------------------------------------------------------
# Theory
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls, family", [
    (torch.optim.Muon, "spectral"), (torch.optim.Adafactor, "relative"), (torch.optim.Rprop, "adam"),
    (torch.optim.SGD, "sgd"), (torch.optim.AdamW, "adam"),
])
def test_torch_optimizers_and_their_subclasses_have_a_family(cls, family):
    sub = type("Mine", (cls,), {})
    assert optimizer_family(cls) == family and optimizer_family(sub) == family
    assert optimizer_family(cls.__name__.lower()) == family


@pytest.mark.parametrize("cls, why", [(torch.optim.Adadelta, "one eps"), (torch.optim.LBFGS, "one param group")])
def test_optimizers_outside_the_theory_are_refused_with_the_reason(cls, why):
    sub = type("Mine", (cls,), {})
    for x in (cls, sub, cls.__name__):
        with pytest.raises(ValueError, match=f"outside the theory.*{why}"):
            optimizer_family(x)


def test_section_11_numbers():
    # muP (TP4 form) under Muon: c = 0 for every layer; under Adafactor: 0 for input and readout, 1/2 hidden
    mup = preset("mup", 3)
    assert mup.exponents("muon").c == (0, 0, 0, 0)
    assert mup.exponents("adafactor").c == (0, H, H, 0)
    for fam in ("muon", "adafactor"):
        v = classify(mup, optimizer=fam)
        assert v.regime == "feature_learning" and all(v.updated_maximally) and v.readout_initialised_maximally
    # kappa: 1/2 for the input layer and the readout, 1 for hidden n x n matrices
    assert abcparam.theory.kappa(3) == (H, 1, 1, H)
    # SP with Muon on every matrix and a constant rate: features evolve, but the readout blows up like n^(1/2)
    v = classify(preset("sp", 3), optimizer="muon")
    assert v.regime == "unstable" and v.features_evolve[1:] == (True, True)
    assert v.predicted_slopes(2).delta_f == H and v.f0_exponent == 0
    assert any("readout update" in r and "n^(1/2)" in r for r in v.reasons)
    # with Adam's rates under Adafactor every layer's update is too small by n^(1/2)
    wrong = classify(mup.a, mup.b, mup.exponents("adam").c, optimizer="adafactor")
    assert wrong.regime != "feature_learning" and wrong.predicted_slopes(2).delta_h == (-H, -H, -H)


families = st.sampled_from(FAMILIES)
exps = st.integers(-4, 4).map(lambda k: Fraction(k, 2))


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 4).flatmap(lambda L: st.tuples(
    st.lists(exps, min_size=L + 1, max_size=L + 1), st.lists(exps, min_size=L + 1, max_size=L + 1),
    st.lists(exps, min_size=L + 1, max_size=L + 1), st.lists(exps, min_size=L + 1, max_size=L + 1),
    st.lists(families, min_size=L + 1, max_size=L + 1))))
def test_each_family_has_its_own_symmetry(args):
    a, b, c, theta, fams = args
    # (a + t, b - t, c - 2t) SGD-like; (a + t, b - t, c - t) Adam-like and spectral; (a + t, b - t, c) relative
    shift = {"sgd": 2, "adam": 1, "spectral": 1, "relative": 0}
    a2 = [x + t for x, t in zip(a, theta)]
    b2 = [x - t for x, t in zip(b, theta)]
    c2 = [x - shift[f] * t for x, t, f in zip(c, theta, fams)]
    v1, v2 = classify(a, b, c, optimizer=fams), classify(a2, b2, c2, optimizer=fams)
    assert (v1.regime, v1.r_layers, v1.q, v1.gamma, v1.beta) == (v2.regime, v2.r_layers, v2.q, v2.gamma, v2.beta)
    assert equivalent((a, b, c), (a2, b2, c2), fams)
    # the canonical (a = 0) form is in the same class
    e = canonical(a, b, c, optimizer=fams)
    assert e.a == (0,) * len(a) and classify(e, optimizer=fams).regime == v1.regime
    # ... and a wrong shift (the wrong family's symmetry) is not, as soon as theta moves a layer whose rules differ
    v = classify(a, b, c, optimizer=fams)
    assert v.families == tuple(fams) and v.optimizer == (fams[0] if len(set(fams)) == 1 else "hybrid")


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 4).flatmap(lambda L: st.lists(families, min_size=L + 1, max_size=L + 1)))
def test_presets_keep_their_regime_in_every_hybrid(fams):
    # each layer trained by its own family, at that family's muP / NTK rate: the regime is the preset's
    L = len(fams) - 1
    assert classify(preset("mup", L), optimizer=fams).regime == "feature_learning"
    v = classify(preset("ntk", L), optimizer=fams)
    assert v.regime == "kernel" and v.r == H


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 4).flatmap(lambda L: st.tuples(
    st.lists(st.integers(-2, 2).map(lambda k: Fraction(k, 2)), min_size=L + 1, max_size=L + 1),
    st.sampled_from([Fraction(1, 2), Fraction(1), Fraction(3, 2)]),
    st.lists(families, min_size=L + 1, max_size=L + 1))))
def test_max_stable_lr_is_the_edge_of_stability_for_every_family(args):
    a, beta_out, fams = args
    L = len(a) - 1
    b = [-a[0]] + [H - x for x in a[1:L]] + [beta_out - a[L]]  # stable at init
    c = max_stable_lr_exponents(a, b, fams)
    assert classify(a, b, c, optimizer=fams).stable
    for i in range(L + 1):
        faster = list(c)
        faster[i] -= H
        assert not classify(a, b, faster, optimizer=fams).stable, (i, fams)


def test_hybrid_verdicts_explain_each_layer_and_round_trip():
    v = classify(preset("mup", 3), optimizer=["adam", "muon", "muon", "adamw"])
    assert v.families == ("adam", "spectral", "spectral", "adam") and v.optimizer == "hybrid"
    text = str(v)
    assert "hybrid: adam, spectral, spectral, adam" in text and "family" in text.splitlines()[4]
    assert abcparam.Verdict.from_json(v.to_json()) == v
    # an SGD-trained input layer beside Adam-like ones: only the SGD layer sees the backward signal
    # g = min(beta_out, gamma_out) = min(1/2, 1) (section 3); the normalised layers see 0
    a, b, c = [0, 0, 0], [0, H, H], [0, 1, 1]
    assert classify(a, b, c, optimizer=["sgd", "adam", "adam"]).s_layers == (H, 0)
    assert classify(a, b, c, optimizer="sgd").s_layers == (H, H)
    assert classify(a, b, c, optimizer="adam").s_layers == (0, 0)


# ---------------------------------------------------------------------------
# wrap: Muon
# ---------------------------------------------------------------------------


def mlp(p, bias=True, zero_readout=False):
    return nn.Sequential(
        abcparam.Linear(16, p.width, role="input", param=p, bias=bias), nn.Tanh(),
        abcparam.Linear(p.width, p.width, param=p, bias=bias), nn.Tanh(),
        abcparam.Linear(p.width, 4, role="output", param=p, bias=bias, zero_init=zero_readout),
    )


def _muon_total_lr(opt, p):
    """The rate torch's Muon applies to tensor p: the group's lr times its own shape factor."""
    group = next(g for g in opt.param_groups if any(q is p for q in g["params"]))
    return torch.optim._muon._adjust_lr(group["lr"], group["adjust_lr_fn"], p.shape)


# Hand-derived totals at m = 4, relative to the base width's (base lr times Muon's factor at base shape):
# muP under Muon trains the folded input layer at m^(1/2) x (its a = -1/2 moves c by -1/2), the hidden and the
# readout at m^0; so the totals are m^(1/2), 1, 1 times the base-width totals, whatever Muon's own factor is.
@pytest.mark.parametrize("adjust", [None, "original", "match_rms_adamw"])
def test_muon_rates_include_torchs_own_shape_factor_once(adjust):
    m = WIDTH // BASE
    big, small = mlp(abcparam.mup(WIDTH, BASE), bias=False), mlp(abcparam.mup(BASE, BASE), bias=False)
    ob = abcparam.wrap(torch.optim.Muon(big.parameters(), lr=0.02, adjust_lr_fn=adjust), big)
    os_ = abcparam.wrap(torch.optim.Muon(small.parameters(), lr=0.02, adjust_lr_fn=adjust), small)
    expected = [math.sqrt(m), 1.0, 1.0]
    for k, (pb, ps) in enumerate(zip(big.parameters(), small.parameters())):
        assert _muon_total_lr(ob, pb) == pytest.approx(expected[k] * _muon_total_lr(os_, ps), rel=1e-12), k
    # at m = 1 nothing changes
    assert all(g["lr"] == 0.02 for g in os_.param_groups)
    # torch's default factor is already muP for the TP4 form with a folded input layer: wrap changes no rate
    if adjust in (None, "original"):
        assert all(g["abc_lr_scale"] == 1.0 for g in ob.param_groups)


def test_muon_adjustment_abcparam_does_not_know_is_refused_before_anything_changes():
    net = mlp(abcparam.mup(WIDTH, BASE), bias=False)
    opt = torch.optim.Muon(net.parameters(), lr=0.02)
    opt.param_groups[0]["adjust_lr_fn"] = "spectral_norm"
    with pytest.raises(ValueError, match="adjust_lr_fn 'spectral_norm' is not one abcparam knows"):
        abcparam.wrap(opt, net)
    assert "abc_lr_scale" not in opt.param_groups[0] and len(opt.param_groups) == 1


@pytest.mark.parametrize("mode", ["coupled", "independent"])
def test_muon_weight_decay_follows_the_convention(mode):
    net = mlp(abcparam.mup(WIDTH, BASE), bias=False)
    muon = torch.optim.Muon(net.parameters(), lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    opt = abcparam.wrap(muon, net, weight_decay=mode)
    # torch's Muon decays by (1 - lr * wd) with the group's rate before its shape factor
    per_step = {round(g["lr"] * g["weight_decay"], 12) for g in opt.param_groups}
    assert len(opt.param_groups) > 1
    assert per_step == ({round(0.02 * 0.1, 12)} if mode == "coupled" else {0.1})
    w = net[2].weight
    before = w.detach().clone()
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # a zero gradient: only the decay acts
    assert torch.allclose(w.detach(), before * (1 - min(per_step)), rtol=1e-6)


# ---------------------------------------------------------------------------
# wrap: Adafactor, Rprop, Adadelta
# ---------------------------------------------------------------------------


def test_adafactor_rates_and_both_epsilons():
    p = abcparam.mup(WIDTH, BASE)
    net = mlp(p)
    opt = abcparam.wrap(torch.optim.Adafactor(net.parameters(), lr=1e-2, eps=(1e-30, 1e-3)), net)
    m = WIDTH / BASE
    by_name = {n: next(g for g in opt.param_groups if any(q is t for q in g["params"])) for n, t in net.named_parameters()}
    # rates: c_relative = (0, 1/2, 0), and the folded input keeps its c (the relative symmetry leaves c alone)
    assert by_name["0.weight"]["lr"] == pytest.approx(1e-2)
    assert by_name["2.weight"]["lr"] == pytest.approx(1e-2 / math.sqrt(m))
    assert by_name["4.weight"]["lr"] == pytest.approx(1e-2)
    # eps2 follows the stored tensor's init scale m^-b (folded input: m^-(a+b) = 1; hidden, readout: m^(-1/2))
    assert by_name["0.weight"]["eps"][1] == pytest.approx(1e-3)
    assert by_name["2.weight"]["eps"][1] == pytest.approx(1e-3 / math.sqrt(m))
    assert by_name["4.weight"]["eps"][1] == pytest.approx(1e-3 / math.sqrt(m))
    # eps1 is Adam's eps at gradient scale: m^-d (section 10); the default None (machine eps) stays None
    assert by_name["2.weight"]["eps"][0] == pytest.approx(1e-30 * p.eps_scale("hidden"))
    net2 = mlp(p)
    opt2 = abcparam.wrap(torch.optim.Adafactor(net2.parameters()), net2)
    assert all(g["eps"][0] is None for g in opt2.param_groups)


def test_rprop_is_adam_like_with_its_step_bounds_scaled():
    net = mlp(abcparam.mup(WIDTH, BASE))
    opt = abcparam.wrap(torch.optim.Rprop(net.parameters(), lr=1e-2, step_sizes=(1e-6, 1.0)), net)
    for g in opt.param_groups:
        assert g["abc_family"] == "adam"
        assert g["step_sizes"] == pytest.approx((1e-6 * g["abc_lr_scale"], 1.0 * g["abc_lr_scale"]))
    assert len({g["abc_lr_scale"] for g in opt.param_groups}) > 1


def test_adadelta_and_lbfgs_are_refused_at_wrap_time():
    net = mlp(abcparam.mup(WIDTH, BASE))
    with pytest.raises(ValueError, match="outside the theory.*one eps"):
        abcparam.wrap(torch.optim.Adadelta(net.parameters()), net)
    with pytest.raises(ValueError, match="LBFGS keeps exactly one param group"):
        abcparam.wrap(torch.optim.LBFGS(net.parameters()), net)


# ---------------------------------------------------------------------------
# wrap: hybrid set-ups
# ---------------------------------------------------------------------------


def split(net):
    mats = [p for p in net.parameters() if p.dim() == 2]
    rest = [p for p in net.parameters() if p.dim() != 2]
    return mats, rest


def test_hybrid_wrap_scales_each_optimizer_for_its_family():
    net = mlp(abcparam.mup(WIDTH, BASE))
    mats, rest = split(net)
    opts = [torch.optim.Muon(mats, lr=0.02), torch.optim.AdamW(rest, lr=1e-3)]
    out = abcparam.wrap(opts, net)
    assert out is opts
    assert {g["abc_family"] for g in opts[0].param_groups} == {"spectral"}
    assert {g["abc_family"] for g in opts[1].param_groups} == {"adam"}
    # the biases (vector-like, folded) train at the Adam rate m^-(c_adam + a_in) = m^0 with eps m^-d
    lrs = [g["lr"] for g in opts[1].param_groups]
    assert lrs == pytest.approx([1e-3] * len(lrs))


def test_hybrid_wrap_names_a_tensor_in_two_optimizers_or_in_none():
    net = mlp(abcparam.mup(WIDTH, BASE))
    mats, rest = split(net)
    a, b = torch.optim.Muon(mats, lr=0.02), torch.optim.AdamW(rest + [net[2].weight], lr=1e-3)
    with pytest.raises(ValueError, match=r"more than one optimizer: 2.weight \(optimizers 0, 1\)"):
        abcparam.wrap([a, b], net)
    assert all("abc_lr_scale" not in g for o in (a, b) for g in o.param_groups)  # nothing changed
    a, b = torch.optim.Muon(mats, lr=0.02), torch.optim.AdamW(rest[:-1], lr=1e-3)
    with pytest.raises(ValueError, match="in none of the 2 optimizers: 4.bias"):
        abcparam.wrap([a, b], net)
    net[4].bias.requires_grad_(False)  # a frozen tensor need not be in any
    abcparam.wrap([a, b], net)


def test_hybrid_strict_applies_to_the_union():
    net = nn.Sequential(mlp(abcparam.mup(WIDTH, BASE)), nn.LayerNorm(4))
    mats, rest = split(net)
    with pytest.raises(ValueError, match=r"strict=True\): 1.weight, 1.bias"):
        abcparam.wrap([torch.optim.Muon(mats, lr=0.02), torch.optim.AdamW(rest, lr=1e-3)], net, strict=True)
    with pytest.warns(UserWarning, match="2 parameter"):
        abcparam.wrap([torch.optim.Muon(mats, lr=0.02), torch.optim.AdamW(rest, lr=1e-3)], net)


def test_hybrid_wrap_refuses_bad_lists():
    net = mlp(abcparam.mup(WIDTH, BASE))
    mats, rest = split(net)
    opt = torch.optim.AdamW(net.parameters())
    with pytest.raises(ValueError, match="empty list"):
        abcparam.wrap([], net)
    with pytest.raises(ValueError, match="twice"):
        abcparam.wrap([opt, opt], net)
    with pytest.raises(TypeError, match=r"optimizer\[1\]: expected a torch.optim.Optimizer"):
        abcparam.wrap([torch.optim.Muon(mats), "adamw"], net)
    with pytest.raises(ValueError, match="family: got 1 families for 2 optimizers"):
        abcparam.wrap([torch.optim.Muon(mats), torch.optim.AdamW(rest)], net, family=["spectral"])


# ---------------------------------------------------------------------------
# Coordinate checks (section 11's claims, measured)
# ---------------------------------------------------------------------------

WIDTHS = [128, 256, 512, 1024]
_g = torch.Generator().manual_seed(1234)
BATCH = (torch.randn(32, 16, generator=_g), torch.randn(32, 4, generator=_g))


def mlp3(width, name="mup", zero_readout=False):
    p = getattr(abcparam, name)(width, 128)
    return nn.Sequential(
        abcparam.Linear(16, width, role="input", param=p), nn.Tanh(),
        abcparam.Linear(width, width, param=p), nn.Tanh(),
        abcparam.Linear(width, width, param=p), nn.Tanh(),
        abcparam.Linear(width, 4, role="output", param=p, zero_init=zero_readout),
    )


def muon_hybrid(adjust=None):
    def make(params, lr):
        mats, rest = [], []
        for q in params:
            (mats if q.dim() == 2 else rest).append(q)
        return [torch.optim.Muon(mats, lr=lr, adjust_lr_fn=adjust, weight_decay=0.0), torch.optim.AdamW(rest, lr=1e-2, weight_decay=0.0)]
    return make


@pytest.mark.parametrize("adjust", [None, "original", "match_rms_adamw"])
def test_coord_check_mup_under_muon_passes(adjust):
    r = abcparam.coord_check(mlp3, WIDTHS, BATCH, optimizer=muon_hybrid(adjust), lr=0.02, seeds=[0, 1])
    assert r.status == "pass", str(r)
    assert r.verdict.families == ("spectral",) * 4 and r.family == "spectral"


def test_coord_check_sp_under_muon_blows_up_at_the_readout():
    r = abcparam.coord_check(lambda n: mlp3(n, "sp"), WIDTHS, BATCH, optimizer=muon_hybrid(), lr=0.02, seeds=[0, 1])
    assert r.status == "fail" and r.verdict.regime == "unstable" and r.measured_regime == "unstable"
    growing = {f.layer for f in r.growing}
    assert "6" in growing and not growing & {"0", "2", "4"}  # the readout, and only it, grows like n^(1/2)
    first = next(f for f in r.growing if f.layer == "6" and f.step == 1)
    assert 0.35 < first.slope < 0.6  # n^(1/2) at the first step; later steps saturate as the output grows


def test_coord_check_mup_hybrid_adamw_outside_muon_inside_passes():
    def make(params, lr):
        params = list(params)
        hidden = {id(m.weight) for m in (net_holder[0][2], net_holder[0][4])}
        return [torch.optim.Muon([q for q in params if id(q) in hidden], lr=lr, weight_decay=0.0),
                torch.optim.AdamW([q for q in params if id(q) not in hidden], lr=1e-2, weight_decay=0.0)]

    net_holder = []

    def build(n):
        net_holder[:] = [mlp3(n)]
        return net_holder[0]

    r = abcparam.coord_check(build, WIDTHS, BATCH, optimizer=make, lr=0.02, seeds=[0, 1])
    assert r.status == "pass", str(r)
    assert r.verdict.families == ("adam", "spectral", "spectral", "adam") and r.family.startswith("hybrid")


def test_coord_check_mup_under_adafactor_passes_and_its_eps2_floor_matters():
    # a zero-initialised readout starts with RMS(w) = 0, so its first updates are eps2 * rho: eps2 must follow m^-b
    holder = {}

    def build(n):
        holder["net"] = mlp3(n, zero_readout=True)
        return holder["net"]

    def make(scale_eps):
        return lambda params, lr: abcparam.wrap(torch.optim.Adafactor(params, lr=lr), holder["net"], scale_eps=scale_eps)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        good = abcparam.coord_check(build, WIDTHS, BATCH, optimizer=make(True), lr=1e-2, seeds=[0, 1])
        # unscaled, the readout's first updates are too large by n^(1/2): past the fail band from width 2048 on
        bad = abcparam.coord_check(build, WIDTHS + [2048], BATCH, optimizer=make(False), lr=1e-2, seeds=[0, 1])
    assert good.status == "pass", str(good)
    assert bad.status == "fail" and any(f.layer == "6" for f in bad.mismatches), str(bad)


def test_coord_check_adafactor_with_adams_rates_does_not_pass():
    r = abcparam.coord_check(mlp3, WIDTHS, BATCH, optimizer=torch.optim.Adafactor, lr=1e-2, seeds=[0, 1], family="adam")
    assert r.status != "pass", str(r)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def test_cli_classify_takes_one_family_per_layer(capsys):
    from abcparam.cli import main

    assert main(["classify", "--preset", "mup", "--depth", "3", "--optimizer", "adam,muon,muon,adam", "--json"]) == 0
    d = __import__("json").loads(capsys.readouterr().out)
    assert d["families"] == ["adam", "spectral", "spectral", "adam"] and d["regime"] == "feature_learning"
    assert d["optimizer"] == "hybrid" and d["exponents"]["c"] == ["1/2", "0", "0", "1/2"]
    assert main(["classify", "--preset", "mup", "--depth", "3", "--optimizer", "adam,muon"]) == 2
    assert "got 2 families for 4 layers" in capsys.readouterr().err


@pytest.mark.parametrize("optimizer, preset, words", [("muon", "mup", "PASS"), ("adafactor", "mup", "PASS"),
                                                      ("muon", "sp", "agree with the theory that the model is UNSTABLE")])
def test_cli_coordcheck_with_muon_and_adafactor(optimizer, preset, words, capsys):
    from abcparam.cli import main

    rc = main(["coordcheck", "--preset", preset, "--optimizer", optimizer, "--widths", "128", "256", "512", "1024",
               "--seeds", "0", "1"])
    out = capsys.readouterr().out
    assert rc == 0 and words in out.splitlines()[2], out  # exit 0: the measurements agree with the theory
    assert ("spectral" if optimizer == "muon" else "relative") in out.splitlines()[0]


def test_testing_helpers_take_a_hybrid_factory():
    from abcparam import testing

    testing.assert_regime(mlp3, "feature_learning", batch=BATCH, optimizer=muon_hybrid(), lr=0.02)
    with pytest.raises(AssertionError, match="UNSTABLE"):
        testing.assert_stable(lambda n: mlp3(n, "sp"), batch=BATCH, optimizer=muon_hybrid(), lr=0.02)
