import os

# Tests run on 2 CPU cores; keep torch from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")

import torch  # noqa: E402

torch.set_num_threads(2)
