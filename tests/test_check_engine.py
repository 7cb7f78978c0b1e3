"""abcparam.check: what the width and depth checks share (building, observing, training; fits and their decision)."""

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

import abcparam
from abcparam.check import engine
from abcparam.models import ResidualMLP


def test_observe_runs_in_eval_mode_without_gradients_and_restores_the_mode():
    net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.9), nn.Linear(8, 2))
    x = torch.randn(16, 4)
    for mode in (True, False):
        net.train(mode)
        out = engine.observe(net, (x,), {})
        assert net.training is mode and not out.requires_grad
        torch.testing.assert_close(out, net.eval()(x).detach())  # dropout off: the deterministic output
        net.train(mode)


def test_train_step_steps_every_optimizer_once_and_returns_the_loss():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    x, y = torch.randn(16, 4), torch.randn(16, 2)
    opts = [torch.optim.SGD(net[0].parameters(), lr=0.1), torch.optim.SGD(net[1].parameters(), lr=0.3)]
    before = [p.detach().clone() for p in net.parameters()]
    expected = float(nn.functional.mse_loss(net(x), y).detach())
    grads = torch.autograd.grad(nn.functional.mse_loss(net(x), y), list(net.parameters()))
    net.eval()
    loss = engine.train_step(net, opts, engine.default_loss, (x,), {}, y)
    assert loss == pytest.approx(expected) and net.training
    for p, p0, g, lr in zip(net.parameters(), before, grads, (0.1, 0.1, 0.3, 0.3)):
        torch.testing.assert_close(p.detach(), p0 - lr * g)


def test_the_depth_check_imports_nothing_of_the_width_check():
    code = "import sys, abcparam.check.depth; assert 'abcparam.check.width' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_depth_check_is_its_own_entry_point_with_the_width_checks_renderings(tmp_path):
    g = torch.Generator().manual_seed(7)
    batch = (torch.randn(32, 8, generator=g), torch.randn(32, 2, generator=g))

    def build(L):
        return ResidualMLP(8, 64, 2, blocks=L, param=abcparam.mup(64, 64, depth=L, base_depth=2, depth_alpha=1))

    r = abcparam.depth_check(build, [2, 4, 8], batch, optimizer=torch.optim.Adam, lr=1e-2, steps=2, seeds=[0])
    assert isinstance(r, abcparam.DepthReport)
    via_coord = abcparam.coord_check(build, depths=[2, 4, 8], batch=batch, optimizer=torch.optim.Adam, lr=1e-2, steps=2,
                                     seeds=[0])
    assert via_coord.to_dict() == r.to_dict()
    d = json.loads(r.to_json())
    assert d["status"] == r.status and d["theory_regime"] == r.verdict.regime and len(d["fits"]) == len(r.fits)
    assert {f["quantity"] for f in d["fits"]} >= {"stream", "block"} and d["alpha"] == "1"
    assert str(r) == r.summary() + "\n\n" + r.table() and r.table().splitlines()[1].startswith("----")
    md = r.to_markdown()
    assert md.count("\n|") == len(r.fits) + 2 and r.outcome() in md
    pytest.importorskip("matplotlib")
    fig = r.plot(str(tmp_path / "depth.png"))
    assert (tmp_path / "depth.png").stat().st_size > 0
    assert len(fig.axes) == len({f.step for f in r.fits})
    with pytest.raises(ValueError, match=r"^tolerance: a finite number > 0"):
        abcparam.depth_check(build, [2, 4, 8], batch, optimizer=torch.optim.Adam, lr=1e-2, tolerance=0)
    with pytest.raises(ValueError, match=r"^seeds: a non-empty list of ints"):
        abcparam.depth_check(build, [2, 4, 8], batch, optimizer=torch.optim.Adam, lr=1e-2, seeds=[0.5])
