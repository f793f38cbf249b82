"""The PyTorch backend (installed as `ffbench_backends.torch`)."""

from ffbench_backends.torch.backend import TorchBackend as Backend

__all__ = ["Backend"]
