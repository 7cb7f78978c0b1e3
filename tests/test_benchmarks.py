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
