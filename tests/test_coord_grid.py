"""The coordinate check is right both ways: correct models never fail, mutants fail wherever the correct model passes.

The grid of benchmarks/coord_grid.py (4 parametrizations x 3 nonlinearities x depths 2 and 4 x SGD and Adam
x 3 learning rates over two decades x with and without biases = 288 correct cells, and 432 mutant cells),
checked at the CI defaults of abcparam.testing. About 3 minutes on 2 cores: marked slow, run by .ci/run.
`python benchmarks/coord_grid.py` prints the counts and margins the README reports.
"""

import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import coord_grid as G  # noqa: E402

GROUPS = list(itertools.product(G.MODELS, G.NONLINEARITIES, G.DEPTHS, ("sgd", "adam")))


@pytest.mark.slow
@pytest.mark.parametrize("model,nonlinearity,depth,family", GROUPS, ids=["-".join(map(str, g)) for g in GROUPS])
def test_no_false_alarm_and_no_miss(model, nonlinearity, depth, family):
    x_y = G.batch()
    for lr, bias in itertools.product(G.LRS[family], (True, False)):
        cell = G.Cell(model, nonlinearity, depth, family, lr, bias)
        report = G.run(cell, x_y)
        assert report.status != "fail", f"false alarm: {cell.label()}\n{report}"
        if report.status != "pass" or not model.startswith("mup"):
            continue
        for mutant in G.MUTANTS:
            if G.mutant_applies(mutant, model, family):
                broken = G.Cell(model, nonlinearity, depth, family, lr, bias, mutant)
                mutated = G.run(broken, x_y)
                assert mutated.status == "fail", f"miss: {broken.label()} (the correct model passes)\n{mutated}"
