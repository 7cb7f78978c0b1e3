"""Smoke tests of the benchmark scripts' building blocks (the benchmarks themselves are never timed in tests)."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import mutransfer  # noqa: E402
import overhead  # noqa: E402
import word2vec  # noqa: E402


def test_spearman_matches_known_values():
    assert word2vec.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert word2vec.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties get average ranks: ranks x = (1.5, 1.5, 3), y = (1, 2, 3)
    assert word2vec.spearman([5, 5, 7], [1, 2, 3]) == pytest.approx(0.8660254, rel=1e-6)
    assert word2vec.spearman([1, 1, 1], [1, 2, 3]) == 0.0


def test_skipgram_pairs_stay_inside_sentences():
    ids = [[0, 1, 2, 3], [4, 5]]
    freq = torch.ones(6, dtype=torch.float64)
    c, x = word2vec.skipgram_pairs(ids, freq, window=2, sample=1.0, seed=0)
    pairs = set(zip(c.tolist(), x.tolist()))
    assert pairs and all((a < 4) == (b < 4) for a, b in pairs) and all(a != b for a, b in pairs)


def test_sgns_limit_and_finite_steps_agree_at_init():
    from abcparam.limits import LinearNetConfig

    cfg = LinearNetConfig(d_in=7, d_out=7, base_width=8, lr=1.0, one_hot=True, sigma_u=0.5)
    lim, fin = word2vec.Limit(cfg), word2vec.Finite(cfg, 4096, seed=0)
    w, c, negs = torch.tensor([0, 3]), torch.tensor([1, 2]), torch.tensor([[4, 5], [6, 0]])
    lim.step(w, c, negs)
    fin.step(w, c, negs)
    e_lim, e_fin = lim.embeddings(), fin.embeddings()
    # inner products of embeddings approach the limit's at large width
    torch.testing.assert_close(e_fin @ e_fin.T / 4096, e_lim @ e_lim.T, atol=0.03, rtol=0)


def test_mutransfer_run_and_overhead_memory():
    ids = torch.arange(200) % 11
    data = mutransfer.batches(ids, steps=3, batch=4, seed=0)
    loss = mutransfer.run("muP", 32, 16, 1e-3, data, 11, depth=2, seed=0)
    assert 0 < loss < 10
    rows = overhead.memory_rows()
    assert [r[-1] for r in rows] == ["1.000", "1.000", "1.000"]
