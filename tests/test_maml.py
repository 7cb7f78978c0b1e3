"""The MAML experiment's exactness: finite networks vs the muP limit, the first-order update vs autograd, the
kernel limits vs their finite networks, and the Omniglot readers on the shipped files (docs/theory.md section 16)."""

import io
import json
import math
import struct
import sys
import zipfile
import zlib
from pathlib import Path

import pytest
import torch
from torch import nn

import abcparam
from abcparam.kernels import KernelFOMAML, kernel
from abcparam.limits import LinearLimit, LinearMLP
from abcparam.maml import FOMAML, check_tasks

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import omniglot  # noqa: E402

D64 = torch.float64
# Non-default constants throughout: a multiplier or a std of 1 cannot tell a formula from its mutants.
CONSTS = dict(bias=0.7, sigma_u=0.8, sigma_b=0.5, sigma_v=0.6, alpha=1.5, base_width=4)


def _tasks(n_pool=60, d=12, tasks=4, shots=3, queries=2, ways=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    pool = torch.randn(n_pool, d, generator=g, dtype=D64)
    s_idx = torch.randint(0, n_pool, (tasks, shots), generator=g)
    q_idx = torch.randint(0, n_pool, (tasks, queries), generator=g)
    s_y = torch.randint(0, ways, (tasks, shots), generator=g)
    q_y = torch.randint(0, ways, (tasks, queries), generator=g)
    return pool, s_idx, s_y, q_idx, q_y


def _by_hand(model, pool, s_idx, s_y, q_idx, q_y, inner, lr, clip, factors=None):
    """First-order MAML written out with torch.autograd, one task at a time, on a deep copy of ``model``."""
    import copy

    model = copy.deepcopy(model)
    params = dict(model.named_parameters())
    total = {k: torch.zeros_like(p) for k, p in params.items()}
    for t in range(s_idx.shape[0]):
        loss = nn.functional.cross_entropy(model(pool[s_idx[t]]), s_y[t])
        g = torch.autograd.grad(loss, list(params.values()))
        adapted = {k: (p - inner * (factors or {}).get(k, 1.0) * gi).detach().requires_grad_(True)
                   for (k, p), gi in zip(params.items(), g)}
        out = torch.func.functional_call(model, adapted, (pool[q_idx[t]],))
        gq = torch.autograd.grad(nn.functional.cross_entropy(out, q_y[t]), list(adapted.values()))
        for k, gi in zip(params, gq):
            total[k] += gi / s_idx.shape[0]
    norm = math.sqrt(sum(float((g * g).sum()) for g in total.values()))
    scale = min(1.0, clip / (norm + 1e-6)) if clip else 1.0
    with torch.no_grad():
        for k, p in params.items():
            p -= lr * scale * total[k]
    return model


# ---------------------------------------------------------------- the muP limit


def test_limit_is_the_limit_of_finite_networks_after_meta_training():
    """Logits after 3 clipped meta-steps on fixed tasks: finite networks coupled to the limit by Omega converge
    to it like width^-1/2 (docs/theory.md sections 9 and 16)."""
    pool, s_idx, s_y, q_idx, q_y = _tasks()
    widths, errs = [2 ** k for k in (6, 8, 10, 12, 14)], []

    def train(model):
        learner = FOMAML(model, torch.optim.SGD(model.parameters(), lr=0.3), inner_lr=0.4, clip=0.5)
        for _ in range(3):
            learner.meta_step(pool, s_idx, s_y, q_idx, q_y)
        with torch.no_grad():
            return model(pool[:20])

    limit = LinearLimit(12, 3, dtype=D64, **CONSTS)
    f_inf = train(limit)
    for w in widths:
        e = [float((train(LinearLimit(12, 3, dtype=D64, **CONSTS).sample(w, seed=s)) - f_inf).pow(2).mean().sqrt())
             for s in range(4)]
        errs.append(sum(e) / len(e))
    x = torch.log(torch.tensor(widths, dtype=D64))
    y = torch.log(torch.tensor(errs, dtype=D64))
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
    assert -0.65 <= slope <= -0.35, (slope, errs)
    assert errs[-1] < 0.2 * float(f_inf.abs().mean())  # the limit moved far from its f_0 = 0, the finite nets with it


def test_sampled_network_is_the_layers_init_distribution_and_starts_near_the_limit():
    lim = LinearLimit(30, 4, dtype=D64, **CONSTS)
    net = lim.sample(4096, seed=1)
    m = 4096 / CONSTS["base_width"]
    # the input weights' columns: std sigma_u m^-1/2 (the bias column sigma_b m^-1/2), the readout's sigma_v m^-1/2
    assert float(net.inp.weight.detach()[:, :-1].std()) == pytest.approx(CONSTS["sigma_u"] / math.sqrt(m), rel=0.02)
    assert float(net.inp.weight.detach()[:, -1].std()) == pytest.approx(CONSTS["sigma_b"] / math.sqrt(m), rel=0.05)
    assert float(net.out.weight.detach().std()) == pytest.approx(CONSTS["sigma_v"] / math.sqrt(m), rel=0.05)
    fresh = LinearMLP(30, 4, 4096, dtype=D64, **CONSTS)  # built by abcparam layers alone: the same stds
    assert float(fresh.inp.weight.detach()[:, :-1].std()) == pytest.approx(CONSTS["sigma_u"] / math.sqrt(m), rel=0.02)
    assert float(fresh.inp.weight.detach()[:, -1].std()) == pytest.approx(CONSTS["sigma_b"] / math.sqrt(m), rel=0.05)
    x = torch.randn(5, 30, dtype=D64)
    # features: inner products over the width converge to the limit's
    gram_n = (net.features(x) @ net.features(x).T).detach()
    gram_inf = (lim.features(x) @ lim.features(x).T).detach()
    assert torch.allclose(gram_n, gram_inf, rtol=0.1, atol=0.1 * float(gram_inf.abs().max()))
    # the limit's function at init is exactly 0; the finite one's is alpha n0 Q^T (Omega^T Omega / n) P x, whose
    # off-diagonal block has entries of std n^-1/2: f_0 has std alpha n0 sigma_v |P x| / sqrt(n)
    assert float(lim(x).detach().abs().max()) == 0.0
    xs = torch.randn(400, 30, dtype=D64)
    px = (CONSTS["sigma_u"] ** 2 * (xs * xs).sum(1) + (CONSTS["sigma_b"] * CONSTS["bias"]) ** 2).sqrt()
    predicted = CONSTS["alpha"] * CONSTS["base_width"] * CONSTS["sigma_v"] * px / math.sqrt(4096)
    ratio = net(xs).detach().pow(2).mean(1).sqrt() / predicted
    assert float(ratio.pow(2).mean().sqrt()) == pytest.approx(1.0, rel=0.15)


def test_limit_forward_and_multipliers_by_hand():
    lim = LinearLimit(3, 2, dtype=D64, **CONSTS)
    D, r = 3 + 1 + 2, math.sqrt(CONSTS["base_width"])
    assert lim.width == D and lim.inp.weight.shape == (D, 4) and lim.out.weight.shape == (2, D)
    expect_in = torch.zeros(D, 4, dtype=D64)
    expect_in[:4, :4] = torch.diag(torch.tensor([0.8, 0.8, 0.8, 0.5], dtype=D64)) * r
    assert torch.equal(lim.inp.weight.detach(), expect_in)
    assert torch.allclose(lim.out.weight.detach()[:, 4:], 0.6 * r * torch.eye(2, dtype=D64))
    with torch.no_grad():
        lim.out.weight.normal_()
    x = torch.randn(2, 3, dtype=D64)
    xa = torch.cat([x, torch.full((2, 1), 0.7, dtype=D64)], 1)
    assert torch.allclose(lim(x), 1.5 * xa @ lim.inp.weight.T @ lim.out.weight.T)
    assert lim.multipliers() == (1.0, 1.5)
    net = LinearMLP(3, 2, 64, dtype=D64, **CONSTS)
    mu, mv = net.multipliers()
    assert mu == pytest.approx(math.sqrt(16)) and mv == pytest.approx(1.5 / math.sqrt(16))
    assert torch.allclose(net(x), mv * (mu * xa @ net.inp.weight.T) @ net.out.weight.T)
    no_bias = LinearLimit(3, 2, bias=0.0)
    assert no_bias.fan_in == 3 and no_bias.width == 5


# ---------------------------------------------------------------- the first-order MAML step


@pytest.mark.parametrize("make", [
    lambda: LinearMLP(12, 3, 48, dtype=D64, **CONSTS),
    lambda: LinearLimit(12, 3, dtype=D64, **CONSTS),
    lambda: nn.Sequential(nn.Linear(12, 16, dtype=D64), nn.Tanh(), nn.Linear(16, 3, dtype=D64)),
], ids=["finite", "limit", "tanh-mlp"])
@pytest.mark.parametrize("clip", [None, 0.05])
def test_meta_step_is_first_order_maml_by_autograd(make, clip):
    torch.manual_seed(3)
    model = make()
    pool, s_idx, s_y, q_idx, q_y = _tasks()
    expect = _by_hand(model, pool, s_idx, s_y, q_idx, q_y, inner=0.4, lr=0.3, clip=clip)
    learner = FOMAML(model, torch.optim.SGD(model.parameters(), lr=0.3), inner_lr=0.4, clip=clip)
    learner.meta_step(pool, s_idx, s_y, q_idx, q_y)
    for (name, p), (_, q) in zip(model.named_parameters(), expect.named_parameters()):
        assert torch.allclose(p, q, rtol=1e-10, atol=1e-12), name
    # adapted predictions: the inner step, then the query logits
    logits = learner.adapt_predict(pool, s_idx, s_y, q_idx)
    for t in range(s_idx.shape[0]):
        params = dict(model.named_parameters())
        g = torch.autograd.grad(nn.functional.cross_entropy(model(pool[s_idx[t]]), s_y[t]), list(params.values()))
        adapted = {k: p - 0.4 * gi for (k, p), gi in zip(params.items(), g)}
        want = torch.func.functional_call(model, adapted, (pool[q_idx[t]],))
        assert torch.allclose(logits[t], want.detach(), rtol=1e-10, atol=1e-12)


def test_closed_form_equals_the_general_path():
    pool, s_idx, s_y, q_idx, q_y = _tasks(tasks=5, shots=4, queries=3)
    for model in (LinearMLP(12, 3, 40, dtype=D64, **CONSTS), LinearLimit(12, 3, dtype=D64, **CONSTS)):
        fast = FOMAML(model, torch.optim.SGD(model.parameters(), lr=0.1), inner_lr=0.7)
        slow = FOMAML(model, torch.optim.SGD(model.parameters(), lr=0.1), inner_lr=0.7, exact_linear=False)
        assert fast.closed_form and not slow.closed_form
        g1, l1 = fast.meta_gradient(pool[s_idx], s_y, pool[q_idx], q_y)
        g2, l2 = slow.meta_gradient(pool[s_idx], s_y, pool[q_idx], q_y)
        assert l1 == pytest.approx(l2, rel=1e-12)
        for k in g2:
            assert torch.allclose(g1[k], g2[k], rtol=1e-10, atol=1e-13), k
        assert torch.allclose(fast.adapt_predict(pool, s_idx, s_y, q_idx), slow.adapt_predict(pool, s_idx, s_y, q_idx))


def test_inner_step_takes_each_tensors_factor_from_wrap():
    """Under TP5's Table 8 muP form the readout's SGD rate is m^-1 of the input layer's: the inner step says so."""
    p = abcparam.mup(64, 16, form="table8")
    model = nn.Sequential(abcparam.Linear(12, 64, role="input", param=p, dtype=D64), nn.Tanh(),
                          abcparam.Linear(64, 3, role="output", param=p, dtype=D64))
    learner = FOMAML(model, torch.optim.SGD(model.parameters(), lr=0.3), inner_lr=0.4)
    probe = abcparam.wrap(torch.optim.SGD(model.parameters(), lr=1.0), model)
    by_id = {id(q): g["lr"] for g in probe.param_groups for q in g["params"]}
    assert learner.factors == {k: by_id[id(q)] for k, q in model.named_parameters()}
    assert len(set(learner.factors.values())) > 1
    pool, s_idx, s_y, q_idx, q_y = _tasks()
    expect = _by_hand(model, pool, s_idx, s_y, q_idx, q_y, inner=0.4, lr=0.3, clip=None, factors=learner.factors)
    learner.meta_step(pool, s_idx, s_y, q_idx, q_y)
    for (name, a), (_, b) in zip(model.named_parameters(), expect.named_parameters()):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), name


def test_maml_refuses_bad_arguments_by_name():
    model = LinearLimit(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"^inner_lr: a finite number > 0, got -1"):
        FOMAML(model, opt, inner_lr=-1)
    with pytest.raises(ValueError, match=r"^clip: a finite number > 0 or None, got 0"):
        FOMAML(model, opt, clip=0)
    with pytest.raises(TypeError, match=r"^model: expected an nn.Module"):
        FOMAML("net", opt)
    with pytest.raises(TypeError, match=r"^optimizer: expected a torch optimizer"):
        FOMAML(model, None)
    pool = torch.randn(5, 4)
    with pytest.raises(ValueError, match=r"^s_idx: indices must lie in \[0, 5\), got \[0, 5\]"):
        check_tasks(pool, torch.tensor([[0, 5]]), torch.tensor([[0, 1]]), torch.tensor([[1, 2]]), torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match=r"^q_y: expected labels of shape \(1, 2\)"):
        check_tasks(pool, torch.tensor([[0, 1]]), torch.tensor([[0, 1]]), torch.tensor([[1, 2]]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"^q_idx: 2 tasks, but s_idx has 1"):
        check_tasks(pool, torch.tensor([[0, 1]]), torch.tensor([[0, 1]]), torch.tensor([[1], [2]]), torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match=r"^sigma_v: a finite number >= 0, got -0.5"):
        LinearLimit(4, 3, sigma_v=-0.5)
    with pytest.raises(ValueError, match=r"^alpha: a finite number > 0, got 0"):
        LinearMLP(4, 3, 8, alpha=0)
    with pytest.raises(ValueError, match=r"^x: expected a last dimension of 4, got shape \(2, 5\)"):
        model(torch.randn(2, 5))


# ---------------------------------------------------------------- the kernel limits


@pytest.mark.parametrize("nonlinearity", ["linear", "relu"])
def test_kernels_are_the_wide_networks_gp_and_ntk(nonlinearity):
    """Monte Carlo over 200k hidden units of the NTK-parametrized network: the readout's and the input layer's
    gradient inner products (docs/theory.md section 16)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, generator=g, dtype=D64)
    su, sb, sv, beta, n = 0.7, 0.4, 1.3, 1.5, 200_000
    u, b = torch.randn(n, 6, generator=g, dtype=D64), torch.randn(n, generator=g, dtype=D64)
    z = su * x @ u.T + sb * beta * b
    phi, dphi = (torch.relu(z), (z > 0).to(D64)) if nonlinearity == "relu" else (z, torch.ones_like(z))
    cov = su ** 2 * x @ x.T + (sb * beta) ** 2
    gp = sv ** 2 * phi @ phi.T / n
    ntk = gp + sv ** 2 * (dphi @ dphi.T / n) * cov
    sq = (x * x).sum(1)
    for kind, mc in (("gp", gp), ("ntk", ntk)):
        k = kernel(x @ x.T, sq, sq, kind=kind, nonlinearity=nonlinearity, sigma_u=su, sigma_b=sb, sigma_v=sv, bias=beta)
        assert torch.allclose(k, mc, rtol=0.02, atol=0.02 * float(mc.abs().max())), kind


class _Features(nn.Module):
    """f = theta phi(x): a model linear in its parameters, trained from theta = 0."""

    def __init__(self, phi, d_out):
        super().__init__()
        self.phi = phi
        self.theta = nn.Parameter(torch.zeros(d_out, phi(torch.zeros(1, 12, dtype=D64)).shape[1], dtype=D64))

    def forward(self, x):
        return self.phi(x) @ self.theta.T


def test_linear_ntk_limit_is_meta_training_its_feature_model():
    """The linear NTK has the exact finite feature map sqrt(2) sigma_v [sigma_u x, sigma_b bias]: the kernel
    learner's function-space steps (inner, clipped outer) equal FOMAML on that model, to rounding."""
    su, sb, sv, beta = 0.8, 0.5, 0.6, 0.7
    pool, s_idx, s_y, q_idx, q_y = _tasks(n_pool=40, tasks=6)
    phi = lambda x: math.sqrt(2) * sv * torch.cat([su * x, torch.full((x.shape[0], 1), sb * beta, dtype=D64)], 1)  # noqa: E731
    model = _Features(phi, 3)
    ref = FOMAML(model, torch.optim.SGD(model.parameters(), lr=0.3), inner_lr=0.4, clip=0.2)
    lim = KernelFOMAML(pool, 3, kind="ntk", nonlinearity="linear", sigma_u=su, sigma_b=sb, sigma_v=sv, bias=beta,
                      lr=0.3, inner_lr=0.4, clip=0.2)
    for step in range(3):
        a = ref.meta_step(pool, s_idx.roll(step, 0), s_y, q_idx.roll(step, 0), q_y)
        b = lim.meta_step(pool, s_idx.roll(step, 0), s_y, q_idx.roll(step, 0), q_y)
        assert a == pytest.approx(b, rel=1e-10)
    with torch.no_grad():
        assert torch.allclose(lim.values(pool), model(pool), atol=1e-10)
    other = torch.randn(9, 12, dtype=D64)
    assert torch.allclose(lim.adapt_predict(other, s_idx % 9, s_y, q_idx % 9),
                          ref.adapt_predict(other, s_idx % 9, s_y, q_idx % 9), atol=1e-10)
    # a copy of the basis (another tensor) goes the general way and agrees with the basis' own values
    assert torch.allclose(lim.adapt_predict(pool.clone(), s_idx, s_y, q_idx), lim.adapt_predict(pool, s_idx, s_y, q_idx))


def test_relu_gp_limit_is_the_wide_network_with_only_its_readout_trained():
    """Random ReLU features at width 2^16, readout trained by the same loop: within 3% of the GP limit's values."""
    su, sb, sv, beta, n = 0.9, 0.6, 1.2, 1.0, 2 ** 16
    pool, s_idx, s_y, q_idx, q_y = _tasks(n_pool=30, tasks=5)
    g = torch.Generator().manual_seed(1)
    u, b = torch.randn(12, n, generator=g, dtype=D64), torch.randn(n, generator=g, dtype=D64)
    phi = lambda x: sv * torch.relu(su * x @ u + sb * beta * b) / math.sqrt(n)  # noqa: E731
    model = _Features(phi, 3)
    ref = FOMAML(model, torch.optim.SGD(model.parameters(), lr=0.5), inner_lr=0.4, clip=None)
    lim = KernelFOMAML(pool, 3, kind="gp", nonlinearity="relu", sigma_u=su, sigma_b=sb, sigma_v=sv, bias=beta, lr=0.5,
                      inner_lr=0.4)
    for _ in range(3):
        ref.meta_step(pool, s_idx, s_y, q_idx, q_y)
        lim.meta_step(pool, s_idx, s_y, q_idx, q_y)
    with torch.no_grad():
        want = model(pool)
    assert float((lim.values(pool) - want).abs().max()) < 0.03 * float(want.abs().max())


def test_kernel_limit_refuses_bad_arguments_by_name():
    pool = torch.randn(6, 3)
    with pytest.raises(ValueError, match=r"^kind: got 'nngp'; allowed: ntk, gp"):
        KernelFOMAML(pool, 2, kind="nngp")
    with pytest.raises(ValueError, match=r"^nonlinearity: got 'tanh'; allowed: linear, relu"):
        KernelFOMAML(pool, 2, nonlinearity="tanh")
    with pytest.raises(ValueError, match=r"^sigma_v: a finite number > 0, got 0"):
        KernelFOMAML(pool, 2, sigma_v=0)
    with pytest.raises(ValueError, match=r"^basis_kernel: expected shape \(6, 6\), got \(5, 5\)"):
        KernelFOMAML(pool, 2, basis_kernel=torch.zeros(5, 5))
    lim = KernelFOMAML(pool, 2)
    with pytest.raises(ValueError, match=r"^pool: meta-training tasks must index the learner's basis"):
        lim.meta_step(pool.clone(), torch.tensor([[0]]), torch.tensor([[0]]), torch.tensor([[1]]), torch.tensor([[1]]))


# ---------------------------------------------------------------- the Omniglot readers


def _png(pixels, filters):
    """An 8-bit grayscale PNG of ``pixels`` (rows of ints) with the given filter type per row."""
    raw, prev = b"", [0] * len(pixels[0])
    for row, kind in zip(pixels, filters):
        out = []
        for i, v in enumerate(row):
            left, up, corner = (row[i - 1] if i else 0), prev[i], (prev[i - 1] if i else 0)
            p = left + up - corner
            paeth = min((abs(p - left), 0, left), (abs(p - up), 1, up), (abs(p - corner), 2, corner))[2]
            pred = [0, left, up, (left + up) // 2, paeth][kind]
            out.append((v - pred) % 256)
        raw += bytes([kind] + out)
        prev = row

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", len(pixels[0]), len(pixels), 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_png_reader_undoes_every_filter():
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (10, 7), generator=g).tolist()
    img = omniglot.read_png(_png(pixels, [0, 1, 2, 3, 4, 4, 3, 2, 1, 0]))
    assert torch.equal(img, torch.tensor(pixels, dtype=torch.float32) / 255)
    with pytest.raises(ValueError, match="not a PNG"):
        omniglot.read_png(b"GIF89a")


@pytest.fixture(scope="module")
def background():
    return omniglot.background()


def test_shipped_background_sets(background):
    assert len(background) == 242  # 136 + 156 characters, Greek and Latin in both sets
    assert len({a for a, _ in background}) == 8
    for images in background.values():
        assert images.shape == (20, 784) and float(images.min()) >= 0 and float(images.max()) <= 1
    x = torch.cat(list(background.values()))
    assert 0.03 < float(x.mean()) < 0.15  # ink is 1 and rare
    p = omniglot.pool(list(background.values())[:3])
    assert len(p.classes) == 12 and p.x.shape == (240, 784)
    first = background[sorted(background)[0]].view(20, 28, 28)
    assert torch.equal(p.x[20:40].view(20, 28, 28), torch.rot90(first, 1, dims=(1, 2)))
    train, val = omniglot.split(background, 0.2, seed=0)
    assert len(val) == 48 and len(train) == 194


def test_png_reader_matches_pillow_on_the_shipped_files():
    Image = pytest.importorskip("PIL.Image")
    with zipfile.ZipFile(Path(omniglot.DATA) / omniglot.RUNS) as z:
        for name in ("run01/test/item01.png", "run07/training/class13.png", "run20/test/item20.png"):
            data = z.read(name)
            ref = torch.frombuffer(bytearray(Image.open(io.BytesIO(data)).convert("L").tobytes()), dtype=torch.uint8).float()
            assert torch.equal(omniglot.read_png(data).reshape(-1), ref / 255), name


def test_shipped_runs_and_tasks():
    rs = omniglot.runs()
    assert len(rs) == 20
    for r in rs:
        assert r.train.shape == r.test.shape == (20, 784)
        assert sorted(r.label.tolist()) == list(range(20))  # each class has exactly one test image
    x, s_idx, s_y, q_idx, q_y = omniglot.test_tasks(rs, 60, 5, seed=3)
    assert x.shape == (800, 784) and s_idx.shape == q_idx.shape == (60, 5)
    for t in range(60):
        run = t % 20
        assert bool(((s_idx[t] >= 40 * run) & (s_idx[t] < 40 * run + 20)).all())
        for j in range(5):  # the query labelled j is the test image of the support's j-th class
            assert int(rs[run].label[int(q_idx[t, j]) - 40 * run - 20]) == int(s_idx[t, j]) - 40 * run
    g = torch.Generator().manual_seed(0)
    p = omniglot.Pool(torch.zeros(200, 784), [torch.arange(20 * c, 20 * c + 20) for c in range(10)])
    s_idx, s_y, q_idx, q_y = omniglot.sample_tasks(p, 8, 5, 1, 2, g)
    assert s_idx.shape == (8, 5) and q_idx.shape == (8, 10) and torch.equal(q_y[0], torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 4]))
    for t in range(8):
        cls = s_idx[t] // 20
        assert len(set(cls.tolist())) == 5 and torch.equal(q_idx[t].view(5, 2) // 20, cls.view(5, 1).expand(5, 2))
        assert len(set(s_idx[t].tolist()) | set(q_idx[t].tolist())) == 15  # distinct drawers


def test_benchmark_runs_end_to_end_and_writes_the_json(tmp_path):
    import maml

    out = tmp_path / "maml.json"
    maml.main(["--quick", "--widths", "2", "--steps", "4", "--tune-steps", "2", "--test-tasks", "40",
               "--models", "finite_2", "mup_limit", "gp_relu", "--json", str(out)])
    data = json.loads(out.read_text())
    assert sorted(data) == ["finite_2", "gp_relu", "mup_limit"]
    for r in data.values():
        assert 0 <= r["accuracy"] <= 1 and r["ci95"] > 0 and r["tasks"] == 40 and r["seeds"] == 1


def test_a_diverging_final_run_falls_back_to_the_next_validated_grid_point(monkeypatch):
    import maml

    calls = []

    def fake_train(learner, pool, lr, steps, seed):
        calls.append((lr, seed))
        return float("nan") if (lr, seed) == (0.4, 1) else 1.0

    monkeypatch.setattr(maml, "train", fake_train)
    monkeypatch.setattr(maml, "build", lambda name, hp, data, p, seed: hp)
    monkeypatch.setattr(maml, "task_accuracy", lambda learner, tasks: torch.tensor([0.5, 1.0]))
    monkeypatch.setattr(maml, "twenty_way", lambda learner, runs: 0.25)
    data = type("D", (), {"all": None, "runs": None, "test_tasks": (None, torch.zeros(2, 5))})()
    ranked = [({"lr": 0.4, "sigma_v": 0.5}, 0.6), ({"lr": 0.2, "sigma_v": 0.125}, 0.55)]
    r = maml.final("finite_8", ranked, data, seeds=2, steps=10)
    assert calls == [(0.4, 0), (0.4, 1), (0.2, 0), (0.2, 1)]
    assert r["lr"] == 0.2 and r["val_accuracy"] == 0.55 and r["diverged"] == [{"lr": 0.4, "sigma_v": 0.5, "seed": 1}]
    assert r["accuracy"] == 0.75 and r["seeds"] == 2 and r["tasks"] == 2 and r["seed_accuracies"] == [0.75, 0.75]
    assert r["ci95"] == pytest.approx(1.96 * float(torch.tensor([0.5, 1.0, 0.5, 1.0]).std()) / 2)
    monkeypatch.setattr(maml, "train", lambda *a: float("inf"))
    with pytest.raises(RuntimeError, match="finite_8: every grid point diverged"):
        maml.final("finite_8", ranked, data, seeds=2, steps=10)


def test_the_mup_family_is_tuned_once_on_its_limit_and_each_kernel_on_itself(monkeypatch):
    import maml

    tuned, finals = [], []

    def fake_tune(name, data, steps, quick=False):
        tuned.append(name)
        return [({"lr": len(tuned) / 10, "sigma_v": 0.5}, 0.5)]

    def fake_final(name, ranked, data, seeds, steps):
        finals.append((name, ranked[0][0]["lr"]))
        return {"accuracy": 0.5, "ci95": 0.01, "seed_accuracies": [0.5], "twenty_way": 0.1, "lr": ranked[0][0]["lr"],
                "sigma_v": 0.5, "val_accuracy": 0.5, "diverged": []}

    monkeypatch.setattr(maml, "tune", fake_tune)
    monkeypatch.setattr(maml, "final", fake_final)
    r = maml.main(["--quick", "--widths", "2", "8", "--test-tasks", "10",
                   "--models", "finite_2", "finite_8", "mup_limit", "gp_relu", "ntk_linear"])
    assert tuned == ["mup_limit", "ntk_linear", "gp_relu"]
    assert finals == [("finite_2", 0.1), ("finite_8", 0.1), ("mup_limit", 0.1), ("ntk_linear", 0.2), ("gp_relu", 0.3)]
    assert {k: v["tuned_on"] for k, v in r.items()} == {"finite_2": "mup_limit", "finite_8": "mup_limit",
                                                        "mup_limit": "mup_limit", "ntk_linear": "ntk_linear",
                                                        "gp_relu": "gp_relu"}
