"""Swap and wrap: muP on an MLP and a tiny transformer, trained on CPython's help text.

    python examples/quickstart.py            # about 1 minute on 2 CPU cores
    python examples/quickstart.py --steps 20 # a smoke run

The MLP reads the previous 8 characters (embedded, concatenated) and predicts
the next; it is trained at base width 128 and at 8x that width with the *same*
Adam learning rate, which muP makes the right one at both widths.
"""

import argparse
import time

import torch
from torch import nn

import abcparam
from abcparam.data import char_corpus, next_char_batches
from abcparam.models import TinyTransformer

CONTEXT = 8


class CharMLP(nn.Module):
    """What a user writes, with nn.Linear/nn.Embedding swapped for abcparam's layers."""

    def __init__(self, vocab, width, param):
        super().__init__()
        self.emb = abcparam.Embedding(vocab, 32, param=abcparam.sp())  # fixed size: an ordinary layer
        self.inp = abcparam.Linear(32 * CONTEXT, width, role="input", param=param)
        self.hidden = nn.ModuleList(abcparam.Linear(width, width, param=param) for _ in range(2))
        self.out = abcparam.Linear(width, vocab, role="output", param=param)

    def forward(self, x):
        h = torch.tanh(self.inp(self.emb(x).flatten(1)))
        for layer in self.hidden:
            h = torch.tanh(layer(h))
        return self.out(h)


def run(model, steps, lr, ids, context, last_only):
    opt = abcparam.wrap(torch.optim.Adam(model.parameters(), lr=lr), model)
    t0, losses = time.time(), []
    for x, y in next_char_batches(ids, context, 64, steps, seed=0):
        logits = model(x)
        target = y[:, -1] if last_only else y
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    tail = losses[-max(1, steps // 10):]
    return sum(tail) / len(tail), time.time() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    torch.manual_seed(0)
    ids, vocab = char_corpus()
    print(f"data: CPython help topics, {ids.numel():,} characters, vocabulary {len(vocab)}")
    print(f"{'model':<34} {'width':>6} {'lr':>7} {'final loss':>10} {'time':>6}")
    for width in (128, 1024):
        torch.manual_seed(0)
        model = CharMLP(len(vocab), width, abcparam.mup(width, base_width=128))
        loss, sec = run(model, args.steps, 3e-3, ids, CONTEXT, last_only=True)
        print(f"{'MLP, muP (Adam)':<34} {width:>6} {3e-3:>7g} {loss:>10.3f} {sec:>5.1f}s")
    for tie in (False, True):
        torch.manual_seed(0)
        width = 128
        model = TinyTransformer(len(vocab), width, param=abcparam.mup(width, 32, form="table8"), tie=tie, context=32)
        loss, sec = run(model, args.steps, 3e-3, ids, 32, last_only=False)
        name = f"transformer, muP Table 8, {'tied' if tie else 'untied'}"
        print(f"{name:<34} {width:>6} {3e-3:>7g} {loss:>10.3f} {sec:>5.1f}s")


if __name__ == "__main__":
    main()
