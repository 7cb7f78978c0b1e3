"""benchmarks/hf_zoo.py on a fixed sample of ten diverse causal LMs of transformers (dense, grouped-query, parallel
block, mixture of experts, hybrid state-space, recurrent): each converts with base= and nothing else and owns every
trained tensor; a state-space model whose projection moves in another ratio is refused by name."""

import importlib.util
import pathlib

import pytest

transformers = pytest.importorskip("transformers")

ROOT = pathlib.Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("hf_zoo", ROOT / "benchmarks" / "hf_zoo.py")
hf_zoo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hf_zoo)

SAMPLE = ["llama", "gpt_neox", "mixtral", "qwen3_moe", "falcon_h1", "nemotron_h", "rwkv", "xlstm", "gemma2", "bloom"]


@pytest.mark.parametrize("kind", SAMPLE)
def test_a_sample_of_the_zoo_converts_from_a_base_build_and_owns_every_tensor(kind):
    row = hf_zoo.run_one(transformers, kind, check=False)
    assert row["built"] == "yes" and row["inspect"].startswith("yes"), row
    assert row["converted"].startswith("yes") and row["owned"] == "yes", row


def test_a_state_space_model_the_base_cannot_settle_is_refused_by_name():
    row = hf_zoo.run_one(transformers, "mamba", check=False)
    assert row["converted"].startswith("refused") and "x_proj.weight" in row["converted"]


def test_the_coverage_table_counts_each_stage_and_names_where_each_architecture_stopped():
    rows = [{"kind": "a", "built": "yes", "inspect": "yes (unstable)", "converted": "yes (3 layers)", "owned": "yes"},
            {"kind": "b", "built": "yes", "inspect": "crash: KeyError", "converted": "refused: ValueError: x"},
            {"kind": "c", "built": "no: too big"}]
    table = hf_zoo.coverage(rows, check=False)
    assert "| build from the tiny config | 2 |" in table and "| inspect crashes (unconverted model) | 1 |" in table
    assert "| convert with base= and nothing else | 1 (50% of those built) |" in table
    assert "| b | converted | refused: ValueError: x |" in table and "| c | built | no: too big |" in table
    assert "| a |" not in table
