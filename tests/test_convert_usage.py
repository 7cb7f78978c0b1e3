"""convert reads how the forward uses a raw tensor (abcparam.conversion.usage): summed against the features (a weight)
or applied coordinate by coordinate (values per coordinate), which the shape alone cannot tell."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import abcparam
from abcparam.conversion.usage import CONTRACTED, ELEMENTWISE, TensorUses, observe_uses


class Mixer(nn.Module):
    """Raw tensors of every kind of use: a weight through F.linear behind a cast (DeepSeek-V4's hyper-connection
    ``fn``), decays applied elementwise with both dimensions growing (Mamba's A_log with a growing state), a
    per-channel skip, a table indexed then multiplied, a tensor whose shape only is read."""

    def __init__(self, n, k=3):
        super().__init__()
        self.inp = nn.Linear(12, n)
        self.fn = nn.Parameter(torch.randn(k, n) * 0.02)  # (k, n): a readout n -> k
        self.decay = nn.Parameter(torch.log(torch.arange(1.0, n // 4 + 1)).repeat(n, 1))  # (n, n / 4), elementwise
        self.skip = nn.Parameter(torch.ones(n))
        self.queries = nn.Parameter(torch.randn(2, k, n) * 0.02)  # indexed, then summed against the features
        self.unused = nn.Parameter(torch.zeros(k, n))  # only its shape is read
        self.out = nn.Linear(n, 3)
        self.norm = nn.BatchNorm1d(n)

    def forward(self, x):
        h = self.norm(self.inp(x)) * self.skip
        h = h + torch.exp(-torch.exp(self.decay.float())).mean(-1)
        mixed = F.linear(h, self.fn.float()) + h @ self.queries[1].T
        return self.out(h) + mixed.sum(-1, keepdim=True) * (self.unused.shape[0] / 3)


def test_one_forward_tells_a_weight_from_values_per_coordinate():
    model = Mixer(32)
    model.train()
    stats = model.norm.running_mean.clone()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    uses = observe_uses(model, torch.randn(5, 12))
    assert uses["fn"] == CONTRACTED and uses["queries"] == CONTRACTED  # behind .float() and [1].T
    assert uses["decay"] == ELEMENTWISE and uses["skip"] == ELEMENTWISE
    assert uses["inp.weight"] == CONTRACTED and uses["inp.bias"] == ELEMENTWISE  # F.linear's bias is added
    assert "unused" not in uses  # reading its shape is no use
    assert model.training and model.norm.training  # each module's mode restored
    assert torch.equal(model.norm.running_mean, stats)  # observed in eval mode: the statistics untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_tensor_used_both_ways_counts_as_a_weight_and_one_reached_only_otherwise_is_not_settled():
    class Both(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 4))
            self.v = nn.Parameter(torch.randn(4))

        def forward(self, x):
            return F.linear(x * self.w[0], self.w) + torch.cumsum(self.v, 0)  # cumsum: on neither list

    assert observe_uses(Both(), (torch.randn(2, 4),)) == {"w": CONTRACTED}


def test_convert_reads_the_roles_of_raw_tensors_off_the_example():
    torch.manual_seed(0)
    model = Mixer(64)
    decay = model.decay.detach().clone()
    with pytest.raises(ValueError, match=r"raw tensor fn \(3, 64\).*pass convert\(\.\.\., example="):
        abcparam.convert(model, abcparam.mup(64, 16), base=Mixer(32))  # no example, no dummy_inputs: refused
    assert type(model.inp) is nn.Linear  # before any change
    report = abcparam.convert(model, abcparam.mup(64, 16), {"unused": "vector"}, base=Mixer(32),
                              example=torch.randn(5, 12))  # unused: no forward uses it, so it is named
    raw = {name: role for name, role, _ in report.raw}
    # decay grows in both dimensions, as a hidden matrix would, but the forward applies it elementwise
    assert raw == {"fn": "output", "decay": "vector", "skip": "vector", "queries": "output", "unused": "vector"}
    assert torch.equal(model.decay, decay)  # values per coordinate keep their values (a hidden one would be redrawn)


def test_the_model_offers_its_own_example_and_a_forward_that_fails_on_it_is_said():
    class Offered(Mixer):
        @property
        def dummy_inputs(self):
            return {"x": torch.randn(5, 12)}

    report = abcparam.convert(Offered(64), abcparam.mup(64, 16), {"unused": "vector"}, base=Offered(32))
    assert ("fn", "output", (3, 64)) in report.raw and not any("dummy_inputs" in why for _, why in report.notes)

    class Broken(Mixer):
        dummy_inputs = {"x": torch.randn(5, 7)}  # the wrong feature count: the forward fails

    with pytest.raises(ValueError, match="raw tensor fn"):  # nothing observed: the ambiguous tensor is refused
        abcparam.convert(Broken(64), abcparam.mup(64, 16), base=Broken(32))
    report = abcparam.convert(Broken(64), abcparam.mup(64, 16), {"fn": "output", "queries": "output", "unused": "vector"},
                              base=Broken(32))
    assert any("failed on its dummy_inputs (RuntimeError" in why for _, why in report.notes)


def test_an_example_the_forward_refuses_is_a_value_error_naming_example_and_changes_nothing():
    model = Mixer(64)
    with pytest.raises(ValueError, match=r"example: the model's forward failed on it \(RuntimeError"):
        abcparam.convert(model, abcparam.mup(64, 16), base=Mixer(32), example=torch.randn(5, 7))
    assert type(model.inp) is nn.Linear


def test_the_forward_runs_only_when_a_raw_tensor_needs_it():
    calls = []

    class Counted(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.inp, self.out = nn.Linear(12, n), nn.Linear(n, 3)

        def forward(self, x):
            calls.append(1)
            return self.out(self.inp(x))

    abcparam.convert(Counted(64), abcparam.mup(64, 16), base=Counted(32), example=torch.randn(2, 12))
    assert calls == []  # no raw tensor: no forward
    uses = TensorUses(Counted(8), torch.randn(2, 12))
    assert uses.of("inp.weight") == CONTRACTED and uses.of("out.bias") == ELEMENTWISE and calls == [1]  # once
