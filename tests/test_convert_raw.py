"""convert marks raw tensors in place (abcparam.conversion.raw): experts stored as 3-D tensors, per-channel vectors,
fixed-size tensors; the optimizer wrapper and the width check see them."""

import math
import warnings

import pytest
import torch
from torch import nn

import abcparam
import abcparam.testing


class Experts(nn.Module):
    """A mixture of E experts stored as (E, out, in) tensors, a router, a per-channel gate and per-expert sinks."""

    def __init__(self, n, experts=4, hidden=2):
        super().__init__()
        self.router = nn.Linear(n, experts, bias=False)
        self.up = nn.Parameter(torch.randn(experts, hidden * n, n) * 0.02)
        self.down = nn.Parameter(torch.randn(experts, n, hidden * n) * 0.02)
        self.gate = nn.Parameter(torch.full((n,), 0.5))
        self.sinks = nn.Parameter(torch.zeros(experts))

    def forward(self, x):
        weights = torch.softmax(self.router(x) + self.sinks, dim=-1)  # (batch, E)
        h = torch.relu(torch.einsum("bi,eoi->beo", x, self.up))
        out = torch.einsum("beo,eio->bei", h, self.down)
        return torch.einsum("be,bei->bi", weights, out) * self.gate


class Net(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.inp = nn.Linear(12, n)
        self.moe = Experts(n)
        self.out = nn.Linear(n, 3)

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        return self.out(h + self.moe(h))


def converted(n, base_width=64, **kw):
    torch.manual_seed(0)
    model = Net(n)
    report = abcparam.convert(model, abcparam.mup(n, base_width), base=Net(n // 2), **kw)
    return model, report


def test_raw_tensors_get_roles_from_the_dimensions_that_grow():
    model, report = converted(256)
    assert report.raw == [("moe.up", "hidden", (4, 512, 256)), ("moe.down", "hidden", (4, 256, 512)),
                          ("moe.gate", "vector", (256,)), ("moe.sinks", "none", (4,))]
    assert {c.name: c.role for c in report.converted}["moe.router"] == "output"  # width -> fixed E: a readout
    assert "raw tensors marked in place (4;" in str(report) and "moe.up: (4, 512, 256) -> hidden" in str(report)
    # the hidden experts are redrawn at the parametrization's scale (fan-in the last dimension), the rest kept
    assert model.moe.up.std().item() == pytest.approx(1 / math.sqrt(256), rel=0.02)
    assert model.moe.down.std().item() == pytest.approx(1 / math.sqrt(512), rel=0.02)
    assert torch.equal(model.moe.gate, torch.full((256,), 0.5)) and torch.equal(model.moe.sinks, torch.zeros(4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every tensor owned
        opt = abcparam.wrap(torch.optim.Adam(model.parameters(), lr=1e-2), model, strict=True)
    lr = {id(t): g["lr"] for g in opt.param_groups for t in g["params"]}
    m = 256 / 64
    assert lr[id(model.moe.up)] == pytest.approx(1e-2 / m)  # hidden under Adam: m^-1
    assert lr[id(model.moe.gate)] == pytest.approx(1e-2) and lr[id(model.moe.sinks)] == pytest.approx(1e-2)


def test_init_keep_keeps_every_raw_tensor_and_the_forward_is_unchanged():
    torch.manual_seed(0)
    model, x = Net(128), torch.randn(5, 12)
    raw = ("up", "down", "gate", "sinks")
    before, out = {k: getattr(model.moe, k).clone() for k in raw}, model(x)
    abcparam.convert(model, abcparam.mup(128, 64), base=Net(64), init="keep")
    assert all(torch.equal(before[k], getattr(model.moe, k)) for k in raw)
    assert type(model.moe) is Experts  # marked in place, not replaced
    torch.testing.assert_close(model(x), out)  # the same function (the converted router and layers kept theirs)


def test_roles_name_a_raw_tensor_by_its_full_name_and_bad_requests_change_nothing():
    _, report = converted(128, roles={"moe.gate": "output", "moe.sinks": "skip"})
    assert ("moe.gate", "output", (128,)) in report.raw and ("moe.sinks", "role 'skip' in roles") in report.skipped
    model = Net(128)
    before = model.moe.up.clone()
    with pytest.raises(ValueError, match=r"roles: 'moe\.gate' -> 'readout'; allowed roles"):
        abcparam.convert(model, abcparam.mup(128, 64), {"moe.gate": "readout"}, base=Net(64))
    with pytest.raises(ValueError, match="no hidden layers"):  # mean field: the experts' hidden role does not exist
        abcparam.convert(model, abcparam.mean_field(128, 64), base=Net(64))
    assert torch.equal(model.moe.up, before) and not hasattr(model.moe, "abc_scales")
    assert type(model.inp) is nn.Linear


def test_torch_modules_holding_tensors_are_not_read_as_raw():
    model = nn.Sequential(nn.Linear(4, 64), nn.ConvTranspose1d(64, 64, 1), nn.Linear(64, 2))
    report = abcparam.convert(model, abcparam.mup(64, 16), widths=[64])
    assert report.raw == [] and "ConvTranspose1d holds tensors of its own" in dict(report.skipped)["1"]


def test_a_model_with_raw_experts_passes_the_check_and_fails_it_when_they_are_left_at_their_own_scale():
    x = torch.randn(32, 12, generator=torch.Generator().manual_seed(0))
    batch = (x, torch.randn(32, 3, generator=torch.Generator().manual_seed(1)))
    kw = dict(batch=batch, optimizer=torch.optim.Adam, lr=1e-3)  # at 3e-3 the skipped experts' loss rises: inconclusive
    abcparam.testing.assert_regime(lambda n: converted(n)[0], "feature_learning", **kw)
    # the experts skipped: trained at the base rate from HF-style fixed 0.02 init, they blow up with width
    skipped = lambda n: converted(n, roles={"moe.up": "skip", "moe.down": "skip"})[0]  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(AssertionError, match="FAIL: the measurements disagree"):
            abcparam.testing.assert_regime(skipped, "feature_learning", **kw)


class Ambiguous(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.inp = nn.Linear(12, n)
        self.mix = nn.Parameter(torch.ones(1, 1, n))  # per channel, whatever its leading unit dimensions
        self.table = nn.Parameter(torch.zeros(3, n))  # 3 x n: a raw readout (n -> 3), or 3 values per channel?
        self.out = nn.Linear(n, 3)

    def forward(self, x):
        h = self.inp(x) * self.mix[0]
        return self.out(h) + h @ self.table.T


def test_a_raw_tensor_growing_only_in_its_fan_in_is_refused_unless_named():
    model = Ambiguous(64)
    with pytest.raises(ValueError, match=r"raw tensor table \(3, 64\) grows with the width only in its last dimension"):
        abcparam.convert(model, abcparam.mup(64, 16), base=Ambiguous(32))
    assert type(model.inp) is nn.Linear
    report = abcparam.convert(model, abcparam.mup(64, 16), {"table": "output"}, base=Ambiguous(32))
    assert sorted(report.raw) == [("mix", "vector", (1, 1, 64)), ("table", "output", (3, 64))]


class Router(nn.Module):
    """A router as MoE models write it: a raw (experts, width) weight used through F.linear."""

    def __init__(self, n, experts=4):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(experts, n) * 0.02)

    def forward(self, x):
        return nn.functional.linear(x, self.weight)


class ExpertNorm(nn.Module):
    def __init__(self, n, experts=4):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(experts, n))


class ExpertBias(nn.Module):
    """Experts' output biases, one per expert and channel (GPT-OSS's gate_up_proj_bias)."""

    def __init__(self, n, experts=4):
        super().__init__()
        self.up_bias = nn.Parameter(torch.zeros(experts, 2 * n))


def test_a_weight_growing_in_its_last_dimension_is_a_readout_outside_a_norm_and_a_bias_or_gain_is_per_channel():
    def net(n):
        return nn.ModuleDict({"inp": nn.Linear(12, n), "router": Router(n), "norm": ExpertNorm(n), "bias": ExpertBias(n)})

    report = abcparam.convert(net(128), abcparam.mup(128, 64), base=net(64))
    assert sorted(report.raw) == [("bias.up_bias", "vector", (4, 256)), ("norm.weight", "vector", (4, 128)),
                                  ("router.weight", "output", (4, 128))]
