import os

# Tests run on 2 CPU cores; keep torch from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# torch.compile in this process, without a pool of compile workers that would outlive its test
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(2)

# Hypothesis explores new examples on every developer run; CI (CI=true) replays a fixed sequence so that
# a red CI run always means a reproducible failure.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    settings.load_profile("ci")


# torch.optim.Muon orthogonalises every update by Newton-Schulz iterations in bfloat16. On a CPU without bfloat16
# matrix instructions (no AVX-512 BF16 / AMX) torch computes those products with its slow reference kernel: one
# 1024 x 1024 product takes seconds, and the Muon coordinate checks at width 1024 take minutes each. The tests
# check how abcparam scales Muon's learning rate with width, which does not depend on the iterations' precision,
# so they run the same iterations (same coefficients, same normalisation) in float32 on every machine: the same
# numbers everywhere, in seconds.
import torch.optim._muon as _muon  # noqa: E402


def _newton_schulz_float32(grad, ns_coefficients, ns_steps, eps):
    """Muon's quintic Newton-Schulz orthogonalisation (X <- a X + (b G + c G^2) X with G = X X^T, from X = grad / |grad|,
    on the side with fewer rows), in float32."""
    a, b, c = ns_coefficients
    x = grad.float()
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(ns_steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


_muon._zeropower_via_newtonschulz = _newton_schulz_float32
