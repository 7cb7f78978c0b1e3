"""What abcparam costs per step against plain PyTorch, measured in the same run.

    python benchmarks/overhead.py            # about 6 minutes on 2 CPU cores
    python benchmarks/overhead.py --quick    # about 1 minute, fewer shapes, no torch.compile
    python benchmarks/overhead.py --only embedding linear   # some parts only

Every comparison times the torch baseline and the abcparam variant alternately
(interleaved rounds, each round timing a block of iterations of each), and
reports the ratio of medians.  The control rows time ``nn.Linear`` against a
second ``nn.Linear``: their spread is the noise floor of this machine.  Rows:

- forward+backward of ``abcparam.Linear`` against ``nn.Linear`` at batch 256 and
  1024 and widths 256 to 4096, for a hidden layer whose multiplier is 1 (muP:
  only the Python wrapper costs), a hidden layer with a multiplier (NTK:
  ``m^-1/2``, one extra elementwise pass on the smaller side) and the same in the
  a = 0 form (``Parametrization.canonical()``, multiplier folded into init and
  learning rate), a muP input layer (TP4 form, multiplier ``m^1/2``: folded by
  default, and with ``fold=False``) and a Table 8 readout (multiplier ``1/m``);
- ``abcparam.Embedding`` against ``nn.Embedding`` (TP4 muP, multiplier ``m^1/2``
  folded by default and with ``fold=False``; NTK);
- the same under ``torch.compile`` for one shape;
- ``optimizer.step()`` of the wrapped optimizer against the bare one (SGD with
  momentum and Adam, ``foreach=True``) on a 4-layer MLP;
- a whole training step (forward, backward, Adam) of that MLP, in muP's TP4
  form and its a = 0 form, against the plain torch MLP;
- memory: bytes saved for backward, parameters and optimizer state (CPU has no
  peak-memory counter; these are exact byte counts of every tensor kept).

When microsoft/mup is installed, its ``MuReadout`` joins the readout rows (it is
not a dependency and is skipped quietly otherwise).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from typing import Callable, Dict, List, Tuple

import torch
from torch import nn

import abcparam


def _timeit(fns: Dict[str, Callable[[], None]], rounds: int, block: int) -> Dict[str, float]:
    """Median seconds per call of each fn, timed in interleaved rounds."""
    for fn in fns.values():  # warm up
        for _ in range(3):
            fn()
    samples: Dict[str, List[float]] = {k: [] for k in fns}
    for r in range(rounds):
        order = list(fns.items()) if r % 2 == 0 else list(reversed(list(fns.items())))
        for name, fn in order:
            t0 = time.perf_counter()
            for _ in range(block):
                fn()
            samples[name].append((time.perf_counter() - t0) / block)
    return {k: statistics.median(v) for k, v in samples.items()}


def _fwd_bwd(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        module.zero_grad(set_to_none=False)  # reuse the gradient buffers: no allocation noise in the timing
        module(x).sum().backward()

    return run


def _saved_bytes(module: nn.Module, x: torch.Tensor) -> int:
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x).sum().backward()
    return total


def _block(work_flops: float) -> int:
    """Iterations per timed block: about 0.5 GFLOP of work, so each block lasts >= ~10 ms."""
    return max(1, min(100, int(5e8 / max(work_flops, 1.0))))


def linear_rows(quick: bool, compile_: bool) -> List[Tuple[str, ...]]:
    rows = []
    batches = [256] if quick else [256, 1024]
    widths = [256, 1024] if quick else [256, 1024, 4096]
    for batch in batches:
        for n in widths:
            m = n // 256 if n >= 256 else 1
            cases = {
                "control: nn.Linear vs nn.Linear": (None, "hidden", n, n),
                "hidden, SP (multiplier 1)": (abcparam.sp(n, 256), "hidden", n, n),
                "hidden, muP (multiplier 1)": (abcparam.mup(n, 256), "hidden", n, n),
                "hidden, NTK (multiplier m^-1/2)": (abcparam.ntk(n, 256), "hidden", n, n),
                "hidden, NTK, a = 0 form": (abcparam.ntk(n, 256).canonical(), "hidden", n, n),
                "input 64 -> n, muP TP4 (default: m^1/2 folded)": (abcparam.mup(n, 256), "input", 64, n, True),
                "input 64 -> n, muP TP4, fold=False (x m^1/2)": (abcparam.mup(n, 256), "input", 64, n, False),
                "readout n -> 64, muP Table 8 (x 1/m)": (abcparam.mup(n, 256, form="table8"), "output", n, 64),
            }
            for label, (p, role, din, dout, *fold) in cases.items():
                x = torch.randn(batch, din, requires_grad=False)
                ref = nn.Linear(din, dout)
                kw = {"fold": fold[0]} if fold else {}
                ours = nn.Linear(din, dout) if p is None else abcparam.Linear(din, dout, role=role, param=p, **kw)
                flops = 6 * batch * din * dout
                t = _timeit({"torch": _fwd_bwd(ref, x), "abcparam": _fwd_bwd(ours, x)}, rounds=9 if quick else 21, block=_block(flops))
                rows.append(("Linear fwd+bwd", label, f"batch {batch}, n {n} (m {m})", f"{t['torch'] * 1e6:.0f}",
                             f"{t['abcparam'] * 1e6:.0f}", f"{t['abcparam'] / t['torch']:.3f}"))
    if compile_:
        n, batch = 1024, 256
        for label, p, role, din in (("hidden, NTK (multiplier m^-1/2)", abcparam.ntk(n, 256), "hidden", n),
                                    ("input 64 -> n, muP TP4 (default: folded)", abcparam.mup(n, 256), "input", 64)):
            x = torch.randn(batch, din)
            ref = torch.compile(nn.Linear(din, n))
            ours = torch.compile(abcparam.Linear(din, n, role=role, param=p), fullgraph=True)
            t = _timeit({"torch": _fwd_bwd(ref, x), "abcparam": _fwd_bwd(ours, x)}, rounds=15, block=_block(6 * batch * din * n))
            rows.append(("Linear fwd+bwd, compiled", label, f"batch {batch}, n {n} (m 4)", f"{t['torch'] * 1e6:.0f}",
                         f"{t['abcparam'] * 1e6:.0f}", f"{t['abcparam'] / t['torch']:.3f}"))
    return rows


def embedding_rows(quick: bool, compile_: bool) -> List[Tuple[str, ...]]:
    rows = []
    vocab, tokens = 8192, 4096
    dims = [1024] if quick else [256, 1024, 4096]
    for d in dims:
        idx = torch.randint(0, vocab, (tokens,))
        for label, kw in (("control: nn.Embedding vs nn.Embedding", None), ("muP TP4 (default: m^1/2 folded)", {}),
                          ("muP TP4, fold=False (x m^1/2)", {"fold": False}), ("NTK (default: folded)", {"param": abcparam.ntk(d, 256)})):
            ref = nn.Embedding(vocab, d)
            ours = nn.Embedding(vocab, d) if kw is None else abcparam.Embedding(vocab, d, **{"param": abcparam.mup(d, 256), **kw})
            t = _timeit({"torch": _fwd_bwd(ref, idx), "abcparam": _fwd_bwd(ours, idx)}, rounds=9 if quick else 21, block=10)
            rows.append(("Embedding fwd+bwd", label, f"{tokens} tokens, dim {d}", f"{t['torch'] * 1e6:.0f}", f"{t['abcparam'] * 1e6:.0f}",
                         f"{t['abcparam'] / t['torch']:.3f}"))
    if compile_:
        d = 1024
        idx = torch.randint(0, vocab, (tokens,))
        ref = torch.compile(nn.Embedding(vocab, d))
        ours = torch.compile(abcparam.Embedding(vocab, d, param=abcparam.mup(d, 256)), fullgraph=True)
        t = _timeit({"torch": _fwd_bwd(ref, idx), "abcparam": _fwd_bwd(ours, idx)}, rounds=15, block=5)
        rows.append(("Embedding fwd+bwd, compiled", "muP TP4 (default: folded)", f"{tokens} tokens, dim {d}", f"{t['torch'] * 1e6:.0f}",
                     f"{t['abcparam'] * 1e6:.0f}", f"{t['abcparam'] / t['torch']:.3f}"))
    return rows


def _mlp(width: int, param=None) -> nn.Module:
    if param is None:
        return nn.Sequential(nn.Linear(64, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                             nn.Linear(width, 10))
    return nn.Sequential(abcparam.Linear(64, width, role="input", param=param), nn.Tanh(), abcparam.Linear(width, width, param=param),
                         nn.Tanh(), abcparam.Linear(width, width, param=param), nn.Tanh(),
                         abcparam.Linear(width, 10, role="output", param=param))


def optimizer_rows(quick: bool) -> List[Tuple[str, ...]]:
    rows = []
    for width in ([1024] if quick else [256, 1024]):
        p = abcparam.mup(width, 256)
        for name, make in (("SGD momentum", lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, foreach=True)),
                           ("Adam", lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True))):
            ref_model, our_model = _mlp(width), _mlp(width, p)
            ref_opt = make(ref_model.parameters())
            our_opt = abcparam.wrap(make(our_model.parameters()), our_model)
            for mdl in (ref_model, our_model):
                for q in mdl.parameters():
                    q.grad = torch.randn_like(q) * 1e-3
            t = _timeit({"torch": ref_opt.step, "abcparam": our_opt.step}, rounds=9 if quick else 15, block=10)
            rows.append(("optimizer.step()", f"{name}, {len(our_opt.param_groups)} groups vs 1",
                         f"4-layer MLP, width {width}", f"{t['torch'] * 1e6:.0f}", f"{t['abcparam'] * 1e6:.0f}",
                         f"{t['abcparam'] / t['torch']:.3f}"))
        rows += _muon_rows(width, p, quick)
    return rows


def _muon_rows(width: int, p: "abcparam.Parametrization", quick: bool) -> List[Tuple[str, ...]]:
    """torch's Muon over the MLP's matrices (AdamW would take the biases): bare against wrapped, and bare against
    bare (the control: this machine's noise floor for the same work)."""
    rows = []
    for adjust in (None, "match_rms_adamw"):
        ref_model, ctl_model, our_model = _mlp(width), _mlp(width), _mlp(width, p)
        for mdl in (ref_model, ctl_model, our_model):
            for q in mdl.parameters():
                q.grad = torch.randn_like(q) * 1e-3

        def muon(mdl: nn.Module) -> torch.optim.Optimizer:
            return torch.optim.Muon([q for q in mdl.parameters() if q.dim() == 2], lr=0.02, adjust_lr_fn=adjust)

        ref_opt, ctl_opt = muon(ref_model), muon(ctl_model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the biases are not in this optimizer (AdamW would hold them)
            our_opt = abcparam.wrap(muon(our_model), our_model)
        t = _timeit({"torch": ref_opt.step, "control": ctl_opt.step, "abcparam": our_opt.step}, rounds=9 if quick else 15,
                    block=3)
        label = adjust or "original"
        rows.append(("optimizer.step()", f"control: Muon vs Muon ({label})", f"4-layer MLP, width {width}",
                     f"{t['torch'] * 1e6:.0f}", f"{t['control'] * 1e6:.0f}", f"{t['control'] / t['torch']:.3f}"))
        rows.append(("optimizer.step()", f"Muon ({label}), {len(our_opt.param_groups)} groups vs 1",
                     f"4-layer MLP, width {width}", f"{t['torch'] * 1e6:.0f}", f"{t['abcparam'] * 1e6:.0f}",
                     f"{t['abcparam'] / t['torch']:.3f}"))
    return rows


def training_step_rows(quick: bool) -> List[Tuple[str, ...]]:
    """A whole step (forward, backward, Adam) of a 4-layer MLP: what a user pays."""
    rows = []
    batch = 256
    for width in ([1024] if quick else [256, 1024, 2048]):
        x, y = torch.randn(batch, 64), torch.randint(0, 10, (batch,))
        variants = {"torch": _mlp(width), "muP (TP4 form)": _mlp(width, abcparam.mup(width, 256)),
                    "muP (a = 0 form)": _mlp(width, abcparam.mup(width, 256).canonical())}
        steps = {}
        for name, model in variants.items():
            opt = torch.optim.Adam(model.parameters(), lr=1e-4, foreach=True)
            if name != "torch":
                opt = abcparam.wrap(opt, model)

            def step(model: nn.Module = model, opt: torch.optim.Optimizer = opt) -> None:
                opt.zero_grad(set_to_none=False)
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()

            steps[name] = step
        t = _timeit(steps, rounds=9 if quick else 21, block=max(1, int(2e9 / (6 * batch * width * width * 3 + 1))))
        for name in list(variants)[1:]:
            rows.append(("training step (fwd+bwd+Adam)", name, f"4-layer MLP, width {width}, batch {batch}", f"{t['torch'] * 1e6:.0f}",
                         f"{t[name] * 1e6:.0f}", f"{t[name] / t['torch']:.3f}"))
    return rows


def memory_rows() -> List[Tuple[str, ...]]:
    rows = []
    width, batch = 1024, 256
    p = abcparam.mup(width, 256)
    x = torch.randn(batch, 64)
    ref_model, our_model = _mlp(width), _mlp(width, p)
    s_ref, s_ours = _saved_bytes(ref_model, x), _saved_bytes(our_model, x)
    rows.append(("memory", "bytes saved for backward", f"4-layer MLP, width {width}, batch {batch}", f"{s_ref:,}", f"{s_ours:,}",
                 f"{s_ours / s_ref:.3f}"))
    pb = lambda m: sum(q.numel() * q.element_size() for q in m.parameters())  # noqa: E731
    rows.append(("memory", "parameters", f"4-layer MLP, width {width}", f"{pb(ref_model):,}", f"{pb(our_model):,}",
                 f"{pb(our_model) / pb(ref_model):.3f}"))
    ref_opt = torch.optim.Adam(ref_model.parameters(), lr=1e-3)
    our_opt = abcparam.wrap(torch.optim.Adam(our_model.parameters(), lr=1e-3), our_model)
    for mdl, opt in ((ref_model, ref_opt), (our_model, our_opt)):
        mdl(x).sum().backward()
        opt.step()
    sb = lambda o: sum(t.numel() * t.element_size() for st in o.state.values() for t in st.values() if torch.is_tensor(t))  # noqa: E731
    rows.append(("memory", "Adam state", f"4-layer MLP, width {width}", f"{sb(ref_opt):,}", f"{sb(our_opt):,}", f"{sb(our_opt) / sb(ref_opt):.3f}"))
    return rows


def mup_rows() -> List[Tuple[str, ...]]:
    try:
        import mup  # noqa: F401  (optional: only compared when installed)
        from mup import MuReadout, set_base_shapes
    except ImportError:
        return []
    rows = []
    width, batch = 1024, 256
    x = torch.randn(batch, width)

    class Net(nn.Module):
        def __init__(self, w: int) -> None:
            super().__init__()
            self.out = MuReadout(w, 10)

        def forward(self, h: torch.Tensor) -> torch.Tensor:
            return self.out(h)

    model = Net(width)
    set_base_shapes(model, Net(256))
    ref = nn.Linear(width, 10)
    ours = abcparam.Linear(width, 10, role="output", param=abcparam.mup(width, 256, form="table8"))
    t = _timeit({"torch": _fwd_bwd(ref, x), "abcparam": _fwd_bwd(ours, x), "mup": _fwd_bwd(model, x)}, rounds=21, block=20)
    for label, key in (("abcparam.Linear readout, muP Table 8", "abcparam"),
                       ("microsoft/mup MuReadout (other library, in this column)", "mup")):
        rows.append(("readout fwd+bwd", label, f"batch {batch}, n {width} (m 4)", f"{t['torch'] * 1e6:.0f}", f"{t[key] * 1e6:.0f}",
                     f"{t[key] / t['torch']:.3f}"))
    return rows


def main(argv: List[str]) -> None:
    ap = argparse.ArgumentParser(description="abcparam's per-step cost against plain PyTorch")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="+", choices=["linear", "embedding", "optimizer", "step", "memory", "mup"],
                    help="run these parts only")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    compile_ = not (args.quick or args.no_compile)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of interleaved rounds; ratio = abcparam / torch\n")
    rows = [("what", "variant", "shape", "torch (us)", "abcparam (us)", "ratio")]
    parts = {"linear": lambda: linear_rows(args.quick, compile_), "embedding": lambda: embedding_rows(args.quick, compile_),
             "optimizer": lambda: optimizer_rows(args.quick), "step": lambda: training_step_rows(args.quick),
             "memory": memory_rows, "mup": mup_rows}
    for name, part in parts.items():
        if args.only and name not in args.only:
            continue
        rows += part()
        print(".", end="", file=sys.stderr, flush=True)
    print("\r", end="", file=sys.stderr)
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for r in rows[1:]:
        print("| " + " | ".join(r) + " |")
    print("\nmemory rows give bytes, not microseconds.")


if __name__ == "__main__":
    main(sys.argv[1:])
