"""What ``abcparam.inspect`` costs on a 2-block transformer at three widths (no ``batch=``).

    python benchmarks/inspect_cost.py            # TinyTransformer and, when installed, HF GPT-2 and Llama
    python benchmarks/inspect_cost.py --widths 128 256 512

The baseline, measured in the same run, is what inspect cannot avoid: building
the model once at each width (torch's own init) and making its optimizer.
inspect adds the extra draws of small tensors, one probe call per module and
the fits.  Times are the best of ``--repeat`` runs on this machine's threads.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

import abcparam
from abcparam.models import TinyTransformer


def builders():
    out = {"TinyTransformer (abcparam, muP)": lambda n: TinyTransformer(256, n, param=abcparam.mup(n, 64), n_heads=4)}
    try:
        import transformers as tr

        tr.utils.logging.set_verbosity_error()
        out["HF GPT-2 (2 blocks)"] = lambda n: tr.GPT2LMHeadModel(tr.GPT2Config(
            n_embd=n, n_layer=2, n_head=4, vocab_size=256, n_positions=64, bos_token_id=0, eos_token_id=0))
        out["HF Llama (2 blocks)"] = lambda n: tr.LlamaForCausalLM(tr.LlamaConfig(
            hidden_size=n, intermediate_size=4 * n, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            vocab_size=256, bos_token_id=0, eos_token_id=0, pad_token_id=0))
    except ImportError:
        pass
    return out


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", nargs="+", type=int, default=[128, 256, 512])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    print(f"abcparam.inspect, widths {args.widths}, AdamW, best of {args.repeat}; torch threads {torch.get_num_threads()}")
    print(f"{'model':34s} {'inspect (s)':>12s} {'build+optimizer (s)':>20s} {'ratio':>6s}  verdict")
    for name, build in builders().items():
        def baseline():
            for w in args.widths:
                m = build(w)
                torch.optim.AdamW(m.parameters(), lr=1e-3)

        result = {}

        def run():
            result["r"] = abcparam.inspect(build, optimizer=torch.optim.AdamW, lr=1e-3, widths=args.widths)

        t_base, t_inspect = best(baseline, args.repeat), best(run, args.repeat)
        print(f"{name:34s} {t_inspect:12.2f} {t_base:20.2f} {t_inspect / t_base:6.2f}  {result['r'].summary()}")


if __name__ == "__main__":
    main()
