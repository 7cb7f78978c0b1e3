"""TP4's MAML experiment on Omniglot: the exact muP limit vs finite widths vs the NTK and GP limits.

5-way 1-shot Omniglot with first-order MAML (one inner SGD step of 0.4,
meta-batches of 32 tasks, meta-gradient norm clipped at 0.5, a multi-step
learning-rate schedule), as in the paper, for:

- ``finite_<width>``: the 1-hidden-layer linear network 784 -> width -> 5 with
  an input bias, in muP (TP4 form), built from abcparam layers
  (:class:`abcparam.limits.LinearMLP`) and trained with ``abcparam.wrap(SGD)``;
- ``mup_limit``: its exact infinite-width limit, :class:`abcparam.limits.LinearLimit`
  (a network of width 784 + 1 + 5 trained by the same loop);
- ``ntk_linear``, ``gp_linear``, ``ntk_relu``, ``gp_relu``: the kernel limits of the
  linear and the ReLU network, :class:`abcparam.kernels.KernelFOMAML`, meta-trained
  by the same loop in function space.

Data: the shipped zips in data/omniglot/ (benchmarks/omniglot.py reads them):
meta-training on the 242 background characters of the two small background
sets (rotations by 90 degrees as further classes), meta-testing on 5-way 1-shot
tasks drawn from the 20 official runs (evaluation alphabets: characters no model
has seen), plus the classic 20-way one-shot accuracy of the runs by nearest
neighbour in each model's learned features.  Hyperparameters (meta learning
rate and readout scale sigma_v) are chosen on a validation split of the
background characters (20% of them, never the test runs): once for the muP
family, on its limit, and used unchanged at every finite width (muP's promise:
the same values are right at every width), and once per kernel limit.  Then
each model is meta-trained on all background characters with its values.

    python benchmarks/maml.py --quick          # under 3 minutes on 2 cores
    python benchmarks/maml.py --json docs/maml.json --plot docs/maml.png
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import omniglot  # noqa: E402

import abcparam  # noqa: E402
from abcparam.kernels import KernelFOMAML, kernel  # noqa: E402
from abcparam.limits import LinearLimit, LinearMLP  # noqa: E402
from abcparam.maml import FOMAML  # noqa: E402

WAYS, SHOTS, QUERIES = 5, 1, 1
INNER_LR, META_BATCH, CLIP = 0.4, 32, 0.5
KERNELS = ("ntk_linear", "gp_linear", "ntk_relu", "gp_relu")
PAPER = {"finite_2": 55.0, "finite_8": 64.5, "finite_32": 66.4, "finite_128": 66.4, "finite_512": 66.4,
         "finite_2048": 66.4, "mup_limit": 66.4, "ntk_relu": 47.8, "gp_relu": 47.6, "ntk_linear": 41.7,
         "gp_linear": 41.7}


class Data:
    """Everything read once: background pools (training split, validation split, all) and the test runs."""

    def __init__(self, val_fraction: float, seed: int, test_tasks: int, rotations: bool = True) -> None:
        chars = omniglot.background()
        train, val = omniglot.split(chars, val_fraction, seed)
        self.all = omniglot.pool(list(chars.values()), rotations)
        self.train = omniglot.pool(train, rotations)
        self.val = omniglot.pool(val, rotations=False)
        self.n_chars, self.n_train_chars, self.n_val_chars = len(chars), len(train), len(val)
        g = torch.Generator().manual_seed(seed + 1)
        self.val_tasks = (self.val.x,) + omniglot.sample_tasks(self.val, 400, WAYS, SHOTS, QUERIES, g)
        self.runs = omniglot.runs()
        self.test_tasks = omniglot.test_tasks(self.runs, test_tasks, WAYS, seed)
        self._grams: Dict[int, torch.Tensor] = {}
        self._kernel: Tuple[Tuple[str, int], torch.Tensor] = (("", 0), torch.empty(0))

    def kernel(self, name: str, p: omniglot.Pool) -> torch.Tensor:
        """K(Z, Z) at sigma_v = 1 of kernel ``name`` on pool ``p``: one N x N matrix shared by a model's runs."""
        if self._kernel[0] != (name, id(p)):
            if id(p) not in self._grams:
                self._grams[id(p)] = p.x @ p.x.T
            gram = self._grams[id(p)]
            kind, nonlin = name.split("_")
            self._kernel = ((name, id(p)), torch.empty(0))  # free the last one first
            self._kernel = ((name, id(p)), kernel(gram, gram.diagonal(), gram.diagonal(), kind=kind, nonlinearity=nonlin,
                                                  sigma_u=1.0, sigma_b=1.0, sigma_v=1.0, bias=1.0))
        return self._kernel[1]


def build(name: str, hp: Dict[str, float], data: Data, p: omniglot.Pool, seed: int):
    """The learner of model ``name`` with hyperparameters ``hp`` for meta-training on pool ``p``."""
    torch.manual_seed(seed)
    if name in KERNELS:
        kind, nonlin = name.split("_")
        return KernelFOMAML(p.x, WAYS, kind=kind, nonlinearity=nonlin, sigma_u=1.0, sigma_b=1.0, sigma_v=hp["sigma_v"],
                           lr=hp["lr"], inner_lr=INNER_LR, clip=CLIP, basis_kernel=data.kernel(name, p))
    if name == "mup_limit":  # a plain module: plain SGD at the base rate (its width is fixed)
        model = LinearLimit(784, WAYS, sigma_v=hp["sigma_v"])
        return FOMAML(model, torch.optim.SGD(model.parameters(), lr=hp["lr"]), inner_lr=INNER_LR, clip=CLIP)
    model = LinearMLP(784, WAYS, int(name.split("_")[1]), sigma_v=hp["sigma_v"])
    opt = abcparam.wrap(torch.optim.SGD(model.parameters(), lr=hp["lr"]), model)
    return FOMAML(model, opt, inner_lr=INNER_LR, clip=CLIP)


def set_decay(learner, lr: float, decay: float) -> None:
    """The schedule's factor ``decay`` applied to the base rate ``lr`` (to each param group's own start)."""
    if isinstance(learner, KernelFOMAML):
        learner.set_lr(lr * decay)
    else:
        for group in learner.optimizer.param_groups:
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * decay


def train(learner, p: omniglot.Pool, lr: float, steps: int, seed: int) -> float:
    """Meta-train for ``steps`` meta-batches; the rate drops 10x at 50% and again at 80% of them."""
    g = torch.Generator().manual_seed(10_000 + seed)
    loss = float("nan")
    for step in range(steps):
        set_decay(learner, lr, 0.1 ** sum(step >= m for m in (steps // 2, (4 * steps) // 5)))
        s_idx, s_y, q_idx, q_y = omniglot.sample_tasks(p, META_BATCH, WAYS, SHOTS, QUERIES, g)
        loss = learner.meta_step(p.x, s_idx, s_y, q_idx, q_y)
        if not math.isfinite(loss):
            return loss
    return loss


def task_accuracy(learner, tasks) -> torch.Tensor:
    """Per-task accuracy of the adapted model on its queries, in chunks of 250 tasks."""
    x, s_idx, s_y, q_idx, q_y = tasks
    out = []
    for i in range(0, s_idx.shape[0], 250):
        logits = learner.adapt_predict(x, s_idx[i:i + 250], s_y[i:i + 250], q_idx[i:i + 250])
        out.append((logits.argmax(-1) == q_y[i:i + 250]).float().mean(-1))
    return torch.cat(out)


def twenty_way(learner, runs: Sequence[omniglot.Run]) -> float:
    """The classic 20-way one-shot accuracy of the runs: nearest training image by cosine of the model's features."""
    hits = 0
    for run in runs:
        if isinstance(learner, KernelFOMAML):
            sim = learner.similarity(run.test, run.train)
        else:
            with torch.no_grad():
                a, b = learner.model.features(run.test), learner.model.features(run.train)
            sim = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T
        hits += int((sim.argmax(1) == run.label).sum())
    return hits / (20 * len(runs))


def grid(name: str, quick: bool = False) -> List[Dict[str, float]]:
    """The hyperparameters tried per model: the meta learning rate and the readout scale (4 x 3; 2 x 2 quick)."""
    lrs = (0.1, 0.4) if quick else (0.1, 0.2, 0.4, 0.8)
    sigmas = (1 / 32, 1 / 8, 1 / 2) if name not in KERNELS else (1 / 16, 1 / 4, 1.0)
    return [{"lr": lr, "sigma_v": s} for lr, s in itertools.product(lrs, sigmas[1:] if quick else sigmas)]


def tune(name: str, data: Data, steps: int, quick: bool = False) -> List[Tuple[Dict[str, float], float]]:
    """Every grid point with its validation accuracy after ``steps`` meta-steps on the training split, best first.

    A run whose loss stops being finite scores 0.
    """
    scored = []
    for hp in grid(name, quick):
        learner = build(name, hp, data, data.train, seed=0)
        loss = train(learner, data.train, hp["lr"], steps, seed=0)
        scored.append((hp, float(task_accuracy(learner, data.val_tasks).mean()) if math.isfinite(loss) else 0.0))
    return sorted(scored, key=lambda item: -item[1])


def tuned_on(name: str) -> str:
    """The model whose tuning ``name`` uses: the muP limit for every finite width, else the model itself."""
    return "mup_limit" if name.startswith("finite_") else name


def final(name: str, ranked: List[Tuple[Dict[str, float], float]], data: Data, seeds: int, steps: int) -> Dict:
    """Meta-train on all background characters with the best validated hyperparameters and evaluate.

    A final run can diverge where the shorter tuning run did not; then every seed
    is run again with the next grid point in validation order, and the ones given
    up are listed under ``diverged``.
    """
    diverged = []
    for hp, val_acc in ranked:
        accs, per_seed, nn20 = [], [], []
        for seed in range(seeds):
            learner = build(name, hp, data, data.all, seed)
            if not math.isfinite(train(learner, data.all, hp["lr"], steps, seed)):
                break
            a = task_accuracy(learner, data.test_tasks)
            accs.append(a)
            per_seed.append(float(a.mean()))
            nn20.append(twenty_way(learner, data.runs))
        else:
            acc = torch.cat(accs)
            return {"accuracy": float(acc.mean()), "ci95": 1.96 * float(acc.std()) / math.sqrt(acc.numel()),
                    "tasks": int(data.test_tasks[1].shape[0]), "seeds": seeds, "seed_accuracies": per_seed,
                    "twenty_way": sum(nn20) / len(nn20), "lr": hp["lr"], "sigma_v": hp["sigma_v"],
                    "val_accuracy": val_acc, "diverged": diverged}
        diverged.append({"lr": hp["lr"], "sigma_v": hp["sigma_v"], "seed": seed})
    raise RuntimeError(f"{name}: every grid point diverged in a final run")


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, float]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="widths 2, 32, 512, no rotations, a 2 x 2 grid, short runs, 1 seed (under 3 minutes)")
    ap.add_argument("--widths", type=int, nargs="+", default=None)
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None, help="meta-steps of each final run")
    ap.add_argument("--tune-steps", type=int, default=None, help="meta-steps of each tuning run (default 600)")
    ap.add_argument("--test-tasks", type=int, default=None, help="meta-test tasks (default 2000; 500 quick)")
    ap.add_argument("--models", nargs="+", default=None, help="a subset of the models (default: all)")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--merge", default=None, help="a results file to update with the models run now")
    ap.add_argument("--plot", default=None, help="save the figure here (needs matplotlib)")
    args = ap.parse_args(argv)
    quick = args.quick
    widths = args.widths or ([2, 32, 512] if quick else [2, 8, 32, 128, 512, 2048])
    seeds = args.seeds or (1 if quick else 2)
    steps = args.steps or (300 if quick else 3000)
    tune_steps = args.tune_steps or (60 if quick else 600)
    test_tasks = args.test_tasks or (500 if quick else 2000)
    names = [f"finite_{w}" for w in widths] + ["mup_limit", *KERNELS]
    if args.models:
        unknown = sorted(set(args.models) - set(names))
        if unknown:
            ap.error(f"--models: unknown {unknown}; allowed: {names}")
        names = [n for n in names if n in args.models]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.time()
    data = Data(val_fraction=0.2, seed=0, test_tasks=test_tasks, rotations=not quick)
    print(f"Omniglot: {data.n_chars} background characters ({data.n_train_chars} for meta-training while tuning, "
          f"{data.n_val_chars} for validation), x4 rotations: {len(data.all.classes)} classes, "
          f"{data.all.x.shape[0]} images; test: {test_tasks} {WAYS}-way {SHOTS}-shot tasks from the 20 runs "
          f"({time.time() - t0:.0f} s to read)", flush=True)
    print(f"meta-steps: {tune_steps} per tuning run, {steps} per final run; {seeds} seed(s); meta-batch {META_BATCH}, "
          f"inner step {INNER_LR}, clip {CLIP}", flush=True)
    results: Dict[str, Dict] = {}
    if args.merge and os.path.exists(args.merge):
        with open(args.merge) as fh:
            results = json.load(fh)
    rankings: Dict[str, List[Tuple[Dict[str, float], float]]] = {}
    for name in names:
        t = time.time()
        if tuned_on(name) not in rankings:
            rankings[tuned_on(name)] = tune(tuned_on(name), data, tune_steps, quick)
        t_tune = time.time() - t
        r = results[name] = final(name, rankings[tuned_on(name)], data, seeds, steps) | {
            "tuned_on": tuned_on(name), "seconds": time.time() - t}
        note = "".join(f"; diverged at lr {d['lr']}, sigma_v {d['sigma_v']:g} (seed {d['seed']})" for d in r["diverged"])
        print(f"{name:>12}: {100 * r['accuracy']:5.1f}% +- {100 * r['ci95']:.1f}  (seeds "
              f"{', '.join(f'{100 * a:.1f}' for a in r['seed_accuracies'])}; 20-way NN {100 * r['twenty_way']:.1f}%; "
              f"lr {r['lr']}, sigma_v {r['sigma_v']:g} tuned on {r['tuned_on']} (val {100 * r['val_accuracy']:.1f}%){note}; "
              f"tuning {t_tune:.0f} s, all {time.time() - t:.0f} s)", flush=True)
    results = dict(sorted(results.items(), key=lambda kv: _order(kv[0])))
    print_table(results)
    print(f"total {time.time() - t0:.0f} s")
    if args.json or args.merge:
        with open(args.json or args.merge, "w") as fh:
            json.dump(results, fh, indent=1)
    if args.plot:
        plot(results, args.plot)
    return results


def _order(name: str) -> Tuple[int, int]:
    """Finite widths by width, then the muP limit, then the kernels in KERNELS' order."""
    if name.startswith("finite_"):
        return (0, int(name.split("_")[1]))
    return (1, 0) if name == "mup_limit" else (2, KERNELS.index(name))


def print_table(results: Dict[str, Dict[str, float]]) -> None:
    print(f"\n| model | {WAYS}-way 1-shot test accuracy (95% CI) | seeds | 20-way 1-shot (NN in features) | paper |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        paper = f"{PAPER[name]:.1f}%" if name in PAPER else "-"
        print(f"| {name} | {100 * r['accuracy']:.1f}% +- {100 * r['ci95']:.1f} | "
              f"{', '.join(f'{100 * s:.1f}' for s in r['seed_accuracies'])} | {100 * r['twenty_way']:.1f}% | {paper} |")


def plot(results: Dict[str, Dict[str, float]], path: str) -> None:
    try:
        import matplotlib
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("--plot needs matplotlib: pip install -e '.[plot]'")
    del matplotlib
    fig, ax = plt.subplots(figsize=(5.5, 4))
    fin = sorted((int(k.split("_")[1]), v) for k, v in results.items() if k.startswith("finite_"))
    if fin:
        xs = [math.log2(w) for w, _ in fin]
        ax.errorbar(xs, [100 * v["accuracy"] for _, v in fin], yerr=[100 * v["ci95"] for _, v in fin], marker="o",
                    color="black", capsize=3, label="finite width (muP)")
    styles = {"mup_limit": ("tab:red", "-"), "ntk_relu": ("tab:blue", "--"), "gp_relu": ("tab:green", "--"),
              "ntk_linear": ("tab:blue", ":"), "gp_linear": ("tab:green", ":")}
    for name, (colour, ls) in styles.items():
        if name in results:
            y, ci = 100 * results[name]["accuracy"], 100 * results[name]["ci95"]
            ax.axhline(y, color=colour, ls=ls, label=name.replace("_", " "))
            ax.axhspan(y - ci, y + ci, color=colour, alpha=0.12, lw=0)
    ax.set_xlabel("log2 width")
    ax.set_ylabel(f"{WAYS}-way 1-shot test accuracy (%)")
    ax.set_title("First-order MAML on Omniglot (linear 1-hidden-layer net)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
