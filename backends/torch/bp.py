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
from ffbench.reference.bp import initial_running
from ffbench.reference.ff import STATE_KEYS, frozen_bn
from ffbench.reference.init import bp_init
from ffbench.reference.rng import STREAM_JITTER, stream_key
from ffbench.spec import NUM_CLASSES, BPTrial


def logits(params, running, x: torch.Tensor, precision: str, local=None, conv=None, train: bool = False):
    """(logits, new running statistics). `local`: (k, image) of locally connected hidden layers
    (`reference.bp`), or None; `conv`: the conv layers of a conv net, or None. A batch-normalised
    conv layer normalises by the batch's statistics in training (`train`), else by `running`."""
    running = list(running)
    for i, p in enumerate(params[:-1]):
        if conv is not None and train and conv[i].batch_norm:
            x, running[i] = ops.conv_layer_train(x, *p, running[i], conv[i], precision=precision)
        elif conv is not None:
            x = ops.conv_layer(x, *p[:2], conv[i], precision=precision, bn=frozen_bn(p, running[i]))
        else:
            w = p[0] if local is None else p[0] * ops.local_mask(*p[0].shape, *local, p[0].device)
            x = torch.relu(ops.linear(x, w, p[1], precision))
    return ops.linear(x, *params[-1], precision), running


def objective(params, running, xb, yb, *, precision: str, local=None, conv=None):
    """(the step's cross-entropy, the new running statistics)"""
    out, running = logits(params, running, xb, precision, local, conv, train=True)
    return F.cross_entropy(out, yb), running


class BPTrainer(TorchTrainer):
    STACKED = ("params",)  # a pack stacks these, and trains them in place
    CARRIED = ("running",)  # a pack stacks these; every step replaces them

    def __init__(self, trial: BPTrial, data: Dataset, device: torch.device, share: BPTrainer | None = None):
        super().__init__(trial, data, device, share)
        self.params = self.leaves(bp_init(trial, data.train.x.shape[1], NUM_CLASSES))
        self.conv = trial.conv_layers()
        # a batch-normalised layer's running statistics; an empty placeholder for every other
        # (a pack stacks and vmaps them: `torch.func.vmap` maps tensors only)
        self.running = [torch.zeros(0, device=device) if r is None else torch.as_tensor(r, dtype=torch.float32, device=device)
                        for r in initial_running(trial)]

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
            trained = [p for wb in holder.params for p in wb]
            warm_up(objective, (holder.params, holder.running, *self.example_batch(lead)), trained)
            holder.opt.warm_up()
        return objective

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return logits(self.params, self.running, x, self.trial.precision, self.trial.local, self.conv)[0]

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
            loss, running = objective(holder.params, holder.running, xb, y[idx])
            backward(loss)
            holder.running = [r.detach() for r in running]
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
        """Each layer's params (`reference.ff.STATE_KEYS`) and a batch-normalised layer's running statistics (bn{i})."""
        out = {f"{k}{i}": to_numpy(t) for i, p in enumerate(self.params) for k, t in zip(STATE_KEYS, p)}
        out.update({f"bn{i}": to_numpy(r) for i, (p, r) in enumerate(zip(self.params, self.running)) if len(p) > 2})
        return out

    def load_state(self, state: dict) -> None:
        with torch.no_grad():
            for i, p in enumerate(self.params):
                for k, t in zip(STATE_KEYS, p):
                    t.copy_(torch.as_tensor(state[f"{k}{i}"]))
            self.running = [torch.as_tensor(state[f"bn{i}"], device=self.device) if len(p) > 2 else r
                            for i, (p, r) in enumerate(zip(self.params, self.running))]
