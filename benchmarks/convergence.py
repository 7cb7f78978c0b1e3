"""Finite muP networks approach the exact infinite-width limit (docs/theory.md section 9).

    python benchmarks/convergence.py          # a few seconds

A 1-hidden-layer linear network built from abcparam layers (muP, Table 8 form)
is trained by SGD for 8 steps at widths 2^6 to 2^12 (8 seeds each) and compared
with abcparam.limits.MuPLimit trained on the same batches; the RMS output error
should fall like n^-1/2.  The same measurement is a test
(tests/test_limits.py), which fails outside -1/2 +- 0.1.
"""

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_limits import DENSE, ONE_HOT, WIDTHS, data, fit_slope, train  # noqa: E402

from abcparam.limits import MuPLimit, abcparam_network  # noqa: E402


def main() -> None:
    print("| inputs | " + " | ".join(f"n={n}" for n in WIDTHS) + " | fitted slope |")
    print("|" + "---|" * (len(WIDTHS) + 2))
    for name, cfg in (("dense (d_in 5, d_out 3)", DENSE), ("one-hot (vocab 20, d_out 4)", ONE_HOT)):
        x, y = data(cfg)
        target = train(MuPLimit(cfg), x, y)(x)
        errors = []
        for n in WIDTHS:
            logs = [math.log((train(abcparam_network(cfg, n, seed=s), x, y)(x).detach() - target).pow(2).mean().sqrt().item())
                    for s in range(8)]
            errors.append(math.exp(sum(logs) / len(logs)))
        print(f"| {name} | " + " | ".join(f"{e:.4f}" for e in errors) + f" | {fit_slope(WIDTHS, errors):+.3f} |")
    print("\nRMS output error after 8 SGD steps, geometric mean over 8 seeds; docs/theory.md predicts slope -1/2.")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
