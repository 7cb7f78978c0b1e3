"""Hyperparameter transfer across width (Tensor Programs V, Figure 1) at CPU scale: SP against muP.

A character-level MLP language model on CPython's help text (``pydoc_data``,
which ships with Python: about 465,000 characters of English technical prose)
reads the previous 8 characters (a fixed 16-dimensional embedding each, so the
input layer has fan-in 128) and predicts the next through ``--depth`` hidden
layers (default 4: the input layer and 3 width x width layers, then the
readout).  For each parametrization (SP: ``abcparam.sp``; muP:
``abcparam.mup``, TP4 form) and width, Adam is swept over learning rates that
are powers of 2, all runs seeing the same batches in the same order.  For every
width it reports the training loss (mean of the last 10% of steps) per
learning rate, the optimum, its drift from the base width in octaves, and the
**transfer penalty**: the loss at width n with the learning rate that was best
at the base width, minus the best loss at width n.

    python benchmarks/mutransfer.py --quick   # about 2 minutes on 2 CPU cores
    python benchmarks/mutransfer.py           # about 15 minutes
    python benchmarks/mutransfer.py --plot docs/mutransfer.png
    python benchmarks/mutransfer.py --optimizer muon --seeds 1   # about 30 minutes
    python benchmarks/mutransfer.py --model transformer          # about 15 minutes
    python benchmarks/mutransfer.py --model resnet               # about 20 minutes

``--model transformer`` is TP5's Figure 1 setting at CPU scale: a 2-block
pre-norm causal transformer (``abcparam.models.TinyTransformer``, 4 heads whose
size grows with width, next character at every one of 32 positions) under
AdamW; SP is the same architecture as plain torch modules with 1/sqrt(d_head)
attention and the unwrapped optimizer, muP its abcparam layers (Table 8 form,
1/d_head attention) with the wrapped one.

``--model resnet`` is the convolutional case (TP5's ResNets at CPU scale):
``abcparam.models.ResNet`` (two stages of one basic block, batch norm, 3 x 3
kernels) classifying Omniglot's 242 background characters (4,840 images from
data/omniglot, average-pooled to 14 x 14) under Adam, SP against muP (TP4
form), training loss as above.

``--optimizer muon`` is the usual hybrid (docs/theory.md section 11): torch's Muon
(``adjust_lr_fn`` left at its default) on the hidden width x width matrices
and AdamW on everything else (embedding, input layer, readout, biases), the
AdamW rate a fixed 1/8 of the swept Muon rate.  SP is that pair exactly as
torch builds it; muP wraps both with ``abcparam.wrap([muon, adamw], model)``.

Why this setup (see the README): with 2 hidden layers and a few hundred steps
SP's optimum hardly moves over these widths, so the experiment shows nothing;
depth, a base width >= 128 and enough steps are what make SP's optimum drift
while muP's stays put.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn

import abcparam
from abcparam.data import char_corpus
from abcparam.models import ResNet, TinyTransformer

CONTEXT, EMB = 8, 16
MUON_TO_ADAMW = 8  # --optimizer muon: AdamW's rate is the swept Muon rate / 8
T_CONTEXT = 32  # --model transformer: characters per sequence


class CharMLP(nn.Module):
    def __init__(self, vocab: int, width: int, depth: int, param: "abcparam.Parametrization"):
        super().__init__()
        self.emb = abcparam.Embedding(vocab, EMB, param=abcparam.sp())  # width-independent: an ordinary layer
        layers = [abcparam.Linear(CONTEXT * EMB, width, role="input", param=param)]
        layers += [abcparam.Linear(width, width, param=param) for _ in range(depth - 1)]
        self.hidden = nn.ModuleList(layers)
        self.out = abcparam.Linear(width, vocab, role="output", param=param)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.emb(x).flatten(1)
        for layer in self.hidden:
            h = torch.relu(layer(h))
        return self.out(h)


def batches(ids: torch.Tensor, steps: int, batch: int, seed: int, context: int = CONTEXT,
            sequence: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """``steps`` batches of ``batch`` windows of ``context`` characters and their next characters (every position's
    next one with ``sequence=True``, for a causal model; else the last one)."""
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, ids.numel() - context - 1, (steps, batch), generator=g)
    window = ids[starts[..., None] + torch.arange(context + 1)]
    return window[..., :-1], (window[..., 1:] if sequence else window[..., -1])


def transformer(param_name: str, vocab: int, width: int, base: int) -> nn.Module:
    """A pre-norm causal transformer (abcparam.models.TinyTransformer: 2 blocks, 4 heads whose size grows with the
    width, MLP 4x, untied readout).  muP: its abcparam layers in the Table 8 form, attention 1/d_head; SP: the same
    architecture as plain torch modules (nn.Embedding, nn.Linear: abcparam.to_torch of the SP build, torch's usual
    initialisation scales) with 1/sqrt(d_head) attention, trained by the unwrapped optimizer."""
    if param_name == "muP":
        return TinyTransformer(vocab, width, param=abcparam.mup(width, base, form="table8"), context=T_CONTEXT)
    return abcparam.to_torch(TinyTransformer(vocab, width, param=abcparam.sp(width, base), context=T_CONTEXT, mup_attention=False))


def run(param_name: str, width: int, base: int, lr: float, data: Tuple[torch.Tensor, torch.Tensor], vocab: int, depth: int,
        seed: int, optimizer: str = "adam", model_name: str = "mlp") -> float:
    torch.manual_seed(seed)
    if model_name == "transformer":
        model = transformer(param_name, vocab, width, base)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        return train(model, [abcparam.wrap(opt, model) if param_name == "muP" else opt], data)
    p = abcparam.sp(width, base) if param_name == "SP" else abcparam.mup(width, base)
    model = CharMLP(vocab, width, depth, p)
    # SP is the plain torch optimizer (its c = 0: every group at lr; eps left as practitioners leave it)
    if optimizer == "sgd":
        opts = [abcparam.wrap(torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9), model)]
    elif optimizer == "muon":
        hidden = [layer.weight for layer in model.hidden[1:]]
        ids = {id(t) for t in hidden}
        opts = [torch.optim.Muon(hidden, lr=lr, weight_decay=0.0),
                torch.optim.AdamW([t for t in model.parameters() if id(t) not in ids], lr=lr / MUON_TO_ADAMW, weight_decay=0.0)]
        if param_name == "muP":
            abcparam.wrap(opts, model)
    else:
        opts = [abcparam.wrap(torch.optim.Adam(model.parameters(), lr=lr), model, scale_eps=(param_name == "muP"))]
    return train(model, opts, data)


def train(model: nn.Module, opts: List[torch.optim.Optimizer], data: Tuple[torch.Tensor, torch.Tensor]) -> float:
    """Train on the batches (cross-entropy); the mean training loss over the last 10% of steps, inf if it diverged."""
    xs, ys = data
    steps = xs.shape[0]
    tail = max(1, steps // 10)
    losses = []
    for t in range(steps):
        logits = model(xs[t])
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ys[t].reshape(-1))
        if not torch.isfinite(loss):
            return float("inf")
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in opts:
            opt.step()
        if t >= steps - tail:
            losses.append(loss.item())
    return sum(losses) / len(losses)


def _progress(total: int):
    try:
        from tqdm import tqdm

        bar = tqdm(total=total, file=sys.stderr, leave=False)
        return bar.update, bar.close
    except ImportError:
        done = [0]
        t0 = time.time()

        def update(k: int = 1) -> None:
            done[0] += k
            print(f"\r  {done[0]}/{total} runs, {time.time() - t0:.0f} s", end="", file=sys.stderr, flush=True)

        return update, lambda: print("\r" + " " * 40 + "\r", end="", file=sys.stderr)


OPTIMIZER_TEXT = {"adam": "Adam", "sgd": "SGD (momentum 0.9)",
                  "muon": f"Muon (hidden matrices) + AdamW (the rest, rate / {MUON_TO_ADAMW})"}


def main(argv: Sequence[str]) -> None:
    ap = argparse.ArgumentParser(description="SP vs muP hyperparameter transfer across width")
    ap.add_argument("--quick", action="store_true", help="widths 128..1024, 200 steps, 1 seed, 5 learning rates")
    ap.add_argument("--widths", type=int, nargs="+", default=None)
    ap.add_argument("--base-width", type=int, default=128)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--log2-lr", type=int, nargs="+", default=None, help="exponents of the learning-rate grid")
    ap.add_argument("--optimizer", choices=["adam", "sgd", "muon"], default="adam",
                    help="Adam (default), SGD with momentum 0.9, or Muon on the hidden matrices with AdamW on the rest")
    ap.add_argument("--model", choices=["mlp", "transformer", "resnet"], default="mlp",
                    help="the char MLP (default), a 2-block pre-norm transformer (AdamW; SP = plain torch modules), or a "
                         "ResNet on Omniglot's characters (Adam)")
    ap.add_argument("--plot", metavar="PATH")
    args = ap.parse_args(list(argv))
    if args.model == "transformer":
        if args.optimizer != "adam":
            sys.exit("--model transformer trains with AdamW: leave --optimizer at its default")
        return main_transformer(args)
    if args.model == "resnet":
        if args.optimizer != "adam":
            sys.exit("--model resnet trains with Adam: leave --optimizer at its default")
        return main_resnet(args)
    widths = args.widths or ([128, 256, 512, 1024] if args.quick else [32, 64, 128, 256, 512, 1024])
    steps = args.steps or (200 if args.quick else 500)
    seeds = args.seeds or (1 if args.quick else 2)
    if args.optimizer == "sgd":
        grid = args.log2_lr or (list(range(-8, -1, 2)) if args.quick else list(range(-8, -1)))
    elif args.optimizer == "muon":
        grid = args.log2_lr or (list(range(-9, -2, 2)) if args.quick else list(range(-9, -2)))
    else:
        grid = args.log2_lr or (list(range(-12, -5, 2)) + [-5] if args.quick else list(range(-12, -5)))
    if args.base_width not in widths:
        sys.exit(f"--base-width {args.base_width} must be one of --widths {widths}")
    torch.set_num_threads(2)

    ids, vocab = char_corpus()
    print(f"data: CPython help topics, {ids.numel():,} characters, vocabulary {len(vocab)}; char MLP, context {CONTEXT}, "
          f"depth {args.depth}, ReLU, {OPTIMIZER_TEXT[args.optimizer]}, batch {args.batch}, {steps} steps, {seeds} seed(s), base width {args.base_width}")
    print(f"training loss = mean over the last {max(1, steps // 10)} steps; learning rates 2^{grid[0]}..2^{grid[-1]}\n")
    sweep_and_report(
        widths, args.base_width, grid, seeds, args.plot, lambda seed: batches(ids, steps, args.batch, seed),
        lambda name, w, k, data, seed: run(name, w, args.base_width, 2.0 ** k, data, len(vocab), args.depth, seed, args.optimizer))


def main_transformer(args: argparse.Namespace) -> None:
    widths = args.widths or ([64, 128, 256] if args.quick else [32, 64, 128, 256, 512])
    base = args.base_width if args.base_width in widths else 64
    steps = args.steps or (100 if args.quick else 200)
    seeds = args.seeds or (1 if args.quick else 2)
    grid = args.log2_lr or (list(range(-11, -4, 2)) if args.quick else list(range(-11, -4)))
    batch = 16 if args.batch == 64 else args.batch
    torch.set_num_threads(2)
    ids, vocab = char_corpus()
    print(f"data: CPython help topics, {ids.numel():,} characters, vocabulary {len(vocab)}; pre-norm transformer, 2 blocks, 4 heads, "
          f"context {T_CONTEXT}, AdamW, batch {batch} sequences, {steps} steps, {seeds} seed(s), base width {base}")
    print(f"training loss (next character at every position) = mean over the last {max(1, steps // 10)} steps; "
          f"learning rates 2^{grid[0]}..2^{grid[-1]}\n")
    sweep_and_report(
        widths, base, grid, seeds, args.plot,
        lambda seed: batches(ids, steps, batch, seed, context=T_CONTEXT, sequence=True),
        lambda name, w, k, data, seed: run(name, w, base, 2.0 ** k, data, len(vocab), 0, seed, model_name="transformer"))


def sweep_and_report(widths: Sequence[int], base: int, grid: Sequence[int], seeds: int, plot: "str | None",
                     data_for, run_one) -> None:
    """Every (seed, rule, width, log2 lr) run by ``run_one(name, width, k, data_for(seed), seed)`` (the training
    loss), then the tables, the time and (with ``plot``) the figure."""
    results: Dict[Tuple[str, int, int], List[float]] = {}
    update, close = _progress(2 * len(widths) * len(grid) * seeds)
    t0 = time.time()
    for seed in range(seeds):
        data = data_for(seed)
        for name in ("SP", "muP"):
            for w in widths:
                for k in grid:
                    results.setdefault((name, w, k), []).append(run_one(name, w, k, data, seed))
                    update(1)
    close()
    elapsed = time.time() - t0
    transfer_tables(("SP", "muP"), widths, base, grid, results, seeds, axis="width")
    print(f"({elapsed:.0f} s; spread = std over seeds of the loss at the best learning rate)")
    if plot:
        _plot(plot, widths, grid, results, mean)
        print(f"figure: {plot}")


def omniglot_images() -> Tuple[torch.Tensor, torch.Tensor]:
    """Omniglot's 242 background characters x 20 drawers (data/omniglot), as 14 x 14 ink images and class labels."""
    from omniglot import background

    chars = background()
    images = torch.cat(list(chars.values())).reshape(-1, 1, 28, 28)
    labels = torch.arange(len(chars)).repeat_interleave(20)
    return nn.functional.avg_pool2d(images, 2), labels


def resnet(param_name: str, width: int, base: int, classes: int) -> nn.Module:
    """abcparam.models.ResNet: 1 channel in, stages of width and 2 x width channels (one basic block each, batch
    norm), the readout to the classes.  muP: TP4 form; SP: abcparam.sp, whose layers are torch's own (fan-in init, no
    multiplier) and, with the optimizer left at every group's rate, train as plain torch modules would."""
    p = abcparam.mup(width, base) if param_name == "muP" else abcparam.sp(width, base)
    return ResNet(1, width, classes, blocks=(1, 1), param=p)


def main_resnet(args: argparse.Namespace) -> None:
    widths = args.widths or ([8, 16, 32] if args.quick else [8, 16, 32, 64])
    base = args.base_width if args.base_width in widths else 16
    steps = args.steps or (100 if args.quick else 200)
    seeds = args.seeds or (1 if args.quick else 2)
    grid = args.log2_lr or (list(range(-12, -3, 2)) if args.quick else list(range(-10, -3)))
    torch.set_num_threads(2)
    images, labels = omniglot_images()
    print(f"data: Omniglot background characters, {images.shape[0]:,} images of 14 x 14, {int(labels.max()) + 1} classes; "
          f"ResNet (2 stages, batch norm), Adam, batch {args.batch}, {steps} steps, {seeds} seed(s), base width {base}")
    print(f"training loss = mean over the last {max(1, steps // 10)} steps; learning rates 2^{grid[0]}..2^{grid[-1]}\n")
    classes = int(labels.max()) + 1

    def data_for(seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
        pick = torch.randint(0, images.shape[0], (steps, args.batch), generator=torch.Generator().manual_seed(seed))
        return images[pick], labels[pick]

    def run_one(name: str, w: int, k: int, data: Tuple[torch.Tensor, torch.Tensor], seed: int) -> float:
        torch.manual_seed(seed)
        model = resnet(name, w, base, classes)
        opt = abcparam.wrap(torch.optim.Adam(model.parameters(), lr=2.0 ** k), model, scale_eps=(name == "muP"))
        return train(model, [opt], data)

    sweep_and_report(widths, base, grid, seeds, args.plot, data_for, run_one)


def mean(v: List[float]) -> float:
    """Mean over seeds; a diverged run (inf) makes the cell diverged."""
    return sum(v) / len(v) if all(math.isfinite(x) for x in v) else float("inf")


def transfer_tables(names: Sequence[str], sizes: Sequence[int], base: int, grid: Sequence[int],
                    results: Dict[Tuple[str, int, int], List[float]], seeds: int, axis: str = "width") -> Dict[Tuple[str, int], Tuple[int, float, float]]:
    """Print, per rule, the loss per learning rate at every size (width or depth), the optimum, its drift from the
    base size in octaves and the transfer penalty; return (best log2 lr, best loss, penalty) per (rule, size)."""
    summary = {}
    for name in names:
        print(f"{name}: training loss per learning rate (mean over seeds)")
        print(f"| {axis} | " + " | ".join(f"2^{k}" for k in grid) + " | best lr | drift (octaves) | penalty | spread |")
        print("|" + "---|" * (len(grid) + 5))
        best_base = min(grid, key=lambda k: mean(results[(name, base, k)]))
        for w in sizes:
            losses = {k: mean(results[(name, w, k)]) for k in grid}
            best = min(grid, key=lambda k: losses[k])
            penalty = losses[best_base] - losses[best]
            spread = statistics.pstdev(results[(name, w, best)]) if seeds > 1 else 0.0
            cells = " | ".join(("div" if not math.isfinite(v) else f"{v:.3f}") for v in losses.values())
            print(f"| {w} | {cells} | 2^{best} | {best - best_base:+d} | {penalty:.3f} | {spread:.3f} |")
            summary[(name, w)] = (best, losses[best], penalty)
        interp = {w: interpolated_optimum(grid, [mean(results[(name, w, k)]) for k in grid]) for w in sizes}
        print("interpolated optimum (log2 lr; a parabola through the best rate and its neighbours): "
              + ", ".join(f"{w}: {'edge' if v is None else f'{v:.2f}'}" for w, v in interp.items())
              + (f"; drift from the base {axis}: {max(abs(v - interp[base]) for v in interp.values()):.2f} octaves"
                 if None not in interp.values() else ""))
        bests = [summary[(name, w)][1] for w in sizes]
        better = all(b2 <= b1 + 1e-9 for b1, b2 in zip(bests, bests[1:]))
        print(f"optimum drift over {axis}s {sizes[0]}..{sizes[-1]}: "
              f"{max(summary[(name, w)][0] for w in sizes) - min(summary[(name, w)][0] for w in sizes)} octaves; "
              f"largest transfer penalty {max(summary[(name, w)][2] for w in sizes):.3f} nats; "
              f"{'wider' if axis == 'width' else 'deeper'} is better at the optimum: {'yes' if better else 'no'}\n")
    return summary


def interpolated_optimum(grid: Sequence[int], losses: Sequence[float]) -> "float | None":
    """The log2 learning rate at the vertex of the parabola through the best grid point and its two neighbours
    (the grid's argmin moves by a whole octave on a tie; this does not); None at the grid's edge or on a diverged
    neighbour."""
    i = min(range(len(grid)), key=lambda j: losses[j])
    if i in (0, len(grid) - 1) or not all(math.isfinite(losses[j]) for j in (i - 1, i, i + 1)):
        return None
    f0, f1, f2 = losses[i - 1], losses[i], losses[i + 1]
    step = grid[i + 1] - grid[i]
    curvature = f0 - 2 * f1 + f2
    return float(grid[i]) if curvature <= 0 else grid[i] + step * 0.5 * (f0 - f2) / curvature


def _plot(path, widths, grid, results, mean, names=("SP", "muP"), axis="width") -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("--plot needs matplotlib: pip install -e '.[plot]'")
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.8), sharey=True)
    cmap = plt.get_cmap("viridis")
    for ax, name in zip(axes, names):
        for i, w in enumerate(widths):
            ys = [mean(results[(name, w, k)]) for k in grid]
            ys = [y if math.isfinite(y) else float("nan") for y in ys]
            ax.plot(grid, ys, "o-", color=cmap(i / max(1, len(widths) - 1)), label=f"{axis} {w}", ms=3)
        ax.set_title(f"{name}: training loss vs learning rate")
        ax.set_xlabel("log2 learning rate")
    axes[0].set_ylabel("training loss")
    finite = [mean(v) for v in results.values() if math.isfinite(mean(v))]
    lo = min(finite)
    axes[0].set_ylim(lo - 0.05, lo + 1.2)
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main(sys.argv[1:])
