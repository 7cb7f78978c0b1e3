"""Word2Vec at CPU scale: the exact muP limit vs the NTK limit vs finite widths (TP4 section 6 / docs/theory.md section 9).

Skip-gram with negative sampling is the linear network f(x) = V^T U x with a
one-hot input (the centre word) and one logit per vocabulary word (the
context): the muP limit of docs/theory.md section 9 is exact for it. This script
trains, on the same pairs in the same order:

- finite networks of widths 2^4 to 2^10 built from abcparam.Embedding (input)
  and abcparam.Linear (readout) in muP (TP5 Table 8 form) with abcparam.wrap(SGD);
- the muP limit (abcparam.limits.MuPLimit: a network of width 2V);
- the NTK limit (abcparam.limits.NTKLimit: the embeddings stay at their
  initialisation, so every pair of distinct words has similarity 0);

and reports the Spearman correlation between the cosine similarity of the
learned input embeddings and human judgements on WordSim-353 and SimLex-999,
over seeds, with the time each model took.

Data: gensim's test corpora (``pip install -e ".[word2vec]"``): the Lee news
corpus ``lee_background.cor`` (about 60,000 words) with ``wordsim353.tsv`` and
``simlex999.txt`` beside it. Nothing is downloaded.

    python benchmarks/word2vec.py --quick      # about 5 minutes on 2 CPU cores (2 seeds, 3 epochs)
    python benchmarks/word2vec.py              # about 20 minutes (3 seeds, 8 epochs)
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import re
import sys
import time
from typing import Dict, List, Sequence, Tuple

import torch

import abcparam
from abcparam.limits import LinearNetConfig, MuPLimit, NTKLimit


def _data_dir() -> str:
    try:
        import gensim
    except ImportError:
        sys.exit("benchmarks/word2vec.py needs gensim's test corpora: pip install -e '.[word2vec]' (or pip install gensim)")
    return os.path.join(os.path.dirname(gensim.__file__), "test", "test_data")


def load(min_count: int) -> Tuple[List[List[int]], List[str], torch.Tensor, Dict[str, List[Tuple[str, str, float]]]]:
    d = _data_dir()
    with open(os.path.join(d, "lee_background.cor"), encoding="utf8") as fh:
        sentences = [re.findall(r"[a-z]+", line.lower()) for line in fh]
    counts = collections.Counter(w for s in sentences for w in s)
    vocab = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    index = {w: i for i, w in enumerate(vocab)}
    ids = [[index[w] for w in s if w in index] for s in sentences]
    freq = torch.tensor([counts[w] for w in vocab], dtype=torch.float64)
    evals = {}
    for name, fname in (("WordSim-353", "wordsim353.tsv"), ("SimLex-999", "simlex999.txt")):
        pairs = []
        with open(os.path.join(d, fname), encoding="utf8") as fh:
            for line in fh:
                if line.startswith("#"):
                    continue
                a, b, score = line.rstrip("\n").split("\t")[:3]
                try:
                    value = float(score)
                except ValueError:
                    continue  # header line
                if a.lower() in index and b.lower() in index:
                    pairs.append((a.lower(), b.lower(), value))
        evals[name] = pairs
    return ids, vocab, freq, evals


def skipgram_pairs(ids: List[List[int]], freq: torch.Tensor, window: int, sample: float, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(centre, context) pairs with word2vec's frequent-word subsampling and random window shrinking."""
    g = torch.Generator().manual_seed(seed)
    f = freq / freq.sum()
    p_keep = (((f / sample).sqrt() + 1) * (sample / f)).clamp(max=1.0)
    words = torch.cat([torch.tensor(s, dtype=torch.long) for s in ids if s])
    sent = torch.cat([torch.full((len(s),), i, dtype=torch.long) for i, s in enumerate(ids) if s])
    keep = torch.rand(words.numel(), generator=g) < p_keep[words]
    words, sent = words[keep], sent[keep]
    reach = torch.randint(1, window + 1, (words.numel(),), generator=g)  # each centre's shrunk window
    centres, contexts = [], []
    for d in range(1, window + 1):
        same = sent[:-d] == sent[d:]
        fwd = same & (reach[:-d] >= d)  # centre i, context i + d
        bwd = same & (reach[d:] >= d)  # centre i + d, context i
        centres += [words[:-d][fwd], words[d:][bwd]]
        contexts += [words[d:][fwd], words[:-d][bwd]]
    return torch.cat(centres), torch.cat(contexts)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    def ranks(v: Sequence[float]) -> List[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sx = math.sqrt(sum((a - mx) ** 2 for a in rx))
    sy = math.sqrt(sum((b - my) ** 2 for b in ry))
    if sx == 0 or sy == 0:
        return 0.0  # all similarities equal: no ranking at all
    return sum((a - mx) * (b - my) for a, b in zip(rx, ry)) / (sx * sy)


def evaluate(emb: torch.Tensor, index: Dict[str, int], pairs: List[Tuple[str, str, float]]) -> float:
    e = emb.double()
    e = e / e.norm(dim=1, keepdim=True).clamp_min(1e-30)
    sims = [float(e[index[a]] @ e[index[b]]) for a, b, _ in pairs]
    return spearman(sims, [s for _, _, s in pairs])


# ---------------------------------------------------------------------------
# The three kinds of model, one SGNS step each (chi = dLoss/df on the logits used)
# ---------------------------------------------------------------------------


def _chi(pos: torch.Tensor, neg: torch.Tensor, batch: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """d(mean SGNS loss)/d(logit): sigma(s) - 1 for the true context, sigma(s) for negatives."""
    return (torch.sigmoid(pos) - 1) / batch, torch.sigmoid(neg) / batch


class Finite(torch.nn.Module):
    """abcparam layers in muP (Table 8 form): the logit of context c is V[:, c] . U x, gathered."""

    def __init__(self, cfg: LinearNetConfig, width: int, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        p = abcparam.mup(width, cfg.base_width, form="table8")
        self.inp = abcparam.Embedding(cfg.d_in, width, param=p, sigma=cfg.su, dtype=cfg.dtype)
        self.out = abcparam.Linear(width, cfg.d_out, False, role="output", param=p, sigma=cfg.sv / cfg.base_width, dtype=cfg.dtype)
        self.opt = abcparam.wrap(torch.optim.SGD(self.parameters(), lr=cfg.lr), self)

    def step(self, w: torch.Tensor, c: torch.Tensor, negs: torch.Tensor) -> None:
        h = self.inp(w)  # (N, n) effective U x
        rows = torch.cat([c[:, None], negs], dim=1)  # (N, 1 + k)
        logits = torch.einsum("nd,nkd->nk", h, self.out.weight[rows]) * self.out.weight_multiplier
        target = torch.zeros_like(logits)
        target[:, 0] = 1
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="sum") / w.numel()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def embeddings(self) -> torch.Tensor:
        return self.inp.weight.detach() * self.inp.weight_multiplier


class Limit:
    """The muP limit: columns of A are the embeddings, of B the context vectors (width 2V)."""

    def __init__(self, cfg: LinearNetConfig):
        lim = MuPLimit(cfg)
        self.A, self.B, self.ku, self.kv = lim.A.T.contiguous(), lim.B.T.contiguous(), cfg.ku, cfg.kv  # rows per word

    def step(self, w: torch.Tensor, c: torch.Tensor, negs: torch.Tensor) -> None:
        a = self.A[w]  # (N, D)
        rows = torch.cat([c[:, None], negs], dim=1)
        b = self.B[rows]  # (N, 1 + k, D)
        s = torch.einsum("nd,nkd->nk", a, b)
        chi_pos, chi_neg = _chi(s[:, 0], s[:, 1:], w.numel())
        chi = torch.cat([chi_pos[:, None], chi_neg], dim=1)  # (N, 1 + k)
        # A <- A - k_u B chi^T X ; B <- B - k_v A X^T chi  (docs/theory.md section 9), simultaneously
        self.A.index_add_(0, w, torch.einsum("nk,nkd->nd", chi, b), alpha=-self.ku)
        self.B.index_add_(0, rows.flatten(), (chi[:, :, None] * a[:, None, :]).flatten(0, 1), alpha=-self.kv)

    def embeddings(self) -> torch.Tensor:
        return self.A


def train(model, pairs: Tuple[torch.Tensor, torch.Tensor], neg_dist: torch.Tensor, epochs: int, batch: int, k: int, seed: int) -> float:
    centres, contexts = pairs
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(centres.numel(), generator=g)
        for i in range(0, perm.numel(), batch):
            idx = perm[i:i + batch]
            negs = torch.multinomial(neg_dist, idx.numel() * k, replacement=True, generator=g).view(-1, k)
            model.step(centres[idx], contexts[idx], negs)
    return time.perf_counter() - t0


def main(argv: Sequence[str] = ()) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 seeds, 3 epochs (about 5 minutes)")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--lr", type=float, default=40.0, help="base SGD rate (on the batch-mean loss)")
    ap.add_argument("--sigma-u", type=float, default=0.1, help="init std of the embeddings (word2vec starts them small)")
    ap.add_argument("--sample", type=float, default=1e-4, help="frequent-word subsampling threshold")
    ap.add_argument("--base-width", type=int, default=64)
    ap.add_argument("--min-count", type=int, default=3)
    ap.add_argument("--window", type=int, default=5)
    ap.add_argument("--negatives", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--plot", metavar="PATH", help="save the figure (needs matplotlib)")
    ap.add_argument("--gensim-only", action="store_true",
                    help="only the reference: gensim's own word2vec (C, d = 100) on the same corpus and settings")
    args = ap.parse_args(list(argv) or None)
    seeds = args.seeds or (2 if args.quick else 3)
    epochs = args.epochs or (3 if args.quick else 8)
    widths = [2 ** k for k in range(4, 11)]
    torch.set_num_threads(min(2, torch.get_num_threads()))

    ids, vocab, freq, evals = load(args.min_count)
    index = {w: i for i, w in enumerate(vocab)}
    V = len(vocab)
    cfg = LinearNetConfig(d_in=V, d_out=V, base_width=args.base_width, lr=args.lr, one_hot=True, sigma_u=args.sigma_u,
                          dtype=torch.float32)
    neg_dist = freq.pow(0.75).float()
    print(f"corpus: gensim lee_background.cor, {sum(map(len, ids)):,} tokens, vocabulary {V} (min count {args.min_count}); "
          + ", ".join(f"{k}: {len(v)} pairs in vocabulary" for k, v in evals.items()))
    print(f"skip-gram, window {args.window}, {args.negatives} negatives, subsampling {args.sample:g}, batch {args.batch}, "
          f"SGD lr {args.lr:g} at base width {args.base_width}, embedding init std {args.sigma_u:g}, {epochs} epochs, {seeds} seeds\n")

    if args.gensim_only:
        _gensim_reference(args, seeds, epochs, vocab, index, evals)
        return
    names = [f"finite n={n}" for n in widths] + ["muP limit (width 2V)", "NTK limit"]
    scores: Dict[str, Dict[str, List[float]]] = {m: {k: [] for k in evals} for m in names}
    seconds: Dict[str, List[float]] = {m: [] for m in names}
    total = seeds * (len(widths) + 1)
    done = 0
    for seed in range(seeds):
        pairs = skipgram_pairs(ids, freq, args.window, args.sample, seed)
        runs = [(f"finite n={n}", lambda n=n: Finite(cfg, n, seed)) for n in widths] + [("muP limit (width 2V)", lambda: Limit(cfg))]
        for name, make in runs:
            model = make()
            seconds[name].append(train(model, pairs, neg_dist, epochs, args.batch, args.negatives, seed))
            for k, p in evals.items():
                scores[name][k].append(evaluate(model.embeddings(), index, p))
            done += 1
            print(f"\r  [{done}/{total}] seed {seed} {name:<22}", end="", file=sys.stderr, flush=True)
        ntk = NTKLimit(cfg)  # its embeddings never move: similarity 0 between any two distinct words
        emb = ntk.features(torch.arange(V))
        seconds["NTK limit"].append(0.0)
        for k, p in evals.items():
            scores["NTK limit"][k].append(evaluate(emb, index, p))
    print("\r" + " " * 60 + "\r", end="", file=sys.stderr)

    def stat(v: List[float]) -> str:
        m = sum(v) / len(v)
        sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
        return f"{m:+.3f} ± {sd:.3f}"

    ref = sum(seconds[f"finite n={widths[-1]}"]) / seeds
    header = f"| model | {' | '.join(evals)} | time per run | time vs n={widths[-1]} |"
    print(header)
    print("|" + "---|" * (len(evals) + 3))
    for m in names:
        t = sum(seconds[m]) / seeds
        tt = f"{t:.1f} s" if m != "NTK limit" else "-"
        ratio = f"{t / ref:.2f}" if m != "NTK limit" else "-"
        print(f"| {m} | {' | '.join(stat(scores[m][k]) for k in evals)} | {tt} | {ratio} |")
    print(f"\nSpearman correlation (mean ± std over {seeds} seeds) between embedding cosine similarity and human scores.")
    if args.plot:
        _plot(args.plot, widths, scores, evals)
        print(f"figure: {args.plot}")


def _gensim_reference(args, seeds: int, epochs: int, vocab: List[str], index: Dict[str, int], evals: Dict[str, list]) -> None:
    from gensim.models import Word2Vec

    with open(os.path.join(_data_dir(), "lee_background.cor"), encoding="utf8") as fh:
        sentences = [re.findall(r"[a-z]+", line.lower()) for line in fh]
    scores: Dict[str, List[float]] = {k: [] for k in evals}
    for seed in range(seeds):
        m = Word2Vec(sentences, vector_size=100, window=args.window, min_count=args.min_count, sg=1, negative=args.negatives,
                     sample=args.sample, epochs=epochs, workers=1, seed=seed)
        emb = torch.from_numpy(m.wv.vectors[[m.wv.key_to_index[w] for w in vocab]])
        for k, p in evals.items():
            scores[k].append(evaluate(emb, index, p))
    for k, v in scores.items():
        mean = sum(v) / len(v)
        sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
        print(f"gensim word2vec (skip-gram, d = 100, {epochs} epochs): {k} {mean:+.3f} ± {sd:.3f}")


def _plot(path: str, widths: List[int], scores: Dict[str, Dict[str, List[float]]], evals: Dict[str, list]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("--plot needs matplotlib: pip install -e '.[plot]'")
    fig, axes = plt.subplots(1, len(evals), figsize=(5 * len(evals), 3.5), squeeze=False)
    for ax, k in zip(axes[0], evals):
        means = [sum(scores[f"finite n={n}"][k]) / len(scores[f"finite n={n}"][k]) for n in widths]
        ax.plot(widths, means, "o-", label="finite muP widths")
        lim = scores["muP limit (width 2V)"][k]
        ax.axhline(sum(lim) / len(lim), color="C1", ls="--", label="muP limit")
        ntk = scores["NTK limit"][k]
        ax.axhline(sum(ntk) / len(ntk), color="C2", ls=":", label="NTK limit")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("width")
        ax.set_ylabel("Spearman")
        ax.set_title(k)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main(sys.argv[1:])
