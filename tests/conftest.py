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
