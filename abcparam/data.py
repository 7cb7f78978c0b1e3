"""Real text that needs no download: CPython's help topics, as characters.

``pydoc_data.topics.topics`` ships with every CPython (about 465,000 characters
of English technical prose).  It is used by the examples and the
hyperparameter-transfer benchmark; nothing is fetched at run time.

>>> ids, vocab = char_corpus()
>>> len(vocab) < 128 and ids.numel() > 400_000
True
"""

from __future__ import annotations

from typing import Tuple

from . import torch_quiet  # noqa: F401  (torch without the numpy warning)
import torch

__all__ = ["char_corpus", "next_char_batches"]


def char_corpus(max_chars: int = 0) -> Tuple[torch.Tensor, str]:
    """All help topics joined in key order, as a LongTensor of character ids and the sorted vocabulary.

    Characters outside printable ASCII are dropped so the vocabulary is small and fixed.
    """
    from pydoc_data.topics import topics

    text = "\n".join(topics[k] for k in sorted(topics))
    text = "".join(ch for ch in text if ch == "\n" or 32 <= ord(ch) < 127)
    if max_chars:
        text = text[:max_chars]
    vocab = "".join(sorted(set(text)))
    lookup = {ch: i for i, ch in enumerate(vocab)}
    return torch.tensor([lookup[ch] for ch in text], dtype=torch.long), vocab


def next_char_batches(ids: torch.Tensor, context: int, batch: int, steps: int, seed: int = 0):
    """Yield ``steps`` batches ``(x, y)``: x holds ``context`` character ids, y the ids shifted by one."""
    g = torch.Generator().manual_seed(seed)
    n = ids.numel() - context - 1
    for _ in range(steps):
        starts = torch.randint(0, n, (batch,), generator=g)
        offsets = torch.arange(context + 1)
        window = ids[starts[:, None] + offsets]
        yield window[:, :-1], window[:, 1:]
