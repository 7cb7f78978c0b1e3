"""Reference models, the data helper and the quickstart example."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import abcparam
from abcparam.data import char_corpus, next_char_batches
from abcparam.models import MLP, TinyTransformer


def test_char_corpus_is_real_text():
    ids, vocab = char_corpus()
    assert ids.numel() > 400_000 and " " in vocab and "e" in vocab
    x, y = next(next_char_batches(ids, 16, 4, 1))
    assert x.shape == y.shape == (4, 16) and torch.equal(x[:, 1:], y[:, :-1])


@pytest.mark.parametrize("tie", [False, True])
def test_tiny_transformer(tie):
    p = abcparam.mup(64, 16, form="table8")
    model = TinyTransformer(30, 64, param=p, tie=tie, context=8)
    assert model.attn_scale == pytest.approx(4 ** 0.5 / 16)  # sqrt(base d_head) / d_head
    out = model(torch.randint(0, 30, (2, 8)))
    assert out.shape == (2, 8, 30)
    owned = abcparam.optim._owned_scales(model)
    assert all(id(q) in owned for q in model.parameters())
    with pytest.raises(ValueError, match="context"):
        model(torch.randint(0, 30, (2, 9)))
    with pytest.raises(ValueError, match="n_heads"):
        TinyTransformer(30, 64, param=p, n_heads=5)
    sp = TinyTransformer(30, 64, param=abcparam.sp(64, 16), context=8)
    assert sp.attn_scale == pytest.approx(16 ** -0.5)


def test_mlp_validates():
    with pytest.raises(ValueError, match="nonlinearity"):
        MLP(3, 8, 2, param=abcparam.mup(), nonlinearity="swish")
    with pytest.raises(ValueError, match="depth"):
        MLP(3, 8, 2, param=abcparam.mup(), depth=0)


def test_quickstart_example_runs():
    script = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"
    p = subprocess.run([sys.executable, str(script), "--steps", "3"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "transformer, muP Table 8, tied" in p.stdout
