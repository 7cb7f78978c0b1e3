"""Exact infinite-width limits (docs/theory.md section 9): convergence of abcparam's own finite networks.

About 5 s: widths 2^6 to 2^12, 8 seeds, 8 SGD steps, for dense and one-hot inputs.
"""

import math
from dataclasses import replace

import pytest
import torch

from abcparam.limits import LinearNetConfig, MuPLimit, NTKLimit, OmegaNetwork, abcparam_network, check_supported

WIDTHS = [2 ** k for k in range(6, 13)]
DENSE = LinearNetConfig(d_in=5, d_out=3, base_width=32, lr=0.02)
ONE_HOT = LinearNetConfig(d_in=20, d_out=4, base_width=32, lr=0.05, one_hot=True)


def data(cfg, n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, cfg.d_in, (n,), generator=g) if cfg.one_hot else torch.randn(n, cfg.d_in, generator=g, dtype=cfg.dtype)
    return x, torch.randn(n, cfg.d_out, generator=g, dtype=cfg.dtype)


def train(model, x, y, steps=8, bs=4):
    for t in range(steps):
        i = (t * bs) % x.shape[0]
        model.step(x[i:i + bs], y[i:i + bs])
    return model


def fit_slope(widths, values):
    xs, ys = [math.log(w) for w in widths], [math.log(v) for v in values]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / sum((a - mx) ** 2 for a in xs)


# forward multipliers and init stds other than the defaults: each must reach its layer
NON_DEFAULT = dict(alpha_u=2.0, sigma_u=0.5, alpha_v=0.5, sigma_v=1.5)


@pytest.mark.parametrize("cfg", [DENSE, ONE_HOT, replace(DENSE, **NON_DEFAULT), replace(ONE_HOT, **NON_DEFAULT),
                                 replace(DENSE, d_out=32)],  # as many outputs as half the smallest width: the readout's
                         ids=["dense", "one-hot", "dense-non-default", "one-hot-non-default", "wide-output"])  # role is declared
def test_abcparam_layers_are_the_omega_recursion(cfg):
    x, y = data(cfg)
    for n in (64, 512):
        ours, omega = abcparam_network(cfg, n, seed=3), OmegaNetwork(cfg, n, seed=3)
        torch.testing.assert_close(ours(x), omega(x), rtol=1e-10, atol=1e-12)
        train(ours, x, y), train(omega, x, y)
        torch.testing.assert_close(ours(x).detach(), omega(x), rtol=1e-9, atol=1e-11)
        f1, f2 = ours.features(x), omega.features(x)
        torch.testing.assert_close(f1 @ f1.T, f2 @ f2.T, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("cfg", [DENSE, ONE_HOT], ids=["dense", "one-hot"])
def test_finite_networks_converge_to_the_limit_like_n_to_the_minus_half(cfg):
    x, y = data(cfg)
    limit = train(MuPLimit(cfg), x, y)
    target = limit(x)
    errors = []
    for n in WIDTHS:
        # geometric mean over 8 seeds of the RMS output error after training
        logs = [math.log((train(abcparam_network(cfg, n, seed=s), x, y)(x).detach() - target).pow(2).mean().sqrt().item())
                for s in range(8)]
        errors.append(math.exp(sum(logs) / len(logs)))
    slope = fit_slope(WIDTHS, errors)
    assert slope == pytest.approx(-0.5, abs=0.1), (slope, errors)
    assert errors[-1] < errors[0] / 4


def test_limit_has_no_width():
    assert MuPLimit(DENSE).width == DENSE.d_in + DENSE.d_out
    # it learns features: its embeddings move (the NTK limit's do not)
    lim = MuPLimit(ONE_HOT)
    tokens = torch.arange(ONE_HOT.d_in)
    before = lim.features(tokens).clone()
    train(lim, *data(ONE_HOT))
    assert (lim.features(tokens) - before).abs().max() > 1e-3


def test_ntk_limit_features_do_not_move_and_finite_ntk_features_freeze_with_width():
    x, y = data(ONE_HOT)
    tokens = torch.arange(ONE_HOT.d_in)
    ntk = NTKLimit(ONE_HOT)
    before = ntk.features(tokens).clone()
    losses = [ntk.step(x[:8], y[:8]) for _ in range(20)]
    assert losses[-1] < losses[0]  # the function trains...
    assert torch.equal(ntk.features(tokens), before)  # ...with its features frozen
    moves = []
    for n in (64, 512, 4096):
        net = abcparam_network(ONE_HOT, n, seed=0, parametrization="ntk")
        h0 = net.features(tokens).clone()
        train(net, x, y)
        moves.append((net.features(tokens) - h0).pow(2).sum(-1).mean().sqrt().item())
    assert fit_slope([64, 512, 4096], moves) == pytest.approx(-0.5, abs=0.1)


def test_bad_inputs_and_unsupported_settings():
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 5\)"):
        MuPLimit(DENSE)(torch.randn(3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="token ids must lie in"):
        MuPLimit(ONE_HOT)(torch.tensor([0, 20]))
    with pytest.raises(ValueError, match="1-d tensor of token ids"):
        MuPLimit(ONE_HOT)(torch.randn(3, 20))
    with pytest.raises(ValueError, match=r"^d_in: an int >= 1, got 0$"):
        LinearNetConfig(d_in=0, d_out=2)
    with pytest.raises(ValueError, match="lr"):
        LinearNetConfig(d_in=2, d_out=2, lr=-1)
    with pytest.raises(ValueError, match="linear networks only"):
        check_supported(nonlinearity="tanh")
    with pytest.raises(ValueError, match="SGD only"):
        check_supported(optimizer="adam")
    with pytest.raises(ValueError, match="one hidden layer"):
        check_supported(depth=2)
    with pytest.raises(ValueError, match="parametrization"):
        abcparam_network(DENSE, 64, parametrization="sp")
    with pytest.raises(ValueError, match="width"):
        OmegaNetwork(DENSE, 0)


# forward multipliers other than 1 (each enters the kernel squared: a wrong power is off at every width)
SCALED = replace(DENSE, alpha_u=2.0, alpha_v=0.5)


@pytest.mark.parametrize("cfg", [DENSE, ONE_HOT, SCALED], ids=["dense", "one-hot", "multipliers"])
def test_ntk_limit_step_is_the_limit_of_finite_ntk_networks(cfg):
    """One SGD step with a linear loss (chi = c, fixed): the change of f at any x is the tangent kernel times c.

    Finite NTK networks (abcparam layers) give a random kernel whose mean is the limit's and whose
    fluctuation falls like n^-1/2; a limit with a wrong kernel (one of its two terms lost) would differ
    at every width.
    """
    x, c = data(cfg, n=4, seed=3)
    probe = torch.cat([x, data(cfg, n=6, seed=4)[0]])  # the step's own inputs (one-hot: the only ones that move) and others
    linear = lambda f, y: (f * y).sum()  # noqa: E731  chi = y
    ntk = NTKLimit(cfg)
    ntk.step(x, c, loss=linear)
    expect = ntk(probe)  # W_0 = 0: this is the change of f
    widths, errors = [256, 1024, 4096, 16384], []
    for n in widths:
        deltas = []
        for seed in range(6):
            net = abcparam_network(cfg, n, seed=seed, parametrization="ntk")
            before = net(probe).detach()
            net.step(x, c, loss=linear)
            deltas.append(net(probe).detach() - before)
        d = torch.stack(deltas)
        errors.append((d - expect).pow(2).mean().sqrt().item())
    scale = expect.pow(2).mean().sqrt().item()
    assert scale > 1e-3
    assert errors[-1] < 0.1 * scale  # at n = 16384 the finite step is the limit's to 10%
    assert fit_slope(widths, errors) == pytest.approx(-0.5, abs=0.15)


@pytest.mark.parametrize("field,bad", [(f, v) for f in ("d_in", "d_out", "base_width") for v in (2.5, "4", True, 0, -3)]
                         + [(f, v) for f in ("lr", "alpha_u", "alpha_v") for v in ("0.1", True, 0, 0.0, -1.0, float("inf"), float("nan"))])
def test_a_config_refuses_each_bad_size_and_rate_by_name(field, bad):
    kw = {"d_in": 4, "d_out": 2}
    kw[field] = bad
    with pytest.raises(ValueError, match=rf"^{field}: (an int >= 1|a finite number > 0), got"):
        LinearNetConfig(**kw)
    LinearNetConfig(**{**kw, field: {"d_in": 4, "d_out": 2, "base_width": 8}.get(field, 0.5)})  # a good value is accepted


@pytest.mark.parametrize("nonlinearity", [None, "linear", "identity"])
def test_the_linear_settings_the_limit_covers_are_accepted(nonlinearity):
    assert check_supported(nonlinearity=nonlinearity, optimizer="SGD", depth=1) is None


def test_the_limits_refuse_a_config_of_the_wrong_type_by_name():
    for cls in (MuPLimit, NTKLimit):
        with pytest.raises(TypeError, match=r"^cfg: expected a LinearNetConfig, got dict$"):
            cls({"d_in": 4})


def test_mse_is_half_the_squared_error_summed_over_outputs_and_averaged_over_the_batch():
    from abcparam.limits import mse

    f = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    y = torch.tensor([[0.0, 0.0], [3.0, 1.0]])
    # by hand: rows (1 + 4) and (9 + 4), halved, averaged over the two rows: (2.5 + 6.5) / 2
    assert mse(f, y).item() == 4.5
    f.requires_grad_(True)
    mse(f, y).backward()
    torch.testing.assert_close(f.grad, (f - y).detach() / 2)  # chi = (f - y) / N, N = 2


@pytest.mark.parametrize("bad", [float("nan"), -1.0])
def test_a_bad_input_bias_is_refused_by_name(bad):
    from abcparam.limits import LinearLimit, LinearMLP

    for make in (lambda: LinearLimit(3, 2, bias=bad), lambda: LinearMLP(3, 2, 16, bias=bad)):
        with pytest.raises(ValueError, match=r"^bias: a finite number >= 0, got "):
            make()
