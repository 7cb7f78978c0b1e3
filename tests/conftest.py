import os

# Tests run on 2 CPU cores; keep torch from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")
# torch.compile in this process, without a pool of compile workers that would outlive its test
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(2)
