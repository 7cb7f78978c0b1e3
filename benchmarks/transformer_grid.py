"""Is the coordinate check right both ways on transformers? A zoo of correct models and mutants.

    python benchmarks/transformer_grid.py            # the whole grid
    python benchmarks/transformer_grid.py --quick    # one learning rate, one batch

Every cell runs ``abcparam.testing.assert_regime(..., "feature_learning")``'s
decision at its CI defaults (widths 128 to 1024, 3 steps, 2 seeds) with AdamW
on a random batch of token ids (vocabulary 50, 4 sequences of 16 tokens,
next-token cross-entropy), base width 128, 4 heads whose size grows with width,
2 blocks:

- correct models: ``abcparam.models.TinyTransformer`` untied and tied in both
  muP forms (TP4's and Table 8's); HF transformers' GPT-2 (tied) and Llama
  (untied) built from tiny configs and converted with ``abcparam.convert``; a
  model of torch's ``nn.TransformerEncoderLayer`` (pre-norm, causal) converted
  with ``abcparam.convert``.  Acceptance: no FAIL.
- mutants, expected to FAIL wherever the correct model PASSes: attention scaled
  by 1/sqrt(d_head); a plain ``nn.Linear`` readout; a plain ``nn.Linear`` as the
  first MLP projection; a readout tied by plain weight sharing, with no readout
  multiplier; the attention left unconverted (TinyTransformer: its attention
  built as torch's ``nn.MultiheadAttention`` would be, plain projections and
  1/sqrt(d_head); the converted models: the attention modules kept as they were).

The grid: AdamW at learning rates 3e-3, 1e-2 and 3e-2, on two random token
batches.  It prints the counts, every unexpected cell, and the smallest margins.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn

import abcparam
from _workers import worker_pool
from abcparam.models import TinyTransformer

WIDTHS = (128, 256, 512, 1024)
BASE = 128
VOCAB, CONTEXT, HEADS = 50, 16, 4
LRS = (3e-3, 1e-2, 3e-2)
BATCHES = (0, 1)
MODELS = ("tiny", "tiny_table8", "tiny_tied", "tiny_tied_table8", "gpt2", "llama", "encoder")
MUTANTS = ("sqrt_attention", "plain_readout", "plain_mlp", "shared_tie", "unconverted_attention")


def batch(seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Random token ids and their next-token targets."""
    g = torch.Generator().manual_seed(1000 + seed)
    ids = torch.randint(0, VOCAB, (4, CONTEXT + 1), generator=g)
    return ids[:, :-1], ids[:, 1:]


def param(model: str, n: int) -> abcparam.Parametrization:
    return abcparam.mup(n, BASE, form="table8" if model.endswith("table8") or model in ("gpt2", "llama", "encoder") else "tp4")


# -- the models ---------------------------------------------------------------------------------------


class _Logits(nn.Module):
    """The HF models' logits alone (the check reads .logits too; this keeps the mutants' code simple)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(idx).logits


def _gpt2(n: int) -> nn.Module:
    import transformers

    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_positions=CONTEXT, n_embd=n, n_layer=2, n_head=HEADS, resid_pdrop=0.0,
                                  embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg)


def _llama(n: int) -> nn.Module:
    import transformers

    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=n, intermediate_size=2 * n, num_hidden_layers=2,
                                   num_attention_heads=HEADS, num_key_value_heads=2, max_position_embeddings=CONTEXT,
                                   bos_token_id=0, eos_token_id=0)
    return transformers.LlamaForCausalLM(cfg)


class Encoder(nn.Module):
    """Token and position embeddings, pre-norm causal ``nn.TransformerEncoderLayer`` blocks, a final norm, a readout."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, n)
        self.pos = nn.Embedding(CONTEXT, n)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(n, HEADS, 2 * n, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
            for _ in range(2))
        self.norm = nn.LayerNorm(n)
        self.head = nn.Linear(n, VOCAB)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[-1]
        h = self.tok(idx) + self.pos(torch.arange(t))
        mask = nn.Transformer.generate_square_subsequent_mask(t)
        for layer in self.layers:
            h = layer(h, src_mask=mask, is_causal=True)
        return self.head(self.norm(h))


def _widths(model: str, n: int) -> List[int]:
    kv = [n // 2] if model == "llama" else []  # Llama's grouped keys and values: 2 of 4 heads, n / 2 wide
    return kv + [n, 2 * n, 3 * n, 4 * n]


def build_model(model: str, n: int, mutant: Optional[str] = None) -> nn.Module:
    p = param(model, n)
    if model.startswith("tiny"):
        net = TinyTransformer(VOCAB, n, param=p, n_heads=HEADS, context=CONTEXT, tie="tied" in model,
                              mup_attention=mutant not in ("sqrt_attention", "unconverted_attention"))
        if mutant == "unconverted_attention":
            for blk in net.blocks:
                attn = blk["attn"].branch
                attn.qkv = nn.Linear(n, 3 * n, bias=False)
                attn.proj = nn.Linear(n, n)
        _mutate(net, mutant, n, readout="head", embedding="tok", mlp=lambda m: m.blocks[0]["mlp"].branch, mlp_up="up")
        return net
    plain = {"gpt2": _gpt2, "llama": _llama, "encoder": Encoder}[model](n)
    keep_attention = mutant == "unconverted_attention"
    filter_fn = None
    if keep_attention:
        filter_fn = lambda mod, name: not any(k in name for k in ("attn.c_attn", "attn.c_proj", "self_attn"))  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        abcparam.convert(plain, p, widths=_widths(model, n), filter_fn=filter_fn, scale_attention=not keep_attention)
    if mutant == "sqrt_attention":
        _plain_attention_scale(plain, n)
    if model == "gpt2":
        _mutate(plain, mutant, n, readout="lm_head", embedding="transformer.wte", mlp=lambda m: m.transformer.h[0].mlp, mlp_up="c_fc")
    elif model == "llama":
        _mutate(plain, mutant, n, readout="lm_head", embedding="model.embed_tokens", mlp=lambda m: m.model.layers[0].mlp, mlp_up="up_proj")
    else:
        _mutate(plain, mutant, n, readout="head", embedding="tok", mlp=lambda m: m.layers[0], mlp_up="linear1")
    return _Logits(plain) if model in ("gpt2", "llama") else plain


def _plain_attention_scale(model: nn.Module, n: int) -> None:
    d_head = n // HEADS
    for mod in model.modules():
        if isinstance(mod, abcparam.MultiheadAttention):
            mod.scale = d_head ** -0.5
        elif isinstance(getattr(mod, "scaling", None), float) and hasattr(mod, "head_dim"):
            mod.scaling = d_head ** -0.5


class _SharedTie(nn.Module):
    """A readout that reuses the embedding's table by plain weight sharing: ``h @ E^T``, no readout multiplier."""

    def __init__(self, embedding: nn.Module) -> None:
        super().__init__()
        self.table = [embedding]  # not a submodule: the weight belongs to the embedding

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(h, self.table[0].weight)


def _mutate(net: nn.Module, mutant: Optional[str], n: int, *, readout: str, embedding: str, mlp: Callable[[nn.Module], nn.Module],
            mlp_up: str) -> None:
    if mutant == "plain_readout":
        _set(net, readout, nn.Linear(n, VOCAB, bias=False))
    elif mutant == "shared_tie":
        _set(net, readout, _SharedTie(net.get_submodule(embedding)))
    elif mutant == "plain_mlp":
        block = mlp(net)
        setattr(block, mlp_up, _plain_like(getattr(block, mlp_up)))


def _plain_like(layer: abcparam.Linear) -> nn.Module:
    """The plain torch module of a converted layer's shape: HF's Conv1D for abcparam's Conv1D (GPT-2), else nn.Linear."""
    if isinstance(layer, abcparam.layers.Conv1D):
        from transformers.pytorch_utils import Conv1D

        return Conv1D(layer.out_features, layer.in_features)
    return nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)


def _set(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


# -- cells -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    model: str
    lr: float
    batch: int
    mutant: Optional[str] = None

    def label(self) -> str:
        m = f" [{self.mutant}]" if self.mutant else ""
        return f"{self.model} AdamW lr={self.lr:g} batch {self.batch}{m}"

    def base(self) -> "Cell":
        return Cell(self.model, self.lr, self.batch)


def run(cell: Cell, seeds: Tuple[int, ...] = tuple(abcparam.testing.CI_SEEDS)) -> abcparam.CoordReport:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return abcparam.coord_check(lambda n: build_model(cell.model, n, cell.mutant), list(WIDTHS), batch(cell.batch),
                                    optimizer=torch.optim.AdamW, lr=cell.lr, steps=abcparam.testing.CI_STEPS, seeds=seeds,
                                    expect="feature_learning")


@dataclass(frozen=True)
class Outcome:
    """What a worker process sends back about one cell's check."""

    cell: Cell
    status: str
    text: str  # the whole report
    smallest_margin: Optional[float]  # a passing check: the closest agreeing quantity's distance to the tolerance
    fail_margin: Optional[float]  # a failing check: its largest disagreement past the fail band (None: no disagreeing slope)

    def __iter__(self):  # cell, status, text
        return iter((self.cell, self.status, self.text))


def check(cell: Cell) -> Outcome:
    report = run(cell)
    fails = [f.margin for f in report.mismatches if math.isfinite(f.margin) and f.quantity != "scale"]  # a scale is read exactly
    return Outcome(cell, report.status, str(report), report.smallest_margin if report.status == "pass" else None,
                   max(fails) if report.status == "fail" and fails else None)


def run_cells(correct: List[Cell], *, mutants_where_passing: bool, processes: int = 2) -> List[Outcome]:
    """Check the correct cells, then their mutants (all of them, or only where the correct model passes), in
    ``processes`` single-threaded worker processes."""
    with worker_pool(processes) as pool:
        first = list(pool.map(check, correct))
        todo = [Cell(o.cell.model, o.cell.lr, o.cell.batch, m) for o in first
                if o.status == "pass" or not mutants_where_passing for m in MUTANTS]
        return first + list(pool.map(check, todo))


def available(model: str) -> bool:
    if model in ("gpt2", "llama"):
        try:
            import transformers  # noqa: F401
        except ImportError:
            return False
    return True


def cells(quick: bool = False, models=MODELS) -> Iterator[Cell]:
    for model, lr, b in itertools.product(models, LRS[1:2] if quick else LRS, BATCHES[:1] if quick else BATCHES):
        if available(model):
            yield Cell(model, lr, b)


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description="the coordinate check on transformers: correct models and mutants")
    ap.add_argument("--quick", action="store_true", help="one learning rate (1e-2) and one batch")
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    ap.add_argument("--verbose", action="store_true", help="print every report")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    # cost: one assert_regime on a 2-block TinyTransformer at the CI defaults (the second call: no first-call warm-up)
    for _ in range(2):
        t = time.perf_counter()
        abcparam.testing.assert_regime(lambda n: build_model("tiny", n), "feature_learning", batch=batch(0),
                                       optimizer=torch.optim.AdamW, lr=1e-2)
        cost = time.perf_counter() - t
    print(f"assert_regime on a 2-block TinyTransformer at the CI defaults: {cost:.1f} s (2 threads)", flush=True)
    t0 = time.time()
    outcomes = run_cells(list(cells(args.quick, args.models)), mutants_where_passing=False)
    correct: Dict[Cell, Outcome] = {o.cell: o for o in outcomes if o.cell.mutant is None}
    mutants: Dict[Cell, Outcome] = {o.cell: o for o in outcomes if o.cell.mutant is not None}
    for cell, o in correct.items():
        print(f"{cell.label()}: {o.status}")
        if args.verbose or o.status == "fail":
            print(o.text)
        for mutant in MUTANTS:
            mo = mutants[Cell(cell.model, cell.lr, cell.batch, mutant)]
            print(f"  {mutant}: {mo.status} ({mo.text.splitlines()[2][:150]})")
            if args.verbose or mo.status == "pass":
                print(mo.text)
    counts = {s: sum(1 for v in correct.values() if v.status == s) for s in ("pass", "inconclusive", "fail")}
    print(f"\nwidths {list(WIDTHS)}, {abcparam.testing.CI_STEPS} steps, seeds {list(abcparam.testing.CI_SEEDS)}, AdamW")
    print(f"correct models: {len(correct)} cells: {counts['pass']} pass, {counts['inconclusive']} inconclusive, {counts['fail']} fail")
    by_lr = {lr: [v.status for c, v in correct.items() if c.lr == lr] for lr in sorted({c.lr for c in correct})}
    print("  inconclusive by learning rate: " + ", ".join(f"AdamW {lr:g}: {st.count('inconclusive')} of {len(st)}"
                                                         for lr, st in by_lr.items()))
    for cell, report in correct.items():
        if report.status == "fail":
            print(f"  FALSE ALARM {cell.label()}: {report.text.splitlines()[2]}")
    misses = [c for c, r in mutants.items() if correct[c.base()].status == "pass" and r.status != "fail"]
    print(f"mutants: {len(mutants)} cells: {sum(r.status == 'fail' for r in mutants.values())} fail, "
          f"{sum(r.status == 'inconclusive' for r in mutants.values())} inconclusive, {sum(r.status == 'pass' for r in mutants.values())} pass; "
          f"where the correct model passes: {len(misses)} not failed")
    for cell in misses:
        print(f"  MISS {cell.label()}: {mutants[cell].text.splitlines()[2]}")
    for name in MUTANTS:
        statuses = [r.status for c, r in mutants.items() if c.mutant == name]
        print(f"  {name}: {statuses.count('fail')}/{len(statuses)} fail")
    margins = [o.smallest_margin for o in correct.values() if o.smallest_margin is not None]
    if margins:
        print(f"smallest margin of a passing correct model: {min(margins):.3f} (slope units inside the tolerance)")
    fail_margins = [o.fail_margin for o in mutants.values() if o.fail_margin is not None]
    if fail_margins:
        print(f"smallest margin of a failing mutant: {min(fail_margins):.3f} (its largest disagreement past the fail band); "
              f"{sum(1 for o in mutants.values() if o.status == 'fail' and o.fail_margin is None)} mutants fail without a "
              "disagreeing slope (no prediction: no abcparam readout; or an attention scale read exactly)")
    print(f"({time.time() - t0:.0f} s)")
    return 0 if counts["fail"] == 0 and not misses else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
