"""Mutation testing of abcparam's core modules: how many deliberate one-line breakages the test suite catches.

    pip install -e ".[dev]"                     # mutmut (a development tool; never needed at run time or in CI)
    python tools/mutation.py                    # every core module (long: see docs/mutation.md for timings)
    python tools/mutation.py theory layers      # some modules
    python tools/mutation.py --report           # the scores of the last runs, without running anything

mutmut (configured in setup.cfg) copies the package to ./mutants, makes one small change at a time (an
operator, a constant, a comparison, a dropped argument), runs the tests that reach the changed function,
and records whether some test failed ("killed"), timed out (also caught), or all passed ("survived").
This script runs it module by module and prints, per module, the score: (killed + timed out) / mutants run,
where a mutant that no test reaches counts as not caught.
Survivors are listed with ``mutmut results``; ``mutmut show NAME`` prints one as a diff.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

CORE = ("theory", "parametrizations", "layers", "optim", "coord", "limits", "testing")
ROOT = Path(__file__).resolve().parents[1]


def results() -> dict:
    out = subprocess.run(["mutmut", "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    by_module: dict = {}
    for line in out.splitlines():
        m = re.match(r"\s*abcparam\.(\w+)\.\S+: (.+)$", line)
        if m:
            by_module.setdefault(m.group(1), Counter())[m.group(2).strip()] += 1
    return by_module


def report(modules) -> int:
    table = results()
    print("| module | mutants | run | killed | timed out | survived | no test reaches it | score |")
    print("|---|---|---|---|---|---|---|---|")
    worst = 100.0
    for mod in modules:
        c = table.get(mod, Counter())
        killed, timeout = c.get("killed", 0), c.get("timeout", 0)
        survived, unreached = c.get("survived", 0), c.get("no tests", 0)
        run = killed + timeout + survived + unreached
        score = 100.0 * (killed + timeout) / max(1, run)  # a mutant no test reaches counts as not caught
        worst = min(worst, score)
        print(f"| {mod} | {sum(c.values())} | {run} | {killed} | {timeout} | {survived} | {unreached} | {score:.1f}% |")
    return 0 if worst >= 90.0 else 1


def main(argv) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("modules", nargs="*", help=f"default: all of {', '.join(CORE)}")
    ap.add_argument("--report", action="store_true", help="print the last scores only")
    ap.add_argument("--max-children", type=int, default=None, help="parallel test processes (default: CPU count)")
    args = ap.parse_args(argv)
    unknown = [m for m in args.modules if m not in CORE]
    if unknown:
        ap.error(f"modules: unknown {', '.join(unknown)}; allowed: {', '.join(CORE)}")
    modules = args.modules or list(CORE)
    if not args.report:
        for mod in modules:
            cmd = ["mutmut", "run", f"abcparam.{mod}.*"]
            if args.max_children:
                cmd[2:2] = ["--max-children", str(args.max_children)]
            print(f"mutating abcparam/{mod}.py ...", file=sys.stderr, flush=True)
            subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, check=False)
    return report(modules)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
