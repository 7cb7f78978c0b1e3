"""Depth as a second axis (docs/theory.md section 12): the depth rule in the parametrization, Residual branches,
their training factors, the exact depth verdict and the depth coordinate check with its mutants."""

import copy
import io
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import abcparam
from abcparam.theory.depth import classify_depth, depth_lr_exponent
from abcparam.check.depth import depth_check
from abcparam.models import ResidualMLP, TinyTransformer

H = Fraction(1, 2)


# ---------------------------------------------------------------------------
# The exact depth verdict
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("alpha, optimizer, lr_exp, regime, stream, change, block", [
    # section 12's table: no scaling, Depth-muP, CompleteP; under Adam and SGD
    (0, "adam", 0, "unstable", H, 1, 0),
    (H, "adam", None, "lazy", 0, 0, -H),
    (1, "adam", None, "feature_learning", 0, 0, 0),
    (H, "sgd", None, "lazy", 0, 0, -H),
    (1, "sgd", None, "feature_learning", 0, 0, 0),
    (1, "muon", None, "feature_learning", 0, 0, 0),
    (1, "adam", H, "trivial", 0, -H, -H),          # CompleteP's multiplier with Depth-muP's learning rate
])
def test_depth_verdicts_of_section_12(alpha, optimizer, lr_exp, regime, stream, change, block):
    v = classify_depth(alpha, optimizer=optimizer, lr_exponent=lr_exp)
    assert (v.regime, v.stream_init, v.stream_change, v.block_update) == (regime, stream, change, block)
    assert str(v).startswith("depth verdict:") and v.reasons


def test_rule_learning_rates():
    # Adam-like: L^(alpha - 1); SGD-like: L^(2 alpha - 1) (c_L is minus the exponent)
    assert depth_lr_exponent(1, "adam") == 0 and depth_lr_exponent(H, "adam") == H
    assert depth_lr_exponent(1, "sgd") == -1 and depth_lr_exponent(H, "sgd") == 0


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 4).map(lambda k: Fraction(k, 4)), st.sampled_from(["sgd", "adam", "spectral", "relative"]),
       st.sampled_from([-H, Fraction(-1, 4), Fraction(1, 4), H]))
def test_the_rules_learning_rate_is_the_edge(alpha, family, delta):
    # alpha in [1/2, 1] with its own rate: stable and nontrivial; blocks learn features exactly at alpha = 1
    v = classify_depth(alpha, optimizer=family)
    assert v.stable and v.nontrivial and (v.regime == "feature_learning") == (alpha == 1)
    # a faster block rate blows the stream up, a slower one makes the blocks' updates vanish
    moved = classify_depth(alpha, optimizer=family, lr_exponent=depth_lr_exponent(alpha, family) + delta)
    assert moved.regime == ("unstable" if delta < 0 else "trivial")


# ---------------------------------------------------------------------------
# The parametrization and Residual
# ---------------------------------------------------------------------------


def test_depth_arguments_are_checked_before_anything():
    with pytest.raises(ValueError, match="base_depth: required with depth=8"):
        abcparam.mup(256, 64, depth=8)
    with pytest.raises(ValueError, match="depth: required with base_depth=2"):
        abcparam.mup(256, 64, base_depth=2)
    with pytest.raises(ValueError, match="depth: must be > 0, got 0"):
        abcparam.mup(256, 64, depth=0, base_depth=2)
    with pytest.raises(TypeError, match="depth: expected a positive int"):
        abcparam.mup(256, 64, depth=2.5, base_depth=2)
    with pytest.raises(ValueError, match=r"depth_alpha: got 2; allowed: 1/2 <= alpha <= 1"):
        abcparam.mup(256, 64, depth=8, base_depth=2, depth_alpha=2)
    with pytest.raises(ValueError, match=r"depth_alpha: got 1/4"):
        abcparam.sp(256, 64, depth=8, base_depth=2, depth_alpha="1/4")
    with pytest.raises(ValueError, match=r"^depth_alpha: cannot read 'deep' as an exponent"):  # named, as every refusal
        abcparam.mup(256, 64, depth=8, base_depth=2, depth_alpha="deep")
    p = abcparam.mup(256, 64, depth=8, base_depth=2, depth_alpha="1/4", allow_any_alpha=True)
    assert p.branch_multiplier() == 4 ** -0.25 and p.at_width(512).depth_alpha == Fraction(1, 4)
    assert abcparam.mup(256, 64, depth=8, base_depth=2, depth_alpha="depth_mup").depth_alpha == H
    assert "m_L = 8/2, alpha = 1" in abcparam.mup(256, 64, depth=8, base_depth=2).describe()
    with pytest.raises(TypeError, match="branch: expected an nn.Module"):
        abcparam.Residual(lambda x: x, param=p)
    with pytest.raises(ValueError, match="contains no abcparam layer"):
        abcparam.Residual(nn.Linear(4, 4), param=p)


def _resmlp(blocks, **depth):
    return ResidualMLP(16, 128, 4, blocks=blocks, param=abcparam.mup(128, 64, **depth))


def _train(net, steps=3, opt_cls=torch.optim.Adam, lr=1e-2):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 16, generator=g), torch.randn(32, 4, generator=g)
    opt = abcparam.wrap(opt_cls(net.parameters(), lr=lr), net)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.mse_loss(net(x), y).backward()
        opt.step()
    return net(x)


@pytest.mark.parametrize("opt_cls", [torch.optim.Adam, torch.optim.SGD])
def test_at_base_depth_every_model_is_bit_identical_to_one_without_depth(opt_cls):
    torch.manual_seed(0)
    plain = _resmlp(4)
    torch.manual_seed(0)
    deep = _resmlp(4, depth=4, base_depth=4, depth_alpha=H)
    assert list(plain.state_dict()) == list(deep.state_dict())
    assert torch.equal(_train(plain, opt_cls=opt_cls), _train(deep, opt_cls=opt_cls))


def test_residual_scales_its_branch_and_wrap_gives_tensors_inside_the_depth_factors():
    p = abcparam.mup(128, 64, depth=8, base_depth=2, depth_alpha=H)      # m_L = 4
    torch.manual_seed(0)
    net = _resmlp(8, depth=8, base_depth=2, depth_alpha=H)
    h = torch.randn(3, 128)
    block = net.blocks[0]
    assert block.multiplier == 0.5 and "m_L=8/2, alpha=1/2, multiplier=0.5" in repr(block)
    assert torch.equal(block(h), 0.5 * block.branch(h))
    for family, cls, factor in (("adam", torch.optim.Adam, 0.5), ("sgd", torch.optim.SGD, 1.0)):
        base = abcparam.mup(128, 64)  # the same widths, no depth
        torch.manual_seed(0)
        flat = ResidualMLP(16, 128, 4, blocks=8, param=base)
        opt_flat = abcparam.wrap(cls(flat.parameters(), lr=1e-3), flat)
        opt_deep = abcparam.wrap(cls(net.parameters(), lr=1e-3), net)

        def lr_of(opt, t):
            return next(g for g in opt.param_groups if any(q is t for q in g["params"]))

        pairs = list(zip(flat.named_parameters(), net.named_parameters()))
        for (name, tf), (_, td) in pairs:
            inside = name.startswith("blocks.")
            want = factor if inside else 1.0
            assert lr_of(opt_deep, td)["lr"] == pytest.approx(want * lr_of(opt_flat, tf)["lr"]), (family, name)
            if family == "adam":  # Adam's eps: m_L^-alpha inside the branches
                assert lr_of(opt_deep, td)["eps"] == pytest.approx((0.5 if inside else 1.0) * lr_of(opt_flat, tf)["eps"])
    assert p.depth_lr_scale("sgd") == 1.0 and p.depth_lr_scale("muon") == 0.5


def test_residual_survives_copy_save_and_compile():
    # (also the regression test of a compile bug: inductor fused torch.add(bias, x @ W^T, alpha=wm) into addmm and
    # dropped alpha, so a compiled readout with a bias on 2-D inputs computed bias + x W^T)
    torch.manual_seed(0)
    net = _resmlp(4, depth=4, base_depth=2)
    x = torch.randn(5, 16)
    for other in (copy.deepcopy(net), _reload(net)):
        assert torch.equal(other(x), net(x)) and other.blocks[1].multiplier == net.blocks[1].multiplier == 0.5
    compiled = torch.compile(net, fullgraph=True)
    torch.testing.assert_close(compiled(x), net(x))


def _reload(net):
    buf = io.BytesIO()
    torch.save(net, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def test_mark_branch_scales_in_place_and_keeps_the_keys():
    p = abcparam.mup(128, 64, depth=16, base_depth=4)
    torch.manual_seed(0)
    attn = nn.Sequential(abcparam.Linear(128, 128, param=p))
    x = torch.randn(2, 128)
    before = attn(x)
    keys = list(attn.state_dict())
    abcparam.mark_branch(attn, param=p)
    assert torch.equal(attn(x), before * 0.25) and list(attn.state_dict()) == keys
    assert torch.equal(_reload(attn)(x), attn(x)) and torch.equal(copy.deepcopy(attn)(x), attn(x))
    with pytest.raises(ValueError, match="already a residual branch"):
        abcparam.mark_branch(attn, param=p)
    # a tuple output (attention returning (output, weights)) has its first element scaled
    pair = abcparam.mark_branch(_Pair(p), param=p)
    out, w = pair(x)
    assert torch.equal(out, pair.lin(x) * 0.25) and torch.equal(w, x)


class _Pair(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.lin = abcparam.Linear(128, 128, param=p)

    def forward(self, x):
        return self.lin(x), x


# ---------------------------------------------------------------------------
# The depth coordinate check: correct models pass, mutants fail
# ---------------------------------------------------------------------------

DEPTHS = [2, 4, 8, 16, 32]
_g = torch.Generator().manual_seed(1234)
BATCH = (torch.randn(64, 16, generator=_g), torch.randn(64, 4, generator=_g))


def resnet(alpha, width=256):
    def build(L):
        kw = {} if alpha is None else dict(depth=L, base_depth=2, depth_alpha=alpha)
        return ResidualMLP(16, width, 4, blocks=L, param=abcparam.mup(width, width, **kw))
    return build


@pytest.mark.parametrize("alpha, regime", [(1, "feature_learning"), (H, "lazy")])
def test_depth_check_passes_the_published_rules(alpha, regime):
    r = depth_check(resnet(alpha), DEPTHS, BATCH, optimizer=torch.optim.Adam, lr=1e-2, expect=regime)
    assert r.status == "pass", str(r)
    assert r.verdict.regime == regime and {f.quantity for f in r.fits} >= {"stream", "dstream", "block", "embed", "readout"}


def test_depth_check_via_coord_check_and_the_testing_helper():
    r = abcparam.coord_check(resnet(1), depths=DEPTHS, batch=BATCH, optimizer=torch.optim.Adam, lr=1e-2)
    assert r.passed, str(r)
    abcparam.testing.assert_depth_regime(resnet(1), "feature_learning", batch=BATCH, optimizer=torch.optim.Adam, lr=1e-2)
    with pytest.raises(AssertionError, match="expected feature_learning"):
        abcparam.testing.assert_depth_regime(resnet(H), "feature_learning", batch=BATCH, optimizer=torch.optim.Adam, lr=1e-2)
    with pytest.raises(ValueError, match="give widths or depths"):
        abcparam.coord_check(resnet(1), [64, 128, 256], BATCH, depths=DEPTHS, optimizer=torch.optim.Adam, lr=1e-2)


class _Unscaled(abcparam.Residual):
    """A branch whose forward forgets the multiplier (while its tensors still train with CompleteP's factors)."""

    def forward(self, *args, **kwargs):
        return self.branch(*args, **kwargs)


def test_depth_check_fails_a_missing_branch_multiplier():
    # (a) the branches were built without depth=: the rule is "no depth scaling", unstable in depth
    r = depth_check(resnet(None), DEPTHS, BATCH, optimizer=torch.optim.Adam, lr=1e-2, expect="feature_learning")
    assert r.status == "fail" and r.verdict.regime == "unstable"
    assert any(f.quantity == "dstream" and f.slope > 0.5 for f in r.fits)  # and the stream's change grows, measured

    # (b) the multiplier is dropped in forward while the model declares CompleteP: caught by measurement alone
    def build(L):
        net = resnet(1)(L)
        net.blocks = nn.ModuleList(_Unscaled(b.branch, param=abcparam.mup(256, 256, depth=L, base_depth=2)) for b in net.blocks)
        return net

    r = depth_check(build, DEPTHS, BATCH, optimizer=torch.optim.Adam, lr=1e-2)
    assert r.verdict.regime == "feature_learning" and r.status == "fail", str(r)
    assert any(f.quantity == "dstream" for f in r.mismatches)


def _scale_rates(opts, ids, factor):
    """Move the tensors in ``ids`` into groups of their own whose learning rate is ``factor`` times their group's."""
    for o in opts:
        groups = []
        for g in o.param_groups:
            mine = [p for p in g["params"] if id(p) in ids]
            rest = [p for p in g["params"] if id(p) not in ids]
            if mine:
                groups.append({**g, "params": mine, "lr": g["lr"] * factor})
            if rest:
                groups.append({**g, "params": rest})
        o.param_groups = groups


def test_depth_check_fails_completep_multiplier_with_depth_mup_learning_rate():
    # CompleteP's branch multiplier, but the blocks train at Depth-muP's Adam rate m_L^(-1/2)
    def perturb(model, opts):
        _scale_rates(opts, {id(p) for b in model.blocks for p in b.parameters()}, (len(model.blocks) / 2) ** -0.5)

    r = depth_check(resnet(1), DEPTHS, BATCH, optimizer=torch.optim.Adam, lr=1e-2, perturb=perturb)
    assert r.status == "fail", str(r)
    assert any(f.quantity == "block" for f in r.mismatches)


@pytest.mark.parametrize("alpha, optimizer, lr", [(H, torch.optim.Adam, 1e-2), (1, torch.optim.SGD, 0.05)])
def test_depth_check_fails_depth_factors_on_embedding_and_readout(alpha, optimizer, lr):
    # the embedding and the readout trained with the blocks' depth factor: m_L^(alpha - 1) Adam, m_L^(2 alpha - 1) SGD
    exponent = (alpha - 1) if optimizer is torch.optim.Adam else (2 * alpha - 1)

    def perturb(model, opts):
        outside = {id(model.inp.weight), id(model.inp.bias), id(model.out.weight), id(model.out.bias)}
        _scale_rates(opts, outside, (len(model.blocks) / 2) ** float(exponent))

    good = depth_check(resnet(alpha), DEPTHS, BATCH, optimizer=optimizer, lr=lr)
    bad = depth_check(resnet(alpha), DEPTHS, BATCH, optimizer=optimizer, lr=lr, perturb=perturb)
    assert good.status == "pass", str(good)
    assert bad.status == "fail" and {f.quantity for f in bad.mismatches} & {"embed", "readout"}, str(bad)


def test_depth_check_passes_tiny_transformer_blocks():
    tokens = torch.randint(0, 50, (8, 16), generator=torch.Generator().manual_seed(0))

    def build(L, alpha=1):
        return TinyTransformer(50, 64, param=abcparam.mup(64, 64, depth=L, base_depth=2, depth_alpha=alpha), n_layers=L,
                               context=16)

    loss = lambda out, y: nn.functional.cross_entropy(out[:, :-1].reshape(-1, 50), tokens[:, 1:].reshape(-1))  # noqa: E731
    for alpha, regime in ((1, "feature_learning"), (H, "lazy")):
        r = depth_check(lambda L: build(L, alpha), DEPTHS, tokens, optimizer=torch.optim.Adam, lr=1e-2, loss=loss,
                        expect=regime)
        assert r.status == "pass", str(r)


def test_depth_check_refuses_bad_input():
    with pytest.raises(ValueError, match="depths: need at least 3 distinct"):
        depth_check(resnet(1), [2, 4], BATCH, optimizer=torch.optim.Adam, lr=1e-2)
    with pytest.raises(ValueError, match="no residual branch"):
        depth_check(lambda L: abcparam.models.MLP(16, 64, 4, depth=L, param=abcparam.mup(64, 64)), DEPTHS, BATCH,
                    optimizer=torch.optim.Adam, lr=1e-2)
    with pytest.raises(ValueError, match="expect: got 'deep'"):
        depth_check(resnet(1), DEPTHS, BATCH, optimizer=torch.optim.Adam, lr=1e-2, expect="deep")


class _InlineBlock(nn.Module):
    """A block written as third-party code does: residual additions inline in forward."""

    def __init__(self, w):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(w), nn.Linear(w, w)
        self.ln2, self.mlp = nn.LayerNorm(w), nn.Sequential(nn.Linear(w, 2 * w), nn.GELU(), nn.Linear(2 * w, w))

    def forward(self, h):
        h = h + self.attn(self.ln1(h))
        return h + self.mlp(self.ln2(h))


class _InlineNet(nn.Module):
    def __init__(self, w, L):
        super().__init__()
        self.inp = nn.Linear(16, w)
        self.blocks = nn.ModuleList(_InlineBlock(w) for _ in range(L))
        self.out = nn.Linear(w, 4)

    def forward(self, x):
        h = self.inp(x)
        for b in self.blocks:
            h = b(h)
        return self.out(h)


def test_convert_marks_inline_residual_blocks():
    w, L = 128, 8
    p = abcparam.mup(w, 64, depth=L, base_depth=2)  # CompleteP, m_L = 4
    torch.manual_seed(0)
    net = _InlineNet(w, L)
    keys = list(net.state_dict())
    report = abcparam.convert(net, p, widths=[w, 2 * w], blocks="blocks.*")
    assert list(net.state_dict()) == keys  # marking adds no state
    assert report.blocks == [(f"blocks.{k}", ("attn", "mlp")) for k in range(L)] and "residual blocks (8" in str(report)
    blk, h = net.blocks[0], torch.randn(3, w)
    # the block now computes h + m_L^-1 attn(ln1(h)) (then the same for the MLP)
    with torch.no_grad():
        a = h + 0.25 * nn.functional.linear(blk.ln1(h), blk.attn.weight * blk.attn.weight_multiplier, blk.attn.bias)
        assert torch.allclose(blk(h), a + blk.mlp(blk.ln2(a)), atol=1e-6)
    # every tensor of the block (norms included) trains with the depth factors; outside the blocks nothing changes
    opt = abcparam.wrap(torch.optim.SGD(net.parameters(), lr=0.1), net)  # norms converted too: nothing unowned
    lr_of = {id(t): g["lr"] for g in opt.param_groups for t in g["params"]}
    # SGD under CompleteP: m_L^(2 alpha - 1) = 4, times the vector-like gain's width factor m = 2 (section 7)
    assert lr_of[id(blk.ln1.weight)] == pytest.approx(0.1 * 4 * 2)
    assert lr_of[id(net.out.bias)] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="matches no module"):
        abcparam.convert(_InlineNet(w, 2), p, widths=[w, 2 * w], blocks="layers.*")
    with pytest.raises(ValueError, match="has no child module 'ffn'"):
        abcparam.convert(_InlineNet(w, 2), p, widths=[w, 2 * w], blocks="blocks.*", branches=["attn", "ffn"])


def test_cli_prints_the_depth_verdict(capsys):
    from abcparam.cli import main

    assert main(["classify", "--preset", "mup", "--optimizer", "adam", "--depth-alpha", "1/2", "--json"]) == 0
    d = __import__("json").loads(capsys.readouterr().out)
    assert d["depth"]["regime"] == "lazy" and d["depth"]["block_update"] == "-1/2" and d["width"]["regime"] == "feature_learning"
    assert main(["classify", "--preset", "mup", "--depth-alpha", "0", "--depth-lr-exponent", "0"]) == 0
    out = capsys.readouterr().out
    assert "depth verdict: unstable" in out and "blows up" in out
    assert main(["classify", "--preset", "mup", "--depth-lr-exponent", "0"]) == 2


def test_a_blocks_own_update_follows_the_layers_weight_layout():
    from abcparam.check.depth import _own_update
    from abcparam.layers import Conv1D

    p = abcparam.mup(64, 16)
    x = torch.randn(3, 64)
    for layer in (abcparam.Linear(64, 64, param=p), Conv1D(64, 64, param=p)):  # square: shapes cannot tell the layout
        w0 = layer.weight.detach().clone()
        with torch.no_grad():
            layer.weight.add_(torch.randn_like(layer.weight))
        direct = layer(x).detach() - _with_weight(layer, w0)(x).detach()
        torch.testing.assert_close(_own_update(layer, w0, x), direct, rtol=1e-5, atol=1e-5)  # the biases cancel


def _with_weight(layer, w):
    other = copy.deepcopy(layer)
    with torch.no_grad():
        other.weight.copy_(w)
    return other


def test_at_depth_moves_a_parametrization_to_another_depth_and_keeps_the_rest():
    p = abcparam.mup(256, 64, depth=8, base_depth=2, depth_alpha="depth_mup")
    q = p.at_depth(16)
    assert (q.depth, q.base_depth, q.depth_mult, q.depth_alpha) == (16, 2, 8, H)
    assert q.branch_multiplier() == pytest.approx(8 ** -0.5) and q.at_depth(8) == p
    assert (q.width, q.base_width, q.input, q.hidden, q.output) == (p.width, p.base_width, p.input, p.hidden, p.output)
    r = p.at_depth(4, base_depth=4)  # a new base depth: m_L = 1, nothing scaled
    assert (r.depth, r.base_depth, r.branch_multiplier()) == (4, 4, 1.0)
    assert (p.depth, p.base_depth) == (8, 2)  # p itself is unchanged (frozen)
    assert abcparam.mup(256, 64).at_depth(8, base_depth=2).depth_mult == 4
    with pytest.raises(ValueError, match=r"^base_depth: required with depth=8"):  # no base depth to keep
        abcparam.mup(256, 64).at_depth(8)
