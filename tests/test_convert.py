"""abcparam.convert: in-place replacement with role inference."""

import pytest
import torch
from torch import nn

import abcparam


class Tiny(nn.Module):
    def __init__(self, vocab=50, d=64, ff=128):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.block = nn.ModuleDict({"up": nn.Linear(d, ff), "down": nn.Linear(ff, d), "norm": nn.LayerNorm(d)})
        self.head = nn.Linear(d, vocab, bias=False)
        self.side = nn.Linear(3, 3)

    def forward(self, idx):
        h = self.emb(idx)
        h = h + self.block["down"](torch.relu(self.block["up"](self.block["norm"](h))))
        return self.head(h)


def test_roles_inferred_from_widths():
    model = Tiny()
    report = abcparam.convert(model, abcparam.mup(64, 16), widths=[64, 128])
    roles = {c.name: c.role for c in report.converted}
    assert roles == {"emb": "input", "block.up": "hidden", "block.down": "hidden", "head": "output"}
    assert ("side", "no width-sized dimension (3 -> 3)") in report.skipped
    assert isinstance(model.head, abcparam.Linear) and model.head.role == "output" and model.head.bias is None
    assert isinstance(model.emb, abcparam.Embedding)
    assert type(model.side) is nn.Linear
    assert "block.up: Linear(64, 128) -> hidden" in str(report)
    assert model(torch.randint(0, 50, (2, 7))).shape == (2, 7, 50)


def test_roles_from_a_pattern_map_and_filter():
    model = Tiny()
    report = abcparam.convert(model, abcparam.mup(64, 16), roles={"emb": "input", "block.*": "hidden", "head": "output", "side": "skip"},
                              filter_fn=lambda mod, name: name != "block.down")
    assert [c.name for c in report.converted] == ["emb", "block.up", "head"]
    assert type(model.block["down"]) is nn.Linear


def test_ambiguous_or_bad_requests_leave_the_model_untouched():
    model = Tiny(vocab=64)
    before = {n: type(m) for n, m in model.named_modules()}
    with pytest.raises(ValueError, match="num_embeddings=64, which is also a width"):
        abcparam.convert(model, abcparam.mup(64, 16), widths=[64, 128])
    with pytest.raises(ValueError, match="different roles"):
        abcparam.convert(model, abcparam.mup(64, 16), roles={"block.*": "hidden", "block.up": "input"})
    with pytest.raises(ValueError, match="allowed roles"):
        abcparam.convert(model, abcparam.mup(64, 16), roles={"head": "readout"})
    with pytest.raises(ValueError, match="no hidden layers"):
        abcparam.convert(model, abcparam.mean_field(64, 16), roles={"head": "output", "block.up": "hidden"})
    with pytest.raises(ValueError, match="widths"):
        abcparam.convert(model, abcparam.mup(64, 16))
    with pytest.raises(TypeError, match="param"):
        abcparam.convert(model, "mup", widths=[64])
    assert {n: type(m) for n, m in model.named_modules()} == before


def test_converted_model_trains_with_wrap():
    model = Tiny()
    abcparam.convert(model, abcparam.mup(64, 16), widths=[64, 128])
    with pytest.warns(UserWarning, match="block.norm.weight"):
        opt = abcparam.wrap(torch.optim.AdamW(model.parameters(), lr=1e-3), model)
    idx = torch.randint(0, 50, (4, 6))
    loss = nn.functional.cross_entropy(model(idx).flatten(0, 1), idx.flatten())
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
