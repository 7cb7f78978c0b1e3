"""muP itself, tensor by tensor (abcparam.check.maximal, abcparam.testing.assert_mup): every trained tensor's own
update is of order one; a tensor trained too slowly while the others keep the features moving is named."""

import warnings

import pytest
import torch
from torch import nn

import abcparam
from abcparam.check.maximal import _own_updates, _trained, maximal_check
from abcparam.models import MLP

WIDTHS = [128, 256, 512, 1024]


def _batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(32, 16, generator=g), torch.randn(32, 4, generator=g)


def _mlp(mutant=None):
    def build(n):
        m = MLP(16, n, 4, depth=3, param=abcparam.mup(n, 128))
        if mutant == "input":  # a plain input layer: under SGD its rate is too small by m
            m.layers[0] = nn.Linear(16, n)
        if mutant == "hidden":  # a plain hidden layer: its weight is fine under SGD, its bias trains too slowly
            m.layers[1] = nn.Linear(n, n)
        return m
    return build


@pytest.mark.parametrize("mutant, frozen", [("input", {"layers.0.weight", "layers.0.bias"}), ("hidden", {"layers.1.bias"})])
def test_a_tensor_trained_too_slowly_is_named_though_the_features_still_move(mutant, frozen):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the plain layer is unowned: wrap warns
        regime = abcparam.coord_check(_mlp(mutant), WIDTHS, _batch(), optimizer=torch.optim.SGD, lr=0.1)
        r = maximal_check(_mlp(mutant), WIDTHS, _batch(), optimizer=torch.optim.SGD, lr=0.1)
        with pytest.raises(AssertionError, match="not updated maximally: layers") as e:
            abcparam.testing.assert_mup(_mlp(mutant), batch=_batch(), optimizer=torch.optim.SGD, lr=0.1)
    assert regime.measured_regime == "feature_learning"  # the regime alone cannot see it
    assert r.status == "fail" and {f.layer for f in r.mismatches} == frozen
    assert all(f.slope < -0.8 for f in r.mismatches)  # frozen like n^-1: the rate is too small by m
    assert "expected every tensor updated maximally (muP)" in str(e.value)


def test_a_mup_model_is_updated_maximally_under_sgd_and_adam():
    for opt, lr in ((torch.optim.SGD, 0.1), (torch.optim.Adam, 1e-2)):
        r = abcparam.testing.assert_mup(_mlp(), batch=_batch(), optimizer=opt, lr=lr)
        assert r.status == "pass" and len(r.fits) == 8 and {f.quantity for f in r.fits} == {"dw"}
    # under Adam a plain input layer is muP (its rate needs no width factor): no false alarm
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert abcparam.testing.assert_mup(_mlp("input"), batch=_batch(), optimizer=torch.optim.Adam, lr=1e-2).status == "pass"


def test_own_updates_are_each_tensors_own_contribution():
    torch.manual_seed(0)
    emb, lin = nn.Embedding(5, 6), abcparam.Linear(6, 3, role="output", param=abcparam.mup(6, 2))
    model = nn.Sequential(emb, lin)
    tensors = _trained(model)
    assert list(tensors) == ["0.weight", "1.weight", "1.bias"]
    start = {k: getattr(m, a).detach().clone() for k, (m, a) in tensors.items()}
    with torch.no_grad():
        emb.weight.add_(0.5)
        lin.weight.mul_(3.0)
        lin.bias.sub_(0.25)
    ids = torch.tensor([[1, 4]])
    got = _own_updates(model, start, tensors, (ids,), {})
    x = emb(ids).detach()  # the readout's input at the end
    assert got["0.weight"] == pytest.approx(0.5)
    expected = (torch.nn.functional.linear(x, lin.weight.detach() - start["1.weight"]) * lin.weight_multiplier).pow(2).mean().sqrt()
    assert got["1.weight"] == pytest.approx(float(expected)) and lin.weight_multiplier != 1.0
    assert got["1.bias"] == pytest.approx(0.25)
    tied = nn.Sequential(emb, nn.Linear(6, 5, bias=False))
    tied[1].weight = emb.weight
    assert list(_trained(tied)) == ["0.weight"]  # a shared tensor is measured once


def test_own_updates_of_a_kernel_a_norm_gain_and_an_hf_style_conv1d():
    torch.manual_seed(0)
    p = abcparam.mup(8, 2)  # m = 4
    conv = abcparam.Conv2d(8, 3, 3, padding=1, role="output", param=p)  # multiplier 1/2
    norm = nn.GroupNorm(2, 8)
    c1d = abcparam.layers.Conv1D(8, 8, param=p, role="hidden")  # stored in x out
    model = nn.Sequential(norm, conv)
    tensors = _trained(model)
    assert list(tensors) == ["0.weight", "0.bias", "1.weight", "1.bias"]  # the gain is measured, as a bias is
    start = {k: getattr(m, a).detach().clone() for k, (m, a) in tensors.items()}
    with torch.no_grad():
        norm.weight.add_(0.75)
        conv.weight.mul_(-2.0)
    x = torch.randn(2, 8, 5, 5)
    got = _own_updates(model, start, tensors, (x,), {})
    assert got["0.weight"] == pytest.approx(0.75) and got["0.bias"] == 0.0
    h = norm(x).detach()  # the kernel's input
    expected = torch.nn.functional.conv2d(h, conv.weight.detach() - start["1.weight"], padding=1) * 0.5
    assert got["1.weight"] == pytest.approx(float(expected.pow(2).mean().sqrt()), rel=1e-5)
    line = nn.Sequential(c1d)
    t = _trained(line)
    s0 = {k: getattr(m, a).detach().clone() for k, (m, a) in t.items()}
    with torch.no_grad():
        c1d.weight.add_(torch.arange(64.0).reshape(8, 8) / 64)
    xs = torch.randn(3, 8)
    want = (xs @ (c1d.weight.detach() - s0["0.weight"]) * c1d.weight_multiplier).pow(2).mean().sqrt()
    assert _own_updates(line, s0, t, (xs,), {})["0.weight"] == pytest.approx(float(want), rel=1e-5)


def test_the_report_renders_and_serialises():
    r = maximal_check(_mlp("hidden"), WIDTHS, _batch(), optimizer=torch.optim.SGD, lr=0.1, budget=0)
    text = str(r)
    assert text.startswith("maximal updates: widths [128, 256, 512, 1024], 3 step(s), seeds [0, 1], tolerance 0.2\nFAIL: ")
    assert "layers.1.bias    dw        3" in text
    d = r.to_dict()
    assert d["status"] == "fail" and d["lr"] == 0.1 and len(d["fits"]) == 8 and d["escalation"] == []


def test_check_mup_hands_its_loss_to_the_maximal_update_check_too():
    # targets of 8 columns for a model of 4 outputs: only this loss reads them (the default MSE cannot broadcast)
    x, y = _batch()
    wide = torch.cat([y, y], dim=1)
    seen = []

    def loss(out, target):
        seen.append(target.shape[1])
        return ((out - target[:, :4]) ** 2).mean()

    r = abcparam.testing.check_mup(_mlp(), batch=(x, wide), optimizer=torch.optim.Adam, lr=1e-2, loss=loss)
    assert r.status == "pass" and set(seen) == {8}
    assert len(seen) >= 2 * len(WIDTHS) * 2 * 3  # the steps of both checks (widths x seeds x steps each)


def test_a_tensor_that_never_moves_is_not_judged():
    # all-zero inputs: the input layer's weight gets a zero gradient and moves nothing, at every width and seed (its
    # own update would be log(0) to a slope fit); it is listed, not judged, and fails nothing
    x, y = _batch()
    r = maximal_check(_mlp(), WIDTHS, (torch.zeros_like(x), y), optimizer=torch.optim.Adam, lr=1e-2, budget=0)
    frozen = [f for f in r.fits if f.layer == "layers.0.weight"]
    assert len(frozen) == 1 and frozen[0].status == "-" and "never moves" in frozen[0].reason
    assert all(f.status != "-" for f in r.fits if f.layer != "layers.0.weight") and r.status != "fail"


def test_a_tensor_zero_at_some_widths_only_is_undecided(monkeypatch):
    from abcparam.check import maximal

    calls = []
    original = maximal._own_updates

    def first_zero(*args):
        out = original(*args)
        calls.append(1)
        if len(calls) == 1:  # the smallest width, first seed: as if that tensor had not moved there
            out["layers.0.bias"] = 0.0
        return out

    monkeypatch.setattr(maximal, "_own_updates", first_zero)
    r = maximal_check(_mlp(), WIDTHS, _batch(), optimizer=torch.optim.Adam, lr=1e-2, budget=0)
    (f,) = [f for f in r.fits if f.layer == "layers.0.bias"]
    assert f.status == "inconclusive" and "some widths or seeds only" in f.reason and r.status == "inconclusive"
