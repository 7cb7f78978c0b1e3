"""Property tests beyond the theory module: exponent parsing, layers, wrap, and the symmetry.

Every expectation here is computed from the exponents with plain float
arithmetic (docs/theory.md sections 1, 2 and 10), not by the code under test.
"""

from fractions import Fraction as F

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import abcparam
from abcparam.theory import exponent

small_fractions = st.builds(F, st.integers(-4, 4), st.sampled_from([1, 2, 4]))
widths = st.tuples(st.sampled_from([16, 32, 64]), st.sampled_from([1, 2, 4, 8])).map(lambda t: (t[0] * t[1], t[0]))
families = st.sampled_from(["sgd", "adam"])


# -- exponent parsing ---------------------------------------------------------


@given(st.fractions(min_value=-64, max_value=64, max_denominator=1024))
def test_exponent_round_trips_through_text_and_is_exact(x):
    assert exponent(str(x)) == x
    assert exponent(f"  {x.numerator} / {x.denominator} ") == x
    assert exponent(x) == x and type(exponent(x)) is F
    # a float is accepted exactly when it is exactly that fraction (dyadic, denominator <= 1024)
    dyadic = x.denominator & (x.denominator - 1) == 0
    if dyadic:
        assert exponent(float(x)) == x
    elif F(float(x)).denominator > 1024:
        with pytest.raises(ValueError):
            exponent(float(x))


@given(st.one_of(st.just(float("nan")), st.just(float("inf")), st.booleans(), st.text(alphabet="abc*()", min_size=1),
                 st.just(0.1), st.just("1/0"), st.just(None)))
def test_exponent_refuses_with_a_named_error(bad):
    with pytest.raises((TypeError, ValueError), match="^exp: "):
        exponent(bad, "exp")


# -- layers: init std and multiplier against the exponents --------------------


@st.composite
def role_exponents(draw):
    return tuple(draw(small_fractions) for _ in range(4))  # a, b, c_sgd, c_adam


@settings(max_examples=40, deadline=None)
@given(role_exponents(), role_exponents(), role_exponents(), widths, st.sampled_from(["input", "hidden", "output"]),
       st.booleans(), st.floats(0.25, 4.0), st.floats(0.1, 2.0))
def test_linear_init_and_multiplier_follow_the_exponents(inp, hid, out, wb, role, fold, alpha, sigma):
    width, base = wb
    m = width / base
    p = abcparam.parametrization(input=inp, hidden=hid, output=out, width=width, base_width=base)
    a, b = {"input": inp, "hidden": hid, "output": out}[role][:2]
    dims = {"input": (7, width), "hidden": (width, width), "output": (width, 5)}[role]
    layer = abcparam.Linear(*dims, role=role, param=p, fold=fold, alpha=alpha, sigma=sigma)
    # the effective weight is alpha * m^-a * w with w ~ sigma * m^-b, whatever is stored
    assert layer.weight_multiplier * layer.folded_multiplier == pytest.approx(alpha * m ** -float(a), rel=1e-12)
    stored_b = a + b if fold else b
    assert layer.init_std == pytest.approx(sigma * m ** -float(stored_b), rel=1e-12)
    assert layer.weight_multiplier == pytest.approx(alpha * (1.0 if fold else m ** -float(a)), rel=1e-12)
    # the forward pass uses exactly multiplier * stored weight
    x = torch.randn(3, dims[0], dtype=torch.float64)
    layer = layer.double()
    expect = x @ (layer.weight * layer.weight_multiplier).T + layer.bias
    # float64 rounding, relative to the output's scale (random exponents give entries up to ~1e4)
    torch.testing.assert_close(layer(x), expect, rtol=1e-10, atol=1e-12 * float(expect.detach().abs().max()))


@settings(max_examples=10, deadline=None)
@given(small_fractions, small_fractions, st.sampled_from([2, 4, 8]))
def test_embedding_draws_at_its_scale(a, b, m):
    # 64 x 512 draws: the std estimate is within 3% (over 6 standard errors)
    p = abcparam.parametrization(input=(a, b, 0, 0), hidden=(0, "1/2", 0, 1), output=(1, 0, 0, 0), width=64 * m, base_width=64)
    torch.manual_seed(0)
    folded = abcparam.Embedding(512, 64 * m, param=p)
    unfolded = abcparam.Embedding(512, 64 * m, param=p, fold=False)
    assert folded.weight.std().item() == pytest.approx(m ** -float(a + b), rel=0.03)
    assert unfolded.weight.std().item() == pytest.approx(m ** -float(b), rel=0.03)
    idx = torch.arange(512)
    assert unfolded(idx).std().item() == pytest.approx(m ** -float(a + b), rel=0.03)  # the multiplier is applied


# -- wrap: every group's rate is base * m^-c ----------------------------------


@settings(max_examples=30, deadline=None)
@given(role_exponents(), role_exponents(), role_exponents(), widths, families, st.sampled_from([1e-3, 0.1, 2.0]))
def test_wrap_gives_each_tensor_lr_times_m_pow_minus_c(inp, hid, out, wb, family, lr):
    width, base = wb
    m = width / base
    p = abcparam.parametrization(input=inp, hidden=hid, output=out, width=width, base_width=base)
    net = abcparam.models.MLP(5, width, 3, depth=2, param=p)
    opt_cls = torch.optim.SGD if family == "sgd" else torch.optim.Adam
    opt = abcparam.wrap(opt_cls(net.parameters(), lr=lr), net)
    k = 2 if family == "sgd" else 1  # gamma = k a + c (section 2): folding a into c moves c by k a
    c_col = 2 if family == "sgd" else 3
    rates = {id(q): g["lr"] for g in opt.param_groups for q in g["params"]}
    for layer, ex in zip(net.layers, (inp, hid, out)):
        a, c = ex[0], ex[c_col]
        c_stored = c + k * a if layer.folded else c
        assert rates[id(layer.weight)] == pytest.approx(lr * m ** -float(c_stored), rel=1e-12)
        if layer.role != "output":  # biases: vector-like, the input layer's exponents, stored effective
            assert rates[id(layer.bias)] == pytest.approx(lr * m ** -float(inp[c_col] + k * inp[0]), rel=1e-12)
        else:
            assert rates[id(layer.bias)] == lr


# -- the symmetry: equivalent parametrizations train identically --------------


@settings(max_examples=12, deadline=None)
@given(st.sampled_from(["mup", "ntk", "sp_inv_n"]), st.tuples(small_fractions, small_fractions, small_fractions), families,
       st.sampled_from([2, 4]))
def test_symmetric_parametrizations_train_identically(name, thetas, family, mult):
    """(a, b, c) -> (a + t, b - t, c - 2t | c - t) per role leaves training unchanged (section 2)."""
    width, base = 32 * mult, 32
    p = getattr(abcparam, name)(width, base)

    def shifted(ex, t):
        return (ex.a + t, ex.b - t, ex.c_sgd - 2 * t, ex.c_adam - t)

    q = abcparam.parametrization(input=shifted(p.input, thetas[0]), hidden=shifted(p.hidden, thetas[1]),
                                 output=shifted(p.output, thetas[2]), width=width, base_width=base)
    assert abcparam.equivalent(p.theory_preset(2), q.theory_preset(2), family)
    nets = []
    for par in (p, q):
        torch.manual_seed(0)
        nets.append(abcparam.models.MLP(4, width, 2, depth=2, param=par).double())
    with torch.no_grad():  # the same effective weights; biases are stored effective in both
        for la, lb in zip(*(n.layers for n in nets)):
            lb.weight.copy_(la.effective_weight() / lb.weight_multiplier)
            lb.bias.copy_(la.bias)
    lr = 0.05 if family == "sgd" else 1e-3
    opts = [abcparam.wrap((torch.optim.SGD if family == "sgd" else torch.optim.Adam)(n.parameters(), lr=lr), n) for n in nets]
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 4, generator=g, dtype=torch.float64), torch.randn(8, 2, generator=g, dtype=torch.float64)
    for _ in range(4):
        for net, opt in zip(nets, opts):
            opt.zero_grad()
            ((net(x) - y) ** 2).mean().backward()
            opt.step()
    out_p, out_q = (n(x).detach() for n in nets)
    assert torch.isfinite(out_p).all()
    torch.testing.assert_close(out_p, out_q, rtol=1e-7, atol=1e-9)
