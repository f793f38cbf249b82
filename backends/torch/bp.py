"""The backprop baseline in PyTorch: a translation of `ffbench.reference.bp`."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from ffbench_backends.torch import ops
from ffbench_backends.torch.common import EpochPlan, TorchTrainer, backward, to_numpy
from ffbench_backends.torch.compile import compiled, warm_up
from ffbench_backends.torch.compile import enabled as compiling
from ffbench_backends.torch.optim import Optimizer

from ffbench.backend import Phase
from ffbench.data import Dataset
from ffbench.reference.init import bp_init
from ffbench.reference.rng import STREAM_JITTER, stream_key
from ffbench.spec import NUM_CLASSES, BPTrial


def logits(params, x: torch.Tensor, precision: str, local=None, conv=None) -> torch.Tensor:
    """`local`: (k, image) of locally connected hidden layers (`reference.bp`), or None;
    `conv`: the conv layers of a conv net, or None."""
    for i, (w, b) in enumerate(params[:-1]):
        if conv is not None:
            x = ops.conv_layer(x, w, b, conv[i], precision=precision)
            continue
        w = w if local is None else w * ops.local_mask(*w.shape, *local, w.device)
        x = torch.relu(ops.linear(x, w, b, precision))
    return ops.linear(x, *params[-1], precision)


def objective(params, xb, yb, *, precision: str, local=None, conv=None):
    """(the step's cross-entropy,)"""
    return (F.cross_entropy(logits(params, xb, precision, local, conv), yb),)


class BPTrainer(TorchTrainer):
    STACKED = ("params",)  # a pack stacks these, and trains them in place
    CARRIED = ()

    def __init__(self, trial: BPTrial, data: Dataset, device: torch.device, share: BPTrainer | None = None):
        super().__init__(trial, data, device, share)
        self.params = self.leaves(bp_init(trial, data.train.x.shape[1], NUM_CLASSES))
        self.conv = trial.conv_layers()

    def phases(self) -> list[Phase]:
        return [Phase("bp", self.trial.epochs, self.trial.optimizer)]

    def begin_phase(self, phase: Phase) -> None:
        objective = self.setup_phase(phase)
        self.make_optimizers(phase, self)
        self._objective = self.compile_step(phase, self, objective)

    def setup_phase(self, phase: Phase):
        """The phase's step objective, not compiled yet."""
        return self.objective(phase)

    def make_optimizers(self, phase: Phase, holder, members: int | None = None) -> None:
        holder.opt = Optimizer(phase.optimizer, [p for wb in holder.params for p in wb], members)

    def objective(self, phase: Phase):
        return partial(objective, precision=self.trial.precision, local=self.trial.local, conv=self.conv)

    def compile_step(self, phase: Phase, holder, objective, lead: tuple[int, ...] = ()):
        """`objective` compiled (`FFBENCH_TORCH_COMPILE=1`) and warmed up on a throw-away batch."""
        objective = compiled(objective)
        if compiling():
            warm_up(objective, (holder.params, *self.example_batch(lead)), [p for wb in holder.params for p in wb])
            holder.opt.warm_up()
        return objective

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return logits(self.params, x, self.trial.precision, self.trial.local, self.conv)

    def train_epoch(self, phase: Phase, epoch: int, lr: float):
        return self.run_epoch(phase, self.epoch_plan(phase, epoch), self, self._objective, lr)

    def epoch_plan(self, phase: Phase, epoch: int) -> EpochPlan:
        order = ops.epoch_order(self.trial.seed, epoch, self.n, self.device)[: self.steps_per_epoch * self.batch_size]
        return EpochPlan(order, jitter_key=stream_key(self.trial.seed, STREAM_JITTER, epoch))

    def run_epoch(self, phase: Phase, plan: EpochPlan, holder, objective, lr: float | list[float]) -> dict[str, torch.Tensor]:
        """The epoch's steps on `holder`'s tensors (this trainer's, or a pack's stacked ones)."""
        x, y = self.splits["train"]
        total = torch.zeros(plan.order.shape[:-1], device=self.device)
        holder.opt.plan_epoch(lr, self.steps_per_epoch)
        for s in range(self.steps_per_epoch):
            idx = plan.order[..., s * self.batch_size:(s + 1) * self.batch_size]
            xb = ops.batch_images(x, idx, plan.jitter_key, self.trial.data.jitter, self.image)
            loss = objective(holder.params, xb, y[idx])[0]
            backward(loss)
            holder.opt.step()
            total += loss.detach()
        return {"bp_loss": total / self.steps_per_epoch}

    def end_epoch(self, phase: Phase) -> None:
        pass

    def epoch_losses(self, device_losses) -> dict[str, float]:
        return {"bp_loss": device_losses["bp_loss"].item()}

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
