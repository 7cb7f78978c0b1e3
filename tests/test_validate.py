"""abcparam.validate (the package's argument checks), abcparam.text.table, and the layer protocol."""

import math

import pytest
import torch
from torch import nn

import abcparam
from abcparam import Parametrization, text, validate


@pytest.mark.parametrize("value,zero_ok,none_ok,ok", [
    (0.5, False, False, True), (3, False, False, True), (0, False, False, False), (0, True, False, True),
    (-1e-9, True, False, False), (math.inf, False, False, False), (math.nan, True, False, False), (True, False, False, False),
    ("1", False, False, False), (None, False, True, True), (None, False, False, False),
])
def test_number_accepts_exactly_the_finite_numbers_in_range(value, zero_ok, none_ok, ok):
    if ok:
        out = validate.number(value, "x", zero_ok=zero_ok, none_ok=none_ok)
        assert out == (None if value is None else float(value)) and (out is None or type(out) is float)
    else:
        allowed = f"a finite number {'>= 0' if zero_ok else '> 0'}{' or None' if none_ok else ''}"
        with pytest.raises(ValueError, match=rf"^x: {allowed}, got {value!r}$".replace("(", r"\(").replace(")", r"\)")):
            validate.number(value, "x", zero_ok=zero_ok, none_ok=none_ok)


def test_number_says_what_the_number_is():
    with pytest.raises(ValueError, match=r"^tol: a finite number > 0 \(the largest slope\), got -1$"):
        validate.number(-1, "tol", what="the largest slope")


def test_count_int_list_and_choice():
    assert validate.count(3, "steps") == 3 and validate.count(0, "k", minimum=0) == 0
    for bad in (0, True, 2.0, "2"):
        with pytest.raises(ValueError, match=rf"^steps: an int >= 1, got {bad!r}$"):
            validate.count(bad, "steps")
    with pytest.raises(ValueError, match=r"^k: an int >= 2, got 1$"):
        validate.count(1, "k", minimum=2)
    assert validate.int_list((0, 1), "seeds") == [0, 1]
    for bad in ([], [0, 1.5], [True]):
        with pytest.raises(ValueError, match=r"^seeds: a non-empty list of ints"):
            validate.int_list(bad, "seeds")
    assert validate.choice("gp", "kind", ("ntk", "gp")) == "gp"
    with pytest.raises(ValueError, match=r"^kind: got 'nngp'; allowed: ntk, gp$"):
        validate.choice("nngp", "kind", ("ntk", "gp"))


def test_the_constructor_family_separates_type_from_range():
    assert validate.positive_int(4, "width") == 4 and validate.real(0, "sigma", zero_ok=True) == 0.0
    with pytest.raises(TypeError, match=r"^width: expected a positive int, got bool True$"):
        validate.positive_int(True, "width")
    with pytest.raises(ValueError, match=r"^width: must be > 0, got 0$"):
        validate.positive_int(0, "width")
    with pytest.raises(TypeError, match=r"^alpha: expected a finite number, got inf$"):
        validate.real(math.inf, "alpha", zero_ok=False)
    with pytest.raises(ValueError, match=r"^alpha: must be > 0, got 0$"):
        validate.real(0, "alpha", zero_ok=False)


def test_parametrization_check():
    p = abcparam.mup(64, 16)
    assert Parametrization.require(p) is p
    with pytest.raises(TypeError, match=r"^param: required, e.g. param=abcparam.mup"):
        Parametrization.require(None)
    with pytest.raises(TypeError, match=r"^param: expected an abcparam.Parametrization, got str$"):
        Parametrization.require("mup")


def test_table_aligns_columns_under_a_dashed_header():
    assert text.table([("a", "bb"), ("ccc", "d")]) == "a    bb\n---  --\nccc  d"
    with pytest.raises(ValueError, match="rows"):
        text.table([])


def test_the_layer_protocol_is_what_every_part_of_the_package_looks_for():
    p = abcparam.mup(64, 16)
    net = nn.Sequential(nn.Linear(8, 64), abcparam.LayerNorm(64, param=p), nn.Linear(64, 3))
    assert not abcparam.is_abc_layer(net[0]) and not isinstance(net[0], abcparam.AbcLayer)
    abcparam.convert(net, p, widths=[64])
    assert all(abcparam.is_abc_layer(m) and isinstance(m, abcparam.AbcLayer) for m in net)
    assert list(abcparam.abc_modules(net)) == ["0", "1", "2"]
    marked = type("MyRMSNorm", (nn.Module,), {})()
    marked.weight = nn.Parameter(torch.ones(64))
    holder = nn.Sequential(nn.Linear(8, 64), marked)
    abcparam.convert(holder, p, widths=[64])
    assert abcparam.is_abc_layer(holder[1]) and "weight" in holder[1].abc_scales()


def test_depth_marks_are_read_through_accessors():
    from abcparam.residual import depth_of, is_branch

    p = abcparam.mup(64, 16, depth=8, base_depth=2)
    branch, block, plain = nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 4)), nn.Linear(4, 4)
    abcparam.mark_branch(branch, param=p)
    abcparam.mark_block(block, param=p)
    assert is_branch(branch) and not is_branch(block) and not is_branch(plain)
    assert depth_of(branch) == depth_of(block) and depth_of(branch).depth == 8 and depth_of(plain) is None
