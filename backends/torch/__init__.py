"""The PyTorch backend (installed as `ffbench_backends.torch`).
Importing it imports no framework (`ffbench.backend.lazy_backend`).

Torch's large CPU tensors stay on ordinary pages: transparent huge pages
(`THP_MEM_ALLOC_ENABLE=1`, read by torch at its first allocation; set it yourself to try) made
the CwComp conv net's epochs ~45% slower and the full-batch 2x500 MLP's 25-115% slower on the
2-core CPU, alternating runs on 2026-12-06 (`benchmarks/RESULTS.md`), reversing an earlier
13-17% gain on the pytorch-script recipe.
"""

from ffbench.backend import lazy_backend

__getattr__ = lazy_backend(__name__, "ffbench_backends.torch.backend:TorchBackend")
