"""The backprop baseline in PyTorch: a translation of `ffbench.reference.bp`."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from ffbench_backends.torch import ops
from ffbench_backends.torch.common import TorchTrainer, to_numpy
from ffbench_backends.torch.compile import compiled, warm_up
from ffbench_backends.torch.optim import Optimizer

from ffbench.backend import Phase
from ffbench.data import Dataset
from ffbench.spec import NUM_CLASSES, BPTrial


def logits(params, x: torch.Tensor, precision: str) -> torch.Tensor:
    for w, b in params[:-1]:
        x = torch.relu(ops.linear(x, w, b, precision))
    return ops.linear(x, *params[-1], precision)


def objective(params, xb, yb, *, precision: str):
    """(the step's cross-entropy,)"""
    return (F.cross_entropy(logits(params, xb, precision), yb),)


class BPTrainer(TorchTrainer):
    def __init__(self, trial: BPTrial, data: Dataset, device: torch.device):
        super().__init__(trial, data, device)
        self.params = self.init_params([data.train.x.shape[1], *trial.hidden, NUM_CLASSES], trial.bp.init)

    def phases(self) -> list[Phase]:
        return [Phase("bp", self.trial.epochs, self.trial.optimizer)]

    def begin_phase(self, phase: Phase) -> None:
        weights = [p for wb in self.params for p in wb]
        self.opt = Optimizer(phase.optimizer, weights)
        self._objective = compiled(partial(objective, precision=self.trial.precision))  # FFBENCH_TORCH_COMPILE=1
        x = self.splits["train"][0]
        warm_up(self._objective, (self.params, x[: self.batch_size], torch.zeros(self.batch_size, dtype=torch.int64, device=self.device)), weights)
        self.opt.warm_up()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return logits(self.params, x, self.trial.precision)

    def train_epoch(self, phase: Phase, epoch: int, lr: float):
        x, y = self.splits["train"]
        order = ops.epoch_order(self.trial.seed, epoch, self.n, self.device)
        total = torch.zeros((), device=self.device)
        for s in range(self.steps_per_epoch):
            idx = order[s * self.batch_size:(s + 1) * self.batch_size]
            loss = self._objective(self.params, self.batch_images(x, idx, epoch), y[idx])[0]
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
