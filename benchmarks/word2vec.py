"""TP4's Word2Vec experiment on 3.8 million words: the exact muP limit vs finite widths vs the NTK limit.

CBOW with negative sampling (docs/theory.md section 9): the centre word's logit
is ``f_c(x) = V_c . U x``, where ``x`` is the mean of the one-hot vectors of the
context words, so the network is the 1-hidden-layer *linear* network of
:mod:`abcparam.limits` with a bag-of-words input, and its muP limit is exact.
This script trains, on the same examples in the same order with the same
negatives:

- finite networks of widths 2^4 to 2^10 built from ``abcparam.Embedding`` (the
  input table) and ``abcparam.Linear`` (the output table) in muP (TP5 Table 8
  form) and trained with ``abcparam.wrap(SGD)``'s rates;
- the muP limit, ``abcparam.limits.MuPLimit``: a deterministic network whose
  width is the vocabulary size V (the readout starts at 0, as word2vec's does,
  so the limit's other V coordinates start at 0 and stay there: section 9);
- the NTK limit, ``abcparam.limits.NTKLimit``: its embeddings never leave their
  initialisation (orthogonal one-hot directions), so it learns no analogy.

Every model is evaluated on the same vocabulary: analogy accuracy on
``questions-words.txt`` (3CosAdd over the vocabulary, on the questions whose four
words are all in it) and the Spearman correlation on WordSim-353, both files as
gensim ships them (``pip install -e ".[word2vec]"``).

Corpus (``--corpus``): a folder of NLTK corpus zips (NLTK's own layout, as
``nltk.download`` installs them under ``nltk_data/corpora``: brown, movie_reviews,
abc, state_union, webtext, inaugural are about 3.8 million words), one such zip,
or any plain-text file (text8, the paper's corpus).  Without ``--corpus`` the
script looks in ``$NLTK_DATA/corpora``, ``~/nltk_data/corpora`` and the
developers' ``../shared/data/nltk_corpora``.

    python benchmarks/word2vec.py --quick                       # under 3 minutes on 2 cores
    python benchmarks/word2vec.py --json docs/word2vec.json --plot docs/word2vec.png   # about an hour
    python benchmarks/word2vec.py --gensim-only                 # gensim's CBOW on the same corpus, words/s
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import re
import sys
import time
import zipfile
from dataclasses import dataclass
from typing import Dict, Iterable, List, Sequence, Tuple

import torch
import torch.nn.functional as F

from abcparam.limits import LinearNetConfig, MuPLimit, NTKLimit, abcparam_network

# ---------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------

_NOT_TEXT = {"readme", "license", "licence", "contents", "cats.txt", "cats.csv", "citation.bib"}
_TOKEN = re.compile(r"[a-z]+")


def _zip_documents(path: str) -> Iterable[List[str]]:
    """The documents of one NLTK corpus zip, as letters-only lower-case tokens (Brown's ``/tag`` suffixes dropped)."""
    tagged = os.path.basename(path).startswith("brown")
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            base = name.rsplit("/", 1)[-1]
            if name.endswith("/") or base.lower() in _NOT_TEXT:
                continue
            text = zf.read(name).decode("utf8", errors="replace")
            if tagged:
                text = re.sub(r"/\S+", "", text)
            yield _TOKEN.findall(text.lower())


def read_corpus(path: str) -> List[List[str]]:
    """Documents (lists of tokens) from a folder of NLTK zips, one zip, or a plain-text file (one document).

    Context windows never cross a document's end; tokens are the runs of letters a-z after lower-casing.
    """
    if os.path.isdir(path):
        zips = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".zip"))
        if not zips:
            raise ValueError(f"corpus: the folder {path!r} holds no .zip files (expected NLTK corpus zips)")
        return [doc for z in zips for doc in _zip_documents(z) if doc]
    if path.endswith(".zip"):
        return [doc for doc in _zip_documents(path) if doc]
    if not os.path.isfile(path):
        raise ValueError(f"corpus: {path!r} is neither a folder of NLTK zips, a zip, nor a text file")
    with open(path, encoding="utf8", errors="replace") as fh:
        return [_TOKEN.findall(fh.read().lower())]


def default_corpus() -> str:
    """Where NLTK installs its corpora, else the developers' shared copy; exits with the way to get them."""
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.path.join(os.environ["NLTK_DATA"], "corpora")] if os.environ.get("NLTK_DATA") else []
    candidates += [os.path.expanduser("~/nltk_data/corpora"), os.path.join(here, "..", "..", "shared", "data", "nltk_corpora")]
    for c in candidates:
        if os.path.isdir(c) and any(f.endswith(".zip") for f in os.listdir(c)):
            return os.path.normpath(c)
    sys.exit("no corpus found: pass --corpus (a folder of NLTK corpus zips, e.g. after python -m nltk.downloader "
             "brown movie_reviews abc state_union webtext inaugural; or a text file such as text8)")


@dataclass
class Corpus:
    """Documents as word ids over the ``vocab`` (the most frequent words, most frequent first) and their counts."""

    docs: List[torch.Tensor]
    vocab: List[str]
    counts: torch.Tensor  # float64, per vocabulary word
    tokens: int  # all tokens of the corpus, in vocabulary or not

    @property
    def index(self) -> Dict[str, int]:
        return {w: i for i, w in enumerate(self.vocab)}

    @property
    def in_vocab(self) -> int:
        return int(self.counts.sum())


def build(docs: List[List[str]], size: int) -> Corpus:
    """Keep the ``size`` most frequent words (ties in alphabetical order); drop every other token."""
    if size < 2:
        raise ValueError(f"vocab: at least 2 words, got {size}")
    counts = collections.Counter(w for d in docs for w in d)
    vocab = sorted(counts, key=lambda w: (-counts[w], w))[:size]
    index = {w: i for i, w in enumerate(vocab)}
    ids = [torch.tensor([index[w] for w in d if w in index], dtype=torch.long) for d in docs]
    return Corpus([d for d in ids if d.numel() > 1], vocab, torch.tensor([counts[w] for w in vocab], dtype=torch.float64),
                  sum(counts.values()))


@dataclass
class Examples:
    """CBOW examples: ``centre[i]`` with context words ``context[offsets[i] : offsets[i] + sizes[i]]``."""

    centre: torch.Tensor
    context: torch.Tensor
    offsets: torch.Tensor
    sizes: torch.Tensor

    def __len__(self) -> int:
        return self.centre.numel()

    def batch(self, rows: torch.Tensor) -> "Examples":
        sizes = self.sizes[rows]
        starts = self.offsets[rows]
        # the context of each chosen row, concatenated: positions starts[r] + 0 .. sizes[r] - 1
        within = torch.arange(int(sizes.sum())) - torch.repeat_interleave(torch.cumsum(sizes, 0) - sizes, sizes)
        context = self.context[torch.repeat_interleave(starts, sizes) + within]
        return Examples(self.centre[rows], context, torch.cumsum(sizes, 0) - sizes, sizes)


def cbow_examples(corpus: Corpus, window: int, sample: float, seed: int) -> Examples:
    """One epoch's examples, as word2vec draws them: frequent words subsampled (keep probability
    ``(sqrt(f / sample) + 1) sample / f``), then each kept word's window shrunk to a uniform reach in
    1..window; the context is the kept words within reach in the same document (centres without one dropped)."""
    g = torch.Generator().manual_seed(seed)
    f = corpus.counts / corpus.counts.sum()
    p_keep = (((f / sample).sqrt() + 1) * (sample / f)).clamp(max=1.0)
    words = torch.cat(corpus.docs)
    doc = torch.cat([torch.full((d.numel(),), i, dtype=torch.long) for i, d in enumerate(corpus.docs)])
    keep = torch.rand(words.numel(), generator=g, dtype=torch.float64) < p_keep[words]
    words, doc = words[keep], doc[keep]
    n = words.numel()
    reach = torch.randint(1, window + 1, (n,), generator=g)
    pos = torch.arange(n)
    slots = []  # (centre position, context position) for each offset, in word2vec's order (left then right)
    for d in list(range(-window, 0)) + list(range(1, window + 1)):
        lo, hi = max(0, -d), min(n, n - d)
        c = pos[lo:hi]
        ok = (doc[c] == doc[c + d]) & (reach[c] >= abs(d))
        slots.append(torch.stack([c[ok], c[ok] + d]))
    pairs = torch.cat(slots, dim=1)
    order = torch.sort(pairs[0], stable=True).indices  # group by centre, keeping the offsets' order
    pairs = pairs[:, order]
    sizes = torch.bincount(pairs[0], minlength=n)
    has = sizes > 0
    sizes = sizes[has]
    return Examples(words[has], words[pairs[1]], torch.cumsum(sizes, 0) - sizes, sizes)


# ---------------------------------------------------------------------------
# Models: one trainer for the finite networks and the limit (both are two tables of rows per word)
# ---------------------------------------------------------------------------


class Tables:
    """CBOW with negative sampling on an input table ``E`` and an output table ``C`` (rows per word).

    The logit of word ``j`` for a context is ``m_c C_j . (m_e mean(E[context]))``; one SGD step on the
    batch-mean loss moves ``E`` at rate ``lr_e`` and ``C`` at ``lr_c`` (simultaneously).  A finite network
    is the tables of its abcparam layers with their multipliers and wrapped rates; the muP limit is the
    coefficient tables of ``MuPLimit`` with multipliers 1 and rates ``k_u``, ``k_v`` (docs/theory.md
    section 9).  Negatives are shared by the batch: each example's ``k`` negatives are the batch's ``k``
    draws from the noise distribution (each example still sees ``k`` independent draws).
    """

    def __init__(self, E: torch.Tensor, C: torch.Tensor, m_e: float, m_c: float, lr_e: float, lr_c: float) -> None:
        self.E, self.C, self.m_e, self.m_c, self.lr_e, self.lr_c = E, C, m_e, m_c, lr_e, lr_c

    def loss(self, ex: Examples, negatives: torch.Tensor) -> torch.Tensor:
        """The batch-mean negative-sampling loss (autograd-able through E and C)."""
        h = self.m_e * F.embedding_bag(ex.context, self.E, ex.offsets, mode="mean")
        pos = self.m_c * (h * self.C[ex.centre]).sum(1)
        neg = self.m_c * h @ self.C[negatives].T
        return (F.softplus(-pos) + F.softplus(neg).sum(1)).mean()

    @torch.no_grad()
    def step(self, ex: Examples, negatives: torch.Tensor) -> None:
        """One SGD step on :meth:`loss`, with the gradients written out (no autograd)."""
        B = len(ex)
        h = self.m_e * F.embedding_bag(ex.context, self.E, ex.offsets, mode="mean")
        c_pos, c_neg = self.C[ex.centre], self.C[negatives]
        chi_pos = (torch.sigmoid(self.m_c * (h * c_pos).sum(1)) - 1) / B  # dLoss / dlogit
        chi_neg = torch.sigmoid(self.m_c * h @ c_neg.T) / B
        g_h = self.m_c * (chi_pos[:, None] * c_pos + chi_neg @ c_neg)  # dLoss / dh
        g_e = (self.m_e * g_h / ex.sizes[:, None]).repeat_interleave(ex.sizes, dim=0)  # per context word
        g_pos, g_neg = self.m_c * chi_pos[:, None] * h, self.m_c * chi_neg.T @ h
        self.E.index_add_(0, ex.context, g_e, alpha=-self.lr_e)
        self.C.index_add_(0, ex.centre, g_pos, alpha=-self.lr_c)
        self.C.index_add_(0, negatives, g_neg, alpha=-self.lr_c)

    def embeddings(self) -> torch.Tensor:
        """The words' hidden representations ``m_e E`` (rows)."""
        return self.m_e * self.E


def config(vocab: int, lr: float, sigma_u: float, base_width: int) -> LinearNetConfig:
    """The network's constants: a one-hot input of size V, V outputs, the readout starting at 0."""
    return LinearNetConfig(d_in=vocab, d_out=vocab, base_width=base_width, lr=lr, one_hot=True, sigma_u=sigma_u,
                           sigma_v=0.0, dtype=torch.float32)


def finite(cfg: LinearNetConfig, width: int, seed: int) -> Tables:
    """The finite network of ``width`` from abcparam layers in muP (Table 8 form), at ``abcparam.wrap(SGD)``'s rates."""
    net = abcparam_network(cfg, width, seed)
    rate = {id(p): g["lr"] for g in net.optimizer.param_groups for p in g["params"]}
    return Tables(net.inp.weight.detach(), net.out.weight.detach(), net.inp.weight_multiplier, net.out.weight_multiplier,
                  rate[id(net.inp.weight)], rate[id(net.out.weight)])


def limit(cfg: LinearNetConfig) -> Tables:
    """The muP limit: ``MuPLimit``'s coefficients, rows per word; with the readout at 0 only the first V
    coordinates are ever non-zero (A's updates lie in B's span and B's in A's), so the width is V."""
    lim = MuPLimit(cfg)
    width = cfg.d_in if cfg.sv == 0 else cfg.d_in + cfg.d_out
    return Tables(lim.A[:width].T.contiguous(), lim.B[:width].T.contiguous(), 1.0, 1.0, cfg.ku, cfg.kv)


def ntk_embeddings(cfg: LinearNetConfig) -> torch.Tensor:
    """The NTK limit's word representations: frozen at initialisation, ``s_u`` times the one-hot vectors."""
    return NTKLimit(cfg).features(torch.arange(cfg.d_in)).float()


def train(model: Tables, epochs: List[Examples], noise: torch.Tensor, batch: int, k: int, seed: int) -> float:
    """SGD over the epochs' examples in a seeded order, ``k`` shared negatives per batch; returns seconds."""
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for ex in epochs:
        perm = torch.randperm(len(ex), generator=g)
        for i in range(0, len(ex), batch):
            negatives = torch.multinomial(noise, k, replacement=True, generator=g)
            model.step(ex.batch(perm[i:i + batch]), negatives)
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------


def _gensim_data(name: str) -> str:
    try:
        import gensim
    except ImportError:
        sys.exit("benchmarks/word2vec.py reads questions-words.txt and wordsim353.tsv from gensim: "
                 "pip install -e '.[word2vec]' (or pip install gensim)")
    return os.path.join(os.path.dirname(gensim.__file__), "test", "test_data", name)


def read_analogies(path: str, index: Dict[str, int]) -> Tuple[torch.Tensor, int]:
    """The (a, b, c, d) id rows of the questions "a is to b as c is to d" whose words are all in ``index``, and the total."""
    rows, total = [], 0
    with open(path, encoding="utf8") as fh:
        for line in fh:
            if line.startswith(":") or not line.strip():
                continue
            total += 1
            words = line.lower().split()
            if len(words) == 4 and all(w in index for w in words):
                rows.append([index[w] for w in words])
    return torch.tensor(rows, dtype=torch.long).view(-1, 4), total


def read_wordsim(path: str, index: Dict[str, int]) -> List[Tuple[int, int, float]]:
    pairs = []
    with open(path, encoding="utf8") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("\t")
            if line.startswith("#") or len(parts) < 3:
                continue
            try:
                score = float(parts[2])
            except ValueError:
                continue  # the header
            a, b = parts[0].lower(), parts[1].lower()
            if a in index and b in index:
                pairs.append((index[a], index[b], score))
    return pairs


def _unit(emb: torch.Tensor) -> torch.Tensor:
    e = emb.double()
    return e / e.norm(dim=1, keepdim=True).clamp_min(1e-30)


def analogy_accuracy(emb: torch.Tensor, questions: torch.Tensor, chunk: int = 1024) -> float:
    """3CosAdd: right when ``d`` is the one word nearest (cosine) to ``b - a + c`` among all but a, b, c (a tie is no answer)."""
    if questions.numel() == 0:
        return float("nan")
    e = _unit(emb)
    right = 0
    for q in questions.split(chunk):
        sims = (e[q[:, 1]] - e[q[:, 0]] + e[q[:, 2]]) @ e.T
        sims.scatter_(1, q[:, :3], -math.inf)
        best = sims.max(1, keepdim=True).values
        unique = (sims == best).sum(1) == 1
        right += int((unique & (sims.gather(1, q[:, 3:]).squeeze(1) == best.squeeze(1))).sum())
    return right / questions.shape[0]


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (ties get their average rank; 0 when either side has no spread)."""

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
        return 0.0
    return sum((a - mx) * (b - my) for a, b in zip(rx, ry)) / (sx * sy)


def wordsim(emb: torch.Tensor, pairs: List[Tuple[int, int, float]]) -> float:
    e = _unit(emb)
    return spearman([float(e[a] @ e[b]) for a, b, _ in pairs], [s for _, _, s in pairs])


# ---------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------

_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def summary(values: List[float]) -> Tuple[float, float, float]:
    """Mean, standard deviation and the 95% t-interval's half-width of the mean over seeds."""
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, 0.0, 0.0
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
    return m, sd, _T975.get(len(values) - 1, 1.96) * sd / math.sqrt(len(values))


def main(argv: Sequence[str] = ()) -> Dict[str, Dict[str, float]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", help="a folder of NLTK corpus zips, one zip, or a plain-text file (default: see above)")
    ap.add_argument("--quick", action="store_true", help="vocabulary 2000, widths 16/64/256, 1 seed, 1 epoch")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--vocab", type=int, default=None, help="the most frequent words kept (default 6000)")
    ap.add_argument("--widths", type=int, nargs="+", default=None)
    ap.add_argument("--lr", type=float, default=30.0, help="base SGD rate at the base width (batch-mean loss)")
    ap.add_argument("--sigma-u", type=float, default=0.5, help="init std of the input table at the base width")
    ap.add_argument("--base-width", type=int, default=64)
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--negatives", type=int, default=25)
    ap.add_argument("--sample", type=float, default=1e-4, help="frequent-word subsampling threshold")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--questions", help="analogy questions in questions-words.txt's format (default: gensim's copy)")
    ap.add_argument("--wordsim", help="word pairs with scores, tab-separated, as wordsim353.tsv (default: gensim's copy)")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    ap.add_argument("--plot", metavar="PATH", help="save the figure (needs matplotlib)")
    ap.add_argument("--gensim-only", action="store_true", help="only gensim's CBOW (C code) at the same settings: words/s")
    args = ap.parse_args(list(argv) or None)
    seeds = args.seeds or (1 if args.quick else 3)
    epochs = args.epochs or (1 if args.quick else 2)
    vocab_size = args.vocab or (2000 if args.quick else 6000)
    widths = args.widths or ([16, 64, 256] if args.quick else [2 ** k for k in range(4, 11)])
    torch.set_num_threads(min(2, torch.get_num_threads()))

    path = args.corpus or default_corpus()
    t0 = time.perf_counter()
    corpus = build(read_corpus(path), vocab_size)
    index = corpus.index
    questions, n_questions = read_analogies(args.questions or _gensim_data("questions-words.txt"), index)
    pairs = read_wordsim(args.wordsim or _gensim_data("wordsim353.tsv"), index)
    V = len(corpus.vocab)
    print(f"corpus: {path}: {corpus.tokens:,} tokens, {len(corpus.docs)} documents ({time.perf_counter() - t0:.1f} s to read)")
    print(f"vocabulary: the {V} most frequent words ({corpus.in_vocab:,} tokens, {corpus.in_vocab / corpus.tokens:.1%}); "
          f"the muP limit has width {V}: {2 * V * V * 4 / 2 ** 30:.2f} GiB of tables")
    print(f"evaluation: {questions.shape[0]} of {n_questions} analogy questions in the vocabulary; "
          f"{len(pairs)} WordSim-353 pairs")
    print(f"CBOW, window {args.window}, {args.negatives} negatives, subsampling {args.sample:g}, batch {args.batch}, "
          f"SGD lr {args.lr:g} at base width {args.base_width}, input init std {args.sigma_u:g}, readout init 0, "
          f"{epochs} epochs, {seeds} seeds\n")
    if args.gensim_only:
        _gensim(corpus, args, epochs, seeds, widths[-1], questions, pairs)
        return {}

    cfg = config(V, args.lr, args.sigma_u, args.base_width)
    noise = corpus.counts.pow(0.75).float()
    names = [f"finite_{n}" for n in widths] + ["mup_limit", "ntk_limit"]
    scores: Dict[str, Dict[str, List[float]]] = {m: {"analogy": [], "wordsim": [], "seconds": []} for m in names}
    for seed in range(seeds):
        data = [cbow_examples(corpus, args.window, args.sample, seed * 1000 + e) for e in range(epochs)]
        for name in names:
            if name == "ntk_limit":
                emb, seconds = ntk_embeddings(cfg), 0.0
            else:
                model = limit(cfg) if name == "mup_limit" else finite(cfg, int(name.split("_")[1]), seed)
                seconds = train(model, data, noise, args.batch, args.negatives, seed)
                emb = model.embeddings()
            diverged = not bool(torch.isfinite(emb).all())
            # a diverged model answers no analogy and ranks no pair: analogy 0, WordSim NaN (printed as such)
            scores[name]["analogy"].append(0.0 if diverged else analogy_accuracy(emb, questions))
            scores[name]["wordsim"].append(math.nan if diverged else wordsim(emb, pairs))
            scores[name]["seconds"].append(seconds)
            speed = f"  {seconds:.0f} s ({epochs * corpus.in_vocab / seconds:,.0f} words/s)" if seconds else ""
            print(f"  seed {seed} {name:<12} analogy {scores[name]['analogy'][-1]:.2%}  WordSim {scores[name]['wordsim'][-1]:+.3f}"
                  f"{speed}{'  DIVERGED (non-finite weights)' if diverged else ''}", file=sys.stderr, flush=True)

    results: Dict[str, Dict[str, float]] = {}
    print("| model | analogy accuracy (95% interval) | WordSim-353 | time per run | words/s |")
    print("|---|---|---|---|---|")
    for m in names:
        a, _, a_ci = summary(scores[m]["analogy"])
        w, w_sd, _ = summary(scores[m]["wordsim"])
        t = sum(scores[m]["seconds"]) / seeds
        results[m] = {"analogy": a, "analogy_ci95": a_ci, "wordsim": w, "wordsim_sd": w_sd, "seeds": seeds}
        speed = f"{epochs * corpus.in_vocab / t:,.0f}" if t else "-"
        label = {"mup_limit": f"muP limit (width {V})", "ntk_limit": "NTK limit"}.get(m, f"finite n={m[7:]}")
        print(f"| {label} | {100 * a:.1f}% ± {100 * a_ci:.1f} | {w:+.3f} ± {w_sd:.3f} | {t:.0f} s | {speed} |")
    print(f"\nanalogy: mean over {seeds} seeds, ± the 95% t-interval of the mean; WordSim: Spearman, mean ± std; "
          f"words/s: the corpus's in-vocabulary words (before subsampling, as gensim counts them) times the epochs, per second "
          "of training")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
        print(f"results: {args.json}")
    if args.plot:
        plot(args.plot, widths, results)
        print(f"figure: {args.plot}")
    return results


def _gensim(corpus: Corpus, args, epochs: int, seeds: int, width: int, questions: torch.Tensor, pairs) -> None:
    """gensim's CBOW (its C loop, 2 threads) on the same in-vocabulary documents, window, negatives and subsampling."""
    from gensim.models import Word2Vec

    docs = [[corpus.vocab[i] for i in d.tolist()] for d in corpus.docs]
    threads = min(2, os.cpu_count() or 1)
    for seed in range(seeds):
        t0 = time.perf_counter()
        m = Word2Vec(docs, vector_size=width, window=args.window, min_count=1, sg=0, cbow_mean=1, negative=args.negatives,
                     sample=args.sample, epochs=epochs, workers=threads, seed=seed)
        seconds = time.perf_counter() - t0
        emb = torch.from_numpy(m.wv.vectors[[m.wv.key_to_index[w] for w in corpus.vocab]])
        words = m.corpus_total_words * epochs  # the in-vocabulary words before subsampling, as the table counts them
        print(f"gensim CBOW d={width}, {threads} threads, seed {seed}: {seconds:.0f} s including its vocabulary pass "
              f"({words / seconds:,.0f} words/s), analogy {analogy_accuracy(emb, questions):.2%}, "
              f"WordSim {wordsim(emb, pairs):+.3f}")


def plot(path: str, widths: List[int], results: Dict[str, Dict[str, float]]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("--plot needs matplotlib: pip install -e '.[plot]'")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, label in ((axes[0], "analogy", "analogy accuracy (%)"), (axes[1], "wordsim", "WordSim-353 Spearman")):
        scale = 100 if key == "analogy" else 1
        err = "analogy_ci95" if key == "analogy" else "wordsim_sd"
        ys = [scale * results[f"finite_{n}"][key] for n in widths]
        es = [scale * results[f"finite_{n}"][err] for n in widths]
        ax.errorbar(widths, ys, yerr=es, fmt="o-", capsize=3, label="finite muP widths")
        lim = results["mup_limit"]
        ax.axhline(scale * lim[key], color="C1", ls="--", label="muP limit")
        ax.axhspan(scale * (lim[key] - lim[err]), scale * (lim[key] + lim[err]), color="C1", alpha=0.15)
        ax.axhline(scale * results["ntk_limit"][key], color="C2", ls=":", label="NTK limit")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("width")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main(sys.argv[1:])
