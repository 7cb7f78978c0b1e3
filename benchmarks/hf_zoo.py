"""Every causal language model of the installed HF transformers, converted with no per-architecture code.

    python benchmarks/hf_zoo.py                       # every architecture: build, convert, own, inspect (minutes)
    python benchmarks/hf_zoo.py --check               # ... and the width check on each that converts (an hour or more)
    python benchmarks/hf_zoo.py --only llama gpt2     # some architectures
    python benchmarks/hf_zoo.py --markdown table.md   # also write the coverage table

For each model type of transformers' ``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`` the
same tiny config is asked for (``AutoConfig.for_model(kind, hidden_size=n,
intermediate_size=2 n, head_dim=n / 4, 4 heads of which 2 key/value heads,
2 layers, vocabulary 100, 4 experts of width n with 2 per token, and every other inner size a config names growing
with n: see ``tiny_config``)``; a config that ignores the sizes it does not know keeps its own, and a size a config
computes itself is not passed), at widths 64 and 128.  Then, per architecture:

- **built**: both widths build (a model over 20 M parameters at width 64 is not
  tiny: its config ignored the sizes, and it is skipped, counted);
- **converted**: ``abcparam.convert(model, abcparam.mup(64, 64, form="table8"),
  base=model_at_128)``, nothing else: a refusal is listed with its message;
- **owned**: ``abcparam.wrap(AdamW, model, strict=True)``: every trained tensor
  belongs to an abcparam layer, else the unowned ones are listed;
- **inspect**: ``abcparam.inspect`` on the unconverted model (widths 64 and
  128, AdamW) does not crash;
- with ``--check``: ``abcparam.testing.assert_regime(build, "feature_learning")``
  at the CI defaults on next-token targets (build converts ``model(n)`` with
  ``base=model(64)``), and the same with the model's own 1/sqrt(d_head) scale
  kept (``scale_attention=False``) must fail.

Prints one row per architecture, the counts and the time of the sweep.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import time
import warnings
from typing import Callable, Dict, List, Tuple

import torch
from torch import nn

import abcparam
import abcparam.testing

VOCAB = 100
TOO_BIG = 20_000_000  # parameters at width 64: the config ignored the tiny sizes


def tiny_config(transformers, kind: str, n: int):
    sizes = dict(hidden_size=n, intermediate_size=2 * n, head_dim=n // 4, num_attention_heads=4, num_key_value_heads=2,
                 num_hidden_layers=2, vocab_size=VOCAB, max_position_embeddings=64, bos_token_id=0, eos_token_id=0,
                 pad_token_id=0, query_pre_attn_scalar=n // 4,  # Gemma-2/3: the attention's 1/sqrt is of this (the head size)
                 # trained, not generating: no key/value cache (BART's decoder sizes its cache by the layers it does not
                 # have, Jamba's attention-free tiny build has no mask to size); an encoder class used as a causal LM
                 # (BertLMHeadModel, ...) attends causally only as a decoder
                 use_cache=False, is_decoder=True,
                 # mixture-of-experts configs: 4 experts of their own width, 2 per token
                 num_experts=4, num_local_experts=4, n_routed_experts=4, moe_intermediate_size=n, num_experts_per_tok=2,
                 # every other inner size a config names grows with n too (left at its default, a fixed size would sit
                 # beside width-sized ones in one tensor): multi-latent attention's ranks and head parts, a factored
                 # embedding's size, RoCBERT's pronunciation and shape embeddings
                 q_lora_rank=n // 2, kv_lora_rank=n // 2, qk_nope_head_dim=n // 8, qk_rope_head_dim=n // 8,
                 v_head_dim=n // 4, embedding_size=n // 2, pronunciation_embed_dim=n // 2, shape_embed_dim=n // 2,
                 # state-space layers: the rank of Mamba's step size fixed at 8 (its default, ceil(n / 16), grows
                 # while the state size stays 16, which puts width-sized and fixed rows in x_proj); Mamba-2's heads
                 # grow with n, each of size 32 (heads x head size = 2 n, the inner size)
                 time_step_rank=8, mamba_dt_rank=8, mamba_n_heads=n // 16, mamba_num_heads=n // 16, mamba_d_head=32,
                 mamba_head_dim=32, mamba_d_ssm=2 * n)
    cls = transformers.CONFIG_MAPPING[kind]  # a size the config computes (a property without a setter) is not passed
    fixed = {k for k in sizes if isinstance(getattr(cls, k, None), property) and getattr(cls, k).fset is None}
    return transformers.AutoConfig.for_model(kind, **{k: v for k, v in sizes.items() if k not in fixed})


def builder(transformers, kind: str) -> Callable[[int], nn.Module]:
    def build(n: int) -> nn.Module:
        return transformers.AutoModelForCausalLM.from_config(tiny_config(transformers, kind, n))
    return build


def first_line(e: BaseException, limit: int = 160) -> str:
    text = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parameter_count(build: Callable[[int], nn.Module], n: int) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in build(n).parameters())


def run_one(transformers, kind: str, check: bool) -> Dict[str, str]:
    """The row of one architecture: each stage's outcome ("yes", or why not)."""
    row = {"kind": kind}
    build = builder(transformers, kind)
    try:
        count = parameter_count(build, 64)
        if count > TOO_BIG:
            row["built"] = f"no: {count / 1e6:.0f} M parameters at width 64 (the config kept its own sizes)"
            return row
        torch.manual_seed(0)
        model, base = build(64), build(128)
    except Exception as e:  # a config that needs more than the tiny sizes, or a model that needs extra packages
        row["built"] = f"no: {first_line(e)}"
        return row
    row["built"] = "yes"
    row["inspect"] = _inspect(build)
    try:
        report = abcparam.convert(model, abcparam.mup(64, 64, form="table8"), base=base)
    except (ValueError, TypeError) as e:
        row["converted"] = f"refused: {first_line(e, 220)}"
        return row
    row["converted"] = f"yes ({len(report.converted)} layers, {len(report.attention)} attention scales)"
    try:
        abcparam.wrap(torch.optim.AdamW(model.parameters(), lr=1e-3), model, strict=True)
    except ValueError as e:
        row["owned"] = f"no: {first_line(e, 220)}"
        return row
    row["owned"] = "yes"
    if check:
        row["check"], row["sqrt scale"] = _check(build)
    return row


def _inspect(build: Callable[[int], nn.Module]) -> str:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            result = abcparam.inspect(build, optimizer=torch.optim.AdamW, lr=1e-3, widths=(64, 128))
        return f"yes ({result.regime or 'no verdict'})"
    except (ValueError, TypeError) as e:  # a refusal with its reason, not a crash
        return f"refused: {first_line(e)}"
    except Exception as e:
        return f"crash: {first_line(e)}"


def _check(build: Callable[[int], nn.Module]) -> Tuple[str, str]:
    ids = torch.randint(0, VOCAB, (2, 17), generator=torch.Generator().manual_seed(0))
    kw = dict(batch=(ids[:, :-1], ids[:, 1:]), optimizer=torch.optim.AdamW, lr=1e-2)

    def converted(n: int, scale: bool = True) -> nn.Module:
        model = build(n)
        abcparam.convert(model, abcparam.mup(n, 128, form="table8"), base=build(64), scale_attention=scale)
        return model

    probe = build(128)
    scales = abcparam.convert(probe, abcparam.mup(128, 128, form="table8"), base=build(64)).attention
    outcomes = []
    for scale in (True, False) if scales else (True,):
        try:
            report = abcparam.coord_check(lambda n: converted(n, scale), [128, 256, 512, 1024], kw["batch"],
                                          optimizer=kw["optimizer"], lr=kw["lr"], expect="feature_learning")
            outcomes.append(_verdict(report) if scale else report.status)
        except Exception as e:
            outcomes.append(f"error: {first_line(e)}")
    return outcomes[0], (outcomes[1] if scales else "n/a (no attention scale to set)")


def _verdict(report) -> str:
    """The check's status, and for a fail or an inconclusive the first quantity that made it so."""
    fits = report.mismatches or report.undecided
    if report.status == "pass" or not fits:
        return report.status
    f = fits[0]
    return f"{report.status}: {f.layer} {f.quantity}@{f.step} {f.slope:+.2f} vs {f.predicted} (of {len(fits)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="also run the width check (and its 1/sqrt(d_head) variant)")
    ap.add_argument("--only", nargs="+", metavar="KIND", help="model types to run (default: every causal LM)")
    ap.add_argument("--markdown", metavar="PATH", help="write the coverage table there")
    args = ap.parse_args()
    try:
        import transformers
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    except ImportError:
        sys.exit("benchmarks/hf_zoo.py needs HF transformers: pip install -e '.[hf]'")
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    torch.set_num_threads(2)
    kinds = args.only or sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    print(f"transformers {transformers.__version__}: {len(kinds)} causal-LM architecture(s); widths 64 (converted) "
          f"and 128 (its base)\n")
    start, rows = time.time(), []
    for kind in kinds:
        t = time.time()
        row = run_one(transformers, kind, args.check)
        row["s"] = f"{time.time() - t:.1f}"
        rows.append(row)
        print(" | ".join(f"{k}: {v}" for k, v in row.items()), flush=True)
    table = coverage(rows, args.check)
    print("\n" + table)
    print(f"\n({time.time() - start:.0f} s)")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")


def coverage(rows: List[Dict[str, str]], check: bool) -> str:
    """The counts, then one line per architecture that did not make it through, with the reason."""
    built = [r for r in rows if r.get("built") == "yes"]
    converted = [r for r in built if str(r.get("converted", "")).startswith("yes")]
    owned = [r for r in converted if r.get("owned") == "yes"]
    crashed = [r for r in built if str(r.get("inspect", "")).startswith("crash")]
    lines = ["| stage | architectures |", "|---|---|",
             f"| in the causal-LM mapping | {len(rows)} |",
             f"| build from the tiny config | {len(built)} |",
             f"| convert with base= and nothing else | {len(converted)} ({_pct(len(converted), len(built))} of those built) |",
             f"| own every trained tensor (wrap strict) | {len(owned)} ({_pct(len(owned), len(built))}) |",
             f"| inspect crashes (unconverted model) | {len(crashed)} |"]
    if check:
        passed = [r for r in owned if r.get("check") == "pass"]
        scaled = [r for r in owned if not str(r.get("sqrt scale", "n/a")).startswith("n/a")]
        caught = [r for r in scaled if r.get("sqrt scale") == "fail"]
        verdicts = [str(r.get("check", "")).split(":")[0] for r in owned]
        lines += [f"| pass the width check (feature learning) | {len(passed)} of {len(owned)} |",
                  f"| inconclusive / fail / raised an error | {verdicts.count('inconclusive')} / "
                  f"{verdicts.count('fail')} / {verdicts.count('error')} |",
                  f"| their 1/sqrt(d_head) variant fails | {len(caught)} of the {len(scaled)} with an attention scale |"]
    lines.append("")
    lines.append("| architecture | stopped at | why |")
    lines.append("|---|---|---|")
    for r in rows:
        for stage in ("built", "converted", "owned", "check"):
            value = r.get(stage)
            if value is not None and not (value == "yes" or value.startswith("yes") or value == "pass"):
                lines.append(f"| {r['kind']} | {stage} | {value.replace('|', '/')} |")
                break
    return "\n".join(lines)


def _pct(a: int, b: int) -> str:
    return f"{100 * a / b:.0f}%" if b else "-"


if __name__ == "__main__":
    main()
