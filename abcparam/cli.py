"""The ``abcparam`` command line: ``classify`` (and the subcommands later modules add).

Every bad argument ends in one line on stderr and exit status 2, never a traceback.

Example::

    abcparam classify --preset mup --depth 3 --optimizer adam
    abcparam classify --a -1/2 0 1/2 --b 1/2 1/2 1/2 --c 0 --json
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import List, Optional, Sequence

from . import theory

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are a single line and exit status 2."""

    def error(self, message: str) -> "NoReturn":  # type: ignore[override]  # noqa: F821
        self.exit(2, f"{self.prog}: error: {message}\n")


def _protect_negatives(argv: Sequence[str]) -> List[str]:
    # argparse reads "-1/2" as an option; a leading space makes it a value
    # (the exponent parser ignores surrounding whitespace).
    return [" " + a if re.match(r"^-\d|^-\.\d", a) else a for a in argv]


def _add_classify(sub: "argparse._SubParsersAction[_Parser]") -> None:
    p = sub.add_parser(
        "classify",
        help="exact verdict for an abc-parametrization",
        description="Classify an abc-parametrization exactly (THEORY.md sections 3-6): stable, trivial, "
        "feature learning or kernel, layer by layer, with the reason for each verdict.",
    )
    p.add_argument("--preset", help=f"one of {', '.join(theory.PRESET_NAMES)}")
    p.add_argument("--depth", type=int, default=None, help="number of hidden layers L for --preset (default 2)")
    p.add_argument("--s", default=None, help="s in [0, 1/2] for --preset up")
    p.add_argument("--a", nargs="+", help="a_l for the layers input, hidden..., output (e.g. -1/2 0 1/2)")
    p.add_argument("--b", nargs="+", help="b_l per layer")
    p.add_argument("--c", nargs="+", help="c_l per layer, or one value for all layers")
    p.add_argument("--optimizer", default="sgd", help="sgd or adam, or a torch optimizer name (default sgd)")
    p.add_argument("--alignment", default="tp4", choices=theory.ALIGNMENTS, help="default tp4")
    p.add_argument("--linear", action="store_true", help="the network is linear (the dichotomy does not apply)")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")
    p.set_defaults(run=_run_classify)


def _run_classify(args: argparse.Namespace) -> int:
    explicit = [x is not None for x in (args.a, args.b, args.c)]
    if args.preset is not None and any(explicit):
        raise ValueError("give either --preset or --a/--b/--c, not both")
    if args.preset is not None:
        target = theory.preset(args.preset, 2 if args.depth is None else args.depth, s=args.s)
        v = theory.classify(target, optimizer=args.optimizer, alignment=args.alignment, linear=args.linear)
    else:
        if not all(explicit):
            raise ValueError("give --preset NAME, or all of --a, --b and --c")
        if args.depth is not None or args.s is not None:
            raise ValueError("--depth and --s go with --preset; with --a/--b/--c the depth is len(a) - 1")
        c = args.c[0] if len(args.c) == 1 else args.c
        v = theory.classify(args.a, args.b, c, optimizer=args.optimizer, alignment=args.alignment, linear=args.linear)
    print(v.to_json(indent=2) if args.json else str(v))
    return 0


def _parser() -> _Parser:
    parser = _Parser(prog="abcparam", description="abc-parametrizations of Tensor Programs IV, exactly.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_classify(sub)
    for extra in _EXTRA_COMMANDS:
        extra(sub)
    return parser


# Later modules (coordinate check, demo) register their subcommands here.
_EXTRA_COMMANDS: list = []


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
