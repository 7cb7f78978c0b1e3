"""tools/mutation.py's own arithmetic: the score's interval and the order in which a sample runs."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import mutation  # noqa: E402


def test_the_wilson_interval_matches_hand_values():
    # p = 1/2 of 100: centre 0.5, half-width 1.96 * sqrt(0.25/100 + 1.96^2/40000) / (1 + 1.96^2/100)
    lo, hi = mutation.wilson(50, 100)
    assert (lo, hi) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    lo, hi = mutation.wilson(30, 30)  # all caught: the upper end is 1, the lower end n / (n + z^2)
    assert hi == 1.0 and lo == pytest.approx(30 / (30 + 1.96 ** 2), abs=1e-9)
    assert mutation.wilson(0, 0) == (0.0, 1.0)  # nothing run: nothing known


def test_a_mutants_module_is_its_dotted_path_below_abcparam():
    assert mutation._module("abcparam.check.width.x_coord_check__mutmut_2") == "check.width"
    assert mutation._module("abcparam.theory.verdict.xǁVerdictǁtable__mutmut_1") == "theory.verdict"
    assert mutation._module("abcparam.layers.x_scales_for__mutmut_7") == "layers"
    assert set(map(mutation._module, ["abcparam." + m.replace("/", ".") + ".x_f__mutmut_1" for m in mutation.CORE])) == set(mutation.CORE)


def test_a_sample_runs_the_modules_in_turn():
    names = ["abcparam.check.width.x_b__mutmut_2", "abcparam.check.width.x_a__mutmut_1", "abcparam.theory.x_c__mutmut_3",
             "abcparam.check.width.x_c__mutmut_9", "abcparam.limits.x_d__mutmut_4"]
    assert mutation.in_turns(names) == [
        "abcparam.check.width.x_a__mutmut_1", "abcparam.limits.x_d__mutmut_4", "abcparam.theory.x_c__mutmut_3",
        "abcparam.check.width.x_b__mutmut_2", "abcparam.check.width.x_c__mutmut_9"]


@pytest.mark.parametrize("rc, clean, status", [(0, True, "survived"), (1, True, "killed"), (2, True, "killed"),
                                               (2, False, "error"), (4, True, "error"), (5, True, "error")])
def test_a_collection_error_kills_a_mutant_only_when_the_tests_collect_without_it(monkeypatch, rc, clean, status):
    runs = []

    def run(cmd, cwd=None, env=None, **kw):
        collect = "--collect-only" in cmd
        runs.append(("collect" if collect else "test", env.get("MUTANT_UNDER_TEST")))
        return type("Done", (), {"returncode": (0 if clean else 2) if collect else rc})()

    monkeypatch.setattr(mutation.subprocess, "run", run)
    name = "abcparam.theory.presets.xǁPresetǁc__mutmut_16"
    assert mutation._run_one(name, {"abcparam.theory.presets.xǁPresetǁc": ["tests/t.py::a"]}, {}) == status
    assert runs[0] == ("test", name)
    assert runs[1:] == ([("collect", None)] if rc == 2 else [])  # the check runs without the mutant, only after rc 2


import mutation_screen  # noqa: E402


def test_the_screen_picks_the_mutants_of_the_named_functions_and_methods_only():
    names = ["abcparam.check.width.x__num__mutmut_1", "abcparam.check.width.x__num_extra__mutmut_1", "abcparam.check.width.x_coord_check__mutmut_2",
             "abcparam.check.width.xǁCoordReportǁsummary__mutmut_3", "abcparam.check.width.xǁCoordReportǁ_rows__mutmut_4"]
    assert mutation_screen.mutants_of(names, ["_num", "summary"]) == [names[0], names[3]]
    assert mutation_screen.mutants_of(names, ["coord_check"]) == [names[2]]
    assert mutation_screen.mutants_of(names, ["rows"]) == []  # whole names, not parts of them
