"""abcparam.inspect: the parametrization of unmodified model code, inferred and classified (docs/theory.md section 15).

Expectations are written from the code under test's inputs, not from inspect: nn.Linear's init
(kaiming-uniform, std ~ fan_in^-1/2), HF's fixed initializer_range, microsoft/mup's MuReadout and MuAdam
rules, an abcparam parametrization's declared exponents.
"""

import json
import os
import subprocess
import sys
from fractions import Fraction

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings, strategies as st

import abcparam
from abcparam import theory
from abcparam.cli import main
from abcparam.testing import assert_inferred_regime

HALF = Fraction(1, 2)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def plain_mlp(n):
    return nn.Sequential(nn.Linear(16, n), nn.ReLU(), nn.Linear(n, n), nn.ReLU(), nn.Linear(n, 4))


def exps(result, tensor, module=None):
    u = result.use(tensor, module)
    return u.role, u.a.value, u.b.value, u.c.value


@pytest.mark.parametrize("opt, family", [(torch.optim.Adam, "adam"), (torch.optim.SGD, "sgd")])
def test_plain_mlp_is_sp_and_unstable_with_reasons(opt, family):
    r = abcparam.inspect(plain_mlp, optimizer=opt, lr=1e-3, widths=[64, 128, 256])
    # nn.Linear: no multiplier, std ~ fan_in^-1/2, one learning rate
    assert exps(r, "0.weight") == ("input", 0, 0, 0)
    assert exps(r, "2.weight") == ("hidden", 0, HALF, 0)
    assert exps(r, "4.weight") == ("output", 0, HALF, 0)
    assert exps(r, "0.bias")[0] == "vector" and exps(r, "4.bias")[0] == "fixed"
    assert {u.family for u in r.uses} == {family}
    assert r.preset == "sp" and r.sp_like
    assert r.regime == "unstable" == theory.classify(theory.preset("sp"), optimizer=family).regime
    # the reasons name the tensors to blame
    assert any("2.weight" in x and "blows up" in x for x in r.reasons)
    assert any("readout (4.weight)" in x for x in r.reasons)
    assert "unstable" in str(r) and "2.weight" in str(r)


def test_abcparam_mlp_converted_to_mup_is_feature_learning():
    def build(n):
        m = plain_mlp(n)
        abcparam.convert(m, abcparam.mup(n, 64), widths=[n])
        return m

    r = assert_inferred_regime(build, "feature_learning", optimizer=torch.optim.Adam, lr=1e-3)
    assert r.preset == "mup" and not r.sp_like
    with pytest.raises(AssertionError, match="unstable"):
        assert_inferred_regime(plain_mlp, "feature_learning", optimizer=torch.optim.Adam, lr=1e-3)


def test_microsoft_mup_is_inferred_as_mup():
    mup = pytest.importorskip("mup")

    def mlp(n):
        return nn.Sequential(nn.Linear(16, n), nn.ReLU(), nn.Linear(n, n), nn.ReLU(), mup.MuReadout(n, 4))

    base, delta = mlp(64), mlp(128)

    def build(n):
        m = mlp(n)
        mup.set_base_shapes(m, base, delta=delta)
        return m

    r = abcparam.inspect(build, optimizer=lambda ps, lr: mup.MuAdam(ps, lr=lr), lr=1e-3, widths=[64, 128, 256])
    # MuReadout divides by width_mult (a = 1) and set_base_shapes rescales its init by width_mult^1/2 (b = 0);
    # MuAdam divides the rate of matrix-like tensors by width_mult (c = 1 for the hidden layer)
    assert exps(r, "4.weight") == ("output", 1, 0, 0)
    assert exps(r, "2.weight") == ("hidden", 0, HALF, 1)
    assert exps(r, "0.weight") == ("input", 0, 0, 0)
    assert r.regime == "feature_learning" and r.preset == "mup"
    r = abcparam.inspect(build, optimizer=lambda ps, lr: mup.MuSGD(ps, lr=lr), lr=1e-1, widths=[64, 128, 256])
    assert r.regime == "feature_learning" and r.preset == "mup"


def _gpt2(n):
    tr = pytest.importorskip("transformers")
    tr.utils.logging.set_verbosity_error()
    return tr.GPT2LMHeadModel(tr.GPT2Config(n_embd=n, n_layer=2, n_head=2, vocab_size=64, n_positions=32,
                                            bos_token_id=0, eos_token_id=0))


def _llama(n):
    tr = pytest.importorskip("transformers")
    tr.utils.logging.set_verbosity_error()
    return tr.LlamaForCausalLM(tr.LlamaConfig(hidden_size=n, intermediate_size=2 * n, num_hidden_layers=2, num_attention_heads=2,
                                              num_key_value_heads=2, vocab_size=64, bos_token_id=0, eos_token_id=0,
                                              pad_token_id=0))


@pytest.mark.parametrize("build", [_gpt2, _llama], ids=["gpt2", "llama"])
def test_hf_models_are_sp_with_inverse_sqrt_attention(build):
    r = abcparam.inspect(build, optimizer=torch.optim.AdamW, lr=1e-3, widths=[64, 128, 256])
    trained = [u for u in r.uses if u.role != "fixed"]
    assert trained and all(u.a.value == 0 and u.c.value == 0 for u in trained)
    assert r.sp_like and r.regime == "unstable"
    # HF draws every matrix from N(0, initializer_range^2): an init that does not shrink with width (b = 0)
    hidden = [u for u in r.uses if u.role == "hidden"]
    assert hidden and all(u.b.value == 0 for u in hidden)
    assert any("init: beta_2 = a+b = 0 != 1/2" in x for x in r.reasons)
    # two heads whose size grows with width, each scaled by 1/sqrt(d_head)
    assert len(r.attention) == 2 and all(e.value == HALF for _, e, _ in r.attention)
    assert "d_head^-1/2" in r.summary()


def test_a_tied_table_has_an_input_and_an_output_use():
    r = abcparam.inspect(_gpt2, optimizer=torch.optim.AdamW, lr=1e-3, widths=[64, 128, 256])
    roles = {u.module: u.role for u in r.uses if u.tensor == "transformer.wte.weight"}
    assert roles == {"transformer.wte": "input", "lm_head": "output"}


@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("mup_attention", [True, False])
def test_tiny_transformer_attention_and_tie(tie, mup_attention):
    from abcparam.models import TinyTransformer

    def build(n):
        return TinyTransformer(64, n, param=abcparam.mup(n, 64, form="table8" if tie else "tp4"), n_heads=2, tie=tie,
                               mup_attention=mup_attention)

    r = abcparam.inspect(build, optimizer=torch.optim.AdamW, lr=1e-3, widths=[64, 128, 256])
    assert {e.value for _, e, _ in r.attention} == {Fraction(1) if mup_attention else HALF}
    assert r.regime == ("feature_learning" if mup_attention else "unstable")
    if tie:
        assert {u.role for u in r.uses if u.tensor == "tok.weight"} == {"input", "output"}


def test_torch_transformer_encoder_layer():
    def build(n):
        return nn.Sequential(nn.Embedding(32, n), nn.TransformerEncoderLayer(n, 2, 2 * n, dropout=0.0, batch_first=True),
                             nn.Linear(n, 32))

    r = abcparam.inspect(build, optimizer=torch.optim.AdamW, lr=1e-3, widths=[64, 128, 256])
    u = r.use("1.self_attn.in_proj_weight")
    assert u.role == "hidden" and u.a.value == 0 and u.a.how == "measured"
    assert [e.value for _, e, _ in r.attention] == [HALF]
    assert r.regime == "unstable"


def test_muon_hybrid_families_and_rates():
    def opts(params, lr):
        params = list(params)
        mats = [p for p in params if p.dim() == 2 and p.shape[0] == p.shape[1]]
        rest = [p for p in params if not any(p is q for q in mats)]
        return [torch.optim.Muon(mats, lr=lr), torch.optim.AdamW(rest, lr=lr)]

    r = abcparam.inspect(plain_mlp, optimizer=opts, lr=1e-2, widths=[64, 128, 256])
    hidden = r.use("2.weight")
    # torch's Muon factor for a square matrix is 1 ("original"), so c = 0 under the spectral family
    assert hidden.family == "spectral" and hidden.c.value == 0 and r.use("0.weight").family == "adam"
    v = theory.classify([0, 0, 0], [0, HALF, HALF], [0, 0, 0], optimizer=["adam", "spectral", "adam"])
    assert r.regime == v.regime


def test_batch_runs_the_coordinate_check_on_the_same_builds():
    torch.manual_seed(0)
    batch = (torch.randn(32, 16), torch.randn(32, 4))
    r = abcparam.inspect(plain_mlp, optimizer=torch.optim.Adam, lr=1e-2, widths=[128, 256, 512, 1024], batch=batch)
    assert r.coord is not None and r.coord.verdict.regime == "unstable" and r.coord.measured_regime == "unstable"
    assert r.confirmed is True and "confirms" in str(r)
    # the inline multiplier no probe sees: a readout that scales in forward() is measured by the check
    class Hidden(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.net = plain_mlp(n)

        def forward(self, x):
            return self.net(x) * self.net[0].out_features ** 2  # a multiplier outside any module

    r = abcparam.inspect(Hidden, optimizer=torch.optim.Adam, lr=1e-2, widths=[128, 256, 512, 1024], batch=batch)
    assert r.coord.fits and any(f.layer == "output" and f.slope > 1.5 for f in r.coord.fits)


def _abc_mlp(p, n, fold):
    q = p.at_width(n)
    return nn.Sequential(abcparam.Linear(16, n, role="input", param=q, fold=fold), nn.Tanh(),
                         abcparam.Linear(n, n, role="hidden", param=q), nn.Tanh(),
                         abcparam.Linear(n, 32, role="output", param=q))


@pytest.mark.parametrize("name", ["sp", "sp_inv_n", "ntk", "mup", "mean_field"])
@pytest.mark.parametrize("family", ["sgd", "adam"])
def test_every_preset_round_trips(name, family):
    p = getattr(abcparam, name)(64, 64)
    opt = torch.optim.SGD if family == "sgd" else torch.optim.Adam

    def build(n):
        if p.hidden is None:
            q = p.at_width(n)
            return nn.Sequential(abcparam.Linear(16, n, role="input", param=q, fold=False), nn.Tanh(),
                                 abcparam.Linear(n, 32, role="output", param=q))
        return _abc_mlp(p, n, False)

    r = abcparam.inspect(build, optimizer=opt, lr=1e-3, widths=[64, 128, 256])
    layers = ["0", "2", "4"] if p.hidden is not None else ["0", "2"]
    roles = ["input", "hidden", "output"] if p.hidden is not None else ["input", "output"]
    for layer, role in zip(layers, roles):
        ex = p.role(role)
        assert exps(r, f"{layer}.weight") == (role, ex.a, ex.b, ex.c(family)), (layer, role)
    assert r.regime == p.classify(optimizer=family).regime


frac = st.sampled_from([Fraction(k, d) for d in (1, 2, 4) for k in range(-4 * d // 4, 2 * d + 1)])


@settings(max_examples=12, deadline=None)
@given(a=st.tuples(frac, frac, frac), b=st.tuples(frac, frac, frac), c=st.tuples(frac, frac, frac),
       family=st.sampled_from(["sgd", "adam"]), fold=st.booleans())
def test_random_exponents_are_inferred_exactly(a, b, c, family, fold):
    # b kept where the init is representable at these widths; c per role for the drawn family
    b = tuple(max(x, Fraction(-1)) for x in b)
    roles = {}
    for i, role in enumerate(("input", "hidden", "output")):
        cs = (c[i], 0) if family == "sgd" else (0, c[i])
        roles[role] = (a[i], b[i]) + cs
    p = abcparam.parametrization(**roles, width=64, base_width=64)
    opt = torch.optim.SGD if family == "sgd" else torch.optim.Adam
    r = abcparam.inspect(lambda n: _abc_mlp(p, n, fold), optimizer=opt, lr=1e-3, widths=[64, 128, 256])
    for layer, role in zip("024", ("input", "hidden", "output")):
        got = exps(r, f"{layer}.weight")
        ex = p.role(role)
        if role == "input" and fold:
            # a folded input layer stores its effective weight: the same parametrization in its a = 0 form
            ex = p.canonical().role(role)
        assert got == (role, ex.a, ex.b, ex.c(family)), (layer, got)
        if family == "adam":
            assert r.use(f"{layer}.weight").eps.value == p.eps_exponent(role) + (ex.a - p.role(role).a)


def test_bad_input_is_refused_with_the_argument_named():
    with pytest.raises(ValueError, match="do not change"):
        abcparam.inspect(lambda n: plain_mlp(32), optimizer=torch.optim.Adam, lr=1e-3, widths=[64, 128])
    with pytest.raises(ValueError, match="widths: positive and strictly increasing"):
        abcparam.inspect(plain_mlp, optimizer=torch.optim.Adam, lr=1e-3, widths=[128, 64])
    with pytest.raises(ValueError, match="widths: need at least 2"):
        abcparam.inspect(plain_mlp, optimizer=torch.optim.Adam, lr=1e-3, widths=[64])
    with pytest.raises(TypeError, match="widths"):
        abcparam.inspect(plain_mlp, optimizer=torch.optim.Adam, lr=1e-3, widths=[64.0, 128.0])
    with pytest.raises(ValueError, match="lr"):
        abcparam.inspect(plain_mlp, optimizer=torch.optim.Adam, lr=0.0)
    with pytest.raises(TypeError, match="build"):
        abcparam.inspect(lambda n: "not a model", optimizer=torch.optim.Adam, lr=1e-3)
    with pytest.raises(ValueError, match="different parameters"):
        abcparam.inspect(lambda n: nn.Sequential(*[nn.Linear(n, n) for _ in range(n // 64)]), optimizer=torch.optim.Adam,
                         lr=1e-3, widths=[64, 128])
    with pytest.raises(ValueError, match="at least 3 widths"):
        abcparam.inspect(plain_mlp, optimizer=torch.optim.Adam, lr=1e-3, widths=[64, 128], batch=torch.randn(2, 16))
    with pytest.raises(ValueError, match="L-BFGS|outside the theory"):
        abcparam.inspect(plain_mlp, optimizer=torch.optim.LBFGS, lr=1e-3)


def test_json_round_trips_the_verdict():
    r = abcparam.inspect(plain_mlp, optimizer=torch.optim.Adam, lr=1e-3)
    d = json.loads(r.to_json())
    assert d["regime"] == "unstable" and d["preset"] == "sp"
    row = next(t for t in d["tensors"] if t["tensor"] == "2.weight")
    assert (row["role"], row["b"]["value"], row["c"]["value"]) == ("hidden", "1/2", "0")
    assert theory.Verdict.from_dict(d["verdicts"][0]["verdict"]).regime == "unstable"


def test_cli_inspect(capsys):
    plain = os.path.join(ROOT, "examples", "plain_mlp.py")
    converted = os.path.join(ROOT, "examples", "converted_mlp.py")
    assert main(["inspect", f"{plain}:build", "--optimizer", "adam", "--lr", "1e-3", "--expect", "unstable"]) == 0
    assert "verdict: sp: unstable" in capsys.readouterr().out
    assert main(["inspect", f"{plain}:build", "--optimizer", "adam", "--lr", "1e-3", "--expect", "feature_learning"]) == 1
    capsys.readouterr()
    assert main(["inspect", f"{converted}:build", "--optimizer", "AdamW", "--lr", "1e-3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["regime"] == "feature_learning"
    assert main(["inspect", f"{plain}:nothing", "--optimizer", "adam", "--lr", "1e-3"]) == 2
    assert main(["inspect", f"{plain}:build", "--optimizer", "nosuch", "--lr", "1e-3"]) == 2
    assert "allowed" in capsys.readouterr().err


def test_cli_inspect_as_a_process():
    p = subprocess.run([sys.executable, "-m", "abcparam", "inspect", "examples/plain_mlp.py:build", "--optimizer", "sgd",
                        "--lr", "0.1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "verdict: sp: unstable" in p.stdout


@pytest.mark.parametrize("example, label", [("plain_mlp", "plain PyTorch:"), ("converted_mlp", "converted:")])
def test_the_inspect_guide_shows_the_real_verdicts(example, label, capsys):
    text = open(os.path.join(ROOT, "docs", "guide", "inspect.md"), encoding="utf-8").read()
    start = text.index("```\n", text.index(f"\n{label}\n")) + 4
    shown = text[start:text.index("```", start)]
    assert main(["inspect", os.path.join(ROOT, "examples", f"{example}.py:build"), "--optimizer", "adam", "--lr", "1e-3"]) == 0
    out = capsys.readouterr().out

    def verdict(t):
        return [line for line in t.splitlines() if line.startswith(("verdict:", "  - "))]

    def exponents(t):  # role, a, c, eps of each row (b's residual carries the init's sampling noise)
        rows = [line.split() for line in t.splitlines() if line[:1].isdigit()]
        return [(r[0], r[3], r[4]) for r in rows]

    assert verdict(shown) and verdict(shown) == verdict(out)
    assert exponents(shown) == exponents(out)


def test_frozen_tensors_are_left_out_of_the_verdict_and_said_so():
    def build(n):
        m = plain_mlp(n)
        m[0].bias.requires_grad_(False)
        return m

    def opt(params, lr):
        params = [p for p in params if p.requires_grad]
        return torch.optim.Adam([{"params": params[:-1]}, {"params": params[-1:], "lr": 0.0}], lr=lr)

    r = abcparam.inspect(build, optimizer=opt, lr=1e-3)
    assert str(r.use("0.bias").c) == "not trained" and str(r.use("4.bias").c) == "not trained"
    assert r.regime == "unstable" and any("0.bias is not trained" in n for n in r.notes)
