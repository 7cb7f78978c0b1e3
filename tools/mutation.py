"""Mutation testing of abcparam's core modules: how many deliberate one-line breakages the test suite catches.

    pip install -e ".[dev]"                     # mutmut (a development tool; never needed at run time or in CI)
    python tools/mutation.py                    # every core module (long: see docs/developers/mutation.md for timings)
    python tools/mutation.py theory.verdict layers   # some modules
    python tools/mutation.py --report           # the scores of the last runs, without running anything
    python tools/mutation.py --sample 30        # 30 random mutants per module: an estimated score with its 95% interval
    python tools/mutation.py --sample 30 --report   # the last sample's scores

mutmut (configured in setup.cfg) copies the package to ./mutants, makes one small change at a time (an
operator, a constant, a comparison, a dropped argument), runs the tests that reach the changed function,
and records whether some test failed ("killed"), ran past its time limit ("timeout"), or all passed ("survived").
This script runs it module by module and prints, per module, the score: killed / mutants run, where a time-out
and a mutant that no test reaches count as not caught (the score counting time-outs as caught is printed beside it).
Survivors are listed with ``mutmut results``; ``mutmut show NAME`` prints one as a diff.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

# the core modules, by dotted path below abcparam (a module of a subpackage is one unit: its own sample and score)
CORE = ("theory.exponents", "theory.presets", "theory.calculus", "theory.verdict", "theory.symmetry", "theory.parametrizations",
        "layers", "optim", "check.measure", "check.prediction", "check.report", "check.width", "limits", "testing")
ROOT = Path(__file__).resolve().parents[1]


SAMPLE_FILE = ROOT / "mutants" / "sample.txt"  # the names of the last --sample, for --report
DIRECT_FILE = ROOT / "mutants" / "direct.json"  # mutants run by run_direct, with the fingerprint they ran on


def _module(name: str) -> str:
    """The core module of a mutant's name, as a dotted path below abcparam: abcparam.check.width.x_fn__mutmut_3 ->
    check.width (mutmut's name of a function starts with x)."""
    parts = name.split(".")[1:]
    return ".".join(parts[: next(i for i, part in enumerate(parts) if part.startswith("x"))])


def statuses() -> dict:
    """Every mutant mutmut knows, by name, with its status ("killed", "survived", "timeout", "no tests", "not checked", ...)."""
    out = subprocess.run(["mutmut", "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        m = re.match(r"\s*(abcparam\.\w+\.\S+): (.+)$", line)
        if m:
            found[m.group(1)] = m.group(2).strip()
    return found


def wilson(caught: int, n: int, z: float = 1.96) -> tuple:
    """The 95% Wilson score interval of a proportion caught / n (a score measured on a random sample of mutants)."""
    if n == 0:
        return 0.0, 1.0
    p = caught / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def report(modules, sample=None) -> int:
    """Per module: the mutants (or those of ``sample``), how each ended, and the score killed / run, where a time-out
    and a mutant no test reaches count as not caught (a time-out is not evidence of a failing test: see
    docs/developers/mutation.md); the score counting time-outs as caught is shown beside it; with a sample, the 95% interval."""
    every = statuses()
    if sample is not None and DIRECT_FILE.exists():  # a sample's mutants were run by run_direct
        every.update(json.loads(DIRECT_FILE.read_text()).get("results", {}))
    print("| module | mutants | run | killed | timed out | survived | no test reaches it (or error) | score | with time-outs |"
          + (" 95% interval |" if sample else ""))
    print("|---|---|---|---|---|---|---|---|---|" + ("---|" if sample else ""))
    worst = 100.0
    for mod in modules:
        mine = {n: st for n, st in every.items() if _module(n) == mod}
        chosen = {n: st for n, st in mine.items() if sample is None or n in sample}
        c = Counter(chosen.values())
        killed, timeout = c.get("killed", 0), c.get("timeout", 0)
        survived, unreached = c.get("survived", 0), c.get("no tests", 0) + c.get("error", 0)
        run = killed + timeout + survived + unreached
        score = 100.0 * killed / max(1, run)
        worst = min(worst, score)
        row = (f"| {mod} | {len(mine)} | {run} | {killed} | {timeout} | {survived} | {unreached} | {score:.1f}% | "
               f"{100.0 * (killed + timeout) / max(1, run):.1f}% |")
        if sample:
            lo, hi = wilson(killed, run)
            row += f" {100 * lo:.0f}-{100 * hi:.0f}% |"
        print(row)
    return 0 if worst >= 90.0 else 1


def _fingerprint() -> str:
    """A hash of the package and the tests as they are now: direct results are kept only while it is unchanged."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted([*(ROOT / "abcparam").rglob("*.py"), *(ROOT / "tests").glob("*.py")]):
        h.update(str(path.relative_to(ROOT)).encode() + path.read_bytes())
    return h.hexdigest()[:16]


def _run_one(name: str, tests_of: dict, duration: dict, factor: float = 4.0) -> str:
    function = name.rsplit("__mutmut_", 1)[0]
    # fastest first: a mutant some quick test catches is done in seconds (pytest -x stops at the first failure)
    tests = sorted(tests_of.get(function, []), key=lambda t: (duration.get(t, 0.0), t))
    if not tests:
        return "no tests"
    # the recorded time is the tests' call phase only, measured with all threads: hundreds of small tests take longer
    limit = 60 + factor * sum(duration.get(t, 0.0) for t in tests)
    env = dict(os.environ, MUTANT_UNDER_TEST=name, OMP_NUM_THREADS="1")
    try:
        rc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests], cwd=ROOT / "mutants",
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=limit).returncode
    except subprocess.TimeoutExpired:
        return "timeout"
    # pytest exits 1 when a test failed, 2 when collection failed (a test module that builds a model at import); any
    # other code (a usage error, no test found) is not evidence against the mutant, nor is a collection error that
    # happens without the mutant too
    if rc == 2 and _collects(tests):
        return "killed"
    return {0: "survived", 1: "killed"}.get(rc, "error")


def _collects(tests) -> bool:
    """Whether ``tests`` are collected without error when no mutant is active (so an error with one is its doing)."""
    env = {k: v for k, v in os.environ.items() if k != "MUTANT_UNDER_TEST"}
    return subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *tests],
                          cwd=ROOT / "mutants", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def run_direct(names, processes: int = 2) -> dict:
    """Run each mutant's tests (mutmut's test map) in ./mutants with the mutant active, stopping at the first failure,
    under a wall-clock limit of 60 s + 4x the tests' recorded time (a time-out is retried once at 12x): "killed" when
    a test fails (or their collection fails with the mutant active and not without it), "survived" when all pass, "timeout" when it runs past the limit, "no tests" when no test reaches
    the function, "error" when pytest ends otherwise (a collection or usage error).  Used instead of ``mutmut run``
    for samples: mutmut's CPU-time limit misfires with multi-threaded torch here (some of its "time-outs" pass every
    test) and burns the whole limit on each."""
    import concurrent.futures as cf

    stats = json.loads((ROOT / "mutants" / "mutmut-stats.json").read_text())
    tests_of, duration = stats["tests_by_mangled_function_name"], stats["duration_by_test"]
    stamp = _fingerprint()
    saved = json.loads(DIRECT_FILE.read_text()) if DIRECT_FILE.exists() else {}
    # results of another state of the package or the tests are not reused (a new test may kill an old survivor)
    done = saved.get("results", {}) if saved.get("fingerprint") == stamp else {}
    todo = [n for n in names if n not in done]

    def run(name):
        status = _run_one(name, tests_of, duration)
        # a time-out is retried once at 12x the recorded time: most are a large test set, not a slower mutant
        return _run_one(name, tests_of, duration, factor=12.0) if status == "timeout" else status

    with cf.ThreadPoolExecutor(processes) as pool:
        for name, status in zip(todo, pool.map(run, todo)):
            done[name] = status
            DIRECT_FILE.write_text(json.dumps({"fingerprint": stamp, "results": done}, indent=1))
            print(f"  {name}: {status}", file=sys.stderr, flush=True)
    return done


def in_turns(names) -> list:
    """Mutant names ordered so that the modules take turns (the first of each module, then the second, ...): a
    sample stopped early has measured every module."""
    seen = Counter()
    turns = []
    for name in sorted(names):
        module = _module(name)
        turns.append((seen[module], name))
        seen[module] += 1
    return [name for _, name in sorted(turns)]


def draw_sample(modules, per_module: int, seed: int) -> list:
    """``per_module`` mutants of each module drawn at random (seeded) from all mutmut generates."""
    import random

    # generates the mutants and the test map; it then ends with "nothing matches" (no mutant has that name), as meant
    subprocess.run(["mutmut", "run", "abcparam.__generate_only__.*"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    every = sorted(statuses())
    rng = random.Random(seed)
    names = []
    for mod in modules:
        mine = [n for n in every if _module(n) == mod]
        names += rng.sample(mine, min(per_module, len(mine)))
    SAMPLE_FILE.write_text("\n".join(names) + "\n")
    return names


def main(argv) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("modules", nargs="*", help=f"default: all of {', '.join(CORE)}")
    ap.add_argument("--report", action="store_true", help="print the last scores only")
    ap.add_argument("--max-children", type=int, default=None, help="parallel test processes (default: CPU count)")
    ap.add_argument("--sample", type=int, metavar="N", help="run N randomly drawn mutants per module (seeded) and report the "
                    "score of the sample with its 95%% interval; with --report, the last sample")
    ap.add_argument("--seed", type=int, default=0, help="the sample's seed (default 0)")
    args = ap.parse_args(argv)
    unknown = [m for m in args.modules if m not in CORE]
    if unknown:
        ap.error(f"modules: unknown {', '.join(unknown)}; allowed: {', '.join(CORE)}")
    modules = args.modules or list(CORE)
    children = ["--max-children", str(args.max_children)] if args.max_children else []
    sample = None
    if args.sample is not None and args.report:
        sample = set(SAMPLE_FILE.read_text().split()) if SAMPLE_FILE.exists() else set()
    elif args.sample is not None:
        sample = set(draw_sample(modules, args.sample, args.seed))
        print(f"running a sample of {len(sample)} mutants ...", file=sys.stderr, flush=True)
        run_direct(in_turns(sample), processes=args.max_children or 2)
    elif not args.report:
        for mod in modules:
            print(f"mutating abcparam/{mod.replace('.', '/')}.py ...", file=sys.stderr, flush=True)
            subprocess.run(["mutmut", "run", *children, f"abcparam.{mod}.*"], cwd=ROOT, stdout=subprocess.DEVNULL, check=False)
    return report(modules, sample)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
