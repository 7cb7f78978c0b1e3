"""benchmarks/hf_zoo.py on a fixed sample of ten diverse causal LMs of transformers (dense, grouped-query, parallel
block, mixture of experts, state-space,
hybrid, recurrent): each converts with base= and nothing else and owns every
trained tensor; Mamba with its own step-size rank, and a Mamba-2 hybrid, are refused by name (one projection with
width-sized and fixed rows)."""

import importlib.util
import math
from fractions import Fraction
from types import SimpleNamespace
import pathlib

import pytest

import abcparam
import torch

transformers = pytest.importorskip("transformers")

ROOT = pathlib.Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("hf_zoo", ROOT / "benchmarks" / "hf_zoo.py")
hf_zoo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hf_zoo)

SAMPLE = ["llama", "gpt_neox", "mixtral", "qwen3_moe", "mamba", "jamba", "deepseek_v4", "rwkv", "xlstm", "gemma2"]


@pytest.mark.parametrize("kind", SAMPLE)
def test_a_sample_of_the_zoo_converts_from_a_base_build_and_owns_every_tensor(kind):
    row = hf_zoo.run_one(transformers, kind, check=False)
    assert row["built"] == "yes" and row["inspect"].startswith("yes"), row
    assert row["converted"].startswith("yes") and row["owned"] == "yes", row


def test_the_tiny_config_passes_no_size_the_config_computes_itself():
    # xLSTM's v_head_dim and Falcon's head_dim are read-only properties: passing them would fail the build
    for kind, computed in (("xlstm", "v_head_dim"), ("falcon", "head_dim")):
        assert getattr(hf_zoo.tiny_config(transformers, kind, 64), computed) > 0
    config = hf_zoo.tiny_config(transformers, "minicpm3", 128)
    assert config.kv_lora_rank == 64 and config.qk_nope_head_dim == 16  # inner sizes grow with n
    assert config.use_cache is False and config.is_decoder is True  # trained as a causal LM, no cache


def test_mamba_with_its_own_step_size_rank_is_refused_by_name():
    # its default rank, ceil(n / 16), grows while the state size (16) does not: x_proj's rows are both in one tensor
    def build(n):
        config = hf_zoo.tiny_config(transformers, "mamba", n)
        config.time_step_rank = math.ceil(n / 16)
        return transformers.AutoModelForCausalLM.from_config(config)

    model = build(64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"x_proj\.weight dim 0 \(9/10\)"):
        abcparam.convert(model, abcparam.mup(64, 64, form="table8"), base=build(128))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # refused before any change


def test_a_mamba2_hybrid_is_refused_by_name():
    row = hf_zoo.run_one(transformers, "falcon_h1", check=False)
    assert row["converted"].startswith("refused") and "mamba.in_proj.weight" in row["converted"], row


def test_the_coverage_table_counts_each_stage_and_names_where_each_architecture_stopped():
    rows = [{"kind": "a", "built": "yes", "inspect": "yes (unstable)", "converted": "yes (3 layers)", "owned": "yes"},
            {"kind": "b", "built": "yes", "inspect": "crash: KeyError", "converted": "refused: ValueError: x"},
            {"kind": "c", "built": "no: too big"}]
    table = hf_zoo.coverage(rows, check=False)
    assert "| build from the tiny config | 2 |" in table and "| inspect crashes (unconverted model) | 1 |" in table
    assert "| convert with base= and nothing else | 1 (50% of those built) |" in table
    assert "| b | converted | refused: ValueError: x |" in table and "| c | built | no: too big |" in table
    assert "| a |" not in table
    rows[0]["check"], rows[0]["sqrt scale"] = "pass", "fail"
    rows.append({"kind": "d", "built": "yes", "converted": "yes", "owned": "yes", "check": "error: IndexError: x",
                 "sqrt scale": "n/a"})
    table = hf_zoo.coverage(rows, check=True)
    assert "| pass the width check (feature learning) | 1 of 2 |" in table
    assert "| inconclusive / fail / raised an error | 0 / 0 / 1 |" in table
    assert "| their 1/sqrt(d_head) variant fails | 1 of the 1 with an attention scale |" in table
    assert "| d | check | error: IndexError: x |" in table


def test_a_check_that_does_not_pass_names_the_first_quantity_that_stopped_it():
    fit = SimpleNamespace(layer="model.layers.0.self_attn", quantity="scale", step=0, slope=-0.5, predicted=Fraction(-1))
    failed = SimpleNamespace(status="fail", mismatches=[fit, fit], undecided=[])
    assert hf_zoo._verdict(failed) == "fail: model.layers.0.self_attn scale@0 -0.50 vs -1 (of 2)"
    open_ = SimpleNamespace(status="inconclusive", mismatches=[], undecided=[fit])
    assert hf_zoo._verdict(open_).startswith("inconclusive: model.layers.0.self_attn scale@0")
    assert hf_zoo._verdict(SimpleNamespace(status="pass", mismatches=[], undecided=[])) == "pass"
    rows = [{"kind": "a", "built": "yes", "converted": "yes", "owned": "yes", "check": hf_zoo._verdict(failed)}]
    assert "| inconclusive / fail / raised an error | 0 / 1 / 0 |" in hf_zoo.coverage(rows, check=True)
