"""Convolutions (docs/theory.md section 17): abcparam.Conv1d/2d/3d, channel norms, convert, inspect and the checks."""

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn

import abcparam
from abcparam.conv import Conv1d, Conv2d, Conv3d

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conv_models import ResNet18, mup_resnet18, resnet18_widths  # noqa: E402

P = abcparam.mup(128, 32)  # m = 4, TP4 form: input (a, b) = (-1/2, 1/2), hidden (0, 1/2), output (1/2, 1/2)
CONVS = {1: Conv1d, 2: Conv2d, 3: Conv3d}
TORCH = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
FUNCS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


# -- the layer ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("c_in, c_out, groups, role", [(3, 128, 1, "input"), (128, 256, 1, "hidden"), (256, 10, 1, "output"),
                                                         (128, 128, 128, "vector"), (128, 256, 128, "vector")])
def test_the_role_follows_the_channels_and_the_groups(c_in, c_out, groups, role):
    assert Conv2d(c_in, c_out, 3, groups=groups, param=P).role == role


@pytest.mark.parametrize("kwargs, match", [
    (dict(in_channels=128, out_channels=128, groups=1, role="vector"), "role: 'vector' is for a depthwise"),
    (dict(in_channels=128, out_channels=128, groups=128, role="hidden"), "vector-like: pass role='vector'"),
    (dict(in_channels=3, out_channels=128, role="hidden"), "in_channels=3, a fixed size"),
    (dict(in_channels=128, out_channels=96, groups=3), "groups: 3 must divide"),
    (dict(in_channels=128, out_channels=128, groups=64), "cannot tell whether the 64 groups"),
    (dict(in_channels=128, out_channels=128, role="middle"), "role"),
])
def test_a_role_the_channels_rule_out_is_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Conv2d(kernel_size=3, param=P, **kwargs)


@pytest.mark.parametrize("bad, match", [((3, 0), "kernel_size"), ((3, 3, 3), "kernel_size"), (True, "kernel_size")])
def test_a_bad_kernel_size_is_refused_by_name(bad, match):
    with pytest.raises(ValueError, match=match):
        Conv2d(128, 128, bad, param=P)


@settings(max_examples=25, deadline=None)
@given(dims=st.sampled_from([1, 2, 3]), k=st.integers(1, 3), g=st.sampled_from([1, 2, 4]), sigma=st.sampled_from([None, 0.7]),
       role=st.sampled_from(["input", "hidden", "output"]))
def test_fan_in_and_init_std_follow_the_theorys_section_17(dims, k, g, sigma, role):
    m, n = 4, 64
    p = abcparam.mup(n, n // m)
    c_in, c_out = {"input": (4, n), "hidden": (n, 2 * n), "output": (n, 8)}[role]
    kernel = tuple(k + i for i in range(dims))  # a non-square kernel
    conv = CONVS[dims](c_in, c_out, kernel, groups=g if role == "hidden" else 1, param=p, sigma=sigma, role=role)
    fan_in = c_in // conv.groups * math.prod(kernel)
    assert conv.fan_in == fan_in
    base_fan_in = fan_in / m if role != "input" else fan_in
    s = (1 / math.sqrt(base_fan_in)) if sigma is None else sigma
    ex = p.role(role)
    # the input layer is folded by default: its stored tensor has the effective scale m^-(a+b)
    expected = s * m ** -float(ex.a + ex.b if role == "input" else ex.b)
    assert conv.init_std == pytest.approx(expected, rel=1e-12)
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.15)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_at_m_1_it_is_torchs_convolution_with_the_same_state_dict(dims):
    p = abcparam.sp(8, 8)
    torch.manual_seed(0)
    mine = CONVS[dims](8, 8, 3, padding=1, stride=2, param=p, role="hidden")
    theirs = TORCH[dims](8, 8, 3, padding=1, stride=2)
    assert {k: v.shape for k, v in mine.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    theirs.load_state_dict(mine.state_dict())
    x = torch.randn(2, 8, *[7] * dims)
    assert torch.equal(mine(x), theirs(x))


def test_the_forward_multiplies_the_kernel_by_the_roles_multiplier():
    conv = Conv2d(128, 10, (1, 3), param=P)  # output: a = 1/2, m = 4: multiplier 1/2
    assert conv.weight_multiplier == 0.5
    x = torch.randn(2, 128, 5, 5)
    assert torch.allclose(conv(x), F.conv2d(x, conv.weight * 0.5, conv.bias), atol=1e-6)
    inp = Conv2d(3, 128, 3, param=P, fold=False, alpha=3.0)  # unfolded input layer: alpha * m^(1/2) = 6
    assert inp.weight_multiplier == 6.0
    assert torch.allclose(inp(torch.ones(1, 3, 3, 3)), F.conv2d(torch.ones(1, 3, 3, 3), inp.weight * 6.0, inp.bias), atol=1e-5)


@pytest.mark.parametrize("role, c_in, c_out, groups", [("input", 3, 128, 1), ("hidden", 128, 128, 1), ("output", 128, 10, 1),
                                                       ("vector", 128, 128, 128)])
def test_the_optimizer_factors_are_the_roles(role, c_in, c_out, groups):
    conv = Conv2d(c_in, c_out, 3, groups=groups, param=P)
    s = conv.abc_scales()["weight"]
    stored = P.canonical() if conv.folded else P  # a folded layer trains with the a = 0 form's factors
    r = "vector" if role == "vector" else role
    assert (s.lr("sgd"), s.lr("adam"), s.eps) == (stored.lr_scale(r, "sgd"), stored.lr_scale(r, "adam"), stored.eps_scale(r))
    assert s.width_dims == {"input": (0,), "hidden": (0, 1), "output": (1,), "vector": (0,)}[role]
    bias = conv.abc_scales()["bias"]
    assert bias.role == ("none" if role == "output" else "vector")


def test_wrap_gives_a_hidden_kernel_adams_rate_over_m():
    net = abcparam.models.ResNet(3, 128, 10, blocks=(1,), param=P)
    opt = abcparam.wrap(torch.optim.Adam(net.parameters(), lr=0.01), net)
    rates = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert rates[id(net.stages[0][0].conv1.weight)] == pytest.approx(0.01 / 4)
    assert rates[id(net.stem.weight)] == pytest.approx(0.01)  # the input layer: Theta(1) under Adam
    assert rates[id(net.stem_norm.weight)] == pytest.approx(0.01)  # a batch-norm gain: vector-like


def test_resnet_is_validated():
    with pytest.raises(ValueError, match="norm"):
        abcparam.models.ResNet(3, 32, 10, param=abcparam.mup(32, 16), norm="layer")
    with pytest.raises(ValueError, match="blocks"):
        abcparam.models.ResNet(3, 32, 10, param=abcparam.mup(32, 16), blocks=(1, 0))


@pytest.mark.parametrize("cls, args", [("BatchNorm1d", (128,)), ("BatchNorm2d", (128,)), ("BatchNorm3d", (128,)), ("GroupNorm", (8, 128))])
def test_channel_norms_are_torchs_with_vector_like_gains(cls, args):
    mine, theirs = getattr(abcparam, cls)(*args, param=P), getattr(nn, cls)(*args)
    assert mine.state_dict().keys() == theirs.state_dict().keys()
    scales = mine.abc_scales()
    assert set(scales) == {"weight", "bias"} and scales["weight"].lr("sgd") == 4.0 and scales["weight"].lr("adam") == 1.0


# -- convert --------------------------------------------------------------------------------------------


def _plain(w: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
                         nn.Conv2d(w, w, 3, padding=1, groups=w), nn.ReLU(),
                         nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * w, 10))


def test_convert_gives_each_convolution_its_role_from_the_widths():
    model = _plain(64)
    report = abcparam.convert(model, abcparam.mup(64, 16), widths=[64, 128])
    roles = {c.name: c.role for c in report.converted}
    assert roles == {"0": "input", "3": "vector", "5": "hidden", "9": "output", "1": "vector"}
    assert isinstance(model[0], Conv2d) and model[3].groups == 64 and model[5].stride == (2, 2)
    assert "4 layer(s) re-initialised" in str(report)


def test_convert_keep_computes_the_same_function():
    torch.manual_seed(0)
    model = _plain(64).eval()
    x = torch.randn(2, 3, 8, 8)
    before = model(x)
    abcparam.convert(model, abcparam.mup(64, 16), widths=[64, 128], init="keep")
    assert torch.allclose(model(x), before, atol=1e-5)


def test_convert_takes_a_vector_role_from_roles_and_refuses_a_conv_subclass_with_its_own_forward():
    class Odd(nn.Conv2d):
        def forward(self, x):
            return super().forward(x) * 2

    model = nn.Sequential(nn.Conv2d(64, 64, 3, groups=64), Odd(64, 64, 1))
    report = abcparam.convert(model, abcparam.mup(64, 16), roles={"0": "vector", "1": "hidden"})
    assert isinstance(model[0], Conv2d) and model[0].role == "vector"
    assert type(model[1]) is Odd and any("behaviour of its own" in why for _, why in report.skipped)


@pytest.mark.slow
def test_mups_resnet_example_converted_passes_and_its_sp_version_fails():
    """A ResNet18 laid out as microsoft/mup's example, converted by convert, is muP (feature learning at the check's
    defaults but for the widths: 16 to 128, 8 x 8 images); converted to SP it fails.  Slow: about 40 s (the muP
    model escalates to 4 seeds; its last stage has 1024 channels at width 128)."""
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g))

    def build(kind):
        def make(w):
            model = ResNet18(w)
            abcparam.convert(model, getattr(abcparam, kind)(w, 16), widths=resnet18_widths(w))
            return model
        return make

    abcparam.testing.assert_regime(build("mup"), "feature_learning", batch=batch, optimizer=torch.optim.Adam, lr=1e-2,
                                   widths=(16, 32, 64, 128))
    with pytest.raises(AssertionError, match="unstable"):
        abcparam.testing.assert_regime(build("sp"), "feature_learning", batch=batch, optimizer=torch.optim.Adam, lr=1e-2,
                                       widths=(16, 32, 64, 128))


# -- inspect --------------------------------------------------------------------------------------------


def _no_unknown(result):
    return [u.tensor for u in result.uses if u.a.value is None and "zero" not in u.b.how or u.role == "fixed" and u.c.value is None]


def test_inspect_reads_the_plain_resnet_as_sp_with_every_row_known():
    result = abcparam.inspect(lambda w: ResNet18(w, blocks=(1, 1)), optimizer=torch.optim.Adam, lr=1e-2, widths=(8, 16, 32))
    assert result.regime == "unstable" and "sp" in str(result)
    assert not [u for u in result.uses if u.a.value is None], str(result)
    convs = [u for u in result.uses if u.kind == "Conv2d"]
    assert {u.role for u in convs} == {"input", "hidden"} and all(u.a.value == 0 for u in convs)
    norms = [u for u in result.uses if u.kind == "BatchNorm2d"]
    assert norms and all(u.role == "vector" and u.a.value == 0 for u in norms)


def test_inspect_reads_mups_own_resnet_as_mup():
    mup = pytest.importorskip("mup")
    result = abcparam.inspect(lambda w: mup_resnet18(w, blocks=(1, 1)), optimizer=mup.MuAdam, lr=1e-2, widths=(8, 16, 32))
    assert result.regime == "feature_learning" and "mup" in str(result).split("verdict:")[1].split("\n")[0]
    assert not [u for u in result.uses if u.a.value is None], str(result)


@pytest.mark.parametrize("norm", [lambda c: nn.GroupNorm(4, c), lambda c: nn.InstanceNorm2d(c, affine=True),
                                  lambda c: nn.BatchNorm1d(c)])
def test_inspect_probes_every_channel_norms_gain_and_bias(norm):
    class Net(nn.Module):
        def __init__(self, w):
            super().__init__()
            self.conv = nn.Conv2d(3, w, 3)
            self.norm = norm(w)
            self.out = nn.Linear(w, 2)

        def forward(self, x):
            h = self.conv(x)
            h = self.norm(h.mean((-2, -1))) if isinstance(self.norm, nn.BatchNorm1d) else self.norm(h).mean((-2, -1))
            return self.out(h)

    result = abcparam.inspect(Net, optimizer=torch.optim.SGD, lr=0.1, widths=(16, 32, 64))
    rows = {u.tensor: u for u in result.uses}
    assert rows["norm.weight"].a.value == 0 and rows["norm.bias"].a.value == 0, str(result)
    assert rows["conv.weight"].a.value == 0 and rows["conv.bias"].a.value == 0


def test_inspect_sees_the_multiplier_of_abcparams_own_convolutions():
    result = abcparam.inspect(lambda w: abcparam.models.ResNet(3, w, 10, blocks=(1,), param=abcparam.mup(w, 8), norm="none"),
                              optimizer=torch.optim.Adam, lr=1e-2, widths=(16, 32, 64))
    assert result.regime == "feature_learning", str(result)
    readout = next(u for u in result.uses if u.tensor == "readout.weight")
    assert readout.a.value == abcparam.preset("mup", 2).a[-1]  # 1/2 in the TP4 form: probed through the module


# -- the maximal-update check --------------------------------------------------------------------------


def test_assert_mup_names_batch_norm_gains_trained_at_a_matrixs_rate():
    from abcparam.layers import scales_for

    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g))

    def build(broken):
        def make(w):
            p = abcparam.mup(w, 32)
            net = abcparam.models.ResNet(3, w, 10, blocks=(1,), param=p)
            if broken:
                for m in net.modules():
                    if isinstance(m, abcparam.BatchNorm2d):
                        m._vector_scales = scales_for(p, "hidden", (0,))
            return net
        return make

    kw = dict(batch=batch, optimizer=torch.optim.Adam, lr=1e-2, widths=(32, 64, 128))
    abcparam.testing.assert_mup(build(False), **kw)
    with pytest.raises(AssertionError, match=r"not updated maximally: .*stem_norm\.weight"):
        abcparam.testing.assert_mup(build(True), **kw)


def test_to_torch_and_back_keep_a_resnets_function_and_running_statistics():
    torch.manual_seed(0)
    for norm in ("batch", "group"):
        net = abcparam.models.ResNet(3, 64, 10, blocks=(1, 1), param=abcparam.mup(64, 16), norm=norm)
        net(torch.randn(8, 3, 8, 8))  # training mode: the running statistics move
        net.eval()
        plain = abcparam.to_torch(net)
        assert not abcparam.abc_modules(plain)
        assert {type(m) for m in plain.modules()} >= {nn.Conv2d, nn.Linear, nn.BatchNorm2d if norm == "batch" else nn.GroupNorm}
        x = torch.randn(4, 3, 8, 8)
        assert torch.allclose(plain(x), net(x), atol=1e-5)
        again = abcparam.models.ResNet(3, 64, 10, blocks=(1, 1), param=abcparam.mup(64, 16), norm=norm).eval()
        abcparam.from_torch(again, plain)
        assert torch.allclose(again(x), net(x), atol=1e-5)
