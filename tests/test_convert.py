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
    assert roles == {"emb": "input", "block.up": "hidden", "block.down": "hidden", "head": "output", "block.norm": "vector"}
    assert isinstance(model.block["norm"], abcparam.LayerNorm)  # its gain and bias are vector-like now
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
    assert [c.name for c in report.converted] == ["emb", "block.up", "head", "block.norm"]
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
    with pytest.raises(ValueError, match="'blocks.*' match no module"):
        abcparam.convert(model, abcparam.mup(64, 16), roles={"blocks.*": "hidden"})
    with pytest.raises(ValueError, match="init: got 'copy'"):
        abcparam.convert(model, abcparam.mup(64, 16), widths=[64, 128], init="copy")
    assert {n: type(m) for n, m in model.named_modules()} == before


def test_converted_model_trains_with_wrap():
    model = Tiny()
    abcparam.convert(model, abcparam.mup(64, 16), widths=[64, 128])
    with pytest.warns(UserWarning, match=r"2 parameter\(s\) .*: side.weight, side.bias"):
        opt = abcparam.wrap(torch.optim.AdamW(model.parameters(), lr=1e-3), model)
    idx = torch.randint(0, 50, (4, 6))
    loss = nn.functional.cross_entropy(model(idx).flatten(0, 1), idx.flatten())
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)


def test_to_torch_computes_the_same_function_and_back():
    p = abcparam.mup(256, 64)  # TP4: hidden multiplier 1, readout m^-1/2, input folded
    net = abcparam.models.MLP(6, 256, 3, depth=3, param=p)
    x = torch.randn(5, 6)
    naive = abcparam.to_torch(net)
    naive.load_state_dict(net.state_dict())  # plain modules holding the raw stored tensors
    assert not torch.allclose(naive(x), net(x), atol=1e-3)  # the raw state_dict computes something else (m != 1)
    plain = abcparam.to_torch(net)
    assert not abcparam.abc_modules(plain) and type(plain.layers[3]) is nn.Linear
    torch.testing.assert_close(plain(x), net(x), rtol=1e-6, atol=1e-7)
    assert abcparam.abc_modules(net)  # the model itself is untouched
    back = abcparam.models.MLP(6, 256, 3, depth=3, param=p)
    abcparam.from_torch(back, plain)
    torch.testing.assert_close(back(x), net(x), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(back.layers[3].weight, net.layers[3].weight)
    with pytest.raises(ValueError, match="keys differ"):
        abcparam.from_torch(back, {"layers.0.weight": torch.zeros(256, 6)})
    before = back.layers[0].weight.detach().clone()
    bad = dict(plain.state_dict())
    bad["layers.3.weight"] = torch.zeros(4, 256)
    with pytest.raises(ValueError, match="layers.3.weight has shape"):
        abcparam.from_torch(back, bad)
    assert torch.equal(back.layers[0].weight, before)  # nothing changed


def test_to_torch_with_a_tied_readout():
    p = abcparam.mup(64, 16, form="table8")
    model = abcparam.models.TinyTransformer(30, 64, param=p, tie=True, context=8)
    with pytest.raises(ValueError, match="untie=True"):
        abcparam.to_torch(model)
    plain = abcparam.to_torch(model, untie=True)
    idx = torch.randint(0, 30, (2, 8))
    torch.testing.assert_close(plain(idx), model(idx), rtol=1e-6, atol=1e-6)
    other = abcparam.models.TinyTransformer(30, 64, param=p, tie=True, context=8)
    abcparam.from_torch(other, plain)
    torch.testing.assert_close(other(idx), model(idx), rtol=1e-6, atol=1e-6)
    sd = plain.state_dict()
    sd["head.weight"] = sd["head.weight"] + 1.0  # the two plain copies of the tied table disagree
    with pytest.raises(ValueError, match="one tied tensor"):
        abcparam.from_torch(other, sd)


def test_convert_keeps_dtype_device_padding_and_layer_options():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(40, 64, padding_idx=3, max_norm=2.0, norm_type=1.5, scale_grad_by_freq=True)
            self.up = nn.Linear(64, 128, bias=False)
            self.head = nn.Linear(64, 10)

    model = M().to(torch.float64)
    abcparam.convert(model, abcparam.mup(64, 16), widths=[64, 128])
    e, up, head = model.emb, model.up, model.head
    assert isinstance(e, abcparam.Embedding) and isinstance(up, abcparam.Linear) and isinstance(head, abcparam.Linear)
    assert (e.padding_idx, e.max_norm, e.norm_type, e.scale_grad_by_freq) == (3, 2.0, 1.5, True)
    assert torch.all(e.weight[3] == 0)
    assert up.bias is None and head.bias is not None
    for mod in (e, up, head):
        assert mod.weight.dtype == torch.float64 and mod.weight.device.type == "cpu"
    assert head.bias.dtype == torch.float64
    meta = M().to("meta")
    abcparam.convert(meta, abcparam.mup(64, 16), widths=[64, 128])
    assert meta.up.weight.device.type == "meta"


def test_init_rule_reinit_says_so_and_keep_computes_the_same_function():
    torch.manual_seed(0)
    model = Tiny()
    idx = torch.randint(0, 50, (2, 5))
    before = model(idx)
    kept = abcparam.convert(model, abcparam.mup(64, 16), widths=[64, 128], init="keep")
    torch.testing.assert_close(model(idx), before)  # the same function at this width (muP multipliers included)
    assert "previous weights of 4 layer(s) kept" in str(kept)
    fresh = abcparam.convert(Tiny(), abcparam.mup(64, 16), widths=[64, 128])
    assert "4 layer(s) re-initialised by the parametrization, their previous weights replaced" in str(fresh)


class _Tied(nn.Module):
    def __init__(self, vocab=50, d=64):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.mid = nn.Linear(d, d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.emb.weight  # the usual tie

    def forward(self, idx):
        return self.head(torch.tanh(self.mid(self.emb(idx))))


def test_a_tied_readout_becomes_a_tied_readout_or_is_refused():
    model = _Tied()
    report = abcparam.convert(model, abcparam.mup(64, 16, form="table8"), widths=[64])
    assert isinstance(model.head, abcparam.TiedReadout) and model.head.weight is model.emb.weight
    assert ("head", "output") in [(c.name, c.role) for c in report.converted]
    assert model(torch.randint(0, 50, (2, 3))).shape == (2, 3, 50)
    sp = _Tied()
    with pytest.raises(ValueError, match="tied to the embedding 'emb'.*form='table8'"):
        abcparam.convert(sp, abcparam.sp(64, 16), widths=[64])
    assert type(sp.head) is nn.Linear and sp.head.weight is sp.emb.weight  # untouched


class _Odd(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(64))
        self.conv = nn.ConvTranspose1d(64, 64, 1)  # transposed convolutions: not converted
        self.mha = nn.MultiheadAttention(64, 4, kdim=32, vdim=32)  # keys of another size: not supported
        self.sub = _MyLinear(64, 64)


class _MyLinear(nn.Linear):
    def forward(self, x):
        return super().forward(x) * 2


def test_every_tensor_holding_module_left_alone_is_reported():
    report = abcparam.convert(_Odd(), abcparam.mup(64, 16), widths=[64])
    why = dict(report.skipped)
    # the root's own per-channel tensor, and the subclass whose forward doubles its output: marked in place
    assert sorted(report.raw) == [("scale", "vector", (64,)), ("sub.bias", "vector", (64,)), ("sub.weight", "hidden", (64, 64))]
    assert "ConvTranspose1d holds tensors of its own (weight, bias)" in why["conv"]
    assert "kdim/vdim other than embed_dim: not supported" in why["mha"]
    assert "_MyLinear is a subclass of nn.Linear" in dict(report.notes)["sub"] and "its forward kept" in str(report)


class Conv1D(nn.Module):
    """HF transformers' Conv1D (GPT-2), written here by structure: weight nx x nf, x @ W + b."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.02)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).reshape(*x.shape[:-1], self.nf)


class _GPT2ish(nn.Module):
    def __init__(self, d=64):
        super().__init__()
        self.wte = nn.Embedding(50, d)
        self.c_attn = Conv1D(3 * d, d)
        self.c_proj = Conv1D(d, 3 * d)
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, 50, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx):
        h = self.wte(idx)
        h = h + self.c_proj(torch.tanh(self.c_attn(h)))
        return self.lm_head(self.ln_f(h))


def test_hf_conv1d_is_converted_by_structure_keeping_its_layout():
    torch.manual_seed(0)
    model = _GPT2ish()
    idx = torch.randint(0, 50, (2, 5))
    before, keys = model(idx), {k: v.shape for k, v in model.state_dict().items()}
    report = abcparam.convert(model, abcparam.mup(64, 16, form="table8"), widths=[64, 192], init="keep")
    roles = {c.name: (c.kind, c.role) for c in report.converted}
    assert roles["c_attn"] == ("Conv1D", "hidden") and roles["c_proj"] == ("Conv1D", "hidden")
    assert roles["lm_head"] == ("Linear (tied)", "output") and roles["ln_f"][1] == "vector"
    assert isinstance(model.c_attn, abcparam.layers.Conv1D) and isinstance(model.lm_head, abcparam.TiedReadout)
    assert {k: v.shape for k, v in model.state_dict().items()} == keys  # a GPT-2 checkpoint still loads
    torch.testing.assert_close(model(idx), before)  # init='keep': the same function
    assert set(model.c_attn._weight_scales.width_dims) == {0, 1}
    assert abcparam.layers.Conv1D(16, 64, role="input", param=abcparam.mup(64, 16))._weight_scales.width_dims == (1,)
    eff = abcparam.effective_state_dict(model)
    assert eff["c_attn.weight"].shape == (64, 192)
    with pytest.raises(ValueError, match="Conv1D layout"):
        abcparam.to_torch(model)


def test_a_converted_transformer_encoder_layer_is_kept_off_torchs_fused_path():
    torch.manual_seed(0)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(64, 4, 256, dropout=0.0, batch_first=True), 2,
                                enable_nested_tensor=False)
    report = abcparam.convert(enc, abcparam.ntk(64, 16), roles={"layers.*.linear*": "hidden"})  # NTK: multiplier m^-1/2
    assert any("fused inference path disabled" in why for _, why in report.skipped)
    x = torch.randn(3, 5, 64)
    enc.train()
    train_out = enc(x)
    enc.eval()
    with torch.no_grad():
        eval_out = enc(x)
    torch.testing.assert_close(eval_out, train_out.detach())  # the eval (fused) path would differ by ~10 here
    buf = __import__("io").BytesIO()
    torch.save(enc, buf)  # the hook is a plain object: the model still pickles


def test_a_transformer_encoder_converts_whole_and_keeps_its_function():
    torch.manual_seed(0)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(64, 4, 256, dropout=0.0, batch_first=True), 2,
                                enable_nested_tensor=False)
    x = torch.randn(3, 5, 64)
    enc.eval()
    with torch.no_grad():
        before = enc(x)
    keys = {k: v.shape for k, v in enc.state_dict().items()}
    report = abcparam.convert(enc, abcparam.ntk(64, 16), widths=[64, 256], init="keep")
    kinds = {c.name: c.kind for c in report.converted}
    assert kinds["layers.0.self_attn"] == "MultiheadAttention" and kinds["layers.1.norm2"] == "LayerNorm"
    assert {k: v.shape for k, v in enc.state_dict().items()} == keys
    with torch.no_grad():
        torch.testing.assert_close(enc(x), before, rtol=1e-5, atol=1e-5)  # the same function, NTK multipliers and all
    enc.train()
    torch.testing.assert_close(enc(x).detach(), before, rtol=1e-5, atol=1e-5)
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("error")  # every tensor is owned: wrap does not warn
        abcparam.wrap(torch.optim.AdamW(enc.parameters(), lr=1e-3), enc)


class _MarkerLinear(nn.Linear):
    """A subclass that only marks the class (as torch's NonDynamicallyQuantizableLinear does)."""


def test_a_subclass_that_keeps_linears_forward_is_converted():
    model = nn.Sequential(nn.Linear(8, 64), nn.Tanh(), _MarkerLinear(64, 64), nn.Tanh(), _MyLinear(64, 4))
    report = abcparam.convert(model, abcparam.mup(64, 16), widths=[64])
    assert {c.name: c.kind for c in report.converted} == {"0": "Linear", "2": "_MarkerLinear"}
    assert isinstance(model[2], abcparam.Linear) and model[2].role == "hidden"
    assert isinstance(model[4], _MyLinear)  # its own forward kept: its tensors marked in place, and said why
    assert ("4.weight", "output", (4, 64)) in report.raw and "with behaviour of its own" in dict(report.notes)["4"]


def test_several_readouts_inferred_from_widths_are_refused_before_any_change():
    # grouped keys/values half the width, with only the width named: they would silently become readouts
    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v = nn.Linear(64, 64), nn.Linear(64, 32), nn.Linear(64, 32)
            self.head = nn.Linear(64, 10)

    model = Attn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"widths: 3 layers would be readouts .*k, v, head.*add their output size\(s\) \[10, 32\]"):
        abcparam.convert(model, abcparam.mup(64, 16), widths=[64])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and type(model.k) is nn.Linear
    report = abcparam.convert(model, abcparam.mup(64, 16), widths=[64, 32])
    assert {c.name: c.role for c in report.converted} == {"q": "hidden", "k": "hidden", "v": "hidden", "head": "output"}


class CausalSelfAttention(nn.Module):
    """nanoGPT's attention: one qkv projection, F.scaled_dot_product_attention with its default 1/sqrt(d_head)."""

    def __init__(self, n):
        super().__init__()
        self.c_attn, self.c_proj, self.n_head = nn.Linear(n, 3 * n), nn.Linear(n, n), 4

    def forward(self, x):
        b, t, n = x.shape
        q, k, v = self.c_attn(x).view(b, t, 3, self.n_head, n // self.n_head).permute(2, 0, 3, 1, 4)
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, n))


def test_attention_convert_cannot_reach_is_reported():
    model = nn.Sequential(nn.Embedding(50, 64), CausalSelfAttention(64), nn.Linear(64, 50))
    report = abcparam.convert(model, abcparam.mup(64, 16, form="table8"), widths=[64, 192])
    why = dict(report.skipped)
    assert "CausalSelfAttention looks like attention, but exposes no scale" in why["1"]
    assert {c.name for c in report.converted} == {"0", "1.c_attn", "1.c_proj", "2"}  # its projections are converted
    mha = nn.Sequential(nn.MultiheadAttention(64, 4))
    assert not abcparam.convert(mha, abcparam.mup(64, 16), widths=[64]).skipped  # torch's MHA is reached: replaced
