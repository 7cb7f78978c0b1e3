"""Learning-rate transfer across depth (docs/theory.md section 12): no depth scaling, Depth-muP and CompleteP.

A pre-norm residual character-level MLP language model on CPython's help text
(``pydoc_data``, shipped with Python): the previous 8 characters (a fixed
16-dimensional embedding each) go through an input layer to width 128, then L
residual blocks (LayerNorm -> Linear -> GELU -> Linear, each an
``abcparam.Residual`` branch), a final LayerNorm and the readout.  Width rules
are muP throughout; depth rules differ:

* ``none``: muP in width only, the branches unscaled (what most code does);
* ``Depth-muP``: branch multiplier m_L^(-1/2), block Adam rate m_L^(-1/2);
* ``CompleteP``: branch multiplier m_L^(-1), block Adam rate unchanged;

with m_L = L / 2.  For each rule and depth, Adam is swept over learning rates
that are powers of 2, every run seeing the same batches; the report gives, per
depth, the loss per learning rate, the optimum, its drift from the base depth
(2) in octaves and the transfer penalty (the loss at the base depth's best
rate minus the best loss), as ``mutransfer.py`` does for width.

    python benchmarks/depthtransfer.py --quick   # about 2 minutes on 2 CPU cores
    python benchmarks/depthtransfer.py           # about 15 minutes
    python benchmarks/depthtransfer.py --plot docs/depthtransfer.png
    python benchmarks/depthtransfer.py --check-cost   # what one depth check costs

``--check-cost`` times one depth coordinate check (``abcparam.coord_check(build,
depths=[2, 4, 8, 16], ...)``, a residual MLP at width 256, Adam, 3 steps, 2 seeds)
against the bare work it contains: building and training the same models for
the same steps without measuring anything.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn

import abcparam
from abcparam.data import char_corpus
from mutransfer import CONTEXT, EMB, _plot, _progress, batches, mean, train, transfer_tables

RULES = {"none": None, "Depth-muP": "1/2", "CompleteP": 1}


class CharResMLP(nn.Module):
    def __init__(self, vocab: int, width: int, blocks: int, param: "abcparam.Parametrization"):
        super().__init__()
        self.emb = abcparam.Embedding(vocab, EMB, param=abcparam.sp())  # width-independent: an ordinary layer
        self.inp = abcparam.Linear(CONTEXT * EMB, width, role="input", param=param)
        self.blocks = nn.ModuleList(
            abcparam.Residual(nn.Sequential(abcparam.LayerNorm(width, param=param), abcparam.Linear(width, width, param=param),
                                            nn.GELU(), abcparam.Linear(width, width, param=param)), param=param)
            for _ in range(blocks)
        )
        self.norm = abcparam.LayerNorm(width, param=param)
        self.out = abcparam.Linear(width, vocab, role="output", param=param)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(self.emb(x).flatten(1))
        for block in self.blocks:
            h = h + block(h)
        return self.out(self.norm(h))


def run(rule: str, depth: int, base_depth: int, width: int, lr: float, data: Tuple[torch.Tensor, torch.Tensor], vocab: int,
        seed: int) -> float:
    torch.manual_seed(seed)
    alpha = RULES[rule]
    depth_kw = {} if alpha is None else {"depth": depth, "base_depth": base_depth, "depth_alpha": alpha}
    model = CharResMLP(vocab, width, depth, abcparam.mup(width, width, **depth_kw))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fixed-size character embedding is owned by no width rule
        opt = abcparam.wrap(torch.optim.Adam(model.parameters(), lr=lr), model)
    return train(model, [opt], data)


def check_cost() -> None:
    """Seconds for one depth check of a residual MLP (width 256, depths 2-16) and for the bare training inside it."""
    from abcparam.models import ResidualMLP

    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(1234)
    x, y = torch.randn(64, 16, generator=g), torch.randn(64, 4, generator=g)
    seeds, steps = [0, 1], 3

    def build(L: int) -> nn.Module:
        return ResidualMLP(16, 256, 4, blocks=L, param=abcparam.mup(256, 256, depth=L, base_depth=2))

    def bare(depths: List[int]) -> None:
        for L in depths:
            for seed in seeds:
                torch.manual_seed(seed)
                model = build(L)
                opt = abcparam.wrap(torch.optim.Adam(model.parameters(), lr=1e-2), model)
                for _ in range(steps):
                    opt.zero_grad()
                    nn.functional.mse_loss(model(x), y).backward()
                    opt.step()

    for depths in ([2, 4, 8, 16], [2, 4, 8, 16, 32]):
        times: Dict[str, List[float]] = {"check": [], "bare": []}
        for _ in range(3):
            t = time.perf_counter()
            report = abcparam.coord_check(build, depths=depths, batch=(x, y), optimizer=torch.optim.Adam, lr=1e-2,
                                          steps=steps, seeds=seeds)
            times["check"].append(time.perf_counter() - t)
            t = time.perf_counter()
            bare(depths)
            times["bare"].append(time.perf_counter() - t)
        check, base = min(times["check"]), min(times["bare"])
        print(f"depth check (residual MLP, width 256, depths {depths}, {steps} steps, {len(seeds)} seeds): {check:.2f} s "
              f"(best of 3); the bare training inside it: {base:.2f} s; ratio {check / base:.2f}; outcome: {report.status}")


def main(argv: Sequence[str]) -> None:
    ap = argparse.ArgumentParser(description="learning-rate transfer across depth: no depth scaling, Depth-muP, CompleteP")
    ap.add_argument("--quick", action="store_true", help="depths 2..16, 200 steps, 1 seed, 4 learning rates")
    ap.add_argument("--depths", type=int, nargs="+", default=None)
    ap.add_argument("--base-depth", type=int, default=2)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--log2-lr", type=int, nargs="+", default=None, help="exponents of the learning-rate grid")
    ap.add_argument("--plot", metavar="PATH")
    ap.add_argument("--check-cost", action="store_true", help="time one depth coordinate check and exit")
    args = ap.parse_args(list(argv))
    if args.check_cost:
        check_cost()
        return
    depths = args.depths or ([2, 4, 8, 16] if args.quick else [2, 4, 8, 16, 32])
    steps = args.steps or (200 if args.quick else 500)
    seeds = args.seeds or (1 if args.quick else 2)
    grid = args.log2_lr or (list(range(-11, -4, 2)) if args.quick else list(range(-11, -4)))
    if args.base_depth not in depths:
        sys.exit(f"--base-depth {args.base_depth} must be one of --depths {depths}")
    torch.set_num_threads(2)
    ids, vocab = char_corpus()
    print(f"data: CPython help topics, {ids.numel():,} characters, vocabulary {len(vocab)}; pre-norm residual char MLP, "
          f"width {args.width}, blocks of 2 layers, Adam, batch {args.batch}, {steps} steps, {seeds} seed(s), base depth {args.base_depth}")
    print(f"training loss = mean over the last {max(1, steps // 10)} steps; learning rates 2^{grid[0]}..2^{grid[-1]}\n")
    results: Dict[Tuple[str, int, int], List[float]] = {}
    update, close = _progress(len(RULES) * len(depths) * len(grid) * seeds)
    t0 = time.time()
    for seed in range(seeds):
        data = batches(ids, steps, args.batch, seed)
        for rule in RULES:
            for d in depths:
                for k in grid:
                    results.setdefault((rule, d, k), []).append(run(rule, d, args.base_depth, args.width, 2.0 ** k, data,
                                                                    len(vocab), seed))
                    update(1)
    close()
    elapsed = time.time() - t0
    transfer_tables(tuple(RULES), depths, args.base_depth, grid, results, seeds, axis="depth")
    print(f"({elapsed:.0f} s; spread = std over seeds of the loss at the best learning rate)")
    if args.plot:
        _plot(args.plot, depths, grid, results, mean, names=tuple(RULES), axis="depth")
        print(f"figure: {args.plot}")


if __name__ == "__main__":
    main(sys.argv[1:])
