"""The backprop baseline in PyTorch: a translation of `ffbench.reference.bp`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from ffbench_backends.torch import ops
from ffbench_backends.torch.common import TorchTrainer, to_numpy
from ffbench_backends.torch.optim import Optimizer

from ffbench.backend import Phase
from ffbench.data import Dataset
from ffbench.spec import NUM_CLASSES, BPTrial


class BPTrainer(TorchTrainer):
    def __init__(self, trial: BPTrial, data: Dataset, device: torch.device):
        super().__init__(trial, data, device)
        self.params = self.init_params([data.train.x.shape[1], *trial.hidden, NUM_CLASSES], trial.bp.init)

    def phases(self) -> list[Phase]:
        return [Phase("bp", self.trial.epochs, self.trial.optimizer)]

    def begin_phase(self, phase: Phase) -> None:
        self.opt = Optimizer(phase.optimizer, [p for wb in self.params for p in wb])

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        for w, b in self.params[:-1]:
            x = torch.relu(ops.linear(x, w, b, self.trial.precision))
        return ops.linear(x, *self.params[-1], self.trial.precision)

    def train_epoch(self, phase: Phase, epoch: int, lr: float):
        x, y = self.splits["train"]
        order = ops.epoch_order(self.trial.seed, epoch, self.n, self.device)
        total = torch.zeros((), device=self.device)
        for s in range(self.steps_per_epoch):
            idx = order[s * self.batch_size:(s + 1) * self.batch_size]
            loss = F.cross_entropy(self.logits(self.batch_images(x, idx, epoch)), y[idx])
            loss.backward()
            self.opt.step(lr)
            total += loss.detach()
        return total / self.steps_per_epoch

    def epoch_losses(self, device_losses) -> dict[str, float]:
        return {"bp_loss": device_losses.item()}

    def can_evaluate(self, phase: Phase) -> bool:
        return True

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).argmax(dim=1)

    def state(self) -> dict:
        return {f"{k}{i}": to_numpy(t) for i, wb in enumerate(self.params) for k, t in zip("Wb", wb)}

    def load_state(self, state: dict) -> None:
        with torch.no_grad():
            for i, (w, b) in enumerate(self.params):
                w.copy_(torch.as_tensor(state[f"W{i}"])), b.copy_(torch.as_tensor(state[f"b{i}"]))
