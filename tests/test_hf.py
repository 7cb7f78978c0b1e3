"""Real third-party model code: HF transformers' GPT-2 and Llama from tiny configs (never downloaded weights).

Skipped when transformers is not installed; CI installs it beside the CPU torch."""

import warnings

import pytest
import torch

import abcparam
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
