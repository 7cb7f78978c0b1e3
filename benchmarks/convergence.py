"""Finite muP networks approach the exact infinite-width limit (docs/theory.md sections 9 and 13).

    python benchmarks/convergence.py                     # about 2 minutes on 2 cores
    python benchmarks/convergence.py --plot docs/nonlinear_limit.png

The nonlinear part (section 13): a tanh network with one hidden layer (scalar
input with a bias, mean-field preset, SGD at lr 0.05 for 400 full-batch steps
on 8 points of sin(2x)) at widths 2^6 to 2^14, 6 seeds each, against
abcparam.meanfield.MeanFieldLimit (2^16 scrambled Sobol particles, 4
scramblings); then the limit's own error against the number of particles,
measured from a 2^18-particle reference, beside its error estimate; then the
NTK limit of the same network.  The figure shows the functions learned and how
far the hidden features moved.

A 1-hidden-layer linear network built from abcparam layers (muP, Table 8 form)
is trained by SGD for 8 steps at widths 2^6 to 2^12 (8 seeds each) and compared
with abcparam.limits.MuPLimit trained on the same batches; the RMS output error
should fall like n^-1/2.  The same measurement is a test
(tests/test_limits.py), which fails outside -1/2 +- 0.1.
"""

import argparse
import math
import sys
import time
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


NL_STEPS, NL_WIDTHS, NL_SEEDS = 400, [2 ** k for k in range(6, 15, 2)], 6


def nonlinear(plot: "str | None") -> None:
    from abcparam.meanfield import KernelLimit, MeanFieldConfig, MeanFieldLimit, mean_field_network

    cfg = MeanFieldConfig(d_in=1, d_out=1, base_width=16, lr=0.05, nonlinearity="tanh")
    x = torch.linspace(-2, 2, 8, dtype=torch.float64)[:, None]
    y = torch.sin(2 * x)
    xt = torch.linspace(-2.5, 2.5, 101, dtype=torch.float64)[:, None]

    def train(model):
        for _ in range(NL_STEPS):
            loss = model.step(x, y)
        return model, loss

    t0 = time.time()
    limit, limit_loss = train(MeanFieldLimit(cfg, 2 ** 16, scramblings=4))
    target = limit(xt)
    print(f"\nnonlinear (tanh, 1 hidden layer, mean field, SGD lr {cfg.lr}, {NL_STEPS} steps on 8 points of sin(2x)); "
          f"muP limit: 2^16 Sobol particles x 4 scramblings, final loss {limit_loss:.4f}, error estimate "
          f"{float(limit.error(xt).max()):.1e}, hidden pre-activations moved by {limit.feature_movement(x):.3f} (RMS)")
    print("\n| finite width | " + " | ".join(f"n={n}" for n in NL_WIDTHS) + " | fitted slope |")
    print("|" + "---|" * (len(NL_WIDTHS) + 2))
    errors, moved, curves = [], {"mean_field": [], "ntk": []}, {}
    for n in NL_WIDTHS:
        logs = []
        for s in range(NL_SEEDS):
            net, _ = train(mean_field_network(cfg, n, seed=s))
            with torch.no_grad():
                out = net(xt)
                logs.append(math.log(float((out - target).pow(2).mean().sqrt())))
            if s == 0:
                curves[n] = out
        errors.append(math.exp(sum(logs) / len(logs)))
        for kind in moved:
            net = mean_field_network(cfg, n, seed=0, parametrization=kind)
            h0 = net.inp(x).detach()
            train(net)
            moved[kind].append(float((net.inp(x).detach() - h0).pow(2).mean().sqrt()))
    print("| RMS error to the limit | " + " | ".join(f"{e:.2e}" for e in errors) + f" | {fit_slope(NL_WIDTHS, errors):+.3f} |")
    print("| features moved, mean field | " + " | ".join(f"{m:.3f}" for m in moved["mean_field"]) +
          f" | {fit_slope(NL_WIDTHS, moved['mean_field']):+.3f} |")
    print("| features moved, NTK | " + " | ".join(f"{m:.4f}" for m in moved["ntk"]) + f" | {fit_slope(NL_WIDTHS, moved['ntk']):+.3f} |")
    print("\n(geometric mean over 6 seeds; features moved: RMS change of the hidden pre-activations on the training points, "
          "seed 0; theory: error slope -1/2, mean-field movement flat at the limit's, NTK movement slope -1/2)")

    reference, _ = train(MeanFieldLimit(cfg, 2 ** 18, scramblings=4, seed=123))
    ref = reference(xt)
    sizes = [2 ** k for k in range(8, 17, 2)]
    actual, estimate = [], []
    for N in sizes:
        lim, _ = train(MeanFieldLimit(cfg, N, scramblings=4, seed=7))
        actual.append(float((lim(xt) - ref).abs().max()))
        estimate.append(float(lim.error(xt).max()))
    print("\n| Sobol particles (x 4 scramblings) | " + " | ".join(f"2^{int(math.log2(N))}" for N in sizes) + " | fitted slope |")
    print("|" + "---|" * (len(sizes) + 2))
    print("| max error vs 2^18 reference | " + " | ".join(f"{e:.1e}" for e in actual) + f" | {fit_slope(sizes, actual):+.3f} |")
    print("| error estimate (spread of scramblings) | " + " | ".join(f"{e:.1e}" for e in estimate) +
          f" | {fit_slope(sizes, estimate):+.3f} |")

    kernel, kernel_loss = train(KernelLimit(cfg, 2 ** 14))
    print(f"\nNTK limit (same network, NTK parametrization, kernel regression with the tangent kernel at init): final loss "
          f"{kernel_loss:.4f}, hidden features moved: 0 (frozen). ({time.time() - t0:.0f} s)")
    if plot:
        _plot(plot, x, y, xt, target, kernel(xt), curves, moved, limit.feature_movement(x))
        print(f"figure: {plot}")


def _plot(path, x, y, xt, limit, kernel, curves, moved, limit_moved) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("--plot needs matplotlib: pip install -e '.[plot]'")
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    cmap = plt.get_cmap("viridis")
    for i, (n, out) in enumerate(curves.items()):
        a.plot(xt[:, 0], out[:, 0], color=cmap(i / max(1, len(curves) - 1)), lw=1, alpha=0.8, label=f"width {n} (seed 0)")
    a.plot(xt[:, 0], limit[:, 0], "k-", lw=2, label="muP limit")
    a.plot(xt[:, 0], kernel[:, 0], "r--", lw=1.5, label="NTK limit")
    a.plot(x[:, 0], y[:, 0], "ko", ms=4, label="training points")
    a.set_title("function learned after 400 SGD steps")
    a.legend(fontsize=7)
    widths = list(curves)
    b.loglog(widths, moved["mean_field"], "o-", label="finite, mean field (muP)")
    b.loglog(widths, moved["ntk"], "s-", label="finite, NTK")
    b.axhline(limit_moved, color="k", lw=1, label="muP limit")
    b.set_xlabel("width")
    b.set_title("RMS change of hidden pre-activations")
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    torch.set_num_threads(2)
    ap = argparse.ArgumentParser(description="finite networks against the exact infinite-width limits")
    ap.add_argument("--plot", metavar="PATH", help="save the nonlinear figure")
    ap.add_argument("--linear-only", action="store_true")
    args = ap.parse_args()
    main()
    if not args.linear_only:
        nonlinear(args.plot)
