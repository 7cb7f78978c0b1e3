"""abcparam.wrap: per-layer learning rates, epsilon, weight decay, schedulers, equivalences."""

import io
import math
import warnings

import pytest
import torch
from torch import nn

import abcparam
from abcparam.models import MLP

M = 4  # width multiplier used throughout
WIDTH, BASE = 256, 64


def mlp(p, depth=3, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return MLP(6, p.width, 3, depth=depth, param=p).to(dtype)


def copy_effective(src, dst):
    """Give dst the same effective weights as src (they may be in different parametrizations)."""
    with torch.no_grad():
        for a, b in zip(src.layers, dst.layers):
            b.weight.copy_(a.weight * (a.weight_multiplier / b.weight_multiplier))
            b.bias.copy_(a.bias)  # biases are stored as their effective values


def train(net, opt, steps=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 6, generator=g, dtype=torch.float64)
    y = torch.randn(16, 3, generator=g, dtype=torch.float64)
    outs = []
    for _ in range(steps):
        opt.zero_grad()
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        outs.append(net(x).detach())
    return torch.stack(outs)


def groups_by_param(opt):
    return {id(p): g for g in opt.param_groups for p in g["params"]}


@pytest.mark.parametrize("name", ["sp", "ntk", "mup", "mup_table8", "sp_inv_n"])
@pytest.mark.parametrize("opt_cls,family", [(torch.optim.SGD, "sgd"), (torch.optim.Adam, "adam"), (torch.optim.AdamW, "adam"),
                                            (torch.optim.RMSprop, "adam")])
def test_per_parameter_lr_is_lr_times_m_pow_minus_c(name, opt_cls, family):
    p = abcparam.mup(WIDTH, BASE, form="table8") if name == "mup_table8" else getattr(abcparam, name)(WIDTH, BASE)
    net = mlp(p)
    opt = abcparam.wrap(opt_cls(net.parameters(), lr=0.01), net)
    by = groups_by_param(opt)
    for layer in net.layers:
        ex = p.role(layer.role)
        # input layers store their effective weight (the a = 0 form, docs/theory.md section 2): c + 2a SGD, c + a Adam
        c = ex.c(family) + (0 if layer.role != "input" else (2 if family == "sgd" else 1) * ex.a)
        assert layer.folded == (layer.role == "input")
        assert by[id(layer.weight)]["lr"] == pytest.approx(0.01 * M ** -float(c))
        # biases are stored effective: the vector role's exponents in the a = 0 form (c + 2a SGD, c + a Adam)
        bias_ex = p.canonical().role("vector") if layer.role != "output" else None
        expect = 0.01 * M ** -float(bias_ex.c(family)) if bias_ex else 0.01
        assert by[id(layer.bias)]["lr"] == pytest.approx(expect)
    assert all(g["abc_family"] == family for g in opt.param_groups)


def test_eps_scaled_per_section_10_and_switchable():
    p = abcparam.mup(WIDTH, BASE)
    net = mlp(p)
    opt = abcparam.wrap(torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-8), net)
    by = groups_by_param(opt)
    # section 10, TP4 muP: d = 1/2, 1, 1, 1/2; the input layer is stored in the a = 0 form, which shifts
    # its d by -a_1 = +1/2 (the symmetry moves d with a)
    for layer, d in zip(net.layers, [1, 1, 1, 0.5]):
        assert by[id(layer.weight)]["eps"] == pytest.approx(1e-8 * M ** -d)
    unfolded = MLP(6, WIDTH, 3, depth=3, param=p)
    unfolded.layers[0] = abcparam.Linear(6, WIDTH, role="input", param=p, fold=False)
    opt_u = abcparam.wrap(torch.optim.Adam(unfolded.parameters(), lr=1e-3, eps=1e-8), unfolded)
    assert groups_by_param(opt_u)[id(unfolded.layers[0].weight)]["eps"] == pytest.approx(1e-8 * M ** -0.5)
    assert by[id(net.layers[-1].bias)]["eps"] == 1e-8  # no width dimension
    net2 = mlp(p)
    opt2 = abcparam.wrap(torch.optim.Adam(net2.parameters(), lr=1e-3, eps=1e-8), net2, scale_eps=False)
    assert {g["eps"] for g in opt2.param_groups} == {1e-8}


def test_user_param_groups_and_options_are_kept():
    p = abcparam.mup(WIDTH, BASE)
    net = mlp(p)
    decay = [l.weight for l in net.layers]
    no_decay = [l.bias for l in net.layers]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0, "lr": 5e-4}],
                            lr=1e-3, betas=(0.8, 0.9))
    abcparam.wrap(opt, net)
    by = groups_by_param(opt)
    assert all(g["betas"] == (0.8, 0.9) for g in opt.param_groups)
    assert by[id(net.layers[1].weight)]["lr"] == pytest.approx(1e-3 / M)
    assert by[id(net.layers[0].bias)]["lr"] == pytest.approx(5e-4)  # TP4 vector role, a = 0 form: Adam c = 0
    assert by[id(net.layers[0].bias)]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in opt.param_groups) == 2 * len(net.layers)


@pytest.mark.parametrize("mode", ["coupled", "independent"])
def test_weight_decay_conventions(mode):
    p = abcparam.mup(WIDTH, BASE)
    per_step = {}
    for base_lr in (1e-3, 4e-3):
        net = mlp(p)
        opt = abcparam.wrap(torch.optim.AdamW(net.parameters(), lr=base_lr, weight_decay=0.01), net, weight_decay=mode)
        # the decay a step of AdamW applies: lr * weight_decay, per group
        per_step[base_lr] = {g["abc_role"]: g["lr"] * g["weight_decay"] for g in opt.param_groups}
        values = set(round(v, 15) for v in per_step[base_lr].values())
        assert len(values) == 1, per_step  # the same for every group: width-invariant
    if mode == "coupled":  # microsoft/mup: lr * wd of the base group
        assert per_step[1e-3]["hidden"] == pytest.approx(1e-3 * 0.01)
        assert per_step[4e-3]["hidden"] == pytest.approx(4e-3 * 0.01)
    else:  # independent: the per-step decay is wd itself, whatever the base lr
        assert per_step[1e-3]["hidden"] == pytest.approx(0.01) == per_step[4e-3]["hidden"]


def test_weight_decay_behaviour_after_a_step():
    # zero gradient: AdamW's step is pure decay, so the shrink factor is visible in the weights.
    p = abcparam.mup(WIDTH, BASE)
    for mode, expect in (("coupled", 1 - 1e-3 * 0.5), ("independent", 1 - 0.5)):
        net = mlp(p)
        opt = abcparam.wrap(torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.5), net, weight_decay=mode)
        before = [l.weight.detach().clone() for l in net.layers]
        for prm in net.parameters():
            prm.grad = torch.zeros_like(prm)
        opt.step()
        for b, l in zip(before, net.layers):
            torch.testing.assert_close(l.weight.detach(), b * expect)


def _pair(opt_name, lr):
    tp4 = mlp(abcparam.mup(WIDTH, BASE), seed=3)
    t8 = mlp(abcparam.mup(WIDTH, BASE, form="table8"), seed=4)
    copy_effective(tp4, t8)
    make = {"sgd": lambda n: torch.optim.SGD(n.parameters(), lr=lr, momentum=0.9),
            "adam": lambda n: torch.optim.Adam(n.parameters(), lr=lr, eps=1e-6)}[opt_name]
    return tp4, abcparam.wrap(make(tp4), tp4), t8, abcparam.wrap(make(t8), t8)


def test_tp4_and_table8_forms_train_identically_sgd():
    tp4, o1, t8, o2 = _pair("sgd", 0.05)
    torch.testing.assert_close(train(tp4, o1), train(t8, o2), rtol=1e-10, atol=1e-12)


def test_tp4_and_table8_forms_train_identically_adam():
    # With eps scaled by m^-d (docs/theory.md section 10) the two forms see the same effective eps,
    # so Adam is as exact as SGD; eps = 1e-6 is large enough to matter if it were not scaled.
    tp4, o1, t8, o2 = _pair("adam", 1e-2)
    torch.testing.assert_close(train(tp4, o1), train(t8, o2), rtol=1e-9, atol=1e-11)


def test_adam_equivalence_breaks_without_eps_scaling():
    # Documented tolerance without eps scaling: it differs, which is why scaling is on by default.
    tp4 = mlp(abcparam.mup(WIDTH, BASE), seed=3)
    t8 = mlp(abcparam.mup(WIDTH, BASE, form="table8"), seed=4)
    copy_effective(tp4, t8)
    o1 = abcparam.wrap(torch.optim.Adam(tp4.parameters(), lr=1e-2, eps=1e-3), tp4, scale_eps=False)
    o2 = abcparam.wrap(torch.optim.Adam(t8.parameters(), lr=1e-2, eps=1e-3), t8, scale_eps=False)
    assert (train(tp4, o1) - train(t8, o2)).abs().max() > 1e-6


class _MuReadoutMLP(nn.Module):
    """microsoft/mup's muP by its published rules (TP5 Table 8), written here without mup:
    plain nn.Linear layers, the readout computing Linear(x / width_mult) as MuReadout does."""

    def __init__(self, width, width_mult):
        super().__init__()
        self.width_mult = width_mult
        self.layers = nn.ModuleList([nn.Linear(6, width), nn.Linear(width, width), nn.Linear(width, width), nn.Linear(width, 3)])

    def forward(self, x):
        for l in self.layers[:-1]:
            x = torch.tanh(l(x))
        return self.layers[-1](x / self.width_mult)

    def param_groups(self, lr, family):
        """MuSGD: vector-like tensors (one width dimension) lr * width_mult, matrix-like lr.
        MuAdam: matrix-like (two width dimensions) lr / width_mult, others lr. Readout bias: none."""
        hidden = [self.layers[1].weight, self.layers[2].weight]
        vector = [self.layers[0].weight, self.layers[0].bias, self.layers[1].bias, self.layers[2].bias, self.layers[3].weight]
        fixed = [self.layers[3].bias]
        if family == "sgd":
            return [{"params": hidden, "lr": lr}, {"params": vector, "lr": lr * self.width_mult}, {"params": fixed, "lr": lr}]
        return [{"params": hidden, "lr": lr / self.width_mult}, {"params": vector, "lr": lr}, {"params": fixed, "lr": lr}]


@pytest.mark.parametrize("family", ["sgd", "adam"])
def test_reproduces_microsoft_mup_table8(family):
    ours = mlp(abcparam.mup(WIDTH, BASE, form="table8"), seed=5)
    ref = _MuReadoutMLP(WIDTH, M).double()
    with torch.no_grad():
        for a, b in zip(ours.layers, ref.layers):
            b.weight.copy_(a.weight)  # Table 8: the stored tensors are the same; only the readout divides by m
            b.bias.copy_(a.bias)
    lr = 0.05 if family == "sgd" else 3e-3
    cls = torch.optim.SGD if family == "sgd" else torch.optim.Adam
    o_ours = abcparam.wrap(cls(ours.parameters(), lr=lr), ours, scale_eps=False)  # mup never scales eps
    o_ref = cls(ref.param_groups(lr, family), lr=lr)
    torch.testing.assert_close(train(ours, o_ours, steps=8), train(ref, o_ref, steps=8), rtol=1e-10, atol=1e-12)


def _ratios(opt):
    return [g["lr"] / opt.param_groups[0]["lr"] for g in opt.param_groups]


@pytest.mark.parametrize(
    "make",
    [
        lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda t: 1 / (1 + t)),
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5),
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10),
        lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=abcparam.per_group(o, 0.01), total_steps=20),
    ],
    ids=["LambdaLR", "StepLR", "CosineAnnealingLR", "OneCycleLR+per_group"],
)
def test_schedulers_keep_lr_ratios(make):
    p = abcparam.mup(WIDTH, BASE)
    net = mlp(p)
    opt = abcparam.wrap(torch.optim.Adam(net.parameters(), lr=0.01), net)
    expected = [g["abc_lr_scale"] / opt.param_groups[0]["abc_lr_scale"] for g in opt.param_groups]
    assert len(set(expected)) > 1
    sched = make(opt)
    for _ in range(7):
        opt.step()
        sched.step()
        assert _ratios(opt) == pytest.approx(expected)


def test_wrapping_after_a_scheduler_is_refused():
    net = mlp(abcparam.mup(WIDTH, BASE))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    torch.optim.lr_scheduler.StepLR(opt, step_size=1)
    with pytest.raises(ValueError, match="before creating the scheduler"):
        abcparam.wrap(opt, net)
    assert len(opt.param_groups) == 1


def test_optimizer_state_dict_round_trip():
    p = abcparam.mup(WIDTH, BASE)
    net = mlp(p)
    opt = abcparam.wrap(torch.optim.Adam(net.parameters(), lr=1e-3), net)
    train(net, opt, steps=2)
    buf = io.BytesIO()
    torch.save({"model": net.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf)
    net2 = mlp(p, seed=9)
    net2.load_state_dict(ckpt["model"])
    opt2 = abcparam.wrap(torch.optim.Adam(net2.parameters(), lr=1e-3), net2)
    opt2.load_state_dict(ckpt["opt"])
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
    torch.testing.assert_close(train(net, opt, steps=3), train(net2, opt2, steps=3))


def test_unowned_parameters_warn_once_and_strict_refuses():
    p = abcparam.mup(WIDTH, BASE)
    net = nn.Sequential(abcparam.Linear(6, WIDTH, role="input", param=p), nn.LayerNorm(WIDTH),
                        abcparam.Linear(WIDTH, 3, role="output", param=p))
    with pytest.warns(UserWarning, match=r"2 parameter\(s\).*1.weight, 1.bias") as rec:
        opt = abcparam.wrap(torch.optim.Adam(net.parameters(), lr=1e-3), net)
    assert len(rec) == 1
    assert groups_by_param(opt)[id(net[1].weight)]["lr"] == 1e-3
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    before = [dict(g) for g in opt.param_groups]
    with pytest.raises(ValueError, match="strict=True.*1.weight"):
        abcparam.wrap(opt, net, strict=True)
    assert [dict(g) for g in opt.param_groups] == before


def test_wrapping_twice_is_an_error():
    net = mlp(abcparam.mup(WIDTH, BASE))
    opt = abcparam.wrap(torch.optim.SGD(net.parameters(), lr=0.1), net)
    lrs = [g["lr"] for g in opt.param_groups]
    with pytest.raises(ValueError, match="already wrapped"):
        abcparam.wrap(opt, net)
    assert [g["lr"] for g in opt.param_groups] == lrs


class Mystery(torch.optim.Optimizer):
    """An optimizer abcparam knows nothing about (plain SGD inside)."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr, "weight_decay": 0.0})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for q in group["params"]:
                if q.grad is not None:
                    q.add_(q.grad, alpha=-group["lr"])


def test_unknown_optimizer_needs_a_family():
    net = mlp(abcparam.mup(WIDTH, BASE))
    opt = Mystery(net.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="family='sgd'"):
        abcparam.wrap(opt, net)
    assert "abc_lr_scale" not in opt.param_groups[0]
    abcparam.wrap(opt, net, family="sgd")
    with pytest.raises(ValueError, match="family: got 'sgdm'"):
        abcparam.wrap(Mystery(net.parameters(), lr=0.1), net, family="sgdm")
    with pytest.raises(ValueError, match="weight_decay: got 'l2'"):
        abcparam.wrap(torch.optim.SGD(net.parameters(), lr=0.1), net, weight_decay="l2")
    with pytest.raises(TypeError, match="optimizer"):
        abcparam.wrap(net, net)


@pytest.mark.parametrize("cls", [torch.optim.SGD, torch.optim.ASGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop,
                                 torch.optim.Adagrad, torch.optim.Adamax, torch.optim.NAdam, torch.optim.RAdam])
def test_family_detected_for_torch_optimizers(cls):
    net = mlp(abcparam.mup(WIDTH, BASE))
    opt = abcparam.wrap(cls(net.parameters(), lr=0.01), net)
    train(net, opt, steps=1)
    assert opt.param_groups[0]["abc_family"] == ("sgd" if cls in (torch.optim.SGD, torch.optim.ASGD) else "adam")


def test_tied_embedding_model_trains_with_one_group_per_scale():
    p = abcparam.mup(WIDTH, BASE, form="table8")
    emb = abcparam.Embedding(11, WIDTH, param=p)
    head = abcparam.TiedReadout(emb, param=p)
    model = nn.ModuleDict({"emb": emb, "mid": abcparam.Linear(WIDTH, WIDTH, param=p), "head": head})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt = abcparam.wrap(torch.optim.Adam(model.parameters(), lr=1e-3), model)
    by = groups_by_param(opt)
    assert by[id(emb.weight)]["lr"] == 1e-3 and by[id(emb.weight)]["eps"] == pytest.approx(1e-8 / M)
    idx = torch.randint(0, 11, (4, 5))
    loss = nn.functional.cross_entropy(head(torch.tanh(model["mid"](emb(idx)))).flatten(0, 1), idx.flatten())
    loss.backward()
    opt.step()
    assert math.isfinite(loss.item())


@pytest.mark.parametrize("name", ["mup", "ntk", "up_1/4"])
@pytest.mark.parametrize("make", [
    lambda n: torch.optim.SGD(n.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3),
    lambda n: torch.optim.Adam(n.parameters(), lr=1e-2, eps=1e-6),
    lambda n: torch.optim.AdamW(n.parameters(), lr=1e-2, eps=1e-6, weight_decay=0.1),
], ids=["SGD+wd", "Adam", "AdamW"])
def test_canonical_form_trains_like_the_multiplier_form(name, make):
    """Folding the multipliers into init and learning rates (the symmetry of docs/theory.md section 2)
    is exact for SGD and, with eps scaled by m^-d, for Adam; weight decay is unchanged."""
    p = abcparam.up("1/4", WIDTH, BASE) if name == "up_1/4" else getattr(abcparam, name)(WIDTH, BASE)
    folded = p.canonical()
    assert all(folded.multiplier(r) == 1.0 for r in ("input", "hidden", "output"))
    assert abcparam.equivalent(p.theory_preset(3), folded.theory_preset(3), "sgd")
    assert abcparam.equivalent(p.theory_preset(3), folded.theory_preset(3), "adam")
    a, b = mlp(p, seed=1), mlp(folded, seed=2)
    copy_effective(a, b)
    torch.testing.assert_close(train(a, abcparam.wrap(make(a), a)), train(b, abcparam.wrap(make(b), b)), rtol=1e-9, atol=1e-11)


# -- silent traps: optimizer state, LBFGS, groups added after wrapping ---------


def _wrapped(width, base, seed=0):
    torch.manual_seed(seed)
    net = MLP(6, width, 3, depth=2, param=abcparam.mup(width, base))
    return net, abcparam.wrap(torch.optim.Adam(net.parameters(), lr=1e-3), net)


def _one_step(net, opt):
    opt.zero_grad()
    net(torch.randn(4, 6)).pow(2).mean().backward()
    opt.step()


@pytest.mark.parametrize("other,which", [((256, 128), "256/128"), ((512, 64), "512/64")])
def test_load_state_dict_refuses_another_width(other, which):
    net, opt = _wrapped(256, 64)
    _one_step(net, opt)
    saved = opt.state_dict()
    net2, opt2 = _wrapped(*other)
    before = [dict(g) for g in opt2.param_groups]
    with pytest.raises(ValueError, match=f"width/base width 256/64, but this one is at {which}"):
        opt2.load_state_dict(saved)
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in before] and not opt2.state
    net3, opt3 = _wrapped(256, 64)  # the same width and base width resumes
    opt3.load_state_dict(saved)
    assert len(opt3.state) == len(opt.state)
    plain = torch.optim.Adam(net.parameters(), lr=1e-3)
    with pytest.raises(ValueError, match="did not wrap"):
        opt3.load_state_dict(plain.state_dict())


def test_lbfgs_is_refused_at_wrap_time():
    net = mlp(abcparam.mup(WIDTH, BASE))
    with pytest.raises(ValueError, match="LBFGS keeps exactly one param group"):
        abcparam.wrap(torch.optim.LBFGS(net.parameters()), net, family="sgd")


def test_a_group_added_after_wrapping_is_scaled_like_wrap():
    p = abcparam.mup(WIDTH, BASE)
    net = mlp(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the other layers are not in the optimizer yet
        opt = abcparam.wrap(torch.optim.Adam(list(net.layers[0].parameters()), lr=1e-3), net)
    opt.add_param_group({"params": list(net.layers[1].parameters()) + list(net.layers[3].parameters()), "lr": 2e-3})
    for prm in net.parameters():
        prm.grad = torch.zeros_like(prm)
    opt.step()
    rates = {id(q): g["lr"] for g in opt.param_groups for q in g["params"]}
    assert rates[id(net.layers[1].weight)] == pytest.approx(2e-3 / M)  # hidden Adam: m^-1
    assert rates[id(net.layers[3].weight)] == pytest.approx(2e-3 / M ** 0.5)  # readout Adam: m^-1/2
    assert rates[id(net.layers[3].bias)] == pytest.approx(2e-3)  # no width dimension
    assert all("abc_lr_scale" in g for g in opt.param_groups)


def test_a_matrix_added_to_muon_after_wrapping_gets_muons_own_correction_too():
    # Muon's match_rms_adamw factor 0.2 sqrt(max(rows, cols)) grows with width: wrap keeps only its change from the
    # base width (section 11); a group added later must get the same rate as if it had been there from the start
    p = abcparam.mup(64, 16)

    def hidden_pair():
        torch.manual_seed(0)
        return nn.Sequential(*(abcparam.Linear(64, 64, role="hidden", bias=False, param=p) for _ in range(2)))

    def muon(params):
        return torch.optim.Muon(params, lr=0.02, adjust_lr_fn="match_rms_adamw")

    net = hidden_pair()
    whole = abcparam.wrap(muon([net[0].weight, net[1].weight]), net)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the second matrix is not in the optimizer yet
        late = abcparam.wrap(muon([net[0].weight]), net)
    late.add_param_group({"params": [net[1].weight]})
    late.step()  # (no gradients: nothing moves; the new group is split and scaled first)
    rate = {id(q): g["lr"] for opt in (whole,) for g in opt.param_groups for q in g["params"]}[id(net[1].weight)]
    # muP's hidden spectral rate is m^0; Muon's own factor grows by (64 / 16)^(1/2) from the base width: divided out
    assert rate == pytest.approx(0.02 * (16 / 64) ** 0.5)
    assert [g["lr"] for g in late.param_groups if any(q is net[1].weight for q in g["params"])] == [pytest.approx(rate)]


def test_a_subclass_of_a_torch_optimizer_is_wrapped_by_its_family():
    class ClippedAdam(torch.optim.Adam):
        pass

    class MySGD(torch.optim.SGD):
        pass

    for cls, family in ((ClippedAdam, "adam"), (MySGD, "sgd")):
        net = mlp(abcparam.mup(WIDTH, BASE))
        opt = abcparam.wrap(cls(net.parameters(), lr=1e-3), net)
        assert {g["abc_family"] for g in opt.param_groups} == {family}

    class Custom(torch.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {"lr": 1e-3})

    net = mlp(abcparam.mup(WIDTH, BASE))
    with pytest.raises(ValueError, match="cannot tell the family of Custom; pass family=") as info:
        abcparam.wrap(Custom(net.parameters()), net)
    # the message says what each family means, so the user can place their optimizer
    for family, meaning in (("sgd", "update proportional to the gradient"), ("adam", "entrywise normalised"),
                            ("spectral", "orthogonalised matrix update, like Muon"),
                            ("relative", "update proportional to the weight's RMS, like Adafactor")):
        assert f"'{family}' ({meaning})" in str(info.value)


def test_a_tensor_shared_by_two_layers_must_have_one_set_of_scales():
    a = abcparam.Linear(64, 64, role="hidden", param=abcparam.mup(64, 16))
    other = abcparam.Linear(64, 64, role="hidden", param=abcparam.mup(64, 32))  # another base width: other factors
    other.weight = a.weight
    net = nn.Sequential(a, other)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    before = [dict(g) for g in opt.param_groups]
    with pytest.raises(ValueError, match=r"^model: the tensor 1\.weight is shared with 0\.weight under different scales$"):
        abcparam.wrap(opt, net)
    assert [dict(g) for g in opt.param_groups] == before  # nothing changed
    same = abcparam.Linear(64, 64, role="hidden", param=abcparam.mup(64, 16))
    same.weight = a.weight
    net = nn.Sequential(a, same)
    wrapped = abcparam.wrap(torch.optim.Adam(net.parameters(), lr=1e-3), net)
    assert sum(p is a.weight for g in wrapped.param_groups for p in g["params"]) == 1  # the shared tensor, once
