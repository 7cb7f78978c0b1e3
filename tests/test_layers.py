"""abcparam.Linear / Embedding / TiedReadout and the Parametrization object."""

import copy
import io
import math
import pickle
import re
from fractions import Fraction as F

import pytest
import torch
from torch import nn

import abcparam
from abcparam import Embedding, Linear, TiedReadout

PRESETS = {
    "sp": abcparam.sp,
    "sp_inv_n": abcparam.sp_inv_n,
    "ntk": abcparam.ntk,
    "mup": abcparam.mup,
    "mup_table8": lambda w, b: abcparam.mup(w, b, form="table8"),
    "up_1/4": lambda w, b: abcparam.up("1/4", w, b),
}
ROLE_DIMS = {"input": (12, 64), "hidden": (64, 64), "output": (64, 5)}


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("role", sorted(ROLE_DIMS))
def test_m1_is_an_ordinary_linear(name, role):
    p = PRESETS[name](64, 64)
    layer = Linear(*ROLE_DIMS[role], role=role, param=p)
    assert layer.weight_multiplier == 1.0
    plain = nn.Linear(*ROLE_DIMS[role])
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(7, ROLE_DIMS[role][0])
    assert torch.equal(layer(x), plain(x))
    # and the init is the usual fan-in scale at base width
    assert layer.init_std == pytest.approx(1 / math.sqrt(ROLE_DIMS[role][0]))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_m1_is_an_ordinary_embedding(name):
    e = Embedding(50, 64, padding_idx=3, param=PRESETS[name](64, 64))
    plain = nn.Embedding(50, 64, padding_idx=3)
    plain.load_state_dict(e.state_dict())
    idx = torch.randint(0, 50, (4, 9))
    assert torch.equal(e(idx), plain(idx))
    assert torch.all(e.weight[3] == 0)


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("role", sorted(ROLE_DIMS))
def test_forward_equals_linear_with_effective_weights(name, role):
    p = PRESETS[name](256, 64)
    din, dout = ROLE_DIMS[role]
    din, dout = (din * 4 if role != "input" else din), (dout * 4 if role != "output" else dout)
    layer = Linear(din, dout, role=role, param=p).double()
    plain = nn.Linear(din, dout).double()
    with torch.no_grad():
        plain.weight.copy_(layer.effective_weight())
        plain.bias.copy_(layer.bias)  # the bias is stored as its effective value
    x = torch.randn(5, din, dtype=torch.float64)
    torch.testing.assert_close(layer(x), plain(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["sp", "ntk", "mup", "mup_table8"])
@pytest.mark.parametrize("role", ["input", "hidden", "output"])
def test_init_std_scales_as_m_pow_minus_b(name, role):
    # 3 widths; each std estimate is over >= 16k draws, so its relative error is < 2% (4 sigma).
    torch.manual_seed(0)
    stds, eff = [], []
    ms = [1, 4, 16]
    for m in ms:
        p = PRESETS[name](64 * m, 64)
        din, dout = {"input": (256, 64 * m), "hidden": (64 * m, 64 * m), "output": (64 * m, 256)}[role]
        layer = Linear(din, dout, role=role, param=p)
        stds.append(layer.weight.std().item())
        eff.append(layer.effective_weight().std().item())
    ex = PRESETS[name](1, 1).role(role)
    fan_in_base = 256 if role == "input" else 64
    # input layers store the effective weight (a = 0 form): stored exponent a + b; others store w: b
    b_stored = ex.a + ex.b if role == "input" else ex.b
    for m, s, e in zip(ms, stds, eff):
        assert s == pytest.approx(m ** -float(b_stored) / math.sqrt(fan_in_base), rel=0.04)
        assert e == pytest.approx(m ** -float(ex.a + ex.b) / math.sqrt(fan_in_base), rel=0.04)
    # the fitted exponents, as a coordinate check would see them
    slope = math.log(stds[-1] / stds[0]) / math.log(16)
    assert slope == pytest.approx(-float(b_stored), abs=0.03)


def test_init_options_alpha_sigma_zero_init():
    p = abcparam.mup(256, 64, form="table8")
    layer = Linear(256, 10, role="output", param=p, alpha=2.0, zero_init=True)
    assert torch.all(layer.weight == 0) and layer.weight_multiplier == pytest.approx(0.5)
    layer = Linear(256, 256, param=p, sigma=0.02)
    assert layer.init_std == pytest.approx(0.02 * 4 ** -0.5)


def test_reset_parameters_is_idempotent_and_never_rescales():
    p = abcparam.mup(512, 64)
    layer = Linear(512, 512, param=p)
    torch.manual_seed(1)
    layer.reset_parameters()
    first = layer.weight.detach().clone()
    with torch.no_grad():
        layer.weight.mul_(100)  # whatever is there now
    torch.manual_seed(1)
    layer.reset_parameters()
    torch.manual_seed(1)
    layer.reset_parameters()
    assert torch.equal(layer.weight, first)
    # loading a checkpoint keeps it bit for bit
    sd = {k: v.clone() * 3 for k, v in layer.state_dict().items()}
    layer.load_state_dict(sd)
    assert torch.equal(layer.weight, sd["weight"])


def test_state_dict_round_trips_with_plain_modules():
    p = abcparam.mup(128, 32)
    layer = Linear(128, 128, param=p)
    plain = nn.Linear(128, 128)
    plain.load_state_dict(layer.state_dict())
    layer2 = Linear(128, 128, param=p)
    layer2.load_state_dict(plain.state_dict())
    assert torch.equal(layer2.weight, layer.weight) and torch.equal(layer2.bias, layer.bias)
    e = Embedding(10, 128, param=p)
    assert list(e.state_dict()) == ["weight"]
    nn.Embedding(10, 128).load_state_dict(e.state_dict())


@pytest.mark.parametrize("how", ["deepcopy", "pickle", "torch.save"])
def test_metadata_survives_copies(how):
    p = abcparam.mup(384, 64)
    net = nn.Sequential(Linear(3, 384, role="input", param=p), Linear(384, 384, param=p), Linear(384, 2, role="output", param=p))
    if how == "deepcopy":
        other = copy.deepcopy(net)
    elif how == "pickle":
        other = pickle.loads(pickle.dumps(net))
    else:
        buf = io.BytesIO()
        torch.save(net, buf)
        buf.seek(0)
        other = torch.load(buf, weights_only=False)
    for a, b in zip(net, other):
        assert (a.width_mult, a.a, a.b, a.c_adam, a.weight_multiplier, a.abc_scales()) == (
            b.width_mult, b.a, b.b, b.c_adam, b.weight_multiplier, b.abc_scales())
    x = torch.randn(4, 3)
    assert torch.equal(net(x), other(x))


def test_extra_repr_shows_exponents():
    text = repr(Linear(256, 256, param=abcparam.mup(256, 64)))
    for needle in ("role=hidden", "param=mup", "m=4", "a=0", "b=1/2", "c_adam=1"):
        assert needle in text


def test_bf16_runs():
    p = abcparam.mup(128, 32)
    net = nn.Sequential(Embedding(20, 128, param=p, dtype=torch.bfloat16), Linear(128, 128, param=p, dtype=torch.bfloat16),
                        Linear(128, 20, role="output", param=p, dtype=torch.bfloat16))
    out = net(torch.randint(0, 20, (3, 5)))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    out.float().sum().backward()
    assert net[1].weight.grad.dtype == torch.bfloat16


def test_tied_readout_shares_the_table():
    p = abcparam.mup(256, 64, form="table8")
    emb = Embedding(30, 256, param=p)
    head = TiedReadout(emb, param=p, alpha=1.0)
    assert head.weight is emb.weight
    h = torch.randn(4, 256)
    torch.testing.assert_close(head(h), h @ emb.weight.T * (1 / 4))
    default = TiedReadout(emb, param=p)  # alpha = 1/sqrt(base fan-in): logits at the untied scale
    assert default.weight_multiplier == pytest.approx(1 / 4 / 8)
    model = nn.ModuleDict({"emb": emb, "head": head})
    assert sorted(model.state_dict()) == ["emb.weight", "head.weight"]
    assert len(list(model.parameters())) == 1
    torch.manual_seed(0)
    head.reset_parameters()  # must not touch the shared table
    assert head.weight is emb.weight
    tp4 = abcparam.mup(256, 64)
    assert TiedReadout(Embedding(30, 256, param=tp4, fold=False), param=tp4, alpha=1).weight_multiplier == 0.5
    # a folded embedding stores m^-a_in * w = 2 w: the readout multiplier undoes it (m^-a_out / m^-a_in = 1/4),
    # so folded and unfolded ties compute the same logits from the same effective table
    folded, unfolded = Embedding(30, 256, param=tp4), Embedding(30, 256, param=tp4, fold=False)
    with torch.no_grad():
        folded.weight.copy_(unfolded.weight * 2.0)
    idx = torch.randint(0, 30, (5,))
    assert torch.equal(folded(idx), unfolded(idx))
    tf, tu = TiedReadout(folded, param=tp4), TiedReadout(unfolded, param=tp4)
    assert tf.weight_multiplier == pytest.approx(0.25 / 8)  # default alpha = 1 / sqrt(base fan-in) = 1/8
    torch.testing.assert_close(tf(h), tu(h), rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match=r"^param: 'sp' gives the input and output roles different init or learning-rate "
                                         r"exponents \(input b=.*so one shared tensor cannot follow both; use "
                                         r"abcparam\.mup\(\.\.\., form='table8'\) or untie the readout$"):
        TiedReadout(Embedding(30, 256, param=abcparam.sp(256, 64)), param=abcparam.sp(256, 64))
    # the same b but another learning-rate exponent (c_adam) for the readout: one tensor cannot follow both
    same_b = abcparam.parametrization(input=(0, 0, -1, 0), hidden=(0, "1/2", 0, 1), output=(1, 0, -1, "1/2"), width=256, base_width=64)
    with pytest.raises(ValueError, match="different init or learning-rate exponents"):
        TiedReadout(Embedding(30, 256, param=same_b), param=same_b)
    same_b_sgd = abcparam.parametrization(input=(0, 0, -1, 0), hidden=(0, "1/2", 0, 1), output=(1, 0, 0, 0), width=256, base_width=64)
    with pytest.raises(ValueError, match="different init or learning-rate exponents"):
        TiedReadout(Embedding(30, 256, param=same_b_sgd), param=same_b_sgd)
    with pytest.raises(ValueError, match="same param"):
        TiedReadout(Embedding(30, 256, param=abcparam.mup(256, 64)), param=abcparam.mup(512, 64).at_width(256, 32))


def test_mean_field_has_no_hidden_role():
    p = abcparam.mean_field(256, 64)
    Linear(3, 256, role="input", param=p)
    with pytest.raises(ValueError, match="no hidden layers"):
        Linear(256, 256, role="hidden", param=p)


@pytest.mark.parametrize(
    "kwargs,err,msg",
    [
        (dict(role="middle"), ValueError, "role: got 'middle'"),
        (dict(param=None), TypeError, "param: required"),
        (dict(param="mup"), TypeError, "Parametrization"),
        (dict(alpha=0.0), ValueError, "alpha: must be > 0"),
        (dict(sigma=float("nan")), TypeError, "sigma"),
        (dict(bias="yes"), TypeError, "bias"),
    ],
)
def test_linear_bad_inputs(kwargs, err, msg):
    base = dict(role="hidden", param=abcparam.mup(64, 64))
    base.update(kwargs)
    with pytest.raises(err, match=msg):
        Linear(64, 64, **base)


@pytest.mark.parametrize("dims,err,msg", [((0, 4), ValueError, "in_features: must be > 0"), ((4.5, 4), TypeError, "in_features"), ((4, -1), ValueError, "out_features")])
def test_linear_bad_dims(dims, err, msg):
    with pytest.raises(err, match=msg):
        Linear(*dims, param=abcparam.mup(64, 64))


@pytest.mark.parametrize("kw,err,msg", [(dict(width=0), ValueError, "width: must be > 0"), (dict(width=2.5), TypeError, "width"),
                                         (dict(base_width=-3), ValueError, "base_width")])
def test_parametrization_bad_widths(kw, err, msg):
    args = dict(width=64, base_width=64)
    args.update(kw)
    with pytest.raises(err, match=msg):
        abcparam.mup(**args)


def test_parametrization_object():
    p = abcparam.mup(1024, 128)
    assert p.width_mult == F(8)
    assert p.classify(depth=3, optimizer="adam").regime == "feature_learning"
    assert p.at_width(2048).width_mult == 16
    assert abcparam.classify(p, optimizer="sgd").regime == "feature_learning"
    custom = abcparam.parametrization(input=(0, 0, -1, 0), hidden=(0, "1/2", 0, 1), output=(1, 0, -1, 0))
    assert abcparam.equivalent(custom.theory_preset(3), abcparam.preset("mup", 3), "adam")
    assert [str(p.eps_exponent(r)) for r in ("input", "hidden", "output", "vector")] == ["1/2", "1", "1/2", "1/2"]
    t8 = abcparam.mup(1024, 128, form="table8")
    assert [str(t8.eps_exponent(r)) for r in ("input", "hidden", "output")] == ["1", "1", "1"]
    with pytest.raises(ValueError, match="form"):
        abcparam.mup(form="tp5")
    with pytest.raises(ValueError, match="hidden: expected"):
        abcparam.parametrization(input=(0, 0, 0, 0), hidden=(0, 0), output=(0, 0, 0, 0))
    with pytest.raises(ValueError, match="role"):
        p.role("bias")


def test_classify_accepts_a_parametrization_object():
    assert abcparam.classify(abcparam.mean_field(256, 64), optimizer="adam").regime == "feature_learning"
    assert abcparam.classify(abcparam.ntk(256, 64)).regime == "kernel"
    assert abcparam.ntk().classify(depth=4).depth == 4


# -- silent traps (issue: no silent traps) -------------------------------------


def test_a_width_without_a_base_width_is_refused():
    for preset in (abcparam.mup, abcparam.sp, abcparam.ntk, abcparam.sp_inv_n, abcparam.mean_field):
        with pytest.raises(ValueError, match="base_width: required with width=1024"):
            preset(1024)
        with pytest.raises(ValueError, match="width: required with base_width=128"):
            preset(base_width=128)
    with pytest.raises(ValueError, match="base_width: required"):
        abcparam.up("1/4", 1024)
    with pytest.raises(ValueError, match="base_width: required"):
        abcparam.parametrization(input=(0, 0, 0, 0), output=(0, 0, 0, 0), width=1024)
    assert abcparam.mup().width_mult == 1  # no width at all: an ordinary network, m = 1
    assert abcparam.mup(1024, 1024).width_mult == 1


@pytest.mark.parametrize(
    "dims,role",
    [((20, 256), "input"), ((256, 256), "hidden"), ((256, 10), "output"), ((256, 768), "hidden"), ((1024, 256), "hidden"),
     ((30, 96), "input"), ((96, 10), "output"), ((96, 288), "hidden")],
)
def test_role_is_inferred_from_the_shapes(dims, role):
    width = 96 if 96 in dims else 256
    layer = Linear(*dims, param=abcparam.mup(width, width // 4))
    assert layer.role == role


@pytest.mark.parametrize(
    "dims,role,msg",
    [
        ((20, 256), "hidden", "needs a width-sized in_features.*in_features=20.*fit role='input'"),
        ((256, 10), "hidden", "needs a width-sized out_features.*out_features=10.*fit role='output'"),
        ((256, 10), "input", "needs a width-sized out_features"),
        ((20, 256), "output", "needs a width-sized in_features"),
    ],
)
def test_a_role_the_shapes_rule_out_is_refused(dims, role, msg):
    with pytest.raises(ValueError, match=msg):
        Linear(*dims, role=role, param=abcparam.mup(256, 64))


def test_shapes_that_cannot_decide_ask_for_the_role():
    p = abcparam.mup(256, 64)
    with pytest.raises(ValueError, match="cannot tell the role of Linear\\(784, 256\\).*'input', 'hidden'"):
        Linear(784, 256, param=p)  # 784 pixels or a d_ff of 784? the shapes cannot say
    assert Linear(784, 256, role="input", param=p).role == "input"
    with pytest.raises(ValueError, match="neither dimension"):
        Linear(20, 10, param=p)
    # a large divisor of the width may be a data size or grow with it (a head of width / 4): ask
    with pytest.raises(ValueError, match="cannot tell the role of Linear\\(64, 256\\).*'input', 'hidden'"):
        Linear(64, 256, param=p)
    with pytest.raises(ValueError, match="cannot tell the role of Linear\\(32, 96\\)"):
        Linear(32, 96, param=abcparam.mup(96, 48))
    assert Linear(64, 256, role="input", param=p).role == "input"
    # small divisors are data sizes: 16 inputs, 1 output
    assert Linear(16, 256, param=p).role == "input" and Linear(256, 1, param=p).role == "output"
    with pytest.raises(ValueError, match=r"^role: required for Linear\(20, 10\) at width 1 \(base width 1\): the parametrization "
                                         r"carries no width \(m = 1\), so the shapes cannot tell which dimensions grow; pass "
                                         r"role='input', 'hidden' or 'output'$"):
        Linear(20, 10, param=abcparam.mup())
    with pytest.raises(ValueError, match="embedding_dim: 20 is not width-sized"):
        Embedding(100, 20, param=p)


def test_from_pretrained_returns_the_given_rows():
    p = abcparam.mup(256, 64)
    table = torch.randn(12, 256)
    for fold in (True, False):
        e = Embedding.from_pretrained(table, param=p, fold=fold, padding_idx=0)
        idx = torch.tensor([[1, 5, 11]])
        torch.testing.assert_close(e(idx), table[idx], rtol=1e-6, atol=0)
        assert not e.weight.requires_grad and e.padding_idx == 0
    trainable = Embedding.from_pretrained(table, freeze=False, param=p)
    assert trainable.weight.requires_grad and torch.equal(trainable.weight, table)  # folded: the same numbers
    with pytest.raises(ValueError, match="embeddings: expected a 2-D tensor"):
        Embedding.from_pretrained(torch.randn(3), param=p)
    for wrong in ({"dtype": torch.float64}, {"_weight": table}, {"max_norms": 1.0}):  # the table sets these; a typo
        with pytest.raises(TypeError, match=rf"^from_pretrained: unexpected argument\(s\) {next(iter(wrong))}; allowed: "
                                            "embeddings, freeze, padding_idx, max_norm, .*fold$"):
            Embedding.from_pretrained(table, param=p, **wrong)


@pytest.mark.parametrize("fold", [True, False])
def test_max_norm_bounds_the_rows_the_forward_returns(fold):
    p = abcparam.mup(256, 64)  # TP4: input multiplier m^1/2 = 2
    e = Embedding(10, 256, max_norm=1.0, param=p, fold=fold)
    with torch.no_grad():
        e.weight.mul_(10)  # every row far above the bound
    out = e(torch.arange(10))
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(10), rtol=1e-4, atol=0)
    with pytest.raises(ValueError, match="max_norm"):
        Embedding(10, 256, max_norm=-1.0, param=p)


def test_parametrization_classify_passes_optimizer_and_alignment_on():
    p = abcparam.sp_inv_n(256, 64)
    assert p.classify(optimizer="sgd").regime == "kernel" and p.classify(optimizer="adam").regime == "unstable"
    # SP init with the largest SGD rates under full alignment: feature learning there, unstable under tp4
    full = abcparam.parametrization(input=(0, 0, "-1/2", 0), hidden=(0, "1/2", "1/2", 1), output=(0, "1/2", 1, 1),
                                    width=256, base_width=64)
    assert full.classify(depth=2, alignment="full").regime == "feature_learning"
    assert full.classify(depth=2, alignment="tp4").regime == "unstable"


def test_describe_names_every_role_and_the_widths():
    text = abcparam.sp_inv_n(256, 64).describe()
    assert text == ("sp_inv_n (m = 256/64, attention scale ~ d_head^-1/2): input: a=0 b=0 c_sgd=1 c_adam=1 c_spectral=1 c_relative=1; "
                    "hidden: a=0 b=1/2 c_sgd=1 c_adam=1 c_spectral=1 c_relative=1; "
                    "output: a=0 b=1/2 c_sgd=1 c_adam=1 c_spectral=1 c_relative=1")
    assert "hidden" not in abcparam.mean_field(128, 64).describe()


@pytest.mark.parametrize("options", [{}, {"padding_idx": 2, "max_norm": 1.5, "norm_type": 1.0, "scale_grad_by_freq": True,
                                          "sparse": True, "freeze": False}])
def test_from_pretrained_has_torchs_defaults_and_passes_every_option_on(options):
    table = torch.randn(10, 64)
    mine = abcparam.Embedding.from_pretrained(table, param=abcparam.mup(64, 16), **options)
    theirs = nn.Embedding.from_pretrained(table, **options)
    for attr in ("padding_idx", "max_norm", "norm_type", "scale_grad_by_freq", "sparse"):
        assert getattr(mine, attr) == getattr(theirs, attr), attr
    assert mine.weight.requires_grad == theirs.weight.requires_grad


@pytest.mark.parametrize("field", ["a", "b", "c_sgd", "c_adam", "c_spectral", "c_relative"])
def test_a_bad_role_exponent_is_named_by_role_and_field(field):
    from abcparam.theory.parametrizations import RoleExponents

    values = {"a": 0, "b": "1/2", "c_sgd": 1, "c_adam": "1/2", "c_spectral": 0, "c_relative": 0}
    values[field] = "zz"
    with pytest.raises(ValueError, match=rf"^hidden\.{field}: "):
        RoleExponents.of(values["a"], values["b"], values["c_sgd"], values["c_adam"], values["c_spectral"], values["c_relative"],
                         role="hidden")


def test_the_spectral_and_relative_rates_default_from_adams():
    from fractions import Fraction as F

    from abcparam.theory.parametrizations import RoleExponents

    # docs/theory.md section 11: c_spectral = c_adam - kappa (kappa = 1 for a hidden layer, 1/2 for input and output);
    # c_relative = c_adam - b
    r = RoleExponents.of(0, "1/2", 1, "1/2", role="hidden")
    assert (r.c_spectral, r.c_relative) == (F(-1, 2), 0)
    r = RoleExponents.of("1/2", "1/2", "1/2", 1, role="output")
    assert (r.c_spectral, r.c_relative) == (F(1, 2), F(1, 2))
    with pytest.raises(ValueError, match="c_spectral: required"):
        RoleExponents.of(0, 0, 0, 0, role="other")
    # without a role, errors name the field under the generic "role"
    with pytest.raises(ValueError, match=r"^role\.a: cannot read 'x'"):
        RoleExponents.of("x", 0, 0, 0, 0)
    with pytest.raises(ValueError, match=r"^role\.c_spectral: required for a role other than input, hidden, output, vector$"):
        RoleExponents.of(0, 0, 0, 0)


@pytest.mark.parametrize("batch,n_in,n_out,scaled", [
    (4, 2, 8, "input"),      # input 8 < weight 16 < output 32 numbers
    (1, 64, 512, "input"),   # one row: the input is smallest
    (512, 16, 8, "weight"),  # a long batch through a small matrix
    (8, 256, 4, "output"),   # a readout to a few classes: the factor and the bias in one pass on the output
    (2, 64, 64, "input"),    # input and output tie: the input (the output path needs fewer outputs than inputs)
])
def test_the_multiplier_is_applied_to_the_smallest_operand(batch, n_in, n_out, scaled):
    from torch.overrides import TorchFunctionMode

    from abcparam.layers import scaled_linear

    x, w, b = torch.randn(batch, n_in), torch.randn(n_out, n_in), torch.randn(n_out)
    shapes = {"input": (batch, n_in), "weight": (n_out, n_in), "output": (batch, n_out)}
    seen = []

    class Record(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in (torch.Tensor.mul, torch.Tensor.__mul__, torch.mul):
                seen.append(("mul", tuple(args[0].shape)))
            elif func is torch.add and "alpha" in kwargs:
                seen.append(("add", tuple(args[1].shape)))
            return func(*args, **kwargs)

    with Record():
        y = scaled_linear(x, w, b, 0.25)
    torch.testing.assert_close(y, 0.25 * x @ w.T + b)
    assert [s for _, s in seen] == [shapes[scaled]], seen


@pytest.mark.parametrize("s,err,msg", [("x", ValueError, r"^s: cannot read 'x' as an exponent"),
                                       (None, TypeError, r"^s: got NoneType None"),
                                       (0.1, ValueError, r"^s: the float 0.1 is not exactly a simple fraction")])
def test_up_names_its_exponent_s_in_errors(s, err, msg):
    with pytest.raises(err, match=msg):
        abcparam.up(s, 64, 64)


@pytest.mark.parametrize("kwargs,err,msg", [
    (dict(alpha=0.0), ValueError, r"^alpha: must be > 0, got 0"),
    (dict(alpha=-1), ValueError, r"^alpha: must be > 0, got -1"),
    (dict(sigma=-0.5), ValueError, r"^sigma: "),
    (dict(sigma=float("inf")), TypeError, r"^sigma: expected a finite number"),
])
def test_embedding_refuses_bad_constants_by_name(kwargs, err, msg):
    with pytest.raises(err, match=msg):
        Embedding(10, 64, param=abcparam.mup(64, 64), **kwargs)
    assert Embedding(10, 64, param=abcparam.mup(64, 64), sigma=0.0).weight.abs().max() == 0  # sigma 0 is allowed: zeros


def test_the_canonical_form_is_named_once_and_is_its_own_canonical_form():
    p = abcparam.mup(256, 64).canonical()
    again = p.canonical()
    assert p.name == again.name == "mup(a=0)"
    assert all(again.role(r) == p.role(r) for r in ("input", "hidden", "output"))


@pytest.mark.parametrize("field,bad,msg", [("input", "x", r"^input: expected RoleExponents, got str$"),
                                           ("output", 3, r"^output: expected RoleExponents, got int$"),
                                           ("hidden", "h", r"^hidden: expected RoleExponents or None, got str$"),
                                           ("attention", 0.5, r"^attention: expected a Fraction, got float$"),
                                           ("width", 2.5, r"^width: expected a positive int, got float 2.5$"),
                                           ("base_width", True, r"^base_width: expected a positive int, got bool True$"),
                                           ("width", 0, r"^width: must be > 0, got 0$"),
                                           ("base_width", -64, r"^base_width: must be > 0, got -64$")])
def test_a_parametrization_refuses_fields_of_the_wrong_type_by_name(field, bad, msg):
    import dataclasses

    with pytest.raises(TypeError if "expected" in msg else ValueError, match=msg):
        dataclasses.replace(abcparam.mup(64, 64), **{field: bad})


def test_a_tied_readouts_bias_follows_the_tables_dtype():
    p = abcparam.mup(256, 64, form="table8")
    emb = Embedding(30, 256, param=p, dtype=torch.float64)
    head = TiedReadout(emb, param=p, bias=True)
    assert head.weight is emb.weight and head.bias.dtype == torch.float64 and head.bias.device == emb.weight.device
    assert head(torch.randn(3, 256, dtype=torch.float64)).dtype == torch.float64


def test_which_sizes_grow_with_the_width_follows_its_documented_rule():
    from abcparam.roles import size_kind

    # multiples of the width grow; sizes below it that do not divide it, or divide it 16 times or more, are data
    # sizes; larger divisors, and sizes above the width that are no multiple of it, cannot be told
    kinds = {d: size_kind(d, 256) for d in (1, 16, 17, 32, 255, 256, 300, 768, 784)}
    assert kinds == {1: "fixed", 16: "fixed", 17: "fixed", 32: "unknown", 255: "fixed", 256: "width", 300: "unknown",
                     768: "width", 784: "unknown"}
    assert size_kind(5, 1) == "unknown" and size_kind(1, 1) == "unknown"  # no width information
    assert size_kind(2, 2) == "width" and size_kind(1, 2) == "unknown"


def test_every_refusal_of_a_linear_role_names_the_shapes_and_what_would_fit():
    p = abcparam.mup(96, 48)
    undecided = "role: cannot tell the role of Linear({}, {}) at width 96 (base width 48) from its shapes ({}); pass role= one of {}"
    with pytest.raises(ValueError, match="^" + re.escape(undecided.format(
            32, 96, "in_features 32 may or may not grow with the width, out_features 96 is a multiple of the width",
            "'input', 'hidden'")) + "$"):
        Linear(32, 96, param=p)
    with pytest.raises(ValueError, match="^" + re.escape(undecided.format(
            96, 32, "in_features 96 is a multiple of the width, out_features 32 may or may not grow with the width",
            "'hidden', 'output'")) + "$"):
        Linear(96, 32, param=p)
    with pytest.raises(ValueError, match="^" + re.escape(
            "role: neither dimension of Linear(20, 10) at width 96 (base width 48) grows with the width; a layer of fixed "
            "size is an ordinary nn.Linear (or pass role= explicitly if one of its sizes does scale)") + "$"):
        Linear(20, 10, param=p)
    with pytest.raises(ValueError, match=r"^role: got 'middle'; allowed: input, hidden, output$"):
        Linear(96, 96, role="middle", param=p)
    needs = ("role: 'input' needs a width-sized out_features, but Linear({}, 10) at width 96 (base width 48) has "
             "out_features=10, a fixed size (a data size: smaller than the width){}. Pass the role the layer has, or build "
             "the parametrization at this layer's width")
    with pytest.raises(ValueError, match="^" + re.escape(needs.format(20, "")) + "$"):  # nothing fits: no hint
        Linear(20, 10, role="input", param=p)
    with pytest.raises(ValueError, match="^" + re.escape(needs.format(96, "; the shapes fit role='output'")) + "$"):
        Linear(96, 10, role="input", param=p)
    # a base width of 1 is still a width: only m = 1 at width 1 leaves the shapes without meaning
    assert Linear(64, 64, param=abcparam.mup(64, 1)).role == "hidden"


def test_a_conv1d_computes_x_times_its_effective_weight_stored_in_by_out():
    from abcparam.layers import Conv1D

    for role, shape in (("input", (16, 64)), ("hidden", (64, 64)), ("output", (64, 8))):
        layer = Conv1D(*shape, role=role, param=abcparam.mup(64, 16))
        w = layer.effective_weight()
        assert w.shape == shape
        x = torch.randn(5, shape[0])
        assert torch.allclose(layer(x), x @ w + layer.bias, atol=1e-6)  # (the readout's multiplier is m^-1/2 = 1/2)
