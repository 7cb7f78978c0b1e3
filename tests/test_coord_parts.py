"""The coordinate check's parts, one at a time, on stand-ins: what it predicts for each layer, how it reads a
model's inputs, outputs and optimizers, how it records a forward pass, and how it reads attention scales.

Each expectation here is written from docs/theory.md and the check's documented behaviour, not from the code
under test; no model is trained, so the file runs in a few seconds.
"""

import functools
import math
from fractions import Fraction as F
from types import SimpleNamespace as NS

import pytest
import torch
from torch import nn

import abcparam
from abcparam.check import width as coord
from abcparam.check import measure, prediction
from abcparam import theory
from abcparam.check import engine


@functools.cache
def _exponents(name):
    """muP's exponents under Adam, _exponents("ntk")'s under SGD (read when a test first asks, not at import: a module that
    calls the theory at import turns a broken theory into a collection error instead of failing tests)."""
    return theory.preset(name, 2).exponents({"mup": "adam", "ntk": "sgd"}[name])


def layer(role, exps, k, family="adam"):
    """A stand-in abcparam layer: the k-th layer of the exponents ``exps`` (its a, b and c under ``family``)."""
    return NS(abc_scales=lambda: {}, role=role, a=exps.a[k], b=exps.b[k], **{"c_" + family: exps.c[k]})


def chain(exps, family="adam"):
    return {"inp": layer("input", exps, 0, family), "mid": layer("hidden", exps, 1, family), "out": layer("output", exps, 2, family)}


# -- _predict: which verdict, for which layers ------------------------------------------------------------------------


def test_a_chain_is_classified_as_declared_with_each_layers_family():
    tracked = chain(_exponents("mup"))
    tracked["plain"] = nn.Linear(2, 2)  # not an abcparam layer: not in the chain
    tracked["norm"] = NS(role="hidden")  # a role but no abc_scales: not a layer either
    tracked["attn"] = NS(abc_scales=lambda: {})  # owns tensors but has no role (abcparam's attention core)
    order = ["inp", "plain", "norm", "attn", "mid", "out"]
    v, index, notes, why = prediction.predict(order, tracked, {"inp": "adam", "mid": "adam", "out": "adam"}, "tp4")
    assert v == theory.classify(_exponents("mup").a, _exponents("mup").b, _exponents("mup").c, optimizer=["adam"] * 3)
    assert (index, notes, why) == ({"inp": 0, "mid": 1, "out": 2}, [], None)
    v, *_ = prediction.predict(order, tracked, {"inp": "adam", "mid": "adam", "out": "adam"}, "full")
    assert v == theory.classify(_exponents("mup").a, _exponents("mup").b, _exponents("mup").c, optimizer=["adam"] * 3, alignment="full")


def test_a_hybrid_chain_reads_each_layers_exponent_under_its_own_family():
    tracked = {"inp": layer("input", _exponents("mup"), 0), "mid": layer("hidden", _exponents("ntk"), 1, "sgd"), "out": layer("output", _exponents("mup"), 2)}
    v, *_ = prediction.predict(["inp", "mid", "out"], tracked, {"inp": "adam", "mid": "sgd", "out": "adam"}, "tp4")
    assert v == theory.classify([_exponents("mup").a[0], _exponents("ntk").a[1], _exponents("mup").a[2]], [_exponents("mup").b[0], _exponents("ntk").b[1], _exponents("mup").b[2]],
                                [_exponents("mup").c[0], _exponents("ntk").c[1], _exponents("mup").c[2]], optimizer=["adam", "sgd", "adam"])
    assert v.families == ("adam", "sgd", "adam")


def test_no_prediction_without_layers_an_optimizer_or_the_end_roles_and_each_says_why():
    assert prediction.predict(["x"], {"x": nn.Linear(2, 2)}, {}, "tp4") == (
        None, {}, [], "the model has no abcparam layers (or none ran in the forward pass)")
    tracked = chain(_exponents("mup"))
    assert prediction.predict(["inp", "mid", "out"], tracked, {"inp": "adam"}, "tp4") == (
        None, {}, [], "no optimizer trains the weight of mid, out, so its learning-rate exponent is unknown")
    assert prediction.predict(["mid"], tracked, {"mid": "adam"}, "tp4") == (
        None, {}, [], "no abcparam layer has the input or output role (abcparam layers: mid (hidden)); the theory needs "
                      "the whole chain input -> output")
    fams = {"inp": "adam", "mid": "adam"}
    assert prediction.predict(["inp", "mid"], tracked, fams, "tp4")[3] == (
        "no abcparam layer has the output role (abcparam layers: inp (input), mid (hidden)); the theory needs the whole "
        "chain input -> output")


def test_layers_that_are_not_one_chain_are_predicted_per_role():
    tracked = chain(_exponents("mup"))
    tracked["out2"] = layer("output", _exponents("mup"), 2)
    fams = dict.fromkeys(tracked, "adam")
    v, index, notes, why = prediction.predict(["inp", "mid", "out", "out2"], tracked, fams, "tp4")
    assert v == theory.classify(_exponents("mup").a, _exponents("mup").b, _exponents("mup").c, optimizer=["adam"] * 3) and why is None
    assert index == {"inp": 0, "mid": 1, "out": 2, "out2": 2}
    assert notes == ["the layers are not one chain input -> hidden... -> output: predictions are per role"]
    # without a hidden layer the readout is layer 1
    two = {"inp": layer("input", _exponents("mup"), 0), "a": layer("output", _exponents("mup"), 2), "b": layer("output", _exponents("mup"), 2)}
    v, index, *_ = prediction.predict(["inp", "a", "b"], two, dict.fromkeys(two, "adam"), "full")
    assert v == theory.classify(_exponents("mup").a[::2], _exponents("mup").b[::2], _exponents("mup").c[::2], optimizer=["adam"] * 2, alignment="full")
    assert index == {"inp": 0, "a": 1, "b": 1}
    # a chain whose readout comes first is not a chain either
    v, index, notes, _ = prediction.predict(["out", "inp", "mid"], tracked, fams, "tp4")
    assert index == {"out": 2, "inp": 0, "mid": 1} and notes


def test_layers_of_one_role_with_different_exponents_have_no_single_prediction():
    tracked = chain(_exponents("mup"))
    tracked["mid2"] = layer("hidden", _exponents("ntk"), 1)
    tracked["mid2"].c_adam = _exponents("ntk").c[1]
    tracked["mid3"] = layer("hidden", _exponents("mup"), 1)
    order = ["inp", "mid", "mid2", "mid3", "out", "inp"]  # a module called twice is listed once per call: no chain
    why = prediction.predict(order, tracked, dict.fromkeys(tracked, "adam"), "tp4")[3]
    mup, ntk = _exponents("mup"), _exponents("ntk")
    assert why == (f"the hidden layers declare different exponents (mid, mid3: (a, b, c) = ({mup.a[1]}, {mup.b[1]}, {mup.c[1]}) "
                   f"under adam; mid2: (a, b, c) = ({ntk.a[1]}, {ntk.b[1]}, {ntk.c[1]}) under adam): no single "
                   "prediction per role")


# -- _prediction: the predicted exponent of each quantity -------------------------------------------------------------


def test_the_prediction_of_each_quantity_is_the_verdicts_exponent():
    v = theory.classify(_exponents("mup").a, _exponents("mup").b, _exponents("mup").c, optimizer="adam")
    slopes = {t: v.predicted_slopes(t) for t in (1, 2)}
    index = {"inp": 0, "mid": 1, "out": 2}
    p = lambda name, q, step: prediction.prediction(v, slopes, index, name, q, step)  # noqa: E731
    assert p("output", "f", 0) == (v.f0_exponent, None)
    assert p("output", "df", 2) == (slopes[2].delta_f, None)
    assert p("inp", "h", 0) == p("mid", "h", 0) == (F(0), None)  # Theta(1) pre-activations when stable at init
    assert p("out", "h", 0) == (v.f0_exponent, None)  # the readout's own output is f_0
    assert p("out", "dh", 1) == (slopes[1].delta_f, None)
    assert p("inp", "dh", 1) == (slopes[1].delta_h[0], None) and p("mid", "dh", 2) == (slopes[2].delta_h[1], None)
    assert p("other", "dh", 1) == (None, None)  # not a layer of the verdict
    # a tied readout's own-token logit: between the others' exponent and 1/2 more (section 14)
    assert p("out", "h_own", 0) == (v.f0_exponent + F(1, 2), v.f0_exponent)
    assert p("output", "f_own", 0) == (v.f0_exponent + F(1, 2), v.f0_exponent)
    assert prediction.prediction(None, {}, {}, "output", "f", 0) == (None, None)


def test_pre_activations_have_no_prediction_when_the_initialisation_is_unstable():
    v = theory.classify([0, 0, 0], [0, 0, 0], 0)  # SP-like at init: the hidden pre-activations blow up
    assert not v.stable_at_init
    slopes = {1: v.predicted_slopes(1)}
    assert prediction.prediction(v, slopes, {"inp": 0, "mid": 1, "out": 2}, "mid", "h", 0) == (None, None)
    assert prediction.prediction(v, slopes, {"inp": 0, "mid": 1, "out": 2}, "out", "h", 0) == (v.f0_exponent, None)


# -- reading the model's batch, output and loss -----------------------------------------------------------------------


def test_a_batch_is_an_input_an_input_and_target_or_keyword_inputs():
    x, y = torch.zeros(2, 3), torch.ones(2)
    assert engine.split_batch(x) == ((x,), {}, None)
    assert engine.split_batch((x,)) == ((x,), {}, None) and engine.split_batch([x, y]) == ((x,), {}, y)
    assert engine.split_batch({"input_ids": x, "labels": y}) == ((), {"input_ids": x, "labels": y}, None)
    for bad in ((x, y, y), (), 3, "x"):
        with pytest.raises(TypeError, match=r"^batch: expected a tensor x, a tuple \(x, y\), or a dict of keyword inputs "
                                            r"for the model$"):
            engine.split_batch(bad)


def test_the_logits_are_the_output_its_logits_or_the_first_of_a_tuple():
    f = torch.randn(2, 3)
    assert engine.output_tensor(f) is f
    assert engine.output_tensor({"logits": f, "loss": f.sum()}) is f and engine.output_tensor(NS(logits=f)) is f
    assert engine.output_tensor((f, None)) is f and engine.output_tensor([f]) is f
    assert engine.output_tensor({"loss": f}) is None and engine.output_tensor((None, f)) is None
    assert engine.output_tensor(()) is None and engine.output_tensor(NS(logits=3)) is None


def test_the_default_loss_is_mse_or_cross_entropy_by_target_dtype_or_the_models_own():
    f = torch.randn(2, 5, 4)
    for dtype in (torch.int64, torch.int32, torch.uint8):  # class indices of any integer dtype (int32 failed in torch)
        y = torch.tensor([[0, 1, 2, 3, 0], [3, 2, 1, 0, 1]], dtype=dtype)
        want = -torch.log_softmax(f, -1).gather(-1, y.long()[..., None]).mean()
        assert torch.allclose(engine.default_loss(f, y), want)
    y = torch.randn(2, 5, 4)
    assert torch.allclose(engine.default_loss((f, None), y), ((f - y) ** 2).mean())
    own = torch.tensor(2.5)
    assert engine.default_loss({"loss": own}, None) is own
    with pytest.raises(ValueError, match=r"^loss: the model's output is not a scalar loss and the batch has no target; "
                                         r"pass loss=fn\(output, y\) or batch=\(x, y\)$"):
        engine.default_loss(f, None)
    with pytest.raises(ValueError, match=r"^loss: cannot find the logits in the model's dict output \(a tensor, a tuple or "
                                         r"list with the logits first, a dict or an object with 'logits'\); pass "
                                         r"loss=fn\(output, y\)$"):
        engine.default_loss({"hidden": f}, y)


def test_only_an_abcparam_readouts_bias_is_left_out_of_its_output():
    lin = abcparam.Linear(4, 3, role="output", param=abcparam.mup(4, 4))
    assert measure.readout_bias(lin) is lin.bias
    assert measure.readout_bias(abcparam.Linear(4, 4, role="hidden", param=abcparam.mup(4, 4))) is None
    assert measure.readout_bias(abcparam.Linear(4, 3, role="output", bias=False, param=abcparam.mup(4, 4))) is None
    assert measure.readout_bias(NS(role="output", bias=torch.zeros(3))) is None  # not an abcparam layer
    plain = nn.Linear(4, 3)
    view = measure.Declared(plain, "output", F(0), F(1, 2), F(1), "adam")
    assert measure.readout_bias(view) is plain.bias and view.c_adam == F(1) and (view.a, view.b) == (F(0), F(1, 2))
    assert view.module is plain and view.role == "output" and view.abc_scales() == {}
    assert measure.Declared(nn.Linear(4, 3, bias=False), "output", F(0), F(0), F(0), "sgd").bias is None
    flagged = nn.Module()
    flagged.bias = True  # model code that keeps a flag under that name (nanoGPT's config style)
    assert measure.Declared(flagged, "output", F(0), F(0), F(0), "sgd").bias is None
    assert measure.Declared(nn.Module(), "output", F(0), F(0), F(0), "sgd").bias is None  # no such attribute at all


def test_declared_exponents_are_read_exactly_by_module_name():
    got = measure.check_declared({"fc": ("hidden", "1/2", 0, 1.0, "Adam"), "head": ["output", 1, "1/2", 0, "sgd"],
                                 "emb": ("input", "-1/2", "1/2", 0, "adam")})
    assert got == {"fc": ("hidden", F(1, 2), F(0), F(1), "adam"), "head": ("output", F(1), F(1, 2), F(0), "sgd"),
                   "emb": ("input", F(-1, 2), F(1, 2), F(0), "adam")}
    assert measure.check_declared(None) == {}
    with pytest.raises(TypeError, match=r"^exponents: expected a mapping module name -> \(role, a, b, c, family\), got list$"):
        measure.check_declared([("fc", "hidden", 0, 0, 0, "sgd")])
    with pytest.raises(ValueError, match=r"^exponents: 'fc' -> \('middle', 0, 0, 0, 'sgd'\); expected \(role, a, b, c, "
                                         r"family\) with role input, hidden or output$"):
        measure.check_declared({"fc": ("middle", 0, 0, 0, "sgd")})
    with pytest.raises(ValueError, match=r"^exponents: 'fc' -> \('hidden', 0, 0\); expected"):
        measure.check_declared({"fc": ("hidden", 0, 0)})
    for k, name in enumerate("abc"):
        bad = ["hidden", 0, 0, 0, "sgd"]
        bad[k + 1] = "x"
        with pytest.raises(ValueError, match=rf"^fc\.{name}: cannot read 'x' as an exponent"):
            measure.check_declared({"fc": tuple(bad)})


# -- optimizers and builds ------------------------------------------------------------------------------------------


def test_the_optimizer_is_a_class_or_a_factory_of_one_or_several():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    (opt,) = engine.build_optimizers(torch.optim.SGD, model, 0.25)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["lr"] == 0.25
    (opt,) = engine.build_optimizers(lambda ps, lr: torch.optim.Adam(ps, lr=2 * lr), model, 0.25)
    assert isinstance(opt, torch.optim.Adam) and opt.param_groups[0]["lr"] == 0.5
    (opt,) = engine.build_optimizers(lambda ps: torch.optim.Adam(ps, lr=0.125), model, 0.25)
    assert opt.param_groups[0]["lr"] == 0.125
    first, second = model.parameters(), None
    a, b = list(model[0].parameters()), list(model[1].parameters())
    pair = engine.build_optimizers(lambda ps, lr: (torch.optim.SGD(a, lr=lr), torch.optim.Adam(b, lr=lr)), model, 0.25)
    assert [type(o) for o in pair] == [torch.optim.SGD, torch.optim.Adam]
    with pytest.raises(TypeError, match=r"^optimizer: expected a torch optimizer class or a factory params -> optimizer, got "
                                        r"'adam'$"):
        engine.build_optimizers("adam", model, 0.25)
    with pytest.raises(TypeError, match=r"^optimizer: the factory returned dict, not a torch optimizer \(or a list of them\)$"):
        engine.build_optimizers(lambda ps: {}, model, 0.25)
    with pytest.raises(TypeError, match=r"^optimizer: the factory returned list, not a torch optimizer"):
        engine.build_optimizers(lambda ps: [[torch.optim.SGD(a, lr=1.0)]], model, 0.25)
    del first, second


def test_a_factory_takes_the_learning_rate_when_it_has_two_positional_parameters():
    assert engine.takes_lr(lambda ps, lr: None) and engine.takes_lr(lambda ps, lr, *, x=1: None)
    assert not engine.takes_lr(lambda ps: None) and not engine.takes_lr(lambda ps, *, lr=1: None)
    assert not engine.takes_lr(lambda *args: None)
    assert not engine.takes_lr(NS())  # no signature to read


def test_a_factory_that_forwards_keywords_gets_the_learning_rate_by_name():
    # microsoft/mup's MuAdam(params, impl=Adam, decoupled_wd=False, **kwargs): a second parameter with a default
    def mu_adam(params, impl=torch.optim.Adam, decoupled_wd=False, **kwargs):
        return impl(params, **kwargs)

    assert engine.lr_argument(mu_adam) == "keyword" and not engine.takes_lr(mu_adam)
    assert engine.lr_argument(lambda ps, lr=0.5: None) == "positional"  # a second parameter named lr
    assert engine.lr_argument(lambda ps, *, lr=1, **kw: None) is None  # its own lr default: left to it
    (opt,) = engine.build_optimizers(mu_adam, nn.Linear(3, 3), 0.25)
    assert isinstance(opt, torch.optim.Adam) and opt.param_groups[0]["lr"] == 0.25


def test_a_build_is_seeded_and_must_return_a_module():
    a = engine.seeded_build(lambda n: nn.Linear(n, n), 4, 7)
    b = engine.seeded_build(lambda n: nn.Linear(n, n), 4, 7)
    c = engine.seeded_build(lambda n: nn.Linear(n, n), 4, 8)
    assert torch.equal(a.weight, b.weight) and not torch.equal(a.weight, c.weight)
    torch.manual_seed(7)
    assert torch.equal(nn.Linear(4, 4).weight, a.weight)
    with pytest.raises(TypeError, match=r"^build: build\(4\) returned Tensor, not an nn\.Module$"):
        engine.seeded_build(lambda n: torch.zeros(n), 4, 0)


def test_widths_are_three_or_more_distinct_positive_ints_sorted():
    assert coord._check_widths([256, 64, 128, 64]) == [64, 128, 256]
    assert coord._check_widths((torch.tensor(8).item(), 16, 32)) == [8, 16, 32]
    assert coord._check_widths([1, 2, 4]) == [1, 2, 4]
    for bad in ([64, 128, 64], [0, 64, 128], [-64, 64, 128]):
        with pytest.raises(ValueError, match=r"^widths: need at least 3 distinct positive widths to fit a slope, got "):
            coord._check_widths(bad)
    for bad in ([64, 128.0, 256], [True, 64, 128]):
        with pytest.raises(TypeError, match=r"^widths: expected ints, got "):
            coord._check_widths(bad)
    with pytest.raises(TypeError, match=r"^widths: expected a list of positive ints, got 'abc'$"):
        coord._check_widths("abc")
    with pytest.raises(TypeError, match=r"^widths: expected a list of positive ints, got 5$"):
        coord._check_widths(5)


# -- recording a forward pass ---------------------------------------------------------------------------------------


def test_the_recorder_keeps_every_call_in_order_without_a_readouts_bias():
    inp = nn.Linear(3, 4)
    out = abcparam.Linear(4, 2, role="output", param=abcparam.mup(4, 4))
    nn.init.constant_(out.bias, 5.0)
    rec = measure.Recorder({"inp": inp, "out": out})
    x = torch.randn(2, 3)
    h = inp(x)
    f = out(inp(h[:, :3]))
    got = rec.take()
    assert rec.order == ["inp", "out"] and list(got) == ["inp", "out"]
    assert len(got["inp"]) == 2 and torch.equal(got["inp"][0], h.detach())
    assert torch.allclose(got["out"][0], (f - out.bias).detach())  # the weight term
    assert rec.take() == {}
    rec.close()
    inp(x)
    assert rec.take() == {}
    # a module seen through declared exponents: its readout bias is left out too
    plain = nn.Linear(3, 2)
    rec = measure.Recorder({"head": plain}, {"head": measure.Declared(plain, "output", F(0), F(0), F(1), "sgd")})
    y = plain(x)
    assert torch.allclose(rec.take()["head"][0], (y - plain.bias).detach())
    rec.close()


def test_the_recorder_skips_outputs_without_a_tensor_and_keeps_a_copy():
    class Pair(nn.Module):
        def forward(self, x):
            return {"hidden": x}

    m, lin = Pair(), nn.Linear(2, 2)
    rec = measure.Recorder({"m": m, "lin": lin})
    m(torch.zeros(1))
    y = lin(torch.ones(1, 2))
    kept = rec.take()["lin"][0]
    assert rec.order == ["lin"]
    with torch.no_grad():
        y.mul_(0)
    assert not torch.equal(kept, y)  # a copy, not the tensor the model goes on to change
    rec.close()


def test_a_tied_readouts_logits_are_split_into_the_input_tokens_own_and_the_others():
    ids = torch.tensor([[0, 1], [1, 1]])  # no position's token is the last of the 3 classes
    logits = torch.arange(12, dtype=torch.float64).reshape(2, 2, 3)
    values = {}
    measure.record_init(values, "lm_head", "h", [logits], ids)
    own = torch.tensor([0.0, 4.0, 7.0, 10.0])
    others = torch.tensor([1.0, 2.0, 3.0, 5.0, 6.0, 8.0, 9.0, 11.0])
    assert values == {("lm_head", "h", 0): pytest.approx(float(others.pow(2).mean().sqrt())),
                      ("lm_head", "h_own", 0): pytest.approx(float(own.pow(2).mean().sqrt()))}
    values = {}  # one token: a 0-d id and a vector of logits
    measure.record_init(values, "lm_head", "h", [torch.tensor([3.0, 4.0, 12.0])], torch.tensor(2))
    assert values == {("lm_head", "h", 0): pytest.approx(12.5 ** 0.5), ("lm_head", "h_own", 0): pytest.approx(12.0)}
    # anything else is one RMS over every call: no ids, ids of another shape, ids out of range, two calls
    for ts, i in [([logits], None), ([logits], ids[0]), ([logits], ids + 2), ([logits], ids - 1), ([logits, logits], ids),
                  ([logits], ids[:, :0])]:
        values = {}
        measure.record_init(values, "x", "f", ts, i)
        assert values == {("x", "f", 0): pytest.approx(float(torch.cat([t.flatten() for t in ts]).pow(2).mean().sqrt()))}


def test_a_quantity_exactly_zero_only_before_a_later_step_moves_it_is_structural():
    zero, moved = [[0.0, 0.0]] * 3, [[0.1, 0.2]] * 3
    raw = {("out", "h", 0): zero, ("a", "dh", 1): zero, ("a", "dh", 2): moved, ("b", "dh", 1): zero, ("b", "dh", 2): zero,
           ("c", "dh", 1): moved, ("d", "dh", 1): zero}
    assert coord._structural_zero(raw, "out", "h", 0, 2)  # a zero-initialised readout
    assert coord._structural_zero(raw, "a", "dh", 1, 2)  # moves at step 2
    assert not coord._structural_zero(raw, "a", "dh", 2, 2) and not coord._structural_zero(raw, "c", "dh", 1, 2)
    assert not coord._structural_zero(raw, "b", "dh", 1, 2)  # never trains: not excused
    assert not coord._structural_zero(raw, "d", "dh", 1, 3)  # no later measurement
    raw = {("e", "dh", 1): moved, ("e", "dh", 2): zero, ("e", "dh", 3): zero}
    assert not coord._structural_zero(raw, "e", "dh", 2, 3)  # an earlier step moved it: it stopped, it was not zero-initialised
    assert coord._all_zero([[0.0], [-0.0]]) and not coord._all_zero([[0.0], [1e-300]])


# -- attention scales -----------------------------------------------------------------------------------------------


def _calls(*per_width):
    return [list(c) for c in per_width]


MUP_ATTN = {"attn": NS(attention=F(1))}  # a module declaring the muP attention exponent, scale ~ d_head^-1


def test_a_muP_scale_agrees_and_an_SP_scale_fails_a_stable_model():
    v = theory.classify(_exponents("mup").a, _exponents("mup").b, _exponents("mup").c, optimizer="adam")
    calls = _calls([(16, 1 / 16), (8, 0.5)], [(32, 1 / 32), (8, 0.5)], [(64, 1 / 64), (8, 0.5)])
    rows = prediction.attention_fits(calls, MUP_ATTN, v)
    assert rows == [
        coord.Fit("attention 0", "-", "scale", 0, -1.0, 0.0, F(-1), True, "agree", 0.0, 1.0, ""),
        coord.Fit("attention 1", "-", "scale", 0, 0.0, 0.0, F(-1), None, "-", 0.0, 0.0,
                  "head dimension 8 at every width: the scale does not change with width"),
    ]
    sp = _calls([(16, 16 ** -0.5)], [(32, 32 ** -0.5)], [(64, 64 ** -0.5)])
    (row,) = prediction.attention_fits(sp, MUP_ATTN, v)
    assert (row.slope, row.predicted, row.ok, row.status, row.margin) == (-0.5, F(-1), False, "disagree", 0.0)
    assert row.reason == "scale ~ d_head^-1/2: the logits move like d_head^(1/2) and blow up with width"
    # declared muP but measured 3/2: stable, but not what the parametrization says
    (row,) = prediction.attention_fits(_calls([(16, 16 ** -1.5)], [(32, 32 ** -1.5)], [(64, 64 ** -1.5)]), MUP_ATTN, v)
    assert (row.status, row.reason) == ("disagree", "scale ~ d_head^-3/2, but the parametrization says d_head^-1")


def test_an_unstable_verdict_or_no_declared_exponent_only_reports_the_scale():
    sp = _calls([(16, 16 ** -0.5)], [(32, 32 ** -0.5)], [(64, 64 ** -0.5)])
    unstable = theory.classify([0, 0, 0], [0, "1/2", "1/2"], 0)
    assert unstable.regime == "unstable"
    (row,) = prediction.attention_fits(sp, {"attn": NS(attention=F(1, 2))}, unstable)
    assert (row.status, row.ok, row.predicted, row.margin, row.reason) == ("agree", True, F(-1, 2), 1.0, "")
    for tracked in ({}, {"a": NS(attention=F(1)), "b": NS(attention=F(1, 2))}, {"a": NS(attention=0.5)}):
        (row,) = prediction.attention_fits(sp, tracked, None)
        assert (row.predicted, row.status, row.ok, row.reason) == (None, "-", None, "scale ~ d_head^-1/2")
    assert prediction.attention_fits([], {}, None) == [] and prediction.attention_fits([[]], {}, None) == []


def test_a_scale_that_is_not_a_power_of_the_head_dimension_or_calls_that_change_in_number_are_undecided():
    import dataclasses

    def without_slope(row):  # NaN != NaN: compare the slope apart
        assert math.isnan(row.slope)
        return dataclasses.replace(row, slope=0.0)

    # a fixed head, then a scale that is no power of d_head, then muP's: every call has its row, in call order
    calls = _calls([(8, 0.5), (16, 0.3), (16, 1 / 16)], [(8, 0.5), (32, 0.2), (32, 1 / 32)], [(8, 0.5), (64, 0.05), (64, 1 / 64)])
    fixed, odd, mup = prediction.attention_fits(calls, MUP_ATTN, None)
    assert fixed.status == "-" and mup.status == "agree"
    assert odd.reason.startswith("scale not a power of d_head (best fit ")
    assert without_slope(odd) == coord.Fit("attention 1", "-", "scale", 0, 0.0, 0.0, F(-1), None, "inconclusive", 0.0, 0.0,
                                           odd.reason, "an attention scale that is a power of the head dimension")
    (row,) = prediction.attention_fits(_calls([(16, 0.25)], [(32, 0.1), (32, 0.1)], [(64, 0.1)]), MUP_ATTN, None)
    assert without_slope(row) == coord.Fit("attention", "-", "scale", 0, 0.0, 0.0, None, None, "inconclusive", 0.0, 0.0,
                                           "the number of attention calls changes with width",
                                           "the same number of attention calls at every width")


# -- the measured regime (docs/theory.md section 8) -----------------------------------------------------------------

ROLES = {"h1": NS(role="input"), "h2": NS(role="hidden"), "h3": NS(role="hidden"), "out": NS(role="output"), "p": nn.Tanh()}


@functools.cache
def _regime_verdict(regime):
    if regime == "kernel":
        ntk = _exponents("ntk")
        return theory.classify(ntk.a, ntk.b, ntk.c, optimizer="sgd")
    return theory.classify([0, 0, 0], [0, "1/2", "1/2"], 0)  # unstable


def measured(changes=(), verdict=None, readout=None, order=("h1", "h2", "out"), steps=3, tol=0.2):
    """The measured regime of a model whose quantities are flat, with ``changes``: (layer, quantity, step, slope[,
    status[, predicted[, noise]]]) replacing or adding fits (a slope of None removes the fit)."""
    fits = {("h1", "h", 0): 0.0, ("h2", "h", 0): 0.0, ("out", "h", 0): -0.5, ("output", "f", 0): -0.5,
            ("h1", "dh", steps): 0.0, ("h2", "dh", steps): 0.0, ("out", "dh", steps): 0.0, ("output", "df", steps): 0.0}
    extra = {}
    for layer, q, step, slope, *more in changes:
        fits[(layer, q, step)] = slope
        extra[(layer, q, step)] = more
    rows = []
    for (layer, q, step), slope in fits.items():
        if slope is None:
            continue
        status, predicted, noise = (extra.get((layer, q, step)) or []) + ["-", None, 0.01][len(extra.get((layer, q, step)) or []):]
        rows.append(coord.Fit(layer, "-", q, step, slope, 0.0, predicted, None, status, noise))
    return prediction.measured_regime(rows, list(order), ROLES, steps, tol, verdict, readout)


@pytest.mark.parametrize("changes,expected", [
    ((), "feature_learning"),  # the last hidden layer's change is Theta(1)
    ([("h1", "dh", 3, -0.5)], "feature_learning"),  # the last hidden layer's change decides, not the frozen input's
    ([("h2", "dh", 3, -0.5)], "kernel"),  # ... and vanishing
    ([("h2", "dh", 3, -0.19)], "feature_learning"),  # within the tolerance
    ([("h2", "dh", 3, -0.21)], "kernel"),
    ([("h2", "dh", 3, -0.5, "agree", F(0))], "feature_learning"),  # noisy, but agrees with Theta(1)
    ([("h2", "dh", 3, -0.3, "agree", F(0))], "feature_learning"),
    ([("h2", "dh", 3, -0.5, "agree", F(-1, 2))], "kernel"),  # agrees, with a vanishing prediction
    ([("h2", "dh", 1, -0.5)], "feature_learning"),  # only the last step counts for the regime
    ([("output", "df", 3, -0.5)], "trivial"),  # the output stops moving
    ([("output", "df", 3, -0.5, "agree", F(-1, 2))], "feature_learning"),  # ... as predicted: not called trivial here
    ([("output", "df", 3, -0.21, "-", None, 0.0)], "trivial"),
    ([("output", "df", 3, -0.25, "-", None, 0.05)], "feature_learning"),  # within the tolerance and twice the noise
    ([("output", "df", 3, math.nan), ("h2", "dh", 3, -0.5)], "kernel"),
    ([("h1", "dh", 1, 0.5)], "unstable"),  # growth at any step
    ([("h1", "dh", 3, 0.21, "-", None, 0.0)], "unstable"),
    ([("h1", "dh", 3, 0.25, "-", None, 0.01)], "unstable"),  # 0.25 > 0.2 + 2 * 0.01
    ([("h1", "dh", 3, 0.25, "-", None, 0.05)], "feature_learning"),  # 0.25 < 0.2 + 2 * 0.05
    ([("output", "df", 2, math.inf)], "unstable"),  # an overflow grows
    ([("h1", "dh", 3, math.nan)], "feature_learning"),  # no slope: no evidence of growth
    ([("h1", "h", 0, -0.5)], "unstable"),  # pre-activations vanish at initialisation
    ([("h1", "h", 0, 0.21, "-", None, 0.0)], "unstable"),
    ([("h2", "h", 0, -0.25, "-", None, 0.05)], "feature_learning"),  # within twice the noise
    ([("out", "h", 0, 0.5)], "feature_learning"),  # the readout's own output at init is f_0, judged as such below
    ([("output", "f", 0, 0.5)], "unstable"),  # f_0 blows up
    ([("output", "f", 0, 0.21, "-", None, 0.0)], "unstable"),
    ([("h1", "h", 0, math.nan)], "feature_learning"),
])
def test_the_measured_regime_follows_the_slopes(changes, expected):
    assert measured(changes) == expected


def test_with_a_biased_readout_its_weight_term_stands_for_the_output():
    assert measured([("out", "dh", 3, -0.5)], readout="out") == "trivial"
    assert measured([("output", "df", 3, -0.5)], readout="out") == "feature_learning"  # the bias keeps it moving
    assert measured([("out", "h", 0, 0.5)], readout="out") == "unstable"
    assert measured([("output", "f", 0, 0.5)], readout="out") == "feature_learning"


def test_without_a_hidden_layer_every_change_must_be_flat_for_feature_learning():
    assert measured([("out", "dh", 3, 0.1), ("output", "df", 3, -0.1)], order=("out",)) == "feature_learning"
    assert measured([("out", "dh", 3, -0.3)], order=("out",)) == "kernel"
    assert measured([("h1", "dh", 3, -0.21, "-", None, 0.0)], order=("out",)) == "kernel"


def test_a_verdict_every_compared_quantity_agrees_with_is_what_was_measured():
    flat = [("h2", "dh", 3, 0.0, "agree", F(0)), ("h1", "dh", 3, 0.0, "agree", F(0))]
    assert measured(flat, verdict=_regime_verdict("kernel")) == "kernel"  # the slopes alone would say feature learning
    assert measured(flat[:1], verdict=_regime_verdict("kernel")) == "kernel"  # the others are not compared ("-")
    # one compared quantity not agreeing: the slopes decide
    assert measured(flat + [("h1", "h", 0, 0.0, "inconclusive", F(0))], verdict=_regime_verdict("kernel")) == "feature_learning"
    assert measured(flat + [("h1", "h", 0, 0.0, "disagree", F(0))], verdict=_regime_verdict("kernel")) == "feature_learning"
    assert measured([], verdict=_regime_verdict("kernel")) == "feature_learning"  # nothing compared: the slopes decide
    # an unstable verdict with something that measurably grows (status "agree" from judge_growth)
    assert measured([("h1", "dh", 3, 0.1, "agree", F(1))], verdict=_regime_verdict("unstable")) == "unstable"
    assert measured([("h1", "dh", 3, 0.1, "disagree", F(1))], verdict=_regime_verdict("unstable")) == "feature_learning"
    assert measured(flat, verdict=_regime_verdict("unstable")) == "unstable"


@pytest.mark.parametrize("changes,expected", [
    # exactly at the threshold (tolerance + twice the noise, 0.25 + 2 * 0.125) is not past it
    ([("h1", "dh", 3, 0.5, "-", None, 0.125)], "feature_learning"),
    ([("h1", "h", 0, -0.5, "-", None, 0.125)], "feature_learning"),
    ([("output", "df", 3, -0.5, "-", None, 0.125)], "feature_learning"),
    ([("h2", "dh", 3, -0.25)], "feature_learning"),  # the last hidden layer's change at minus the tolerance
])
def test_the_thresholds_of_the_measured_regime_are_strict(changes, expected):
    assert measured(changes, tol=0.25) == expected


def test_the_measured_regime_reads_only_what_is_there():
    # a module without a role in the order, no output at initialisation, no change of the hidden layers
    assert measured([("output", "f", 0, None)], order=("h1", "p", "h2", "out")) == "feature_learning"
    assert measured([("h1", "dh", 3, None), ("h2", "dh", 3, None), ("out", "dh", 3, -0.5)]) == "kernel"  # all changes
    assert measured([("h1", "dh", 3, None), ("h2", "dh", 3, None)]) == "feature_learning"
    # the last of three hidden layers decides
    assert measured([("h2", "dh", 3, -0.5), ("h3", "dh", 3, 0.0)], order=("h1", "h2", "h3", "out")) == "feature_learning"
    assert measured([("h2", "dh", 3, 0.0), ("h3", "dh", 3, -0.5)], order=("h1", "h2", "h3", "out")) == "kernel"
    # one layer below the readout: the input layer is the last hidden one (not every change)
    assert measured([("out", "dh", 3, -0.5)], order=("h1", "out")) == "feature_learning"
    # without hidden layers every change counts, the output's too (here agreeing with a falling prediction)
    assert measured([("output", "df", 3, -0.5, "agree", F(-1, 2))], order=("out",)) == "kernel"
    assert measured([("output", "df", 3, -0.25, "agree", F(-1, 2))], order=("out",), tol=0.25) == "feature_learning"


class _Plain(torch.optim.Optimizer):
    """An optimizer of no torch family: its family must be given."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.data.add_(p.grad, alpha=-group["lr"])


def test_an_unwrapped_optimizer_is_wrapped_with_the_given_family_and_a_wrapped_one_kept():
    model = nn.Sequential(abcparam.Linear(3, 8, role="input", param=abcparam.mup(8, 4)),
                          abcparam.Linear(8, 2, role="output", param=abcparam.mup(8, 4)))
    (opt,) = engine.make_optimizer(lambda ps, lr: _Plain(ps, lr), model, 0.5, "adam")
    assert {g["abc_family"] for g in opt.param_groups} == {"adam"}
    with pytest.raises(ValueError, match="family"):
        engine.make_optimizer(lambda ps, lr: _Plain(ps, lr), model, 0.5, None)
    # a wrapped one is used as it is: its groups are not split or scaled again
    done = abcparam.wrap(torch.optim.SGD(model.parameters(), lr=0.5), model)
    groups = [dict(g) for g in done.param_groups]
    (opt,) = engine.make_optimizer(lambda ps: done, model, 0.5, "adam")
    assert opt is done and [dict(g) for g in opt.param_groups] == groups
    # several unwrapped optimizers are wrapped together, each for its own family
    a, b = list(model[0].parameters()), list(model[1].parameters())
    pair = engine.make_optimizer(lambda ps, lr: [torch.optim.SGD(a, lr=lr), torch.optim.Adam(b, lr=lr)], model, 0.5, None)
    assert [{g["abc_family"] for g in o.param_groups} for o in pair] == [{"sgd"}, {"adam"}]


# -- one measurement, against the same training by hand -------------------------------------------------------------


def _rms(t):
    return float(t.double().pow(2).mean().sqrt())


def test_one_measurement_is_what_the_same_training_by_hand_records():
    from abcparam.models import MLP

    build = lambda n: MLP(4, n, 2, depth=2, param=abcparam.mup(n, 8))  # noqa: E731
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 4, generator=g), torch.randn(8, 2, generator=g)
    values, order, seen, fam, unowned = measure.measure(build, 16, 3, (x, y), torch.optim.SGD, 0.1, 2, engine.default_loss,
                                                        (), None)
    torch.manual_seed(3)
    model = build(16)
    opt = abcparam.wrap(torch.optim.SGD(model.parameters(), lr=0.1), model)
    names = ["layers.0", "layers.1", "layers.2"]

    def forward():  # each layer's output (the readout's without its bias) and the model's, in eval mode
        outs = {}
        hooks = [model.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: outs.__setitem__(n, o.detach().clone()))
                 for n in names]
        model.eval()
        with torch.no_grad():
            f = model(x)
        model.train()
        for h in hooks:
            h.remove()
        outs["layers.2"] = outs["layers.2"] - model.layers[2].bias.detach()
        return outs, f

    h0, f0 = forward()
    want = {(n, "h", 0): _rms(h0[n]) for n in names}
    want[("output", "f", 0)] = _rms(f0)
    for step in (1, 2):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        want[("loss", "loss", step - 1)] = loss.item()
        loss.backward()
        opt.step()
        ht, ft = forward()
        want.update({(n, "dh", step): _rms(ht[n] - h0[n]) for n in names})
        want[("output", "df", step)] = _rms(ft - f0)
    assert values.keys() == want.keys()
    assert all(values[k] == pytest.approx(want[k], rel=1e-6, abs=1e-12) for k in want), {k: (values[k], want[k]) for k in want}
    assert order == names and fam == dict.fromkeys(names, "sgd") and unowned == []
    assert [(type(seen[n]), seen[n].role) for n in names] == [(abcparam.Linear, r) for r in ("input", "hidden", "output")]
    # at initialisation only (extra seeds): the same first values, no optimizer, no family
    values0, *_, fam0, _ = measure.measure(build, 16, 3, (x, y), torch.optim.SGD, 0.1, 0, engine.default_loss, (), None)
    assert fam0 is None and values0 == {k: v for k, v in values.items() if k[2] == 0 and k[1] in ("h", "f")}


def test_a_measurement_refuses_unknown_module_names_before_training():
    from abcparam.models import MLP

    build = lambda n: MLP(4, n, 2, depth=2, param=abcparam.mup(n, 8))  # noqa: E731
    x = torch.randn(8, 4)
    with pytest.raises(ValueError, match=r"^modules: the model has no module named 'nope'$"):
        measure.measure(build, 16, 0, x, torch.optim.SGD, 0.1, 1, engine.default_loss, ("nope",), None)
    with pytest.raises(ValueError, match=r"^exponents: the model has no module named 'head'$"):
        measure.measure(build, 16, 0, x, torch.optim.SGD, 0.1, 1, engine.default_loss, (), None,
                       declared={"head": ("output", F(0), F(0), F(0), "sgd")})


class _Mixed(nn.Module):
    """An abcparam input layer, a plain hidden layer inside a container (trained, owned by no abcparam layer), and a
    plain readout whose exponents are declared."""

    def __init__(self, n):
        super().__init__()
        self.inp = abcparam.Linear(4, n, role="input", param=abcparam.mup(n, 8))
        self.act = nn.Tanh()
        self.block = nn.Sequential(nn.Linear(n, n))
        self.head = nn.Linear(n, 2)
        nn.init.constant_(self.head.bias, 3.0)

    def forward(self, x):
        return self.head(self.act(self.block(self.act(self.inp(x)))))


def test_a_measurement_tracks_named_unowned_and_declared_modules_as_the_model_calls_them():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 4, generator=g), torch.randn(8, 2, generator=g)
    declared = {"head": ("output", F(1, 2), F(1, 2), F(0), "sgd")}
    values, order, seen, fam, unowned = measure.measure(_Mixed, 16, 3, (x, y), torch.optim.SGD, 0.1, 1, engine.default_loss,
                                                        ("act",), None, declared=declared)
    assert order == ["inp", "act", "block.0", "head"]  # call order; the container of the plain layer is not tracked
    assert unowned == ["block.0.weight", "block.0.bias"] and fam == {"inp": "sgd", "head": "sgd"}
    assert isinstance(seen["act"], nn.Tanh) and isinstance(seen["block.0"], nn.Linear) and isinstance(seen["inp"], abcparam.Linear)
    view = seen["head"]
    assert isinstance(view, measure.Declared) and (view.role, view.a, view.b, view.c_sgd) == ("output", F(1, 2), F(1, 2), F(0))
    # by hand: the same model, its outputs at initialisation (the declared readout's without its bias)
    torch.manual_seed(3)
    model = _Mixed(16)
    assert isinstance(view.module, nn.Linear) and view.module.weight.shape == model.head.weight.shape  # (trained since)
    with torch.no_grad():
        a = model.act(model.inp(x))
        b = model.block(a)
        f = model.head(model.act(b))
    # the act module is called twice: its two outputs are measured together
    want = {"inp": model.inp(x), "act": torch.cat([a.flatten(), model.act(b).flatten()]), "block.0": b, "head": f - model.head.bias}
    for name, t in want.items():
        assert values[(name, "h", 0)] == pytest.approx(_rms(t.detach()), rel=1e-6), name
    assert values[("output", "f", 0)] == pytest.approx(_rms(f), rel=1e-6)
    assert {k for k in values if k[0] == "act"} == {("act", "h", 0), ("act", "dh", 1)}
    # an optimizer of no torch family trains at the family given
    *_, fam, _ = measure.measure(_Mixed, 16, 3, (x, y), lambda ps, lr: _Plain(ps, lr), 0.1, 1, engine.default_loss, (), "adam")
    assert fam == {"inp": "adam"}


def test_the_loss_rise_guard_uses_2x_at_the_smallest_width_and_1_5x_at_wider_ones():
    steady = [[2.0, 1.9, 1.8]] * 2
    rising = lambda f: [[2.0, 2.0 * f, 1.0], [2.0, 2.0 * f, 1.0]]  # noqa: E731  (two seeds, the peak at step 1)
    ws = [32, 64, 128]
    assert coord._loss_rise(ws, [rising(1.9), steady, steady], 3) is None  # under 2x at the smallest
    assert coord._loss_rise(ws, [rising(2.1), steady, steady], 3) == (32, pytest.approx(2.1))
    assert coord._loss_rise(ws, [steady, rising(1.45), steady], 3) is None  # under 1.5x at a wider width
    assert coord._loss_rise(ws, [steady, steady, rising(1.55)], 3) == (128, pytest.approx(1.55))
    assert coord._loss_rise(ws, [rising(2.1), rising(1.6), steady], 3)[0] == 32  # the first width that rises
    # the mean over seeds decides: one seed at 1.8x and one flat is a 1.4x rise
    assert coord._loss_rise(ws, [steady, [[2.0, 3.6, 1.0], [2.0, 2.0, 2.0]], steady], 3) is None
    assert coord._loss_rise(ws, [[[2.0, math.inf, 1.0]] * 2, steady, steady], 3) is None  # diverged: reported elsewhere
    assert (coord.LOSS_RISE, coord.WIDE_LOSS_RISE) == (2.0, 1.5)


def test_observe_uses_batch_statistics_and_leaves_the_running_ones_alone():
    torch.manual_seed(0)
    bn = nn.BatchNorm1d(4)
    model = nn.Sequential(nn.Linear(3, 4), bn, nn.Dropout(0.5))
    model.train()
    x = torch.randn(16, 3) * 5 + 2
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    out = engine.observe(model, (x,), {})
    h = model[0](x)
    expected = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + bn.eps) * bn.weight + bn.bias
    assert torch.allclose(out, expected, atol=1e-5)  # batch statistics, and no dropout (eval elsewhere)
    assert all(torch.equal(before[k], v) for k, v in bn.state_dict().items())  # running stats, counter unchanged
    assert model.training and bn.training and model[2].training  # every module's mode restored
