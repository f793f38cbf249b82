"""The PyTorch backend (installed as `ffbench_backends.torch`).
Importing it imports no framework (`ffbench.backend.lazy_backend`).

It asks torch to put large CPU tensors on transparent huge pages (`THP_MEM_ALLOC_ENABLE`,
read by torch at its first allocation, so set here, before torch is imported; a value of
the user's wins). A step of a wide full-batch layer allocates several activation-sized
tensors, each of them fresh pages from the OS: on huge pages the pytorch-script recipe's
epochs measured 13-17% faster on the 2-core CPU (`benchmarks/RESULTS.md`). Where torch was
imported first (a test process), it keeps its setting.
"""

import os

from ffbench.backend import lazy_backend

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__getattr__ = lazy_backend(__name__, "ffbench_backends.torch.backend:TorchBackend")
