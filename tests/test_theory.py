"""Tests of abcparam.theory: docs/theory.md sections 2-6 and 8, exactly."""

import json
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction as F

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abcparam import theory
from abcparam.theory import (
    Exponents,
    Verdict,
    canonical,
    classify,
    equivalent,
    exponent,
    max_stable_lr_exponents,
    optimizer_family,
    preset,
)

H = F(1, 2)

# ---------------------------------------------------------------- section 5

# (name, optimizer, depth) -> (regime, r, q); the table's rows are for L >= 2,
# the L = 1 column follows from the same formulas and is stated in docs/theory.md.
SECTION5 = {
    ("sp", "sgd"): ("unstable", None, None),
    ("sp", "adam"): ("unstable", None, None),
    ("sp_inv_n", "sgd"): ("kernel", H, 0),
    ("sp_inv_n", "adam"): ("unstable", 0, -H),
    ("ntk", "sgd"): ("kernel", H, 0),
    ("ntk", "adam"): ("kernel", H, 0),
    ("mup", "sgd"): ("feature_learning", 0, 0),
    ("mup", "adam"): ("feature_learning", 0, 0),
    ("mup_table8", "sgd"): ("feature_learning", 0, 0),
    ("mup_table8", "adam"): ("feature_learning", 0, 0),
}


@pytest.mark.parametrize("depth", [1, 2, 4])
@pytest.mark.parametrize("name,opt", sorted(SECTION5))
def test_section5_rows(name, opt, depth):
    regime, r, q = SECTION5[(name, opt)]
    if (name, opt) == ("sp_inv_n", "adam") and depth == 1:
        # docs/theory.md section 5: with no hidden layer SP with LR ~ 1/n under Adam is kernel.
        regime, r, q = "kernel", 1, 0
    if (name, opt) == ("sp_inv_n", "sgd") and depth == 1:
        r = F(3, 2)  # r = s_1 = gamma_1 + g = 1 + 1/2
    v = classify(preset(name, depth), optimizer=opt)
    assert v.regime == regime
    assert v.depth == depth
    if r is not None:
        assert v.r == r and v.q == q
    assert v.stable == (regime != "unstable")
    if regime == "feature_learning":
        assert all(v.updated_maximally) and all(v.features_evolve) and v.readout_initialised_maximally
        assert v.equivalent_to == "mup"


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_mean_field_is_feature_learning_and_equals_mup_at_depth_1(opt):
    v = classify(preset("mean_field", 1), optimizer=opt)
    assert v.regime == "feature_learning"
    assert equivalent(preset("mean_field", 1), preset("mup", 1), opt)
    with pytest.raises(ValueError, match="depth 1 only"):
        preset("mean_field", 2)


def test_sp_reasons_name_each_violation():
    v = classify(preset("sp", 3))
    text = "\n".join(v.reasons)
    assert "r_2 = -1 < 0" in text and "r_3 = -2 < 0" in text
    assert "readout update: 2a+c = 0 < 1, logits blow up like n^1" in text
    v = classify(preset("sp_inv_n", 2), optimizer="adam")
    assert any("q" in x or "logits blow up like n^(1/2)" in x for x in v.reasons)


def test_section8_slopes():
    # Stable rows of docs/theory.md section 8, as slopes (growth exponents).
    sgd_sp_1n = classify(preset("sp_inv_n", 3)).predicted_slopes(2)
    assert sgd_sp_1n.delta_h == (-F(3, 2), -H, -H) and sgd_sp_1n.delta_f == 0 and sgd_sp_1n.f0 == 0
    ntk = classify(preset("ntk", 3)).predicted_slopes(2)
    assert ntk.delta_h == (-H, -H, -H) and ntk.delta_f == 0
    for opt in ("sgd", "adam"):
        for t in (1, 2, 5):
            mup = classify(preset("mup", 3), optimizer=opt).predicted_slopes(t)
            assert mup.delta_h == (0, 0, 0) and mup.delta_f == 0 and mup.f0 == -H
    # SGD, SP, c = 0 at t = 1: Delta h^1 ~ n^-1/2, Delta h^l ~ n^+1/2 (g = beta_{L+1}).
    sp1 = classify(preset("sp", 3)).predicted_slopes(1)
    assert sp1.delta_h[0] == -H and sp1.delta_h[1] == H and sp1.delta_f > 0
    # Adam, SP, c = 0: Delta h^1 ~ n^0, Delta h^l ~ n^+1; the output grows (a lower bound).
    spa = classify(preset("sp", 3), optimizer="adam").predicted_slopes(1)
    assert spa.delta_h[:2] == (0, 1) and spa.delta_f >= F(3, 2)
    # step 1 differs from later steps for SGD only
    v = classify(preset("sp", 3))
    assert v.predicted_slopes(1) != v.predicted_slopes(2)
    with pytest.raises(ValueError, match="step"):
        v.predicted_slopes(0)


def test_up_family_endpoints_and_names():
    for L in (1, 2, 4):
        for opt in ("sgd", "adam"):
            assert equivalent(preset("up", L, s=0), preset("mup", L), opt)
            assert equivalent(preset("up", L, s=H), preset("ntk", L), opt)
    v = classify(preset("up", 3, s="1/4"), optimizer="adam")
    assert v.regime == "kernel" and v.r == F(1, 4) and v.equivalent_to == "up(1/4)"
    with pytest.raises(ValueError, match="0 <= s <= 1/2"):
        preset("up", 2, s=1)
    with pytest.raises(ValueError, match="needs s"):
        preset("up", 2)


def test_full_alignment_sp_largest_lr_is_feature_learning():
    a, b = [0, 0, 0], [0, H, H]
    c_tp4 = max_stable_lr_exponents(a, b, "sgd", "tp4")
    c_full = max_stable_lr_exponents(a, b, "sgd", "full")
    assert c_tp4 == (0, 1, 1) and classify(a, b, c_tp4).regime == "kernel"
    assert classify(a, b, c_tp4).r == H
    assert c_full == (-H, H, 1)
    assert classify(a, b, c_full, alignment="full").regime == "feature_learning"


def test_linear_flag():
    v = classify(preset("mup", 2), linear=True)
    assert not v.dichotomy_applies and any("linear network" in x for x in v.reasons)
    assert classify(preset("mup", 2)).dichotomy_applies


def test_faithfulness_reported_for_adam_only():
    assert classify(preset("sp", 2), optimizer="adam").faithful is False
    assert classify(preset("mup", 2), optimizer="adam").faithful is True
    assert classify(preset("mup", 2), optimizer="sgd").faithful is None


def test_canonical_and_equivalence():
    e = canonical(preset("mup_table8", 2), optimizer="adam")
    assert e.a == (0, 0, 0) and e.b == (0, H, 1) and e.c == (0, 1, 1)
    assert equivalent(preset("mup", 2), preset("mup_table8", 2), "sgd")
    assert not equivalent(preset("mup", 2), preset("ntk", 2), "sgd")
    assert not equivalent(preset("mup", 2), preset("mup", 3), "sgd")


# ---------------------------------------------------------------- properties

fractions = st.builds(F, st.integers(-4, 4), st.sampled_from([1, 2, 4]))
optimizers = st.sampled_from(["sgd", "adam"])
alignments = st.sampled_from(["tp4", "full"])


@st.composite
def parametrizations(draw, stable_init=False):
    L = draw(st.integers(1, 4))
    a = [draw(fractions) for _ in range(L + 1)]
    if stable_init:
        beta = [F(0)] + [H] * (L - 1) + [H + draw(st.builds(F, st.integers(0, 4), st.sampled_from([1, 2, 4])))]
        b = [x - y for x, y in zip(beta, a)]
    else:
        b = [draw(fractions) for _ in range(L + 1)]
    c = [draw(fractions) for _ in range(L + 1)]
    return a, b, c


def _symmetry(a, b, c, theta, opt):
    k = 2 if opt == "sgd" else 1
    return (
        [x + t for x, t in zip(a, theta)],
        [x - t for x, t in zip(b, theta)],
        [x - k * t for x, t in zip(c, theta)],
    )


def _strip(v):
    d = v.to_dict()
    for k in ("exponents", "name"):
        d.pop(k)
    return d


@settings(max_examples=200, deadline=None)
@given(parametrizations(), st.data(), optimizers, alignments)
def test_verdict_invariant_under_symmetry(abc, data, opt, align):
    a, b, c = abc
    theta = [data.draw(fractions) for _ in a]
    v1 = classify(a, b, c, optimizer=opt, alignment=align)
    v2 = classify(*_symmetry(a, b, c, theta, opt), optimizer=opt, alignment=align)
    assert _strip(v1) == _strip(v2)
    assert equivalent((a, b, c), _symmetry(a, b, c, theta, opt), opt)


def _reference(a, b, c, opt, align):
    """docs/theory.md sections 2-4 written out again, independently of abcparam.theory, for L >= 1.

    Returns (stable_at_init, r_l list, s_l list, q, f0 exponent, regime, updated_maximally, readout init max).
    """
    L = len(a) - 1
    k = 2 if opt == "sgd" else 1
    beta = [x + y for x, y in zip(a, b)]
    gamma = [k * x + z for x, z in zip(a, c)]
    A = [None] + [F(1)] * L  # A_l = U_l = 1 for l >= 2 (index l-1)
    U = A
    O = [None] + [H] * (L - 1) + [F(1) if align == "tp4" else H]
    g = min(beta[L], gamma[L]) if opt == "sgd" else F(0)
    s = [gamma[0] + g] + [gamma[i] + g - A[i] for i in range(1, L)]
    r = [s[0]]
    for i in range(1, L):
        r.append(min(s[i], gamma[i] + g + r[i - 1] - U[i], r[i - 1] + H - O[i]))
    q = min(beta[L] + r[-1] - O[L], gamma[L] - A[L], gamma[L] + r[-1] - U[L])
    init = beta[0] == 0 and all(x == H for x in beta[1:L]) and beta[L] >= H
    stable = init and min(r) >= 0 and q >= 0
    if not stable:
        regime = "unstable"
    elif q > 0:
        regime = "trivial"
    else:
        regime = "feature_learning" if r[-1] == 0 else "kernel"
    updated = [x == 0 for x in s] + [gamma[L] == A[L]]
    return init, r, s, q, H - beta[L], regime, updated, beta[L] + r[-1] == O[L]


@settings(max_examples=400, deadline=None)
@given(parametrizations(), optimizers, alignments)
def test_classify_agrees_with_an_independent_derivation(abc, opt, align):
    a, b, c = abc
    v = classify(a, b, c, optimizer=opt, alignment=align)
    init, r, s, q, f0, regime, updated, init_max = _reference(a, b, c, opt, align)
    assert v.stable_at_init == init
    assert list(v.r_layers) == r and list(v.s_layers) == s and v.r == r[-1]
    assert v.q == q and v.f0_exponent == f0
    assert v.regime == regime
    assert v.stable == (regime != "unstable") and v.nontrivial == (regime in ("feature_learning", "kernel"))
    assert list(v.updated_maximally) == updated
    assert list(v.features_evolve) == [x == 0 for x in r]
    assert v.readout_initialised_maximally == init_max
    if not v.stable:
        assert v.reasons  # every unstable verdict says why


def test_hand_derived_verdicts_for_non_preset_parametrizations():
    # 1. muP's a, b (TP4 form, L = 3) with the first hidden SGD rate too small by n^1/2 (c = 0, 1/2, 0, 0):
    #    layer 2 is not updated maximally, but its input's change carries through W_0, so its features still evolve
    v = classify(["-1/2", 0, 0, "1/2"], ["1/2"] * 4, [0, "1/2", 0, 0], optimizer="sgd")
    # g = min(beta_4, gamma_4) = min(1, 1) = 1; s_1 = gamma_1 + g = (-1 + 0) + 1 = 0
    # s_2 = gamma_2 + g - 1 = 1/2 + 1 - 1 = 1/2; r_2 = min(1/2, 1/2 + 1 + 0 - 1, 0 + 1/2 - 1/2) = 0
    assert list(v.s_layers) == [0, H, 0] and list(v.r_layers) == [0, 0, 0]
    assert v.updated_maximally == (True, False, True, True) and v.regime == "feature_learning"
    # 2. NTK (a = 0, 1/2, 1/2, 1/2; b = 0) under Adam with one constant rate (c = 0): gamma_2 = a + c = 1/2,
    #    s_2 = gamma_2 + g - A_2 = 1/2 + 0 - 1 = -1/2; r_2 = min(-1/2, 1/2 + 0 + 0 - 1, 0 + 1/2 - 1/2) = -1/2: unstable
    v = classify([0, "1/2", "1/2", "1/2"], [0, 0, 0, 0], 0, optimizer="adam")
    assert v.s_layers[1] == -H and v.r_layers[1] == -H and v.regime == "unstable"
    assert any("r_2 = -1/2 < 0" in x for x in v.reasons)
    # 3. vanishing hidden features at init (beta_2 = 1 > 1/2) is not stable at init, even though training is
    v = classify([0, 0, 0], [0, 1, "1/2"], [0, 0, 0], optimizer="adam")
    assert not v.stable_at_init and v.regime == "unstable"
    assert any("layer 2 init" in x and "vanishes" in x for x in v.reasons)
    # 4. a readout initialised below maximal (beta_3 = 3/2 with r = 0 and O = 1: 3/2 + 0 != 1) but updated maximally
    v = classify(["-1/2", 0, 1], ["1/2", "1/2", "1/2"], ["1/2", 1, 0], optimizer="adam")
    assert v.r == 0 and v.q == 0 and v.regime == "feature_learning"
    assert not v.readout_initialised_maximally and v.updated_maximally[-1]
    # 5. the readout is "initialised maximally" only through r: NTK has beta_3 = 1/2, r = 1/2: 1/2 + 1/2 = 1 = O
    v = classify(abcparam_preset("ntk"), optimizer="sgd")
    assert v.r == H and v.readout_initialised_maximally
    # ... and SP with LR ~ 1/n under SGD: beta_3 = 1/2, r = 1/2 again, q = 0: kernel
    v = classify(abcparam_preset("sp_inv_n"), optimizer="sgd")
    assert (v.r, v.q, v.regime) == (H, 0, "kernel")
    # 6. trivial: muP's a, b with every SGD rate one power of n smaller: q = 1
    v = classify(["-1/2", 0, "1/2"], ["1/2"] * 3, [1, 1, 1], optimizer="sgd")
    assert v.regime == "trivial" and v.q > 0


def abcparam_preset(name):
    return preset(name, 2)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 5), st.builds(F, st.integers(0, 8), st.just(16)), optimizers)
def test_up_s_has_r_equal_s(L, s, opt):
    v = classify(preset("up", L, s=s), optimizer=opt)
    assert v.stable and v.nontrivial and v.r == s
    assert all(r_l == s for r_l in v.r_layers)


@settings(max_examples=200, deadline=None)
@given(parametrizations(stable_init=True), optimizers, alignments, st.data())
def test_max_stable_lr_is_stable_and_tight(abc, opt, align, data):
    a, b, _ = abc
    c = max_stable_lr_exponents(a, b, opt, align)
    assert classify(a, b, c, optimizer=opt, alignment=align).stable
    layer = data.draw(st.integers(0, len(a) - 1))
    delta = data.draw(st.builds(F, st.integers(1, 8), st.sampled_from([1, 2, 8])))
    lowered = list(c)
    lowered[layer] -= delta
    assert not classify(a, b, lowered, optimizer=opt, alignment=align).stable


def _walk(obj):
    if isinstance(obj, dict):
        for k, x in obj.items():
            yield k
            yield from _walk(x)
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _walk(x)
    else:
        yield obj


@settings(max_examples=100, deadline=None)
@given(parametrizations(), optimizers, alignments, st.booleans())
def test_verdict_has_no_float_and_round_trips(abc, opt, align, linear):
    v = classify(*abc, optimizer=opt, alignment=align, linear=linear)
    for x in _walk(v.__dict__):
        assert not isinstance(x, float)
    for x in _walk(v.to_dict()):
        assert not isinstance(x, float)
    assert all(isinstance(x, F) for x in v.r_layers + v.s_layers + v.beta + v.gamma + (v.r, v.q, v.g))
    back = Verdict.from_json(v.to_json())
    assert back == v
    # the JSON itself carries the verdict (not only enough to re-derive it): read it without abcparam
    d = json.loads(v.to_json())
    assert d["regime"] == v.regime and (F(d["r"]), F(d["q"]), F(d["g"])) == (v.r, v.q, v.g)
    assert [F(x) for x in d["r_layers"]] == list(v.r_layers) and [F(x) for x in d["beta"]] == list(v.beta)
    assert d["updated_maximally"] == list(v.updated_maximally) and d["reasons"] == list(v.reasons)


def test_from_dict_refuses_altered_data():
    d = classify(preset("sp", 2)).to_dict()
    d["regime"] = "feature_learning"
    with pytest.raises(ValueError, match="regime"):
        Verdict.from_dict(d)


# ---------------------------------------------------------------- input parsing


@pytest.mark.parametrize(
    "value,expected",
    [(0, F(0)), (-1, F(-1)), (F(1, 3), F(1, 3)), ("1/2", H), (" -1/2 ", -H), ("0.25", F(1, 4)), (0.5, H), (-1.5, F(-3, 2)),
     (Decimal("0.25"), F(1, 4)), (Decimal("-3"), F(-3))],
)
def test_exponent_accepts(value, expected):
    assert exponent(value) == expected and isinstance(exponent(value), F)


@pytest.mark.parametrize(
    "value,err,msg",
    [
        (True, TypeError, "bool"),
        (float("nan"), ValueError, "finite"),
        (float("inf"), ValueError, "finite"),
        (0.1, ValueError, "not exactly a simple fraction"),
        (1 / 3, ValueError, "'1/3'"),
        ("1/0", ValueError, "zero denominator"),
        ("__import__('os')", ValueError, "cannot read"),
        ("1/2/3", ValueError, "cannot read"),
        (None, TypeError, "NoneType"),
        ([1], TypeError, "list"),
        (Decimal("Infinity"), ValueError, r"^a\[0\]: got Decimal\('Infinity'\); exponents must be finite"),
        (Decimal("NaN"), ValueError, r"^a\[0\]: got Decimal\('NaN'\); exponents must be finite"),
    ],
)
def test_exponent_refuses(value, err, msg):
    with pytest.raises(err, match=msg):
        exponent(value, "a[0]")


def test_classify_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match=r"^b: has 2 layers but a has 3"):
        classify([0, 0, 0], [0, 0], 0)
    with pytest.raises(ValueError, match=r"^a: needs at least 2 layers"):
        classify([0], [0], [0])
    with pytest.raises(ValueError, match=r"^c\[1\]: the float 0.1"):
        classify([0, 0], [0, H], [0, 0.1])
    with pytest.raises(TypeError, match=r"^a\[0\]: got the bool"):
        classify([True, 0], [0, H], 0)
    with pytest.raises(TypeError, match=r"^a: expected a sequence of exponents over the layers \(input, hidden\.\.\., "
                                        r"output\), got int 0$"):
        classify(0, [0, H], 0)
    with pytest.raises(ValueError, match=r"^c: cannot read 'x' as an exponent"):  # one c for every layer, named
        classify([0, 0], [0, H], "x")
    for unordered in ({0, H}, {"x": 0, "y": H}):  # no layer order: refused, not read in some order
        with pytest.raises(TypeError, match=rf"^b: expected an ordered sequence \(list or tuple\), got {type(unordered).__name__}$"):
            classify([0, 0], unordered, 0)
    with pytest.raises(ValueError, match=r"^optimizer: 'Adadelta' is outside the theory .*one eps"):
        classify([0, 0], [0, H], 0, optimizer="Adadelta")
    with pytest.raises(ValueError, match=r"^optimizer: unknown optimizer 'Shampoo2'.*'spectral'.*'relative'") as info:
        classify([0, 0], [0, H], 0, optimizer="Shampoo2")
    names = [n for members in theory.OPTIMIZER_FAMILIES.values() for n in members]
    assert str(info.value).endswith("; known names: " + ", ".join(names)) and "adamw" in names and "muon" in names
    with pytest.raises(ValueError, match=r"^optimizer: got 3 families for 2 layers"):
        classify([0, 0], [0, H], 0, optimizer=["adam", "adam", "sgd"])
    with pytest.raises(ValueError, match=r"^alignment: got 'partial'"):
        classify([0, 0], [0, H], 0, alignment="partial")
    with pytest.raises(TypeError, match=r"^b, c: give either a preset or the exponents \(a, b, c\), not both$"):
        classify(preset("mup"), [0, 0, 0])
    with pytest.raises(TypeError, match=r"^b, c: give either an Exponents object or the exponents \(a, b, c\), not both$"):
        classify(Exponents.of([0, 0], [0, H], 0), None, [0, 0])
    with pytest.raises(TypeError, match=r"^classify: give the exponents a, b and c \(or a preset"):
        classify([0, 0], [0, H])
    with pytest.raises(ValueError, match="depth"):
        preset("mup", 0)
    with pytest.raises(ValueError, match="unknown preset"):
        preset("muP2", 2)


def test_optimizer_aliases():
    for name in ("SGD", "ASGD", "momentum", "nesterov"):
        assert optimizer_family(name) == "sgd"
    for name in ("Adam", "AdamW", "RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam", "sign_sgd", "Lion", "SparseAdam"):
        assert optimizer_family(name) == "adam"

    class AdamW:  # a class is read by its name, as an instance is
        pass

    assert optimizer_family(AdamW) == "adam" and optimizer_family(AdamW()) == "adam"


def test_no_module_of_the_theory_subpackage_imports_torch():
    code = (
        "import sys\n"
        "import importlib, pkgutil\n"
        "import abcparam.theory as m\n"
        "for sub in pkgutil.iter_modules(m.__path__):\n"
        "    importlib.import_module('abcparam.theory.' + sub.name)\n"
        "assert {'depth', 'parametrizations', 'verdict'} <= {s.name for s in pkgutil.iter_modules(m.__path__)}\n"
        "assert m.classify(m.preset('mup', 2)).regime == 'feature_learning'\n"
        "assert m.classify(m.preset('mup', 2)).table().count('---') >= 1\n"
        "assert 'torch' not in sys.modules, 'theory imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_str_and_json_render():
    v = classify(preset("mup", 3), optimizer="adam")
    text = str(v)
    assert "feature_learning" in text and "layer" in text and "reasons:" in text
    d = json.loads(v.to_json())
    assert d["regime"] == "feature_learning" and d["r_layers"] == ["0", "0", "0"]
    assert d["predicted_slopes"]["1"]["f0"] == "-1/2"
    assert isinstance(Exponents.of([0, 0], [0, H], 1).c[0], F)


@pytest.mark.parametrize("s", ["0", "1/4", "1/2"])
def test_a_uniform_presets_description_states_what_the_classifier_finds(s):
    p = preset("up", 3, s=s)
    v = classify(p)
    s = F(s)
    assert p.description == f"uniform parametrization UP_{s}: every r_l = {s}, a+b = {1 - s} at the readout"
    assert v.r_layers == (s,) * 3 and p.a[-1] + p.b[-1] == 1 - s


@pytest.mark.parametrize("alignment", ["tp4", "full"])
def test_no_learning_rate_is_stable_when_the_initialisation_is_not_and_the_refusal_says_why(alignment):
    from abcparam.theory import max_stable_lr_exponents

    with pytest.raises(ValueError) as info:
        max_stable_lr_exponents([1, 1, 0], [1, 1, "-1/2"], alignment=alignment)
    assert str(info.value) == (
        "a, b: not stable at initialisation, no learning rate is stable: "
        "input layer init: beta_1 = a_1+b_1 = 2 != 0, h^1 vanishes like n^-2; "
        "layer 2 init: beta_2 = a+b = 2 != 1/2, W^2 x scales like n^(-3/2) (vanishes); "
        "readout init: beta_3 = a+b = -1/2 < 1/2, f_0 blows up like n^1")


def test_canonical_with_b_but_no_c_is_refused_by_name():
    from abcparam.theory.symmetry import canonical

    with pytest.raises(TypeError, match=r"^c: got NoneType None; allowed: int, Fraction"):
        canonical([0, 0, 0], [0, "1/2", "1/2"])
    with pytest.raises(TypeError, match=r"^b: got NoneType None; allowed"):
        canonical([0, 0, 0], None, [0, 0, 0])
