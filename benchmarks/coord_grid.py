"""Is the coordinate check right both ways? Correct models and mutants over an ordinary grid.

    python benchmarks/coord_grid.py            # the whole grid (about 4 minutes on 2 cores)
    python benchmarks/coord_grid.py --quick    # depth 2, one learning rate per optimizer

Every cell runs ``abcparam.testing``'s decision at its CI defaults (widths 128 to
1024, 3 steps, 2 seeds) on ``abcparam.models.MLP`` (16 inputs, 4 outputs, base
width 128, a fixed batch of 32), the way a user's CI would:

- correct models: muP in both forms, NTK and SP with learning rate ~ 1/n, each
  expected to be in the regime the theory gives it (SP ~ 1/n under Adam is
  unstable, and is expected to be); tanh, ReLU and GELU; depths 2 and 4; SGD
  (0.01, 0.1, 1.0) and Adam (1e-3, 1e-2, 1e-1); with and without biases.
  Acceptance: no FAIL (INCONCLUSIVE is allowed and counted).
- mutants of the muP cells, expected to FAIL wherever the correct model PASSes:
  a plain ``nn.Linear`` readout; under Adam a plain ``nn.Linear`` hidden layer
  (its learning rate is then not scaled; under SGD it is muP's hidden layer
  apart from its bias, so the theory says it is no mutant); the input
  multiplier inverted (TP4 form; the Table 8 form has none); a readout
  initialised like SP's (effective std 1/sqrt(n)).

It prints the counts, every unexpected cell, and the smallest margins: how
close the nearest agreeing quantity came to the tolerance, and how far past
the decision boundary the nearest disagreeing mutant was.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn

import abcparam
from _workers import worker_pool
from abcparam.models import MLP

WIDTHS = (128, 256, 512, 1024)
LRS = {"sgd": (0.01, 0.1, 1.0), "adam": (1e-3, 1e-2, 1e-1)}
OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}
MODELS = ("mup", "mup_table8", "ntk", "sp_inv_n")
NONLINEARITIES = ("tanh", "relu", "gelu")
DEPTHS = (2, 4)


def param(name: str, n: int) -> abcparam.Parametrization:
    if name == "mup_table8":
        return abcparam.mup(n, 128, form="table8")
    return getattr(abcparam, name)(n, 128)


def batch() -> Tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(32, 16, generator=g), torch.randn(32, 4, generator=g)


# -- mutants: each takes the built model and its width -----------------------------------------------


def plain_readout(model: MLP, n: int) -> None:
    old = model.layers[-1]
    model.layers[-1] = nn.Linear(n, old.out_features, bias=old.bias is not None)


def plain_hidden(model: MLP, n: int) -> None:
    old = model.layers[1]
    model.layers[1] = nn.Linear(n, n, bias=old.bias is not None)


def plain_input(model: MLP, n: int) -> None:
    old = model.layers[0]
    model.layers[0] = nn.Linear(old.in_features, n, bias=old.bias is not None)


def input_multiplier_inverted(model: MLP, n: int) -> None:
    layer = model.layers[0]
    m_pow_minus_a = layer.weight_multiplier * layer.folded_multiplier / layer.alpha
    layer.weight_multiplier /= m_pow_minus_a ** 2


def readout_sp_init(model: MLP, n: int) -> None:
    layer = model.layers[-1]
    with torch.no_grad():
        layer.weight.normal_(0.0, 1.0 / math.sqrt(n)).div_(layer.weight_multiplier)


MUTANTS: Dict[str, Callable[[MLP, int], None]] = {
    "plain nn.Linear readout": plain_readout,
    "plain nn.Linear hidden (Adam)": plain_hidden,
    "input multiplier inverted": input_multiplier_inverted,
    "readout initialised like SP": readout_sp_init,
    "plain nn.Linear input (SGD)": plain_input,
    "plain nn.Linear hidden with its bias (SGD)": plain_hidden,
}
# mutants whose regime is still feature learning: only the muP check (every tensor updated maximally,
# abcparam.testing.assert_mup) can catch them, so they and their correct cells are judged by it
MAXIMAL = ("plain nn.Linear input (SGD)", "plain nn.Linear hidden with its bias (SGD)")


def mutant_applies(mutant: str, model: str, family: str, bias: bool = True) -> bool:
    if mutant == "plain nn.Linear hidden (Adam)":
        return family == "adam"
    if mutant == "plain nn.Linear input (SGD)":
        return family == "sgd" and model == "mup"  # Table 8's input layer trains at the base SGD rate: plain is right
    if mutant == "plain nn.Linear hidden with its bias (SGD)":
        return family == "sgd" and bias
    if mutant == "input multiplier inverted":
        return model == "mup"  # the Table 8 form has no input multiplier to invert
    return True


# -- cells -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    model: str
    nonlinearity: str
    depth: int
    family: str
    lr: float
    bias: bool
    mutant: Optional[str] = None
    maximal: bool = False  # judged by the muP check (assert_mup), not the regime alone

    def label(self) -> str:
        m = f" [{self.mutant}]" if self.mutant else (" [muP check]" if self.maximal else "")
        return f"{self.model} {self.nonlinearity} L={self.depth} {self.family} lr={self.lr:g} {'bias' if self.bias else 'no bias'}{m}"

    def base(self) -> "Cell":
        return Cell(self.model, self.nonlinearity, self.depth, self.family, self.lr, self.bias)


def cells(quick: bool = False) -> Iterator[Cell]:
    depths = (2,) if quick else DEPTHS
    for model, nl, depth, family, bias in itertools.product(MODELS, NONLINEARITIES, depths, ("sgd", "adam"), (True, False)):
        for lr in (LRS[family][1:2] if quick else LRS[family]):
            yield Cell(model, nl, depth, family, lr, bias)


def mutants_of(cell: Cell) -> List[Cell]:
    """The mutants checked against a correct cell: each that applies to it, for muP cells only."""
    if not cell.model.startswith("mup"):
        return []
    return [replace(cell, mutant=m, maximal=m in MAXIMAL) for m in MUTANTS
            if mutant_applies(m, cell.model, cell.family, cell.bias)]


def mutant_cells(quick: bool = False) -> Iterator[Cell]:
    for c in cells(quick):
        yield from mutants_of(c)


def expected_regime(cell: Cell) -> str:
    depth_preset = abcparam.preset(cell.model, cell.depth)
    return abcparam.classify(depth_preset, optimizer=cell.family).regime


def run(cell: Cell, x_y: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
        seeds: Tuple[int, ...] = tuple(abcparam.testing.CI_SEEDS)) -> Any:
    """The check a user's CI would run on this cell: ``expect`` = the correct model's regime; for a ``maximal``
    cell, the muP check (``abcparam.testing.check_mup``: the regime, then every tensor's own update)."""

    def build(n: int) -> nn.Module:
        model = MLP(16, n, 4, depth=cell.depth, param=param(cell.model, n), nonlinearity=cell.nonlinearity, bias=cell.bias)
        if cell.mutant:
            MUTANTS[cell.mutant](model, n)
        return model

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if cell.maximal:
            return abcparam.testing.check_mup(build, batch=x_y or batch(), optimizer=OPTIMIZERS[cell.family], lr=cell.lr,
                                              widths=list(WIDTHS), steps=3, seeds=seeds)
        return abcparam.coord_check(build, list(WIDTHS), x_y or batch(), optimizer=OPTIMIZERS[cell.family], lr=cell.lr,
                                    steps=3, seeds=seeds, expect=expected_regime(cell))


def check_group(group: Tuple[str, str, int, str]) -> List[Tuple[Cell, str, str]]:
    """One (model, nonlinearity, depth, family) group: its correct cells, and the mutants of each correct cell
    that passes; (cell, status, report) each."""
    x_y = batch()
    out = []
    for cell in cells():
        if (cell.model, cell.nonlinearity, cell.depth, cell.family) != group:
            continue
        report = run(cell, x_y)
        out.append((cell, report.status, str(report)))
        if cell.model.startswith("mup") and report.status != "fail":  # the muP check on the correct model too: no false alarm
            mup = run(replace(cell, maximal=True), x_y)
            out.append((replace(cell, maximal=True), mup.status, str(mup)))
        if report.status == "pass":
            for broken in mutants_of(cell):
                mutated = run(broken, x_y)
                out.append((broken, mutated.status, str(mutated)))
    return out


def check_groups(groups, processes: int = 2) -> Dict[Tuple[str, str, int, str], List[Tuple[Cell, str, str]]]:
    """:func:`check_group` of every group, in ``processes`` single-threaded worker processes."""
    groups = list(groups)
    with worker_pool(processes) as pool:
        return dict(zip(groups, pool.map(check_group, groups)))


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description="the coordinate check on correct models and mutants")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=len(abcparam.testing.CI_SEEDS), help="seeds per check (default: the CI default)")
    args = ap.parse_args(argv)
    seeds = tuple(range(args.seeds))
    torch.set_num_threads(2)
    # cost: one assert_regime on a depth-4 MLP at the CI defaults (the second call: no first-call warm-up)
    for _ in range(2):
        t = time.perf_counter()
        abcparam.testing.assert_regime(lambda n: MLP(16, n, 4, depth=4, param=param("mup", n)), "feature_learning",
                                       batch=batch(), optimizer=torch.optim.Adam, lr=1e-2)
        cost = time.perf_counter() - t
    print(f"assert_regime on a depth-4 MLP at the CI defaults: {cost:.2f} s")
    t0 = time.time()
    outcome: Dict[Cell, abcparam.CoordReport] = {}
    for cell in cells(args.quick):
        outcome[cell] = run(cell, seeds=seeds)
    correct = {k: v.status for k, v in outcome.items()}
    mup_checks = {c: run(replace(c, maximal=True), seeds=seeds) for c, st in correct.items() if st != "fail" and c.model.startswith("mup")}
    mutants = {}
    for cell in mutant_cells(args.quick):
        mutants[cell] = run(cell, seeds=seeds)
    counts = {s: sum(1 for v in correct.values() if v == s) for s in ("pass", "inconclusive", "fail")}
    print(f"{len(seeds)} seeds, widths {list(WIDTHS)}, 3 steps")
    print(f"correct models: {len(correct)} cells: {counts['pass']} pass, {counts['inconclusive']} inconclusive, {counts['fail']} fail")
    for family in ("sgd", "adam"):
        for lr in LRS[family]:
            group = [st for c, st in correct.items() if (c.family, c.lr) == (family, lr)]
            print(f"  {family} lr={lr:g}: {group.count('inconclusive')} of {len(group)} inconclusive, {group.count('fail')} fail")
    ordinary = [st for c, st in correct.items() if c.lr == LRS[c.family][0] or c.lr == LRS[c.family][1]]
    print(f"  at ordinary rates (SGD <= 0.1, Adam <= 1e-2): {ordinary.count('inconclusive')} of {len(ordinary)} inconclusive")
    escalated = [r for r in outcome.values() if r.escalation]
    print(f"  escalated: {len(escalated)} cells ({sum(r.status != 'inconclusive' for r in escalated)} decided by it; "
          f"{sum(r.lowered_from is not None for r in escalated)} measured at a lowered learning rate)")
    for cell, report in outcome.items():
        if report.status == "fail":
            print(f"  FALSE ALARM {cell.label()}: {report.outcome()}")
    mup_st = [r.status for r in mup_checks.values()]
    print(f"muP check (every tensor updated maximally) on the {len(mup_st)} muP cells that do not fail: {mup_st.count('pass')} pass, "
          f"{mup_st.count('inconclusive')} inconclusive, {mup_st.count('fail')} fail")
    for cell, report in mup_checks.items():
        if report.status == "fail":
            print(f"  FALSE ALARM {cell.label()} [muP check]: {report.outcome()}")
    misses = [c for c, r in mutants.items() if correct[c.base()] == "pass" and r.status != "fail"]
    print(f"mutants: {len(mutants)} cells, {sum(r.status == 'fail' for r in mutants.values())} fail, "
          f"{sum(r.status == 'inconclusive' for r in mutants.values())} inconclusive, {sum(r.status == 'pass' for r in mutants.values())} pass; "
          f"where the correct model passes: {len(misses)} not failed")
    for cell in misses:
        print(f"  MISS {cell.label()}: {mutants[cell].outcome()}")
    by_mutant: Dict[str, List[str]] = {}
    for cell, report in mutants.items():
        by_mutant.setdefault(cell.mutant or "", []).append(report.status)
    for name, statuses in by_mutant.items():
        print(f"  {name}: {statuses.count('fail')}/{len(statuses)} fail")
    margins = [r.smallest_margin for c, r in outcome.items() if r.status == "pass" and r.smallest_margin is not None]
    if margins:
        print(f"smallest margin of a passing correct model: {min(margins):.3f} (slope units inside the tolerance)")
    fail_margins = [max((f.margin for f in r.mismatches if math.isfinite(f.margin)), default=float("inf"))
                    for c, r in mutants.items() if r.status == "fail" and r.mismatches]
    if fail_margins:
        print(f"smallest margin of a failing mutant: {min(fail_margins):.3f} (its largest disagreement past the fail band; "
              f"{sum(1 for c, r in mutants.items() if r.status == 'fail' and not r.mismatches)} mutants fail for want of a "
              "prediction: no abcparam readout)")
    lr_cells = sum(1 for r in outcome.values() if r.lr_too_large is not None and r.status == "inconclusive")
    print(f"inconclusive correct cells because the loss rises at width 128 (learning rate too large): {lr_cells}")
    print(f"({time.time() - t0:.0f} s)")
    return 0 if counts["fail"] == 0 and not misses and "fail" not in mup_st else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
