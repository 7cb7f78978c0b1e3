"""The coordinate check is right both ways: correct models never fail, mutants fail wherever the correct model passes.

Half the grid of benchmarks/coord_grid.py (4 parametrizations x 3 nonlinearities x depths 2 and 4 x SGD and Adam
x 3 learning rates over two decades x with and without biases = 288 correct cells, their mutants, and the muP check
of every muP cell that does not fail): every parametrization with every nonlinearity, optimizer, learning rate and
bias setting, each pair of a parametrization and a nonlinearity at one depth (depth 4 rotating through the
nonlinearities from one parametrization to the next), checked at the CI defaults of abcparam.testing, in two
single-threaded worker processes.  Marked slow, run by .ci/run (about 5 minutes; the whole grid would take twice
that).  `python benchmarks/coord_grid.py` runs the whole grid and prints the counts and margins the docs report.
"""

import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import coord_grid as G  # noqa: E402

GROUPS = [(model, nl, G.DEPTHS[-1] if j == k % len(G.NONLINEARITIES) else G.DEPTHS[0], family)
          for k, model in enumerate(G.MODELS) for j, nl in enumerate(G.NONLINEARITIES) for family in ("sgd", "adam")]


def test_the_half_grid_covers_every_setting_but_the_depth_of_each_pair():
    assert len(GROUPS) == len(set(GROUPS)) == len(G.MODELS) * len(G.NONLINEARITIES) * 2
    assert {(m, nl, f) for m, nl, _, f in GROUPS} == set(itertools.product(G.MODELS, G.NONLINEARITIES, ("sgd", "adam")))
    assert {(nl, d) for _, nl, d, _ in GROUPS} == set(itertools.product(G.NONLINEARITIES, G.DEPTHS))


@pytest.fixture(scope="module")
def outcomes():
    return G.check_groups(GROUPS)  # every group at once, in two single-threaded worker processes


@pytest.mark.slow
@pytest.mark.parametrize("group", GROUPS, ids=["-".join(map(str, g)) for g in GROUPS])
def test_no_false_alarm_and_no_miss(group, outcomes):
    checked = outcomes[group]
    for cell, status, text in checked:
        if cell.mutant is None:
            assert status != "fail", f"false alarm: {cell.label()}\n{text}"
        else:
            assert status == "fail", f"miss: {cell.label()} (the correct model passes)\n{text}"
    model, _, _, family = group
    # not vacuous: every learning rate and bias setting was checked, and mutants ran wherever a muP cell passed
    assert sum(c.mutant is None and not c.maximal for c, _, _ in checked) == 2 * len(G.LRS[family])
    passing = [c for c, s, _ in checked if c.mutant is None and not c.maximal and s == "pass"]
    assert sum(c.mutant is not None for c, _, _ in checked) == sum(len(G.mutants_of(c)) for c in passing)
    # the muP check (every tensor updated maximally) ran on every muP cell that does not fail, never failing it (above)
    not_failing = [c for c, s, _ in checked if c.mutant is None and not c.maximal and s != "fail"]
    assert sum(c.mutant is None and c.maximal for c, _, _ in checked) == (len(not_failing) if model.startswith("mup") else 0)
