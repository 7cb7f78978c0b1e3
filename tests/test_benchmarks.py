"""Smoke tests of the benchmark scripts' building blocks (the benchmarks themselves are never timed in tests)."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import mutransfer  # noqa: E402
import overhead  # noqa: E402


def test_mutransfer_run_and_overhead_memory():
    ids = torch.arange(200) % 11
    data = mutransfer.batches(ids, steps=3, batch=4, seed=0)
    loss = mutransfer.run("muP", 32, 16, 1e-3, data, 11, depth=2, seed=0)
    assert 0 < loss < 10
    rows = overhead.memory_rows()
    assert [r[-1] for r in rows] == ["1.000", "1.000", "1.000"]


def test_mutransfer_main_runs_each_model_end_to_end(capsys):
    mutransfer.main(["--widths", "32", "64", "--base-width", "32", "--steps", "2", "--log2-lr", "-8", "-7", "-6", "--depth", "2"])
    out = capsys.readouterr().out
    assert "SP: training loss per learning rate" in out and "| 64 |" in out
    if not (Path(mutransfer.__file__).resolve().parents[1] / "data" / "omniglot").is_dir():
        pytest.skip("data/omniglot is not in this checkout")
    mutransfer.main(["--model", "resnet", "--widths", "8", "16", "--base-width", "8", "--steps", "2", "--batch", "8",
                     "--log2-lr", "-8", "-6"])
    out = capsys.readouterr().out
    assert "Omniglot background characters, 4,840 images of 14 x 14, 242 classes" in out
    assert "muP: training loss per learning rate" in out and "| 16 |" in out
