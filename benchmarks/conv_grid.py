"""Is the coordinate check right both ways on convolutional networks? Correct ResNets and mutants.

    python benchmarks/conv_grid.py            # the whole grid (about 15 minutes on 2 cores)
    python benchmarks/conv_grid.py --quick    # batch norm only, one learning rate per optimizer

Every cell runs ``abcparam.testing``'s decision (3 steps, 2 seeds, the default
escalation budget) on ``abcparam.models.ResNet`` (two stages of one basic block:
3 colours in, channels n and 2n, 10 classes; base width 32) on a fixed batch of
16 random 8 x 8 images, at widths 32 to 256 (a convolution at width 1024 has
2048-channel 3x3 kernels in its second stage: too slow for a grid on 2 cores):

- correct models: muP in both forms and NTK, each expected in the regime the
  theory gives it; batch norm, group norm and no norm; SGD (0.01, 0.1, 1.0)
  and Adam (1e-3, 1e-2, 1e-1).  Acceptance: no FAIL (INCONCLUSIVE is allowed
  and counted); the muP check (``abcparam.testing.check_mup``: the regime,
  then every tensor updated maximally) on every muP cell that does not
  fail: no FAIL.
- mutants of the muP cells, expected to FAIL wherever the correct model
  passes: a plain ``nn.Conv2d`` hidden layer under Adam (its learning rate not
  scaled), a plain ``nn.Linear`` readout, and batch norm's gains trained as a
  hidden matrix would be (judged by the muP check: the features still move,
  but the gains' own updates vanish with width).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import dataclass, replace
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn

import abcparam
from _workers import worker_pool
from abcparam.models import ResNet

WIDTHS = (32, 64, 128, 256)
BASE = 32
LRS = {"sgd": (0.01, 0.1, 1.0), "adam": (1e-3, 1e-2, 1e-1)}
OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}
MODELS = ("mup", "mup_table8", "ntk")
NORMS = ("batch", "group", "none")


def param(name: str, n: int) -> abcparam.Parametrization:
    if name == "mup_table8":
        return abcparam.mup(n, BASE, form="table8")
    return getattr(abcparam, name)(n, BASE)


def batch() -> Tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)


# -- mutants: each changes a built model in place ----------------------------------------------------------


def plain_conv_hidden(model: ResNet, n: int, p: abcparam.Parametrization) -> None:
    old = model.stages[0][0].conv1
    model.stages[0][0].conv1 = nn.Conv2d(old.in_channels, old.out_channels, 3, 1, 1, bias=old.bias is not None)


def plain_readout(model: ResNet, n: int, p: abcparam.Parametrization) -> None:
    model.readout = nn.Linear(model.readout.in_features, model.readout.out_features)


def batchnorm_as_matrix(model: ResNet, n: int, p: abcparam.Parametrization) -> None:
    from abcparam.layers import scales_for

    for m in model.modules():
        if isinstance(m, abcparam.BatchNorm2d):
            m._vector_scales = scales_for(p, "hidden", (0,))  # the rates of a hidden matrix: too small by m (Adam)


MUTANTS = {
    "plain nn.Conv2d hidden (Adam)": plain_conv_hidden,
    "plain nn.Linear readout": plain_readout,
    "BatchNorm gains trained as a matrix": batchnorm_as_matrix,
}
MAXIMAL = ("BatchNorm gains trained as a matrix",)  # the regime stays feature learning: the muP check judges it


def mutant_applies(mutant: str, cell: "Cell") -> bool:
    if mutant == "plain nn.Conv2d hidden (Adam)":
        return cell.family == "adam"
    if mutant == "BatchNorm gains trained as a matrix":
        return cell.norm == "batch"
    return True


@dataclass(frozen=True)
class Cell:
    model: str
    norm: str
    family: str
    lr: float
    mutant: Optional[str] = None
    maximal: bool = False

    def label(self) -> str:
        m = f" [{self.mutant}]" if self.mutant else (" [muP check]" if self.maximal else "")
        return f"{self.model} {self.norm} norm {self.family} lr={self.lr:g}{m}"

    def base(self) -> "Cell":
        return Cell(self.model, self.norm, self.family, self.lr)


def cells(quick: bool = False, models: Tuple[str, ...] = MODELS) -> Iterator[Cell]:
    norms = ("batch",) if quick else NORMS
    for model, norm, family in itertools.product(models, norms, ("sgd", "adam")):
        for lr in (LRS[family][1:2] if quick else LRS[family]):
            yield Cell(model, norm, family, lr)


def mutants_of(cell: Cell) -> List[Cell]:
    if not cell.model.startswith("mup"):
        return []
    return [replace(cell, mutant=m, maximal=m in MAXIMAL) for m in MUTANTS if mutant_applies(m, cell)]


def expected_regime(cell: Cell) -> str:
    return abcparam.classify(abcparam.preset(cell.model, 3), optimizer=cell.family).regime


def run(cell: Cell, x_y: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> Any:
    """The check a user's CI would run: the regime the theory gives the correct model; for a ``maximal`` cell the
    muP check (the regime, then every tensor's own update: the maximal report when the regime passes)."""
    import warnings

    def build(n: int) -> nn.Module:
        p = param(cell.model, n)
        model = ResNet(3, n, 10, blocks=(1, 1), param=p, norm=cell.norm)
        if cell.mutant:
            MUTANTS[cell.mutant](model, n, p)
        return model

    x_y = x_y or batch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if cell.maximal:
            return abcparam.testing.check_mup(build, batch=x_y, optimizer=OPTIMIZERS[cell.family], lr=cell.lr,
                                              widths=list(WIDTHS))
        return abcparam.coord_check(build, list(WIDTHS), x_y, optimizer=OPTIMIZERS[cell.family], lr=cell.lr, steps=3,
                                    seeds=tuple(abcparam.testing.CI_SEEDS), expect=expected_regime(cell))


def check_cell(cell: Cell) -> List[Tuple[Cell, str, str]]:
    """A correct cell, then (where it passes) the muP check on it and each of its mutants: (cell, status, report)."""
    x_y = batch()
    report = run(cell, x_y)
    out = [(cell, report.status, str(report))]
    extra = [replace(cell, maximal=True)] if cell.model.startswith("mup") and report.status != "fail" else []
    extra += mutants_of(cell) if report.status == "pass" else []
    for c in extra:
        r = run(c, x_y)
        out.append((c, r.status, str(r)))
    return out


def run_grid(cells_: List[Cell], processes: int = 2) -> List[Tuple[Cell, str, str]]:
    with worker_pool(processes) as pool:
        return [row for rows in pool.map(check_cell, cells_) for row in rows]


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description="the coordinate check on correct ResNets and mutants")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.time()
    rows = run_grid(list(cells(args.quick)))
    correct = {c: st for c, st, _ in rows if c.mutant is None and not c.maximal}
    counts = {s: sum(1 for v in correct.values() if v == s) for s in ("pass", "inconclusive", "fail")}
    print(f"widths {list(WIDTHS)}, 3 steps, seeds {list(abcparam.testing.CI_SEEDS)}")
    print(f"correct ResNets: {len(correct)} cells: {counts['pass']} pass, {counts['inconclusive']} inconclusive, {counts['fail']} fail")
    for family in ("sgd", "adam"):
        for lr in LRS[family]:
            group = [st for c, st in correct.items() if (c.family, c.lr) == (family, lr)]
            if group:
                print(f"  {family} lr={lr:g}: {group.count('inconclusive')} of {len(group)} inconclusive, {group.count('fail')} fail")
    mup = [(c, st) for c, st, _ in rows if c.maximal and c.mutant is None]
    print(f"muP check on the {len(mup)} muP cells that do not fail: {sum(st == 'pass' for _, st in mup)} pass, "
          f"{sum(st == 'inconclusive' for _, st in mup)} inconclusive, {sum(st == 'fail' for _, st in mup)} fail")
    mutants = [(c, st) for c, st, _ in rows if c.mutant is not None]
    misses = [(c, st) for c, st in mutants if st != "fail"]
    print(f"mutants (where the correct model passes): {len(mutants)} cells, {len(mutants) - len(misses)} fail, {len(misses)} not")
    by: Dict[str, List[str]] = {}
    for c, st in mutants:
        by.setdefault(c.mutant or "", []).append(st)
    for name, sts in by.items():
        print(f"  {name}: {sts.count('fail')}/{len(sts)} fail")
    texts = {c: text for c, _, text in rows}
    for c, st in correct.items():
        if st == "fail":
            print(f"FALSE ALARM {c.label()}\n{texts[c]}")
    for c, st in mup:
        if st == "fail":
            print(f"FALSE ALARM {c.label()}\n{texts[c]}")
    for c, st in misses:
        print(f"MISS {c.label()}: {st}")
    print(f"({time.time() - t0:.0f} s)")
    bad = counts["fail"] or misses or any(st == "fail" for _, st in mup)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
