"""The PyTorch backend (installed as `ffbench_backends.torch`).
Importing it imports no framework (`ffbench.backend.lazy_backend`)."""

from ffbench.backend import lazy_backend

__getattr__ = lazy_backend(__name__, "ffbench_backends.torch.backend:TorchBackend")
