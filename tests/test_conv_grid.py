"""The coordinate check is right both ways on convolutional networks: no correct ResNet fails, every mutant fails
wherever its correct model passes.

The quick grid of benchmarks/conv_grid.py (muP in both forms and NTK, batch norm, SGD 0.1 and Adam 1e-2; the muP
check on every muP cell that does not fail; three mutants: a plain nn.Conv2d hidden layer under Adam, a plain
nn.Linear readout, batch-norm gains trained at a hidden matrix's rate), at widths 32 to 256, in two single-threaded
processes.  Marked slow (about 90 s).  `python benchmarks/conv_grid.py` runs the whole grid and prints the counts the
docs report.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import conv_grid as G  # noqa: E402


@pytest.mark.slow
def test_no_false_alarm_and_no_miss_on_resnets():
    cells = list(G.cells(quick=True))
    rows = G.run_grid(cells)
    for cell, status, text in rows:
        if cell.mutant is None:
            assert status != "fail", f"false alarm: {cell.label()}\n{text}"
        else:
            assert status == "fail", f"miss: {cell.label()} (the correct model passes)\n{text}"
    correct = [(c, s) for c, s, _ in rows if c.mutant is None and not c.maximal]
    assert len(correct) == len(cells) and sum(s == "pass" for _, s in correct) >= len(cells) // 2  # not vacuous
    passing = [c for c, s in correct if s == "pass"]
    assert sum(c.mutant is not None for c, _, _ in rows) == sum(len(G.mutants_of(c)) for c in passing)
    assert {c.mutant for c, _, _ in rows if c.mutant} == set(G.MUTANTS)  # every mutant ran somewhere
