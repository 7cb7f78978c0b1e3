"""The command line: real subprocesses, exit codes and one-line errors."""

import json
import subprocess
import sys

import pytest


def run(*args):
    return subprocess.run([sys.executable, "-m", "abcparam", *args], capture_output=True, text=True)


def test_classify_sp_unstable_names_each_violation():
    p = run("classify", "--preset", "sp", "--depth", "3")
    assert p.returncode == 0, p.stderr
    assert "unstable" in p.stdout
    for needle in ("r_2 = -1 < 0", "r_3 = -2 < 0", "readout update: 2a+c = 0 < 1"):
        assert needle in p.stdout


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_classify_mup_feature_learning(opt):
    p = run("classify", "--preset", "mup", "--depth", "3", "--optimizer", opt)
    assert p.returncode == 0 and "feature_learning" in p.stdout


def test_classify_explicit_negative_fractions_and_json():
    p = run("classify", "--a", "-1/2", "0", "0", "1/2", "--b", "1/2", "1/2", "1/2", "1/2", "--c", "0", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["regime"] == "feature_learning" and d["equivalent_to"] == "mup"
    assert d["exponents"]["a"] == ["-1/2", "0", "0", "1/2"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["classify", "--preset", "nope"], "unknown preset"),
        (["classify", "--a", "0", "0", "--b", "0", "--c", "0"], "b: has 1 layers"),
        (["classify", "--a", "0", "0", "--b", "0", "1/2", "--c", "nan"], "cannot read"),
        (["classify", "--preset", "mup", "--a", "0"], "not both"),
        (["classify", "--preset", "mup", "--optimizer", "shampoo"], "outside the theory"),
        (["classify", "--frobnicate"], "unrecognized arguments"),
        (["classify", "--alignment", "half"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_arguments_one_line_exit_2(args, needle):
    p = run(*args)
    assert p.returncode == 2
    assert needle in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "Traceback" not in p.stderr


def test_first_run_is_clean_without_numpy():
    # A fresh install has no numpy, and torch then warns "Failed to initialize NumPy" on import.
    # abcparam's torch-based modules import torch quietly; torch alone does warn (so this can fail).
    hide_numpy = "import sys; sys.modules['numpy'] = None; "
    bare = subprocess.run([sys.executable, "-W", "error", "-c", hide_numpy + "import torch"], capture_output=True, text=True)
    assert bare.returncode != 0 and "Failed to initialize NumPy" in bare.stderr
    ours = subprocess.run([sys.executable, "-W", "error", "-c", hide_numpy + "import abcparam.layers, abcparam.check.width, abcparam.cli; "
                           "abcparam.cli._builtin_check('mup', 'adam', [64, 128, 256], steps=1, seeds=[0])"],
                          capture_output=True, text=True)
    assert ours.returncode == 0, ours.stderr
    assert ours.stderr == ""
