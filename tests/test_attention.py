"""Attention's scale (docs/theory.md section 14): the module, the parametrization's number, the exact observation of
any model's F.scaled_dot_product_attention scale, and the coordinate check that fails a 1/sqrt(d_head) transformer."""

import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import abcparam
from abcparam.check import stats as coord_stats
from abcparam.attention import ScaleObserver, ScaledDotProductAttention, classify_attention, scale_exponent
from abcparam.models import TinyTransformer


def test_presets_carry_their_attention_exponent_and_scale():
    assert abcparam.mup(256, 64).attention == 1 and abcparam.mup(256, 64, form="table8").attention == 1
    assert abcparam.sp(256, 64).attention == Fraction(1, 2) and abcparam.ntk(256, 64).attention == Fraction(1, 2)
    assert abcparam.up(0, 256, 64).attention == 1 and abcparam.up("1/4", 256, 64).attention == Fraction(1, 2)
    assert abcparam.parametrization(input=(0, 0, 0, 0), output=(0, "1/2", 0, 0), attention=1).attention == 1
    # muP: 1/d_head normalised to the usual 1/sqrt(d_head_0) at base width (d_head_0 = d_head / m)
    for d in (16, 64):
        assert abcparam.mup(256, 64).attention_scale(d) == pytest.approx(math.sqrt(d / 4) / d)
        assert abcparam.mup(64, 64).attention_scale(d) == pytest.approx(1 / math.sqrt(d))
        assert abcparam.sp(256, 64).attention_scale(d) == pytest.approx(1 / math.sqrt(d))
    assert abcparam.mup(256, 64).attention_scale(64, alpha=2.0) == pytest.approx(2 * 4 / 64)


def test_the_module_is_torchs_kernel_with_the_scale():
    p = abcparam.mup(256, 64)
    attn = ScaledDotProductAttention(64, param=p)
    q, k, v = (torch.randn(2, 4, 5, 64) for _ in range(3))
    torch.testing.assert_close(attn(q, k, v, is_causal=True), F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.0625))
    assert "scale=0.0625 (~ d_head^-1)" in repr(attn) and list(attn.state_dict()) == []
    with pytest.raises(ValueError, match="head dimension 32"):
        attn(q[..., :32], k[..., :32], v[..., :32])
    with pytest.raises(TypeError, match="param"):
        ScaledDotProductAttention(64, param=None)


def test_the_verdict_on_a_scale():
    assert (classify_attention(1).stable, classify_attention(1).nontrivial) == (True, True)
    bad = classify_attention("1/2")
    assert (bad.stable, bad.logit_init, bad.logit_change) == (False, 0, Fraction(1, 2)) and "blow up" in bad.reason
    assert not classify_attention(2).nontrivial and "stops learning" in classify_attention(2).reason


def test_the_observer_sees_every_call_and_its_scale():
    q = torch.randn(1, 2, 3, 16)
    with ScaleObserver() as seen:
        F.scaled_dot_product_attention(q, q, q)
        F.scaled_dot_product_attention(q, q, q, scale=0.5)
    assert seen.calls == [(16, 0.25), (16, 0.5)]
    # exponents across widths: exact powers snap to fractions; anything else is not a power
    assert scale_exponent([[(16, 0.25)], [(64, 0.125)]])[0][0] == Fraction(1, 2)
    assert scale_exponent([[(16, 1 / 16)], [(64, 1 / 64)], [(256, 1 / 256)]])[0][0] == 1
    assert scale_exponent([[(16, 0.3)], [(64, 0.1)], [(256, 0.09)]])[0][0] is None
    assert scale_exponent([[(16, 0.25)], [(16, 0.25)]])[0][0] is None  # fixed head dimension


TOKENS = torch.randint(0, 50, (8, 16), generator=torch.Generator().manual_seed(0))


def lm_loss(out, y):
    return nn.functional.cross_entropy(out[:, :-1].reshape(-1, 50), TOKENS[:, 1:].reshape(-1))


@pytest.mark.parametrize("mup_attention", [True, False])
def test_coord_check_fails_a_transformer_with_the_wrong_attention_scale(mup_attention):
    r = abcparam.coord_check(lambda n: TinyTransformer(50, n, param=abcparam.mup(n, 64), context=16, mup_attention=mup_attention),
                             [64, 128, 256, 512], TOKENS, optimizer=torch.optim.Adam, lr=1e-2, loss=lm_loss)
    rows = [f for f in r.fits if f.quantity == "scale"]
    assert len(rows) == 2 and all(f.predicted == -1 for f in rows)  # two blocks, muP declares d_head^-1
    if mup_attention:
        assert r.status == "pass" and all(f.status == "agree" and f.ok is True and f.slope == -1 for f in rows), str(r)
    else:
        assert r.status == "fail" and all(f.status == "disagree" and f.ok is False and f.slope == -0.5 for f in rows), str(r)
        assert rows[0] in r.mismatches and r.to_dict()["fits"][r.fits.index(rows[0])]["ok"] is False
        assert "blow up" in str(r)


class _Heads(nn.Module):
    """Attention built on abcparam.ScaledDotProductAttention, heads of a fixed size or of a width-sized one."""

    def __init__(self, width, param, fixed_head):
        super().__init__()
        self.heads = width // 16 if fixed_head else 4
        d = width // self.heads
        self.inp = abcparam.Embedding(50, width, param=param)
        self.qkv = abcparam.Linear(width, 3 * width, param=param)
        self.attn = ScaledDotProductAttention(d, param=param if not fixed_head else abcparam.mup())
        self.out = abcparam.Linear(width, 50, role="output", param=param)

    def forward(self, idx):
        h = self.inp(idx)
        b, t, w = h.shape
        q, k, v = self.qkv(h).view(b, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        return self.out(h + self.attn(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, w))


def test_coord_check_reads_the_modules_scale_and_skips_fixed_heads():
    for fixed in (False, True):
        r = abcparam.coord_check(lambda n: _Heads(n, abcparam.mup(n, 64), fixed), [64, 128, 256, 512], TOKENS,
                                 optimizer=torch.optim.Adam, lr=1e-2, loss=lm_loss)
        (row,) = [f for f in r.fits if f.quantity == "scale"]
        assert row.status == ("-" if fixed else "agree"), str(r)
        if fixed:  # nothing to compare, and the row says why
            assert row.slope == 0.0 and row.margin == 0.0 and "does not change" in row.reason, row


@pytest.mark.parametrize("batch_first", [False, True])
def test_multihead_attention_is_torchs_at_m1_for_every_mask(batch_first):
    from abcparam.attention import MultiheadAttention

    torch.manual_seed(0)
    ref = nn.MultiheadAttention(64, 4, batch_first=batch_first)
    mine = MultiheadAttention(64, 4, batch_first=batch_first, param=abcparam.sp())
    assert list(mine.state_dict()) == list(ref.state_dict())  # the same keys: torch checkpoints load
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(3, 5, 64) if batch_first else torch.randn(5, 3, 64)
    kpm = torch.zeros(3, 5, dtype=torch.bool)
    kpm[0, -2:] = True
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)
    cases = [{}, {"key_padding_mask": kpm}, {"attn_mask": causal}, {"attn_mask": causal.float() * -1e4},
             {"attn_mask": causal, "key_padding_mask": kpm}, {"need_weights": False}, {"average_attn_weights": False},
             {"need_weights": False, "key_padding_mask": kpm}]
    for kw in cases:
        (a, wa), (b, wb) = ref(x, x, x, **kw), mine(x, x, x, **kw)
        torch.testing.assert_close(b, a, msg=str(kw))
        assert (wa is None) == (wb is None)
        if wa is not None:
            torch.testing.assert_close(wb, wa, msg=str(kw))


def test_multihead_attention_scales_with_its_parametrization_and_refuses_what_it_lacks():
    from abcparam.attention import MultiheadAttention

    p = abcparam.ntk(256, 64)
    mha = MultiheadAttention(256, 4, param=p)
    assert mha.scale == pytest.approx(1 / math.sqrt(64)) and mha.in_proj_multiplier == pytest.approx(0.5)
    assert mha.out_proj.weight_multiplier == pytest.approx(0.5) and "in_proj multiplier=0.5" in repr(mha)
    opt = abcparam.wrap(torch.optim.Adam(mha.parameters(), lr=1e-3), mha)  # every tensor owned: no warning
    assert {g["abc_role"] for g in opt.param_groups} <= {"hidden", "vector", "mixed"}
    with pytest.raises(ValueError, match="add_bias_kv"):
        MultiheadAttention(64, 4, add_bias_kv=True, param=p)
    with pytest.raises(ValueError, match="kdim, vdim"):
        MultiheadAttention(64, 4, kdim=32, param=p)
    with pytest.raises(ValueError, match="must divide"):
        MultiheadAttention(64, 5, param=p)


class _TiedNoResidual(nn.Module):
    """Embedding -> a hidden layer -> tied readout, with no residual path: the readout's input does not carry the
    input token's embedding."""

    def __init__(self, width, param):
        super().__init__()
        self.tok = abcparam.Embedding(50, width, param=param)
        self.mid = abcparam.Linear(width, width, param=param)
        self.head = abcparam.TiedReadout(self.tok, param=param)

    def forward(self, idx):
        return self.head(torch.tanh(self.mid(torch.tanh(self.tok(idx)))))


def _own_rows(r):
    return {(f.layer, f.quantity): f for f in r.fits if f.step == 0 and f.role == "output"}


def test_a_tied_readouts_logits_are_split_by_token_at_initialisation():
    # residual stream: the input token's own logit is Theta(1), the others n^-1/2 (docs/theory.md section 14); before
    # the split the RMS over all logits read -0.16 against -1/2 and the correct model failed
    build = lambda n: TinyTransformer(50, n, param=abcparam.mup(n, 64, form="table8"), context=16, tie=True)  # noqa: E731
    r = abcparam.coord_check(build, [64, 128, 256, 512], TOKENS, optimizer=torch.optim.AdamW, lr=1e-2, loss=lm_loss, steps=1)
    rows = _own_rows(r)
    other, own = rows[("head", "h")], rows[("head", "h_own")]
    assert other.predicted == Fraction(-1, 2) and other.predicted_low is None and abs(other.slope + 0.5) < 0.05, str(r)
    assert (own.predicted_low, own.predicted) == (Fraction(-1, 2), 0) and abs(own.slope) < 0.1, str(r)
    assert own.status == other.status == "agree" and rows[("output", "f_own")].status == "agree"
    assert "-1/2..0" in str(r) and r.to_dict()["fits"][[f.quantity for f in r.fits].index("h_own")]["predicted_low"] == "-1/2"
    # the old statistic on the same tables: the RMS over every logit falls far slower than n^-1/2
    everything = [[(a ** 2 * 49 / 50 + b ** 2 / 50) ** 0.5 for a, b in zip(x, y)]
                  for x, y in zip(r.rms[("head", "h", 0)], r.rms[("head", "h_own", 0)])]
    assert abs(coord_stats.fit_slope(r.widths, everything)[0] + 0.5) > 0.2


def test_without_a_residual_path_the_own_logit_sits_at_the_low_end_and_agrees():
    r = abcparam.coord_check(lambda n: _TiedNoResidual(n, abcparam.mup(n, 64, form="table8")), [64, 128, 256, 512], TOKENS,
                             optimizer=torch.optim.AdamW, lr=1e-2, loss=lm_loss, steps=1)
    own = _own_rows(r)[("head", "h_own")]
    assert own.slope < -0.3 and own.status == "agree", str(r)


def test_an_untied_readout_is_not_split():
    build = lambda n: TinyTransformer(50, n, param=abcparam.mup(n, 64), context=16)  # noqa: E731
    r = abcparam.coord_check(build, [64, 128, 256], TOKENS, optimizer=torch.optim.AdamW, lr=1e-2, loss=lm_loss, steps=1)
    assert not [f for f in r.fits if f.quantity.endswith("_own")]


class _AttentionOnlyWhenSmall(nn.Module):
    """Calls F.scaled_dot_product_attention at the smallest width only: the number of calls changes with width."""

    def __init__(self, width, param):
        super().__init__()
        self.width = width
        self.inp = abcparam.Embedding(50, width, param=param)
        self.out = abcparam.Linear(width, 50, role="output", param=param)

    def forward(self, idx):
        h = self.inp(idx)
        if self.width == 64:
            q = h.view(*h.shape[:2], 4, -1).transpose(1, 2)
            h = h + F.scaled_dot_product_attention(q, q, q, scale=1.0 / q.shape[-1]).transpose(1, 2).reshape(h.shape)
        return self.out(h)


def test_attention_calls_that_change_in_number_with_width_make_the_check_inconclusive():
    r = abcparam.coord_check(lambda n: _AttentionOnlyWhenSmall(n, abcparam.mup(n, 64)), [64, 128, 256], TOKENS,
                             optimizer=torch.optim.Adam, lr=1e-2, loss=lm_loss, steps=1, seeds=[0], budget=0)  # one pass
    (row,) = [f for f in r.fits if f.quantity == "scale"]
    assert row.layer == "attention" and row.status == "inconclusive" and math.isnan(row.slope)
    assert "the number of attention calls changes with width" in str(r) and r.status == "inconclusive", str(r)


def test_module_scales_reads_each_attention_modules_head_size_and_scale_in_module_order():
    from torch import nn as tnn

    from abcparam.attention import HEAD_SIZES, module_scales

    class Eager(tnn.Module):  # computes its logits inline, as HF's eager attention does
        def __init__(self, name, d, scaling):
            super().__init__()
            setattr(self, name, d)
            self.scaling = scaling

    model = tnn.Sequential(*(Eager(name, 8 * (k + 1), 0.5 / (k + 1)) for k, name in enumerate(HEAD_SIZES)),
                           Eager("head_dim", True, 0.1), Eager("head_dim", 16, 1))  # a bool size, an int scale: skipped
    assert module_scales(model) == [(8 * (k + 1), 0.5 / (k + 1)) for k in range(len(HEAD_SIZES))]
    assert module_scales(tnn.Linear(2, 2)) == []
