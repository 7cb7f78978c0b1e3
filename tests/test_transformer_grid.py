"""The coordinate check is right both ways on transformers: no correct model fails, every mutant fails wherever its
correct model passes.

The zoo of benchmarks/transformer_grid.py: TinyTransformer untied and tied in both muP forms, HF GPT-2 and Llama
converted, a converted nn.TransformerEncoderLayer model; AdamW at 3e-3, 1e-2 and 3e-2; two random token batches;
five mutants (1/sqrt(d_head) attention, a plain nn.Linear readout, a plain nn.Linear MLP projection, a tie by plain
weight sharing without the readout multiplier, the attention left unconverted), each checked by
``abcparam.testing``'s decision at its CI defaults (widths 128 to 1024, 3 steps, 2 seeds).  Marked slow (run by
.ci/run); the cells run in two single-threaded processes.  Each model on one of the two batches (they alternate from
one model to the next): half the grid, about 4 minutes.  `python benchmarks/transformer_grid.py` runs the whole grid
and prints the counts and margins the docs report.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import transformer_grid as G  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("model", G.MODELS)
def test_no_false_alarm_and_no_miss(model):
    if not G.available(model):
        pytest.skip("needs HF transformers (the [hf] extra)")
    half = [c for c in G.cells(models=(model,)) if c.batch == G.BATCHES[G.MODELS.index(model) % len(G.BATCHES)]]
    assert len(half) == len(G.LRS)  # every learning rate, on this model's batch
    outcome = G.run_cells(half, mutants_where_passing=True)
    for cell, status, text in outcome:
        if cell.mutant is None:
            assert status != "fail", f"false alarm: {cell.label()}\n{text}"
        else:
            assert status == "fail", f"miss: {cell.label()} (the correct model passes)\n{text}"
    # not vacuous: the correct model passes at two of its three rates at least (so its mutants ran there)
    assert sum(1 for c, s, _ in outcome if c.mutant is None and s == "pass") >= 2
