"""Real third-party model code: HF transformers' GPT-2 and Llama from tiny configs (never downloaded weights).

Skipped when transformers is not installed; CI installs it beside the CPU torch."""

import warnings

import pytest
import torch

import abcparam
import abcparam.testing
from abcparam.attention import ScaleObserver

transformers = pytest.importorskip("transformers")


def gpt2(width, layers=2):
    cfg = transformers.GPT2Config(vocab_size=50, n_positions=16, n_embd=width, n_layer=layers, n_head=4, resid_pdrop=0.0,
                                  embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg)


def llama(width):
    cfg = transformers.LlamaConfig(vocab_size=50, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16, bos_token_id=0,
                                   eos_token_id=0)
    return transformers.LlamaForCausalLM(cfg)


IDX = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(0))


def scales_for(model):
    with torch.no_grad(), ScaleObserver() as seen:
        model(IDX)
    return seen.calls


def test_gpt2_converts_conv1d_ties_norms_and_attention_keeping_its_checkpoint_layout():
    torch.manual_seed(0)
    model = gpt2(64)
    keys = {k: v.shape for k, v in model.state_dict().items()}
    before = model(IDX).logits
    # at m = 1 with init="keep" and the usual attention scale, the converted model is the same function
    report = abcparam.convert(model, abcparam.mup(64, 64, form="table8"), widths=[64, 192, 256], init="keep")
    kinds = {c.name: c.kind for c in report.converted}
    assert kinds["transformer.h.0.attn.c_attn"] == "Conv1D" and kinds["lm_head"] == "Linear (tied)"
    assert kinds["transformer.ln_f"] == "LayerNorm" and len(report.attention) == 2
    assert {k: v.shape for k, v in model.state_dict().items()} == keys
    torch.testing.assert_close(model(IDX).logits, before, rtol=1e-5, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing left unowned
        abcparam.wrap(torch.optim.AdamW(model.parameters(), lr=1e-3), model)


def test_converted_attention_scales_like_mup_and_hf_like_sp():
    # HF's own scale is 1/sqrt(d_head) at every width; converted under muP it is 1/d_head (exponent 1), exactly
    plain = [scales_for(gpt2(n))[0] for n in (64, 256)]
    conv = []
    for n in (64, 256):
        m = gpt2(n)
        abcparam.convert(m, abcparam.mup(n, 64, form="table8"), widths=[n, 3 * n, 4 * n])
        conv.append(scales_for(m)[0])
    from abcparam.attention import scale_exponent

    assert scale_exponent([[c] for c in plain])[0][0] == abcparam.sp().attention
    assert scale_exponent([[c] for c in conv])[0][0] == 1


def test_gpt2_blocks_become_residual_branches():
    torch.manual_seed(0)
    model = gpt2(64, layers=4)
    report = abcparam.convert(model, abcparam.mup(64, 64, form="table8", depth=4, base_depth=1), widths=[64, 192, 256],
                              blocks="transformer.h.*")
    assert report.blocks[0] == ("transformer.h.0", ("attn", "mlp"))
    (hook,) = model.transformer.h[0].attn._forward_hooks.values()
    assert hook.factor == 0.25  # the attention branch's output is scaled by m_L^-1 with m_L = 4 (CompleteP)
    assert model(IDX).logits.shape == (2, 8, 50)


def test_llama_converts_its_linears_and_marks_its_own_norms():
    model = llama(64)
    report = abcparam.convert(model, abcparam.mup(64, 64), widths=[64, 128, 32])
    kinds = {c.name: c.role for c in report.converted}
    assert kinds["model.layers.0.self_attn.q_proj"] == "hidden" and kinds["lm_head"] == "output"
    assert kinds["model.embed_tokens"] == "input" and kinds["model.layers.0.input_layernorm"] == "vector"
    assert "LlamaRMSNorm (gains marked vector-like in place)" in str(report)
    assert model(IDX).logits.shape == (2, 8, 50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # its RMSNorm gains are owned now: nothing unowned
        opt = abcparam.wrap(torch.optim.SGD(model.parameters(), lr=0.1), model)
    lr = {id(t): g["lr"] for g in opt.param_groups for t in g["params"]}
    assert lr[id(model.model.norm.weight)] == pytest.approx(0.1)  # vector-like under SGD at m = 1
    buf = __import__("io").BytesIO()
    torch.save(model, buf)  # the marker pickles


def neox(width):
    cfg = transformers.GPTNeoXConfig(vocab_size=50, hidden_size=width, intermediate_size=4 * width, num_hidden_layers=2,
                                     num_attention_heads=4, max_position_embeddings=16, bos_token_id=0, eos_token_id=0)
    return transformers.GPTNeoXForCausalLM(cfg)


def falcon(width):
    cfg = transformers.FalconConfig(vocab_size=50, hidden_size=width, num_hidden_layers=2, num_attention_heads=4,
                                    bos_token_id=0, eos_token_id=0)
    return transformers.FalconForCausalLM(cfg)


def test_a_grouped_query_llama_converts_from_a_base_build_with_no_widths_listed():
    # widths=[64, 128] (forgetting the grouped keys' 32) would make k_proj a readout; the base build needs no list
    model = llama(64)
    listed = {c.name: c.role for c in abcparam.convert(llama(64), abcparam.mup(64, 64), widths=[64, 128, 32]).converted}
    report = abcparam.convert(model, abcparam.mup(64, 64), base=llama(128))
    assert {c.name: c.role for c in report.converted} == listed
    assert listed["model.layers.0.self_attn.k_proj"] == "hidden"


def test_gpt_neox_gets_its_attention_scale_through_head_size():
    # its attention class spells the head size `head_size`: before, the scale stayed 1/sqrt(d_head)
    report = abcparam.convert(neox(64), abcparam.mup(64, 64, form="table8"), base=neox(128))
    assert [name for name, _, _ in report.attention] == ["gpt_neox.layers.0.attention", "gpt_neox.layers.1.attention"]


@pytest.mark.slow
def test_gpt_neox_converted_from_a_base_passes_the_check_and_fails_it_with_its_own_attention_scale():
    """The two lines a user writes, on an architecture whose conversion needed a hand-written widths list and a
    hand-patched attention class before; kept at 1/sqrt(d_head) (scale_attention=False) it fails."""

    def build(n, scale_attention=True):
        model = neox(n)
        abcparam.convert(model, abcparam.mup(n, 128, form="table8"), base=neox(64), scale_attention=scale_attention)
        return model

    idx = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(0))
    kw = dict(batch=(idx[:, :-1], idx[:, 1:]), optimizer=torch.optim.AdamW, lr=1e-2)  # next-token targets
    abcparam.testing.assert_regime(build, "feature_learning", **kw)
    with pytest.raises(AssertionError, match="expected regime 'feature_learning'"):
        abcparam.testing.assert_regime(lambda n: build(n, scale_attention=False), "feature_learning", **kw)


def test_falcons_own_linear_class_computes_a_linear_so_it_is_converted():
    model = falcon(64)
    assert type(model.transformer.h[0].mlp.dense_h_to_4h).__name__ == "FalconLinear"
    report = abcparam.convert(model, abcparam.mup(64, 64, form="table8"), base=falcon(128))
    roles = {c.name: c.role for c in report.converted}
    # its fused multi-query projection (d -> d + 2 d_head) grows with the width like the rest: hidden
    assert roles["transformer.h.0.self_attention.query_key_value"] == "hidden" and roles["lm_head"] == "output"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        abcparam.wrap(torch.optim.AdamW(model.parameters(), lr=1e-3), model, strict=True)
    assert model(IDX).logits.shape == (2, 8, 50)


def tiny(kind, n):
    """A causal LM of transformers at width n from a tiny config (2 layers, 4 heads, vocabulary 50)."""
    common = dict(vocab_size=50, num_hidden_layers=2, num_attention_heads=4, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    cfg = {"mistral": lambda: transformers.MistralConfig(hidden_size=n, intermediate_size=2 * n, num_key_value_heads=2, **common),
           "qwen2": lambda: transformers.Qwen2Config(hidden_size=n, intermediate_size=2 * n, num_key_value_heads=2, **common),
           "phi": lambda: transformers.PhiConfig(hidden_size=n, intermediate_size=2 * n, **common),
           "gemma2": lambda: transformers.Gemma2Config(hidden_size=n, intermediate_size=2 * n, num_key_value_heads=2,
                                                       head_dim=n // 4, query_pre_attn_scalar=n // 4, **common),
           "mamba": lambda: transformers.MambaConfig(vocab_size=50, hidden_size=n, num_hidden_layers=2, state_size=8)}[kind]()
    return transformers.AutoModelForCausalLM.from_config(cfg)


@pytest.mark.parametrize("kind", ["mistral", "qwen2", "phi"])
def test_more_architectures_convert_from_a_base_build_owning_every_tensor(kind):
    model = tiny(kind, 64)
    report = abcparam.convert(model, abcparam.mup(64, 64, form="table8"), base=tiny(kind, 128))
    assert len(report.attention) == 2 and not report.skipped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        abcparam.wrap(torch.optim.AdamW(model.parameters(), lr=1e-3), model, strict=True)
    assert model(IDX).logits.shape == (2, 8, 50)


def test_what_base_cannot_settle_is_named():
    # Mamba's x_proj outputs ceil(n / 16) + 2 d_state: neither a width nor fixed; refused by name, the model untouched
    model = tiny("mamba", 64)
    with pytest.raises(ValueError, match=r"backbone\.layers\.0\.mixer\.x_proj\.weight dim 0 \(5/6\)"):
        abcparam.convert(model, abcparam.mup(64, 64), base=tiny("mamba", 128))
    assert not any(abcparam.layers.is_abc_layer(m) for m in model.modules())


def gemma2(width):
    cfg = transformers.Gemma2Config(vocab_size=50, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, head_dim=width // 4,
                                    query_pre_attn_scalar=width // 4, max_position_embeddings=16, bos_token_id=0,
                                    eos_token_id=0, pad_token_id=0)
    return transformers.Gemma2ForCausalLM(cfg)


@pytest.mark.slow
def test_gemma2s_scaled_embedding_keeps_its_tie_and_its_factor_at_the_base_width_and_passes_the_check():
    """Gemma multiplies its embedding by sqrt(hidden_size) and ties the readout to the table: before, the embedding was
    marked in place (no input layer for the check, which then failed: the factor grows like n^1/2) and the readout
    got a weight of its own (the tie silently lost)."""
    model = gemma2(128)
    report = abcparam.convert(model, abcparam.mup(128, 64, form="table8"), base=gemma2(64))
    assert [(n, round(old, 4), round(new, 4)) for n, old, new in report.scales] == [("model.embed_tokens", 11.3137, 8.0)]
    assert isinstance(model.lm_head, abcparam.TiedReadout) and model.lm_head.weight is model.model.embed_tokens.weight

    def build(n, scale_attention=True):
        m = gemma2(n)
        abcparam.convert(m, abcparam.mup(n, 128, form="table8"), base=gemma2(64), scale_attention=scale_attention)
        return m

    idx = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(0))
    kw = dict(batch=(idx[:, :-1], idx[:, 1:]), optimizer=torch.optim.AdamW, lr=1e-2)
    abcparam.testing.assert_regime(build, "feature_learning", **kw)
    # its eager attention computes the logits inline (no F.scaled_dot_product_attention call to observe): the check
    # reads the scale the attention modules expose, and 1/sqrt(d_head) kept fails
    with pytest.raises(AssertionError, match="attention 0"):
        abcparam.testing.assert_regime(lambda n: build(n, scale_attention=False), "feature_learning", **kw)
