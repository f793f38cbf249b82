"""The backprop baseline in PyTorch: a translation of `ffbench.reference.bp`."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ffbench.backend import Phase, Trainer
from ffbench.data import Dataset
from ffbench.reference.init import stack_init
from ffbench.spec import NUM_CLASSES, BPTrial
from ffbench_backends.torch import ops
from ffbench_backends.torch.optim import Optimizer


class BPTrainer(Trainer):
    def __init__(self, trial: BPTrial, data: Dataset, device: torch.device):
        self.trial, self.device = trial, device
        self.splits = {name: (torch.as_tensor(s.x, device=device), torch.as_tensor(s.y, device=device))
                       for name, s in (("train", data.train), ("val", data.val), ("test", data.test)) if s is not None}
        x, _ = self.splits["train"]
        self.n, self.batch_size = x.shape[0], trial.batch_size
        if self.batch_size > self.n:
            raise ValueError(f"batch_size {self.batch_size} exceeds the {self.n} training images")
        self.steps_per_epoch = self.n // self.batch_size
        widths = [x.shape[1], *trial.hidden, NUM_CLASSES]
        self.params = [(torch.tensor(w, device=device, requires_grad=True), torch.tensor(b, device=device, requires_grad=True))
                       for w, b in stack_init(trial.seed, widths, trial.bp.init)]

    def phases(self) -> list[Phase]:
        return [Phase("bp", self.trial.epochs, self.trial.optimizer)]

    def begin_phase(self, phase: Phase) -> None:
        self.opt = Optimizer(phase.optimizer, [p for wb in self.params for p in wb])

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        for w, b in self.params[:-1]:
            x = torch.relu(F.linear(x, w, b))
        return F.linear(x, *self.params[-1])

    def train_epoch(self, phase: Phase, epoch: int, lr: float):
        x, y = self.splits["train"]
        order = ops.epoch_order(self.trial.seed, epoch, self.n, self.device)
        total = torch.zeros((), device=self.device)
        for s in range(self.steps_per_epoch):
            idx = order[s * self.batch_size:(s + 1) * self.batch_size]
            loss = F.cross_entropy(self.logits(x[idx]), y[idx])
            loss.backward()
            self.opt.step(lr)
            total += loss.detach()
        return total / self.steps_per_epoch

    def epoch_losses(self, device_losses) -> dict[str, float]:
        return {"bp_loss": device_losses.item()}

    def can_evaluate(self, phase: Phase) -> bool:
        return True

    @torch.no_grad()
    def error(self, split: str) -> float:
        x, y = self.splits[split]
        wrong = torch.zeros((), dtype=torch.int64, device=self.device)
        for i in range(0, x.shape[0], self.trial.eval_batch_size):
            wrong += (self.logits(x[i:i + self.trial.eval_batch_size]).argmax(dim=1) != y[i:i + self.trial.eval_batch_size]).sum()
        return wrong.item() / x.shape[0]

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
