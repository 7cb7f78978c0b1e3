"""The infinite-width limit of a nonlinear 1-hidden-layer network (docs/theory.md section 13), by quadrature."""

import math

import pytest
import torch

from abcparam.meanfield import KernelLimit, MeanFieldConfig, MeanFieldLimit, mean_field_network

CFG = MeanFieldConfig(d_in=1, d_out=1, base_width=16, lr=0.02, nonlinearity="tanh")
STEPS = 100
WIDTHS = [64, 256, 1024, 4096]
SEEDS = 4


def data(cfg=CFG):
    x = torch.linspace(-2, 2, 8, dtype=torch.float64)[:, None].repeat(1, cfg.d_in)
    y = torch.sin(2 * x[:, :1]).repeat(1, cfg.d_out)
    xt = torch.linspace(-2.5, 2.5, 41, dtype=torch.float64)[:, None].repeat(1, cfg.d_in)
    return x, y, xt


def train(model, steps=STEPS, cfg=CFG):
    x, y, _ = data(cfg)
    for _ in range(steps):
        model.step(x, y)
    return model


def fit_slope(xs, ys):
    lx, ly = [math.log(v) for v in xs], [math.log(v) for v in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


@pytest.fixture(scope="module")
def reference():
    """The limit with many particles: the reference for the convergence tests."""
    return train(MeanFieldLimit(CFG, 2 ** 15, scramblings=4, seed=99))


def test_refining_the_rule_shrinks_its_error_and_its_error_estimate(reference):
    _, _, xt = data()
    target = reference(xt)
    estimates, errors = [], []
    for points in (2 ** 8, 2 ** 10, 2 ** 12):
        lim = train(MeanFieldLimit(CFG, points, scramblings=4))
        estimates.append(float(lim.error(xt).max()))
        errors.append(float((lim(xt) - target).abs().max()))
    assert estimates[0] > estimates[1] > estimates[2] > 0
    assert errors[0] > errors[2]
    # the estimate is honest: the actual error is within a few standard errors
    assert all(e < 6 * s + 1e-4 for e, s in zip(errors, estimates)), (errors, estimates)
    # randomised QMC beats plain Monte Carlo with the same number of particles
    mc = train(MeanFieldLimit(CFG, 2 ** 12, rule="mc", scramblings=4))
    assert float(mc.error(xt).max()) > 3 * estimates[-1]


def test_finite_abcparam_networks_converge_to_the_limit_like_n_to_the_minus_half(reference):
    _, _, xt = data()
    target = reference(xt)
    errors = []
    for n in WIDTHS:
        per_seed = [float((train(mean_field_network(CFG, n, seed=s))(xt).detach() - target).pow(2).mean().sqrt())
                    for s in range(SEEDS)]
        errors.append(math.exp(sum(math.log(e) for e in per_seed) / SEEDS))
    slope = fit_slope(WIDTHS, errors)
    assert -0.65 < slope < -0.35, (errors, slope)


def test_at_initialisation_the_limit_is_the_exact_expectation():
    _, _, xt = data()
    # f_0 = E[v] E[phi] = 0
    assert torch.equal(MeanFieldLimit(CFG, 2 ** 10)(xt), torch.zeros(41, 1, dtype=torch.float64))
    # the tangent kernel by Sobol points against an independent rule (Gauss-Hermite x Gauss-Legendre, 80^3 nodes;
    # the grid converges slowly, 2e-3 at 40^3, because sech^2(w x + b) is narrow in w at |x| = 2.5)
    sobol = KernelLimit(CFG, 2 ** 16).kernel(xt[::8], xt[::8])
    grid = KernelLimit(CFG, 80, rule="gauss-hermite").kernel(xt[::8], xt[::8])
    torch.testing.assert_close(sobol, grid, rtol=5e-4, atol=0)


def test_the_kernel_is_the_finite_networks_tangent_kernel_in_the_limit():
    _, _, xt = data()
    pts = xt[::10]
    limit = KernelLimit(CFG, 2 ** 14).kernel(pts, pts)
    gaps = []
    for n in (256, 4096):
        rel = []
        for s in range(3):
            net = mean_field_network(CFG, n, seed=s, parametrization="ntk")
            rel.append(float((_empirical_ntk(net, pts) - limit).norm() / limit.norm()))
        gaps.append(sum(rel) / len(rel))
    assert gaps[1] < gaps[0] / 2.5 and gaps[1] < 0.05, gaps  # ~ n^-1/2: 16x the width, 4x closer


def _empirical_ntk(net, x):
    """sum over tensors of lr_tensor * J J^T: the change of f(x) per unit -chi at x' after one wrapped SGD step."""
    rows = []
    for k in range(x.shape[0]):
        net.zero_grad()
        net(x[k:k + 1]).sum().backward()
        rows.append({id(p): p.grad.detach().clone() for p in net.parameters()})
    lr = {id(p): g["lr"] for g in net.optimizer.param_groups for p in g["params"]}
    K = torch.zeros(x.shape[0], x.shape[0], dtype=torch.float64)
    for i in range(x.shape[0]):
        for j in range(x.shape[0]):
            K[i, j] = sum(lr[i_] * (rows[i][i_] * rows[j][i_]).sum() for i_ in rows[i])
    return K / CFG.lr


def test_mup_features_move_and_ntk_features_freeze():
    x, y, _ = data()
    limit = train(MeanFieldLimit(CFG, 2 ** 12))
    assert limit.feature_movement(x) > 0.05
    kernel = train(KernelLimit(CFG, 2 ** 12))
    assert kernel.feature_movement(x) == 0.0
    moved = {}
    for kind in ("mean_field", "ntk"):
        moved[kind] = []
        for n in (256, 4096):
            net = mean_field_network(CFG, n, seed=0, parametrization=kind)
            h0 = net.inp(x).detach()
            train(net)
            moved[kind].append(float((net.inp(x).detach() - h0).pow(2).mean().sqrt()))
    # muP: the finite networks' features move as far as the limit's; NTK: they freeze like n^-1/2
    assert all(abs(m - limit.feature_movement(x)) < 0.25 * limit.feature_movement(x) for m in moved["mean_field"])
    assert moved["ntk"][1] < moved["ntk"][0] / 3
    # and both limits learn: the loss falls
    assert train(KernelLimit(CFG, 2 ** 10), steps=1).step(x, y) > train(KernelLimit(CFG, 2 ** 10)).step(x, y)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"nonlinearity": "relu"}, ValueError, "relu.*derivative jumps"),
    ({"nonlinearity": "softsign"}, ValueError, "allowed: tanh, gelu, sigmoid"),
    ({"d_in": 6, "d_out": 3}, ValueError, "10 dimensions"),
    ({"dtype": torch.float32}, ValueError, "float64"),
    ({"lr": float("nan")}, ValueError, "lr: a finite number > 0"),
])
def test_bad_configurations_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        MeanFieldConfig(**{"d_in": 1, "d_out": 1, **kwargs})


def test_bad_rules_and_inputs_are_refused():
    with pytest.raises(ValueError, match="powers of 2"):
        MeanFieldLimit(CFG, 1000)
    with pytest.raises(ValueError, match="rule: got 'lattice'"):
        MeanFieldLimit(CFG, 1024, rule="lattice")
    with pytest.raises(ValueError, match="deterministic"):
        MeanFieldLimit(CFG, 16, rule="gauss-hermite", scramblings=4)
    with pytest.raises(ValueError, match=r"x: expected a tensor of shape \(N, 1\)"):
        MeanFieldLimit(CFG, 256)(torch.zeros(3, 2, dtype=torch.float64))
    with pytest.raises(TypeError, match="cfg: expected a MeanFieldConfig"):
        KernelLimit({"d_in": 1})
