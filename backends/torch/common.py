"""What the FF and BP trainers share: data on the device, batches, error counting, sync."""

from __future__ import annotations

import abc

import torch
from ffbench_backends.torch import ops

from ffbench.backend import Trainer
from ffbench.data import Dataset
from ffbench.reference.init import stack_init
from ffbench.spec import BPTrial, FFTrial, batch_size_for


def set_matmul_precision(precision: str) -> None:
    """Process-wide, set by every trainer for its trial: float32 matmuls may use TF32 tensor
    cores only with `precision: tf32` (bf16 casts at each matmul: `ops.linear`)."""
    tf32 = precision == "tf32"
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9
        torch.backends.cuda.matmul.fp32_precision = "tf32" if tf32 else "ieee"
    else:
        torch.backends.cuda.matmul.allow_tf32 = tf32


def to_numpy(t: torch.Tensor):
    """A host copy of `t` (on the CPU `.numpy()` alone would alias the live weights)."""
    return t.detach().to("cpu", copy=True).numpy()


class TorchTrainer(Trainer):
    def __init__(self, trial: FFTrial | BPTrial, data: Dataset, device: torch.device):
        self.trial, self.device = trial, device
        set_matmul_precision(trial.precision)
        self.splits = {name: (torch.as_tensor(s.x, device=device), torch.as_tensor(s.y, device=device))
                       for name, s in (("train", data.train), ("val", data.val), ("test", data.test)) if s is not None}
        self.n = len(data.train)
        self.batch_size = batch_size_for(trial, self.n)
        self.steps_per_epoch = self.n // self.batch_size  # the last incomplete batch is dropped

    def init_params(self, widths: list[int], scheme: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The reference's initial weights, on the device, as leaf tensors."""
        return [(torch.tensor(w, device=self.device, requires_grad=True), torch.tensor(b, device=self.device, requires_grad=True))
                for w, b in stack_init(self.trial.seed, widths, scheme)]

    def batch_images(self, x: torch.Tensor, idx: torch.Tensor, epoch: int) -> torch.Tensor:
        """Training images `idx` in `epoch`, shifted by `data.jitter` (`reference.augment`)."""
        k = self.trial.data.jitter
        return x[idx] if not k else ops.shift_images(x[idx], *ops.jitter_shifts(self.trial.seed, epoch, idx, k))

    @abc.abstractmethod
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted classes of a batch with the current weights."""

    @torch.no_grad()
    def error(self, split: str) -> float:
        x, y = self.splits[split]
        step = self.trial.eval_batch_size
        wrong = torch.zeros((), dtype=torch.int64, device=self.device)
        for i in range(0, x.shape[0], step):
            wrong += (self.predict(x[i:i + step]) != y[i:i + step]).sum()
        return wrong.item() / x.shape[0]  # the one host sync of an evaluation

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
