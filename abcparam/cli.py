"""The ``abcparam`` command line: ``classify`` (and the subcommands later modules add).

Every bad argument ends in one line on stderr and exit status 2, never a traceback.

Example::

    abcparam classify --preset mup --depth 3 --optimizer adam
    abcparam classify --a -1/2 0 1/2 --b 1/2 1/2 1/2 --c 0 --json
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any, List, NoReturn, Optional, Sequence

from . import theory
from .check.escalation import DEFAULT_BUDGET
from .text import table as text_table

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are a single line and exit status 2."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _protect_negatives(argv: Sequence[str]) -> List[str]:
    # argparse reads "-1/2" as an option; a leading space makes it a value
    # (the exponent parser ignores surrounding whitespace).
    return [" " + a if re.match(r"^-\d|^-\.\d", a) else a for a in argv]


def _add_classify(sub: "argparse._SubParsersAction[_Parser]") -> None:
    p = sub.add_parser(
        "classify",
        help="exact verdict for an abc-parametrization",
        description="Classify an abc-parametrization exactly (docs/theory.md sections 3-6): stable, trivial, "
        "feature learning or kernel, layer by layer, with the reason for each verdict.",
    )
    p.add_argument("--preset", help=f"one of {', '.join(theory.PRESET_NAMES)}")
    p.add_argument("--depth", type=int, default=None, help="number of hidden layers L for --preset (default 2)")
    p.add_argument("--s", default=None, help="s in [0, 1/2] for --preset up")
    p.add_argument("--a", nargs="+", help="a_l for the layers input, hidden..., output (e.g. -1/2 0 1/2)")
    p.add_argument("--b", nargs="+", help="b_l per layer")
    p.add_argument("--c", nargs="+", help="c_l per layer, or one value for all layers")
    p.add_argument("--optimizer", default="sgd",
                   help="a family (sgd, adam, spectral, relative) or a torch optimizer name (muon, adafactor, ...), "
                   "or one per layer separated by commas for a hybrid set-up, e.g. adam,muon,muon,adam (default sgd)")
    p.add_argument("--alignment", default="tp4", choices=theory.ALIGNMENTS, help="default tp4")
    p.add_argument("--linear", action="store_true", help="the network is linear (the dichotomy does not apply)")
    p.add_argument("--depth-alpha", default=None,
                   help="also classify a depth rule (docs/theory.md section 12): residual branches scaled by L^-alpha "
                   "(1 CompleteP, 1/2 Depth-muP, 0 none), blocks trained at the rule's learning rate")
    p.add_argument("--depth-lr-exponent", default=None,
                   help="with --depth-alpha: c_L, the block learning rate being eta L^-c_L (default: the rule's own)")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    p.set_defaults(run=_run_classify)


def _optimizer_arg(text: str) -> Any:
    """``adam`` -> "adam"; ``adam,muon,adam`` -> ["adam", "muon", "adam"] (one family per layer)."""
    parts = [x.strip() for x in text.split(",")]
    if any(not x for x in parts):
        raise ValueError(f"--optimizer: got {text!r}; give one name or one per layer separated by commas (adam,muon,muon,adam)")
    return parts if len(parts) > 1 else parts[0]


def _run_classify(args: argparse.Namespace) -> int:
    optimizer = _optimizer_arg(args.optimizer)
    explicit = [x is not None for x in (args.a, args.b, args.c)]
    if args.preset is not None and any(explicit):
        raise ValueError("give either --preset or --a/--b/--c, not both")
    if args.preset is not None:
        target = theory.preset(args.preset, 2 if args.depth is None else args.depth, s=args.s)
        v = theory.classify(target, optimizer=optimizer, alignment=args.alignment, linear=args.linear)
    else:
        if not all(explicit):
            raise ValueError("give --preset NAME, or all of --a, --b and --c")
        if args.depth is not None or args.s is not None:
            raise ValueError("--depth and --s go with --preset; with --a/--b/--c the depth is len(a) - 1")
        c = args.c[0] if len(args.c) == 1 else args.c
        v = theory.classify(args.a, args.b, c, optimizer=optimizer, alignment=args.alignment, linear=args.linear)
    if args.depth_lr_exponent is not None and args.depth_alpha is None:
        raise ValueError("--depth-lr-exponent goes with --depth-alpha")
    if args.depth_alpha is None:
        print(v.to_json(indent=2) if args.json else str(v))
        return 0
    from .theory.depth import classify_depth

    families = set(v.families)
    if len(families) > 1:
        raise ValueError("--depth-alpha: give one optimizer family for a depth verdict (the blocks' optimizer)")
    d = classify_depth(args.depth_alpha, optimizer=v.families[0], lr_exponent=args.depth_lr_exponent)
    if args.json:
        import json

        print(json.dumps({"width": v.to_dict(), "depth": d.to_dict()}, indent=2))
    else:
        print(f"{v}\n\n{d}")
    return 0


def _parser() -> _Parser:
    parser = _Parser(prog="abcparam", description="abc-parametrizations of Tensor Programs IV, exactly.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_classify(sub)
    for extra in _EXTRA_COMMANDS:
        extra(sub)
    return parser


# ---------------------------------------------------------------------------
# coordcheck and demo: the built-in MLP on synthetic data
# ---------------------------------------------------------------------------

# Theta(1) rates at base width 128 for the built-in MLP, per family
DEFAULT_LR = {"sgd": 0.2, "adam": 1e-2, "spectral": 0.02, "relative": 1e-2}
# --optimizer of coordcheck and demo: the torch optimizer each name builds
_CHECK_OPTIMIZERS = ("sgd", "adam", "muon", "adafactor")
_PRESET_PARAMS = ("sp", "sp_inv_n", "ntk", "mup", "mup_table8", "mean_field")


def _builtin_check(preset: str, optimizer: str, widths: Sequence[int], *, lr: Optional[float] = None, depth: int = 3,
                   steps: int = 3, seeds: Sequence[int] = (0, 1), base_width: int = 128, nonlinearity: str = "tanh",
                   tolerance: float = 0.2, progress: Any = None, budget: Optional[float] = DEFAULT_BUDGET) -> Any:
    """Coordinate check of the built-in MLP (16 -> width ... -> 4) on a fixed synthetic batch."""
    from . import torch_quiet  # noqa: F401  (torch without the numpy warning)
    import torch

    from .theory import parametrizations as P
    from .check.width import coord_check
    from .models import MLP

    if optimizer not in _CHECK_OPTIMIZERS:
        raise ValueError(f"--optimizer: got {optimizer!r}; allowed: {', '.join(_CHECK_OPTIMIZERS)}")
    family = theory.optimizer_family(optimizer)
    if preset not in _PRESET_PARAMS:
        raise ValueError(f"--preset: got {preset!r}; allowed: {', '.join(_PRESET_PARAMS)}")
    if preset == "mean_field" and depth != 1:
        raise ValueError("--depth: mean_field has one hidden layer only; use --depth 1")

    def make(width: int) -> Any:
        if preset == "mup_table8":
            return P.mup(width, base_width, form="table8")
        return getattr(P, preset)(width, base_width)

    make(base_width)  # validates base_width before any work
    g = torch.Generator().manual_seed(1234)
    batch = (torch.randn(32, 16, generator=g), torch.randn(32, 4, generator=g))
    if optimizer == "muon":
        # the usual hybrid: Muon for the weight matrices, AdamW (base rate 1e-2) for the biases
        def opt_cls(params: Any, rate: float) -> Any:
            params = list(params)
            return [torch.optim.Muon([q for q in params if q.dim() == 2], lr=rate, weight_decay=0.0),
                    torch.optim.AdamW([q for q in params if q.dim() != 2], lr=DEFAULT_LR["adam"], weight_decay=0.0)]
    else:
        opt_cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adafactor": torch.optim.Adafactor}[optimizer]
    return coord_check(
        lambda n: MLP(16, n, 4, depth=depth, param=make(n), nonlinearity=nonlinearity),
        widths, batch, optimizer=opt_cls, lr=DEFAULT_LR[family] if lr is None else lr,
        steps=steps, seeds=seeds, tolerance=tolerance, progress=progress, budget=budget,
    )


def _add_coordcheck(sub: Any) -> None:
    p = sub.add_parser(
        "coordcheck",
        help="coordinate check of a built-in MLP against the theory",
        description="Train the built-in MLP (tanh, synthetic data) at several widths for a few steps, fit how "
        "each layer scales with width and compare with the theory's prediction (docs/theory.md section 8). "
        "Exit status 0 when they agree, 1 when they do not (or a value diverged), 2 for a bad argument, "
        "3 when they agree but --plot could not save the figure, 4 when the measurements cannot decide "
        "(inconclusive: the report says what would settle it).",
    )
    p.add_argument("--preset", default="mup", help=f"one of {', '.join(_PRESET_PARAMS)} (default mup)")
    p.add_argument("--optimizer", default="adam",
                   help="sgd, adam, adafactor, or muon (Muon for the weight matrices, AdamW at 1e-2 for the biases) "
                   "(default adam)")
    p.add_argument("--widths", nargs="+", type=int, default=[128, 256, 512, 1024, 2048])
    p.add_argument("--base-width", type=int, default=128)
    p.add_argument("--depth", type=int, default=3, help="hidden layers L (default 3)")
    p.add_argument("--lr", type=float, default=None,
                   help="base learning rate (default 0.2 SGD, 1e-2 Adam and Adafactor, 0.02 Muon)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--nonlinearity", default="tanh", choices=["tanh", "gelu", "relu", "linear"])
    p.add_argument("--tolerance", type=float, default=0.2)
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET,
                   help=f"seconds the check may spend adding passes when the first cannot decide (default "
                        f"{DEFAULT_BUDGET:g}; 0: one pass)")
    p.add_argument("--plot", metavar="PATH", help="save the coordinate-check figure (needs matplotlib)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--markdown", action="store_true", help="print the report as markdown")
    p.set_defaults(run=_run_coordcheck)


EXIT_DISAGREES, EXIT_USAGE, EXIT_PLOT, EXIT_INCONCLUSIVE = 1, 2, 3, 4


def _run_coordcheck(args: argparse.Namespace) -> int:
    report = _builtin_check(args.preset, args.optimizer, args.widths, lr=args.lr, depth=args.depth, steps=args.steps,
                            seeds=args.seeds, base_width=args.base_width, nonlinearity=args.nonlinearity,
                            tolerance=args.tolerance, budget=args.budget)
    # The report first: a figure that cannot be drawn must not cost the measurements.
    print(report.to_json(indent=2) if args.json else (report.to_markdown() if args.markdown else str(report)), flush=True)
    if report.agrees:
        status = 0
    elif report.comparison == "inconclusive":
        status = EXIT_INCONCLUSIVE
    else:
        status = EXIT_DISAGREES
    if args.plot:
        try:
            report.plot(args.plot)
        except (ImportError, OSError) as err:
            print(f"abcparam coordcheck: the figure was not saved: {err}", file=sys.stderr)
            return status or EXIT_PLOT
        if not args.json:
            print(f"figure: {args.plot}")
    return status


DEMO_CASES = [("sp", "sgd"), ("sp", "adam"), ("sp_inv_n", "sgd"), ("sp_inv_n", "adam"), ("ntk", "sgd"), ("ntk", "adam"),
              ("mup", "sgd"), ("mup", "adam")]


def _add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="theory vs measurement for SP, NTK and muP under SGD and Adam",
                       description="For SP (constant LR and LR ~ 1/n), NTK and muP under SGD and Adam: the exact "
                       "verdict beside the width exponents measured on the built-in MLP, and whether they agree.")
    p.add_argument("--widths", nargs="+", type=int, default=[128, 256, 512, 1024, 2048])
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(run=_run_demo)


def _cell(report: Any, layer_index: Optional[int], quantity: str, step: int) -> str:
    names = list(dict.fromkeys(f.layer for f in report.fits if f.layer != "output"))
    layer = "output" if layer_index is None else names[layer_index]
    fit = next(f for f in report.fits if (f.layer, f.quantity, f.step) == (layer, quantity, step))
    if layer == "output" and fit.predicted is None:
        # the readout has a bias: the prediction is for its weight term, the readout layer's own output
        fit = next(f for f in report.fits if (f.layer, f.quantity, f.step) == (names[-1], {"f": "h", "df": "dh"}[quantity], step))
    from .text import signed

    pred = "?" if fit.predicted is None else str(fit.predicted)
    star = "*" if report.theory_regime == "unstable" else ""
    return f"{signed(fit.slope)} ({pred}{star})"


def _run_demo(args: argparse.Namespace) -> int:
    import time

    total = len(DEMO_CASES)
    print("abcparam demo: exact verdicts vs width exponents measured on an MLP (3 hidden layers, tanh),")
    print(f"widths {args.widths}, 3 steps, 2 seeds; slopes of log RMS against log width, measured (predicted)\n")
    rows = [("parametrization", "optimizer", "theory", "measured", "dh^1", "dh^3", "df", "f_0", "agree")]
    t0 = time.time()
    agree_all = True
    for k, (preset, opt) in enumerate(DEMO_CASES):
        def progress(msg: str, k: int = k) -> None:
            if not args.quiet:
                print(f"\r  [{k + 1}/{total}] {preset:<9} {opt:<5} {msg:<24}", end="", file=sys.stderr, flush=True)

        report = _builtin_check(preset, opt, args.widths, progress=progress)
        step = report.steps
        rows.append((preset, opt, report.theory_regime, report.measured_regime, _cell(report, 0, "dh", step),
                     _cell(report, 2, "dh", step), _cell(report, None, "df", step), _cell(report, None, "f", 0),
                     "yes" if report.agrees else "NO"))
        agree_all &= report.agrees
    if not args.quiet:
        print("\r" + " " * 60 + "\r", end="", file=sys.stderr, flush=True)
    print(text_table(rows))
    print("\nslopes after 3 steps (f_0: at init; df and f_0 of the readout's weight term, its bias left out). * unstable: the")
    print("  predicted growth is indicative only (products of growing terms compound, finite widths saturate; docs/theory.md")
    print("  section 8): the check asks that something grows.")
    print(f"{'every row agrees with the theory' if agree_all else 'SOME ROWS DISAGREE'} ({time.time() - t0:.0f} s)")
    return 0 if agree_all else 1


def _add_inspect(sub: Any) -> None:
    p = sub.add_parser("inspect", help="infer the parametrization of your own model code, then classify it",
                       description="Build FILE.py's build(width) at several widths, infer each trained tensor's role and "
                       "exponents (a from the module's multiplier, b from the init, c from the optimizer's learning "
                       "rate), and print the exact verdict, naming the tensors to blame (docs/theory.md section 15).")
    p.add_argument("target", metavar="FILE.py:build", help="a Python file and the function width -> nn.Module in it")
    p.add_argument("--optimizer", required=True, metavar="NAME|FILE.py:factory",
                   help="a torch.optim class name (adam, adamw, sgd, muon, adafactor, ...) or a factory "
                   "params -> optimizer (or (params, lr) -> optimizer) in a Python file")
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--widths", nargs="+", type=int, default=[64, 128, 256])
    p.add_argument("--expect", choices=theory.REGIMES, help="exit 1 unless the inferred regime is this one")
    p.add_argument("--json", action="store_true", help="print the inspection as JSON")
    p.set_defaults(run=_run_inspect)


def _load(target: str, what: str) -> Any:
    """``FILE.py:name`` -> the object ``name`` defined by running FILE.py."""
    import runpy

    path, sep, name = target.rpartition(":")
    if not sep or not path.endswith(".py") or not name:
        raise ValueError(f"{what}: expected FILE.py:name, got {target!r}")
    if not os.path.isfile(path):
        raise ValueError(f"{what}: no file {path!r}")
    namespace = runpy.run_path(path, run_name="abcparam_inspect_target")
    if name not in namespace:
        raise ValueError(f"{what}: {path} defines no {name!r}")
    return namespace[name]


def _torch_optimizer(name: str) -> Any:
    import torch

    table = {k.lower(): v for k, v in vars(torch.optim).items() if isinstance(v, type) and issubclass(v, torch.optim.Optimizer)}
    key = name.lower()
    if key not in table:
        raise ValueError(f"optimizer: unknown torch optimizer {name!r}; allowed: {', '.join(sorted(table))}, or FILE.py:factory")
    return table[key]


def _run_inspect(args: argparse.Namespace) -> int:
    from .inspection import inspect

    build = _load(args.target, "FILE.py:build")
    opt = _load(args.optimizer, "optimizer") if ":" in args.optimizer else _torch_optimizer(args.optimizer)
    result = inspect(build, optimizer=opt, lr=args.lr, widths=args.widths)
    print(result.to_json(indent=2) if args.json else str(result))
    if args.expect is not None and result.regime != args.expect:
        print(f"abcparam inspect: expected {args.expect}, inferred {result.regime}", file=sys.stderr)
        return EXIT_DISAGREES
    return 0


# Subcommands beyond classify.
_EXTRA_COMMANDS: list = [_add_coordcheck, _add_demo, _add_inspect]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(_protect_negatives(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.run(args) or 0)
    except (ValueError, TypeError) as err:
        print(f"abcparam {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"abcparam {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def main_exit() -> None:
    """Console-script entry point: exit with :func:`main`'s status."""
    sys.exit(main())
