"""Screen every mutant of some functions against a chosen set of tests, in one pytest session: a quick triage.

    python tools/mutation.py check.report --sample 1     # (once) let mutmut generate ./mutants and its test map
    python tools/mutation_screen.py check.report _decide,summary -- tests/test_coord_report.py

Where ``tools/mutation.py --sample`` measures the score (each sampled mutant against every test mutmut maps to
it, in a fresh process), this runs *all* mutants of the named functions against the tests you choose, with no
new process per mutant: the tests are collected once and re-run with each mutant active (mutmut's trampolines
read the active mutant at every call).  With fast unit tests it screens hundreds of mutants a minute, which is
how the tests of ``tests/test_coord_report.py`` and ``tests/test_coord_parts.py`` were written.  A mutant this
misses may still be killed by a test left out of the selection: it is a list of leads, not a score.  Each
mutant it misses is printed as ``mutmut show`` prints it.

Tracebacks are printed natively (pytest's own formatting parses the mutated module, which is huge, for every
failing frame), and each mutant gets a time limit (a mutant can loop forever).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Sequence

from mutation import ROOT, _module, statuses

MUTANTS = ROOT / "mutants"


def mutants_of(names: Sequence[str], functions: Sequence[str]) -> List[str]:
    """The mutant names of the given functions or methods, in mutmut's order: ``x_f__mutmut_3`` for a function
    ``f``, ``xǁClassǁf__mutmut_3`` for a method."""
    wanted = [f"x_{f}__mutmut_" for f in functions] + [f"ǁ{f}__mutmut_" for f in functions]
    return [n for n in names if any(w in n.rsplit(".", 1)[-1] for w in wanted)]


class _Screen:
    """A pytest plugin that replaces the run: the selected tests once as they are (they must pass), then once per
    mutant, stopping at the first failure."""

    def __init__(self, names: List[str], limit: float) -> None:
        self.names, self.limit, self.survivors = names, limit, []
        self.expired = False

    def _fails(self, items) -> bool:
        from _pytest.runner import runtestprotocol

        for item in items:
            if any(r.failed for r in runtestprotocol(item, nextitem=None, log=False)):
                return True
        return False

    def pytest_runtestloop(self, session):
        import abcparam

        if MUTANTS not in Path(abcparam.__file__).parents:
            raise RuntimeError(f"abcparam was imported from {abcparam.__file__}, not from {MUTANTS}")

        def expire(*_):
            self.expired = True  # a test that catches the error below would count it as its failure: the flag decides
            raise TimeoutError

        os.environ["MUTANT_UNDER_TEST"] = ""
        if self._fails(session.items):
            print("the selected tests fail without any mutant: fix them first", file=sys.stderr)
            return True
        signal.signal(signal.SIGALRM, expire)
        for k, name in enumerate(self.names, 1):
            os.environ["MUTANT_UNDER_TEST"] = name
            start, self.expired = time.time(), False
            signal.setitimer(signal.ITIMER_REAL, self.limit)
            try:
                status = "killed" if self._fails(session.items) else "survived"
            except TimeoutError:
                status = "timeout"
            except Exception:  # raised outside a test (a broken fixture): the mutant broke something a test uses
                status = "killed"
            signal.setitimer(signal.ITIMER_REAL, 0)
            if self.expired:  # (a test that caught the TimeoutError reported it as its own failure)
                status = "timeout"
            print(f"[{k}/{len(self.names)}] {name}: {status} ({time.time() - start:.1f} s)", file=sys.stderr, flush=True)
            if status != "killed":
                self.survivors.append((name, status))
        os.environ["MUTANT_UNDER_TEST"] = ""
        return True


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    pytest_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("module", help="a core module as a dotted path below abcparam (mutation.CORE): theory.verdict, check.width, layers, ...")
    ap.add_argument("functions", help="comma-separated function or method names")
    ap.add_argument("--limit", type=float, default=20.0, help="seconds per mutant (default 20)")
    args = ap.parse_args(argv)
    if not pytest_args:
        ap.error("give, after --, the tests to run (pytest arguments)")
    if not (MUTANTS / "abcparam" / f"{args.module.replace('.', '/')}.py").exists():
        ap.error(f"no mutants of abcparam/{args.module.replace('.', '/')}.py: generate them first (python tools/mutation.py {args.module} --sample 1)")
    names = [n for n in statuses() if _module(n) == args.module]
    chosen = mutants_of(names, args.functions.split(","))
    if not chosen:
        ap.error(f"functions: no mutant of {args.functions} in abcparam/{args.module.replace('.', '/')}.py")
    os.chdir(MUTANTS)
    sys.path.insert(0, str(MUTANTS))  # the mutated package, not the installed one
    import pytest

    screen = _Screen(chosen, args.limit)
    pytest.main(["-q", "-p", "no:cacheprovider", "--tb=native", "-W", "ignore", *pytest_args], plugins=[screen])
    print(f"{len(chosen)} mutants of {args.functions}: {len(chosen) - len(screen.survivors)} killed, "
          f"{len(screen.survivors)} not killed by the selected tests")
    for name, status in screen.survivors:
        print(f"({status})", flush=True)
        subprocess.run(["mutmut", "show", name], cwd=ROOT, check=False)
    return 0 if not screen.survivors else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
