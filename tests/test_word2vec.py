"""The Word2Vec experiment's exactness (benchmarks/word2vec.py, docs/theory.md section 9): the written-out CBOW step
vs autograd, the finite tables vs abcparam's own layers and wrapped SGD, the limit's tables vs MuPLimit, finite widths
converging to the limit, the example builder, the evaluation, and the corpus readers on the NLTK zips."""

import copy
import json
import math
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from abcparam.limits import LinearNetConfig, MuPLimit, abcparam_network

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import word2vec  # noqa: E402

NLTK = Path(__file__).resolve().parents[2] / "shared" / "data" / "nltk_corpora"
D64 = torch.float64


def _batch(V=9, B=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, 4, (B,), generator=g)
    return word2vec.Examples(torch.randint(0, V, (B,), generator=g), torch.randint(0, V, (int(sizes.sum()),), generator=g),
                             torch.cumsum(sizes, 0) - sizes, sizes)


def _cfg(V=9, sigma_v=0.0):
    # non-default constants: a multiplier, a std or a rate of 1 cannot tell a formula from its mutants
    return LinearNetConfig(d_in=V, d_out=V, base_width=4, lr=0.7, one_hot=True, alpha_u=1.3, alpha_v=0.8, sigma_u=0.6,
                           sigma_v=sigma_v, dtype=D64)


def test_the_written_out_step_is_sgd_on_the_loss():
    g = torch.Generator().manual_seed(1)
    E, C = torch.randn(9, 6, generator=g, dtype=D64), torch.randn(9, 6, generator=g, dtype=D64)
    t = word2vec.Tables(E.clone(), C.clone(), 1.7, 0.6, 0.9, 0.4)
    ex, negs = _batch(), torch.tensor([2, 7, 7, 0])  # a repeated negative counts twice
    E_, C_ = E.clone().requires_grad_(True), C.clone().requires_grad_(True)
    word2vec.Tables(E_, C_, 1.7, 0.6, 0.9, 0.4).loss(ex, negs).backward()
    t.step(ex, negs)
    torch.testing.assert_close(t.E, E - 0.9 * E_.grad)
    torch.testing.assert_close(t.C, C - 0.4 * C_.grad)


def test_the_loss_is_cbow_negative_sampling_written_by_hand():
    g = torch.Generator().manual_seed(2)
    E, C = torch.randn(9, 5, generator=g, dtype=D64), torch.randn(9, 5, generator=g, dtype=D64)
    ex, negs = _batch(), torch.tensor([1, 4])
    total = 0.0
    for i in range(len(ex)):
        ctx = ex.context[int(ex.offsets[i]):int(ex.offsets[i] + ex.sizes[i])]
        h = 1.5 * E[ctx].mean(0)
        total += -math.log(torch.sigmoid(0.3 * C[ex.centre[i]] @ h)) - sum(math.log(torch.sigmoid(-0.3 * C[j] @ h)) for j in negs)
    assert float(word2vec.Tables(E, C, 1.5, 0.3, 1.0, 1.0).loss(ex, negs)) == pytest.approx(total / len(ex), rel=1e-12)


def test_the_finite_tables_train_as_abcparam_layers_under_wrapped_sgd():
    cfg = _cfg(sigma_v=0.5)
    net = abcparam_network(cfg, 16, seed=3)
    twin = copy.deepcopy(net)
    rate = {id(p): g["lr"] for g in net.optimizer.param_groups for p in g["params"]}
    tables = word2vec.Tables(twin.inp.weight.detach(), twin.out.weight.detach(), twin.inp.weight_multiplier,
                             twin.out.weight_multiplier, rate[id(net.inp.weight)], rate[id(net.out.weight)])
    built = word2vec.finite(cfg, 16, seed=3)
    torch.testing.assert_close(built.E, tables.E)
    assert (built.m_e, built.m_c, built.lr_e, built.lr_c) == (tables.m_e, tables.m_c, tables.lr_e, tables.lr_c)
    assert built.lr_e == pytest.approx(0.7 * 16 / 4)  # the wrapper's rate (input layer: lr n / n0), not the base lr
    ex, negs = _batch(), torch.tensor([3, 8, 1])
    for _ in range(2):  # the layers' own forward, autograd and the wrapped optimizer
        h = torch.stack([net.inp(ex.context[int(o):int(o + s)]).mean(0) for o, s in zip(ex.offsets, ex.sizes)])
        logits = net.out(h)
        loss = (F.softplus(-logits.gather(1, ex.centre[:, None])).squeeze(1) + F.softplus(logits[:, negs]).sum(1)).mean()
        net.optimizer.zero_grad()
        loss.backward()
        net.optimizer.step()
        tables.step(ex, negs)
    torch.testing.assert_close(net.inp.weight.detach(), twin.inp.weight)
    torch.testing.assert_close(net.out.weight.detach(), twin.out.weight)


def _sgns(centre, negs):
    def loss(f, _):
        return (F.softplus(-f.gather(1, centre[:, None])).squeeze(1) + F.softplus(f[:, negs]).sum(1)).mean()
    return loss


def _bags(ex, V):
    X = torch.zeros(len(ex), V, dtype=D64)
    for i, (o, s) in enumerate(zip(ex.offsets, ex.sizes)):
        X[i].index_add_(0, ex.context[int(o):int(o + s)], torch.full((int(s),), 1.0 / int(s), dtype=D64))
    return X


@pytest.mark.parametrize("sigma_v", [0.0, 0.5])
def test_the_limit_tables_are_mup_limit_and_drop_only_coordinates_that_stay_zero(sigma_v):
    cfg = _cfg(sigma_v=sigma_v)
    dense = LinearNetConfig(**{**cfg.__dict__, "one_hot": False})
    ref, tables = MuPLimit(dense), word2vec.limit(cfg)
    assert tables.E.shape == ((9, 9) if sigma_v == 0 else (9, 18))
    for seed in range(3):
        ex, negs = _batch(seed=seed), torch.tensor([seed, 5])
        ref.step(_bags(ex, 9), torch.zeros(len(ex), 9, dtype=D64), _sgns(ex.centre, negs))
        tables.step(ex, negs)
    width = tables.E.shape[1]
    torch.testing.assert_close(tables.E, ref.A[:width].T)
    torch.testing.assert_close(tables.C, ref.B[:width].T)
    assert float(ref.A[width:].abs().sum()) == 0 and float(ref.B[width:].abs().sum()) == 0
    start = torch.cat([0.6 * 1.3 * torch.eye(9, dtype=D64), torch.zeros(9, width - 9, dtype=D64)], dim=1)
    assert float((tables.E - start).abs().max()) > 1e-3  # it did move


def _gram_error(width, seeds, steps=4):
    cfg = LinearNetConfig(d_in=10, d_out=10, base_width=4, lr=2.0, one_hot=True, sigma_u=0.7, sigma_v=0.0, dtype=D64)
    batches = [(_batch(V=10, B=6, seed=s), torch.tensor([s % 10, (3 * s + 1) % 10])) for s in range(steps)]
    lim = word2vec.limit(cfg)
    for ex, negs in batches:
        lim.step(ex, negs)
    target = lim.embeddings() @ lim.embeddings().T
    errs = []
    for seed in seeds:
        fin = word2vec.finite(cfg, width, seed)
        for ex, negs in batches:
            fin.step(ex, negs)
        e = fin.embeddings()
        errs.append(float((e @ e.T / width - target).pow(2).mean().sqrt()))
    return sum(errs) / len(errs), float(target.abs().max())


def test_finite_widths_converge_to_the_limit_like_n_to_the_minus_half():
    widths = [2 ** 7, 2 ** 9, 2 ** 11, 2 ** 13]
    errs = [_gram_error(n, seeds=range(3))[0] for n in widths]
    xs, ys = [math.log(n) for n in widths], [math.log(e) for e in errs]
    mx, my = sum(xs) / 4, sum(ys) / 4
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    assert slope == pytest.approx(-0.5, abs=0.15), (errs, slope)
    assert errs[-1] < 0.02 * _gram_error(2 ** 13, seeds=[0])[1]


def test_examples_are_word2vec_windows_inside_documents():
    docs = [torch.arange(0, 7), torch.arange(7, 10), torch.arange(10, 20)]  # every word once: positions from ids
    corpus = word2vec.Corpus(docs, [str(i) for i in range(20)], torch.ones(20, dtype=D64), 20)
    seen_reach = set()
    for seed in range(5):
        ex = word2vec.cbow_examples(corpus, window=3, sample=1.0, seed=seed)  # sample 1: nothing dropped
        assert sorted(ex.centre.tolist()) == list(range(20))
        for c, o, s in zip(ex.centre.tolist(), ex.offsets.tolist(), ex.sizes.tolist()):
            ctx = ex.context[o:o + s].tolist()
            doc = next(d.tolist() for d in docs if c in d.tolist())
            r = max(abs(w - c) for w in ctx)
            assert 1 <= r <= 3 and ctx == [w for w in range(c - r, c + r + 1) if w != c and w in doc]
            seen_reach.add(r)
    assert seen_reach == {1, 2, 3}


def test_subsampling_keeps_rare_words_and_thins_frequent_ones():
    counts = torch.tensor([9000.0, 10.0, 10.0, 10.0], dtype=D64)
    doc = torch.cat([torch.zeros(9000, dtype=torch.long), torch.arange(1, 4).repeat(10)])
    corpus = word2vec.Corpus([doc[torch.randperm(doc.numel(), generator=torch.Generator().manual_seed(0))]],
                             list("abcd"), counts, 9030)
    ex = word2vec.cbow_examples(corpus, window=2, sample=1e-2, seed=0)
    kept = torch.bincount(ex.centre, minlength=4)
    f = 9000 / 9030
    p = (math.sqrt(f / 1e-2) + 1) * 1e-2 / f  # word2vec's keep probability
    assert kept[0] == pytest.approx(9000 * p, rel=0.15) and kept[1:].tolist() == [10, 10, 10]


def test_a_batch_gathers_each_rows_own_context():
    ex = word2vec.Examples(torch.tensor([5, 6, 7]), torch.tensor([1, 2, 3, 4, 9, 8]), torch.tensor([0, 2, 3]),
                           torch.tensor([2, 1, 3]))
    b = ex.batch(torch.tensor([2, 0]))
    assert b.centre.tolist() == [7, 5] and b.context.tolist() == [4, 9, 8, 1, 2]
    assert b.offsets.tolist() == [0, 3] and b.sizes.tolist() == [3, 2]


def test_analogy_accuracy_is_3cosadd_excluding_the_question_words():
    emb = torch.tensor([[1.0, 0, 0], [1.0, 1.0, 0], [0, 0, 1.0], [0, 1.0, 1.0], [0.1, 1.0, 0.2], [0.3, 0.1, 1.0]])
    # 0:1 :: 2:3 (b - a + c = (0, 1, 1) is word 3); 2:3 :: 0:? expects 1 (b - a + c = (1, 1, 0))
    q = torch.tensor([[0, 1, 2, 3], [2, 3, 0, 1], [0, 1, 2, 5]])
    assert word2vec.analogy_accuracy(emb, q) == pytest.approx(2 / 3)
    # the nearest word overall is a question word: excluded, so the answer is the next one
    assert word2vec.analogy_accuracy(emb, torch.tensor([[1, 1, 4, 4]])) == 0.0
    # a tie is no answer: orthogonal embeddings (the NTK limit's) put every candidate at cosine 0
    assert word2vec.analogy_accuracy(torch.eye(6), torch.tensor([[0, 1, 2, 3]])) == 0.0
    assert word2vec.analogy_accuracy(torch.eye(4), torch.tensor([[0, 1, 2, 3]])) == 1.0  # one candidate left: no tie
    assert math.isnan(word2vec.analogy_accuracy(emb, torch.zeros(0, 4, dtype=torch.long)))


def test_the_ntk_limit_learns_no_similarity():
    cfg = word2vec.config(vocab=12, lr=3.0, sigma_u=0.4, base_width=8)
    emb = word2vec.ntk_embeddings(cfg)
    torch.testing.assert_close(emb, 0.4 * torch.eye(12))
    assert word2vec.wordsim(emb, [(0, 1, 3.0), (2, 3, 5.0), (4, 5, 1.0)]) == 0.0


def test_spearman_matches_known_values():
    assert word2vec.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert word2vec.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert word2vec.spearman([5, 5, 7], [1, 2, 3]) == pytest.approx(0.8660254, rel=1e-6)  # average ranks for ties
    assert word2vec.spearman([1, 1, 1], [1, 2, 3]) == 0.0


def test_summary_is_the_t_interval_over_seeds():
    m, sd, ci = word2vec.summary([0.1, 0.2, 0.4])
    assert m == pytest.approx(7 / 30) and sd == pytest.approx(math.sqrt(((1 / 3 - 0.2) ** 2 + (1 / 30) ** 2 + (1 / 6) ** 2) / 2) * 1)
    assert ci == pytest.approx(4.303 * sd / math.sqrt(3))
    assert word2vec.summary([0.3]) == (0.3, 0.0, 0.0)


def _eval_files(tmp_path, words):
    q = tmp_path / "questions.txt"
    q.write_text(": section\n" + f"{words[0]} {words[1]} {words[2]} {words[3]}\n{words[0]} zzz {words[2]} {words[3]}\n")
    w = tmp_path / "wordsim.tsv"
    w.write_text("# a comment\nWord 1\tWord 2\tHuman (mean)\n" + f"{words[0]}\t{words[1]}\t7.5\n{words[2]}\tqqq\t1.0\n"
                 + f"{words[1]}\t{words[3]}\t2.0\n")
    return q, w


def test_the_evaluation_files_keep_only_in_vocabulary_rows(tmp_path):
    q, w = _eval_files(tmp_path, ["king", "queen", "man", "woman"])
    index = {"king": 0, "queen": 1, "man": 2, "woman": 3}
    rows, total = word2vec.read_analogies(str(q), index)
    assert rows.tolist() == [[0, 1, 2, 3]] and total == 2
    assert word2vec.read_wordsim(str(w), index) == [(0, 1, 7.5), (1, 3, 2.0)]


def test_reading_a_text_file_a_zip_and_refusing_anything_else(tmp_path):
    (tmp_path / "t.txt").write_text("The cat's hat, the CAT. 42 dogs")
    assert word2vec.read_corpus(str(tmp_path / "t.txt")) == [["the", "cat", "s", "hat", "the", "cat", "dogs"]]
    with zipfile.ZipFile(tmp_path / "brown.zip", "w") as z:
        z.writestr("brown/", "")
        z.writestr("brown/README", "not text")
        z.writestr("brown/ca01", "The/at jury/nn said/vbd ./.\n")
    assert word2vec.read_corpus(str(tmp_path / "brown.zip")) == [["the", "jury", "said"]]
    assert word2vec.read_corpus(str(tmp_path)) == [["the", "jury", "said"]]  # the folder's zips
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"^corpus: the folder .* holds no \.zip files"):
        word2vec.read_corpus(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match=r"^corpus: .* is neither a folder of NLTK zips, a zip, nor a text file$"):
        word2vec.read_corpus(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match=r"^vocab: at least 2 words, got 1$"):
        word2vec.build([["a", "b"]], 1)


def test_the_vocabulary_is_the_most_frequent_words_and_drops_the_rest():
    c = word2vec.build([["b", "a", "c", "a", "b", "d"], ["x"], ["c", "a"]], 3)
    assert c.vocab == ["a", "b", "c"] and c.counts.tolist() == [3, 2, 2] and c.tokens == 9
    assert [d.tolist() for d in c.docs] == [[1, 0, 2, 0, 1], [2, 0]]  # "x" alone is no document


@pytest.mark.skipif(not NLTK.is_dir(), reason=f"the NLTK corpora are not at {NLTK} (the developers' shared data)")
def test_the_nltk_zips_read_as_3_8_million_words():
    docs = word2vec.read_corpus(str(NLTK))
    assert len(docs) == 2632 and sum(map(len, docs)) == 3_821_559
    brown = word2vec.read_corpus(str(NLTK / "brown.zip"))
    assert brown[0][:10] == ["the", "fulton", "county", "grand", "jury", "said", "friday", "an", "investigation", "of"]
    assert not any(t in ("nn", "vbd", "np") for t in brown[0])  # the tags are gone


def test_the_benchmark_end_to_end(tmp_path):
    text = " ".join(["the king and the queen", "a man and a woman", "the man saw the king", "the woman saw the queen"] * 30)
    (tmp_path / "c.txt").write_text(text)
    q, w = _eval_files(tmp_path, ["king", "queen", "man", "woman"])
    out = tmp_path / "r.json"
    res = word2vec.main(["--corpus", str(tmp_path / "c.txt"), "--questions", str(q), "--wordsim", str(w), "--vocab", "9",
                         "--widths", "8", "16", "--seeds", "2", "--epochs", "1", "--batch", "16", "--negatives", "3",
                         "--window", "2", "--json", str(out)])
    saved = json.loads(out.read_text())
    assert set(saved) == {"finite_8", "finite_16", "mup_limit", "ntk_limit"} and saved == res
    for m in saved.values():
        assert set(m) == {"analogy", "analogy_ci95", "wordsim", "wordsim_sd", "seeds"} and m["seeds"] == 2
    assert saved["ntk_limit"]["wordsim"] == 0.0 and saved["ntk_limit"]["analogy_ci95"] == 0.0
