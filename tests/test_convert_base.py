"""abcparam.convert(base=...): the widths read off a second build of the model (abcparam.conversion.widths); layer
subclasses that compute the plain layer's function; attention scales under every head-size name."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import abcparam
from abcparam.conversion.passes import head_size


class Tiny(nn.Module):
    def __init__(self, vocab=50, d=64, ff=128, side=3):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.block = nn.ModuleDict({"up": nn.Linear(d, ff), "down": nn.Linear(ff, d), "norm": nn.LayerNorm(d)})
        self.head = nn.Linear(d, vocab, bias=False)
        self.side = nn.Linear(side, side)

    def forward(self, idx):
        h = self.emb(idx)
        h = h + self.block["down"](torch.relu(self.block["up"](self.block["norm"](h))))
        return self.head(h)


def roles(report):
    return {c.name: c.role for c in report.converted}


def test_base_reads_the_same_roles_as_the_right_widths_list():
    by_list = roles(abcparam.convert(Tiny(d=64, ff=192), abcparam.mup(64, 16), widths=[64, 192]))
    by_base = roles(abcparam.convert(Tiny(d=64, ff=192), abcparam.mup(64, 16), base=Tiny(d=32, ff=96)))
    assert by_base == by_list == {"emb": "input", "block.up": "hidden", "block.down": "hidden", "head": "output",
                                  "block.norm": "vector"}


def test_base_settles_a_vocabulary_equal_to_a_width():
    # widths=[64, 128] cannot tell a vocabulary of 64 from the width 64; the base can: the vocabulary does not change
    model = Tiny(vocab=64, d=64, ff=128)
    with pytest.raises(ValueError, match="num_embeddings=64, which is also a width"):
        abcparam.convert(model, abcparam.mup(64, 16), widths=[64, 128])
    report = abcparam.convert(model, abcparam.mup(64, 16), base=Tiny(vocab=64, d=128, ff=256))
    assert roles(report)["emb"] == "input" and roles(report)["head"] == "output"


def test_base_is_only_read():
    base = Tiny(d=32, ff=64)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    abcparam.convert(Tiny(), abcparam.mup(64, 16), base=base)
    assert all(type(m) in (Tiny, nn.Embedding, nn.ModuleDict, nn.Linear, nn.LayerNorm) for m in base.modules())
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())


class Odd(nn.Module):
    """A layer whose output size moves with the width in another ratio (n + 1): neither a width nor fixed."""

    def __init__(self, d):
        super().__init__()
        self.inp = nn.Linear(8, d)
        self.mid = nn.Linear(d, d + 1)
        self.out = nn.Linear(d + 1, 3)


class Bare(nn.Module):
    """A Linear's tensors without being one."""

    def __init__(self, d_out, d_in):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.zeros(d_out, d_in)), nn.Parameter(torch.zeros(d_out))


def untouched(model):
    return {n: type(m) for n, m in model.named_modules()}


def test_bad_bases_are_refused_by_name_before_anything_changes():
    model = Odd(64)
    before = untouched(model)
    with pytest.raises(ValueError, match=r"most dimensions change by 2/1.*mid\.weight dim 0 \(65/33\).*roles="):
        abcparam.convert(model, abcparam.mup(64, 16), base=Odd(32))
    assert untouched(model) == before
    # naming the odd layers' roles settles it: their sizes are never read
    report = abcparam.convert(model, abcparam.mup(64, 16), {"mid": "hidden", "out": "output"}, base=Odd(32))
    assert roles(report) == {"inp": "input", "mid": "hidden", "out": "output"}

    model = Tiny()
    before = untouched(model)
    with pytest.raises(ValueError, match="base: got the model itself"):
        abcparam.convert(model, abcparam.mup(64, 16), base=model)
    with pytest.raises(TypeError, match=r"base: expected the model built at another width \(an nn.Module\), got dict"):
        abcparam.convert(model, abcparam.mup(64, 16), base={"emb": 32})
    with pytest.raises(ValueError, match="widths, base: give one of them"):
        abcparam.convert(model, abcparam.mup(64, 16), widths=[64], base=Tiny(d=32, ff=64))
    with pytest.raises(ValueError, match="base: no parameter's shape differs"):
        abcparam.convert(model, abcparam.mup(64, 16), base=Tiny())
    with pytest.raises(ValueError, match="base: has no parameter 'block.up.weight'"):
        abcparam.convert(model, abcparam.mup(64, 16), base=nn.ModuleDict({"emb": nn.Embedding(50, 32)}))
    with pytest.raises(ValueError, match="base: 'head.weight' has 1 dimensions there and 2"):
        other = Tiny(d=32, ff=64)
        other.head.weight = nn.Parameter(torch.zeros(50))
        abcparam.convert(model, abcparam.mup(64, 16), base=other)
    with pytest.raises(ValueError, match="base: 'block.up' is a Bare there and a Linear in the model"):
        other = Tiny(d=32, ff=64)
        other.block["up"] = Bare(64, 32)
        abcparam.convert(model, abcparam.mup(64, 16), base=other)
    with pytest.raises(ValueError, match="base: embedding 'emb' has num_embeddings=50, which differs from base's"):
        abcparam.convert(model, abcparam.mup(64, 16), base=Tiny(vocab=25, d=32, ff=64))
    assert untouched(model) == before


@settings(max_examples=25, deadline=None)
@given(depth=st.integers(1, 3), ratio=st.sampled_from([2, 3, 4]), fixed=st.integers(1, 7), mult=st.integers(1, 4))
def test_base_and_the_listed_widths_agree_on_any_chain(depth, ratio, fixed, mult):
    """A chain fixed -> n -> (mult n -> n)^depth -> fixed, built at n = 8 k and at ratio x that: the roles read off the
    base are the roles read off widths=[n, mult n] (the sizes are chosen so that no fixed size is a width)."""

    def chain(n):
        layers = [nn.Linear(fixed, n)]
        for _ in range(depth):
            layers += [nn.Linear(n, mult * n), nn.Linear(mult * n, n)]
        return nn.Sequential(*layers, nn.Linear(n, fixed + 100))

    n = 8 * (fixed + 2)
    by_list = roles(abcparam.convert(chain(n), abcparam.mup(n, 8), widths=[n, mult * n]))
    by_base = roles(abcparam.convert(chain(n), abcparam.mup(n, 8), base=chain(n * ratio)))
    assert by_base == by_list
    assert list(by_base.values()) == ["input"] + ["hidden"] * (2 * depth) + ["output"]


class OwnMatmul(nn.Linear):
    """A subclass that writes the same function its own way (as Falcon's FalconLinear does)."""

    def forward(self, x):
        out = x @ self.weight.T
        return out if self.bias is None else out + self.bias


class Scaled(nn.Embedding):
    """A subclass whose output differs (as Gemma's scaled word embedding: its output times sqrt(d))."""

    def forward(self, idx):
        return super().forward(idx) * self.embedding_dim ** 0.5


class Linearly(nn.Embedding):
    """A subclass whose output is its rows times embedding_dim: a factor neither constant nor sqrt(d)."""

    def forward(self, idx):
        return super().forward(idx) * self.embedding_dim


class Doubled(nn.Embedding):
    def forward(self, idx):
        return super().forward(idx) * 2.0


class ManyInputs(nn.Linear):
    def forward(self, x, gate):
        return super().forward(x) * gate


def test_a_subclass_that_computes_the_plain_layers_function_is_converted_and_one_that_does_not_is_marked():
    model = nn.Sequential(Linearly(20, 64), OwnMatmul(64, 64), ManyInputs(64, 64), nn.Linear(64, 5))
    report = abcparam.convert(model, abcparam.mup(64, 16), widths=[64])
    assert roles(report) == {"1": "hidden", "3": "output"}
    assert isinstance(model[1], abcparam.Linear) and type(model[0]) is Linearly and type(model[2]) is ManyInputs
    # the others keep their forward (the scale, the second input) and have their tensors marked in place
    assert sorted(report.raw) == [("0.weight", "input", (20, 64)), ("2.bias", "vector", (64,)),
                                  ("2.weight", "hidden", (64, 64))]
    notes = dict(report.notes)
    assert "its output on a probe differs from nn.Embedding's" in notes["0"] and "nn.Linear" in notes["2"]


class TiedLM(nn.Module):
    """An embedding of class ``kind``, a hidden layer and a readout sharing the embedding's table (as Gemma ties)."""

    def __init__(self, kind, d, vocab=50):
        super().__init__()
        self.emb, self.mid, self.head = kind(vocab, d), nn.Linear(d, d), nn.Linear(d, vocab, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, idx):
        return self.head(torch.tanh(self.mid(self.emb(idx))))


def test_an_embedding_scaled_by_sqrt_of_its_width_is_converted_with_the_factor_held_at_the_base_width():
    idx = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(1))
    for source in ({"base": TiedLM(Scaled, 32)}, {"widths": [64]}):
        model = TiedLM(Scaled, 64)
        report = abcparam.convert(model, abcparam.mup(64, 16, form="table8"), **source)  # m = 4
        assert report.scales == [("emb", pytest.approx(8.0), 4.0)]  # sqrt(64), held at sqrt(16), the base width's
        plain = abcparam.Embedding(50, 64, param=abcparam.mup(64, 16, form="table8"))
        assert isinstance(model.emb, abcparam.Embedding) and model.emb.weight_multiplier == pytest.approx(4.0 * plain.weight_multiplier)
        # the readout that shared the table still does: tied, not given a weight of its own
        assert isinstance(model.head, abcparam.TiedReadout) and model.head.weight is model.emb.weight
        assert roles(report) == {"emb": "input", "mid": "hidden", "head": "output"}
        assert "  emb: Scaled (output x 8)(50, 64) -> input" in str(report) and "  emb: 8 -> 4" in str(report)
    # at the base width with init="keep" the model computes what it did (the factor held is the factor it had)
    model = TiedLM(Scaled, 64)
    before = model(idx)
    abcparam.convert(model, abcparam.mup(64, 64, form="table8"), base=TiedLM(Scaled, 32), init="keep")
    assert torch.allclose(model(idx), before, rtol=1e-5, atol=1e-6)


def test_an_embedding_scaled_by_a_constant_keeps_it_and_one_scaled_otherwise_is_marked_or_its_tie_refused():
    model = TiedLM(Doubled, 64)
    report = abcparam.convert(model, abcparam.mup(64, 16, form="table8"), base=TiedLM(Doubled, 32))
    assert report.scales == [("emb", pytest.approx(2.0), 2.0)] and isinstance(model.head, abcparam.TiedReadout)
    # listed widths cannot tell a constant from a power of the width: marked in place, forward kept
    model = nn.Sequential(Doubled(50, 64), nn.Linear(64, 5))
    report = abcparam.convert(model, abcparam.mup(64, 16), widths=[64])
    assert type(model[0]) is Doubled and report.raw == [("0.weight", "input", (50, 64))] and report.scales == []
    # a factor of another law, whose table a readout shares: replacing the readout would untie it, so refused by name
    model = TiedLM(Linearly, 64)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"^convert: 'head' shares its weight with 'emb.weight', which is marked in "
                                         r"place rather than replaced, so replacing it would untie them; .*'head': 'skip'"):
        abcparam.convert(model, abcparam.mup(64, 16, form="table8"), base=TiedLM(Linearly, 32))
    assert [type(m) for m in (model.emb, model.mid, model.head)] == [Linearly, nn.Linear, nn.Linear]
    assert model.head.weight is model.emb.weight and all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert not hasattr(model.emb, "abc_scales")
    report = abcparam.convert(model, abcparam.mup(64, 16, form="table8"), base=TiedLM(Linearly, 32), roles={"head": "skip"})
    assert type(model.emb) is Linearly and model.head.weight is model.emb.weight and report.scales == []


class Attention(nn.Module):
    def __init__(self, name, d, scaling):
        super().__init__()
        setattr(self, name, d)
        self.scaling = scaling
        self.proj = nn.Linear(64, 64)


@pytest.mark.parametrize("name", ["head_dim", "head_size", "attention_head_size", "attention_head_dim", "qk_head_dim"])
def test_every_head_size_name_gets_the_parametrizations_scale(name):
    model = nn.Sequential(nn.Linear(4, 64), Attention(name, 16, 16 ** -0.5), nn.Linear(64, 3))
    report = abcparam.convert(model, abcparam.mup(64, 16, form="table8"), widths=[64])
    # the parametrization's own scale for a head of 16 at m = 4 (docs/theory.md section 14), not HF's 1/sqrt(16)
    expected = abcparam.mup(64, 16, form="table8").attention_scale(16)
    assert report.attention == [("1", 0.25, expected)] and model[1].scaling == expected and expected != 0.25


def test_a_scale_that_is_not_one_over_sqrt_of_a_head_size_is_left_and_reported():
    # scaling 1.0: the model scales its queries elsewhere; setting the parametrization's scale would apply it twice
    model = nn.Sequential(nn.Linear(4, 64), Attention("head_dim", 16, 1.0), Attention("head_size", 16, 0.2),
                          nn.Linear(64, 3))
    report = abcparam.convert(model, abcparam.mup(64, 16, form="table8"), widths=[64])
    assert report.attention == [] and model[1].scaling == 1.0 and model[2].scaling == 0.2
    why = dict(report.skipped)
    assert "scaling=1, which is not 1/sqrt of a head size it exposes" in why["1"] and "scaling=0.2" in why["2"]


class WithSinks(Attention):
    """An attention module holding a raw tensor of its own (per-head sinks: GPT-OSS; a differential attention's
    lambdas): marked in place, it is still the model's module, and its scale is set."""

    def __init__(self, n):
        super().__init__("head_dim", n // 4, (n // 4) ** -0.5)
        self.sinks = nn.Parameter(torch.zeros(4))
        self.proj = nn.Linear(n, n)


def test_an_attention_module_with_raw_tensors_of_its_own_still_gets_the_parametrizations_scale():
    def model(n):
        return nn.Sequential(nn.Linear(4, n), WithSinks(n), nn.Linear(n, 3))

    net = model(64)
    param = abcparam.mup(64, 16, form="table8")
    report = abcparam.convert(net, param, base=model(128))
    assert ("1.sinks", "none", (4,)) in report.raw  # marked in place: the module has abc_scales now
    assert report.attention == [("1", 0.25, param.attention_scale(16))] and net[1].scaling == param.attention_scale(16)


def test_head_size_picks_the_attribute_whose_inverse_square_root_is_the_scale():
    mla = Attention("head_dim", 32, 48 ** -0.5)
    mla.qk_head_dim = 48  # multi-latent attention: queries and keys have their own size, the values another
    assert head_size(mla) == 48
    assert head_size(Attention("head_dim", 32, 1 / math.sqrt(32))) == 32
    assert head_size(Attention("head_dim", True, 1.0)) is None  # a bool is not a size


class ThreeQuarters(nn.Module):
    """A hidden layer to 3/4 of the width (OLMo-hybrid's linear-attention projections): one width's shapes read its
    output as a fixed size, the base build knows it grows."""

    def __init__(self, n):
        super().__init__()
        self.inp = nn.Linear(8, n)
        self.mid = nn.Linear(n, 3 * n // 4)
        self.out = nn.Linear(3 * n // 4, 2)


def test_a_hidden_layer_abcparams_linear_refuses_by_shape_is_marked_in_place_when_the_base_says_hidden():
    with pytest.raises(ValueError, match="needs a width-sized out_features"):
        abcparam.Linear(64, 48, role="hidden", param=abcparam.mup(64, 16))
    model = ThreeQuarters(64)
    report = abcparam.convert(model, abcparam.mup(64, 16), base=ThreeQuarters(128))
    assert roles(report) == {"inp": "input"} and type(model.mid) is nn.Linear and type(model.out) is nn.Linear
    # so is the readout from those 48 features: both marked in place with the role the base gives
    assert {("mid.weight", "hidden", (48, 64)), ("out.weight", "output", (2, 48))} <= set(report.raw)
    assert "the base build gives it" in dict(report.notes)["mid"]
    assert model.mid.weight.std().item() == pytest.approx(1 / 8, rel=0.05)  # redrawn: fan-in 64, muP's hidden scale


def test_widths_may_be_any_iterable():
    by_generator = roles(abcparam.convert(Tiny(d=64, ff=192), abcparam.mup(64, 16), widths=(w for w in (64, 192))))
    assert by_generator["block.up"] == "hidden" and by_generator["head"] == "output"


class _StateSpaceToy(nn.Module):
    """In-projection to n + 2 d channels (a state-space layer's x, B and C), a depthwise convolution over them, and a
    readout: the channel count moves in another ratio than the width's."""

    def __init__(self, n, d=8):
        super().__init__()
        self.inp = nn.Linear(6, n)
        self.up = nn.Linear(n, n)
        self.conv = nn.Conv1d(n + 2 * d, n + 2 * d, 3, groups=n + 2 * d, padding=2)
        self.out = nn.Linear(n, 3)


def test_a_depthwise_convolution_over_channels_moving_in_another_ratio_is_vector_like_and_a_dense_one_is_refused():
    model, base = _StateSpaceToy(64), _StateSpaceToy(128)
    report = abcparam.convert(model, abcparam.mup(64, 32), base=base)
    assert isinstance(model.conv, abcparam.Conv1d) and model.conv.role == "vector" and model.conv.groups == 80
    assert {(c.name, c.role) for c in report.converted} >= {("inp", "input"), ("up", "hidden"), ("conv", "vector"), ("out", "output")}
    dense = _StateSpaceToy(64)
    dense.conv = nn.Conv1d(80, 80, 3, padding=2)  # not depthwise: its fan-in moves in the odd ratio too
    other = _StateSpaceToy(128)
    other.conv = nn.Conv1d(144, 144, 3, padding=2)
    before = [t.clone() for t in dense.state_dict().values()]
    with pytest.raises(ValueError, match=r"conv\.weight dim 0 \(5/9\).*change\(s\) in another ratio"):
        abcparam.convert(dense, abcparam.mup(64, 32), base=other)
    assert all(torch.equal(a, b) for a, b in zip(before, dense.state_dict().values()))  # nothing changed
