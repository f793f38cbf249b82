"""What the FF and BP trainers share: data on the device, error counting, sync, and packing.

A trainer's epoch is three calls: `epoch_plan` (this trial's data order, negatives and hash
keys: an `EpochPlan`), `run_epoch` (the steps, on a holder of tensors: the trainer itself,
or a pack's stacked tensors), `end_epoch`. A pack (`PackedTorchTrainer`) runs the first
member's `run_epoch` on every member's plan at once, with the step objective under
`torch.func.vmap`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, NamedTuple

import torch
from torch.utils._pytree import tree_map

from ffbench.backend import PackedTrainer, Phase, Trainer
from ffbench.data import Dataset
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


def backward(loss: torch.Tensor) -> None:
    """Gradients of a step's loss, or of a pack's losses (one per member, independent, so
    the gradient of their sum gives each member its own)."""
    (loss if loss.dim() == 0 else loss.sum()).backward()  # alone: no extra kernel


class TorchTrainer(Trainer):
    def __init__(self, trial: FFTrial | BPTrial, data: Dataset, device: torch.device, share: TorchTrainer | None = None):
        """`share`: a trainer of the same data whose device copy this one uses (a pack's first member)."""
        self.trial, self.device = trial, device
        set_matmul_precision(trial.precision)
        self.splits = share.splits if share is not None else {
            name: (torch.as_tensor(s.x, device=device), torch.as_tensor(s.y, device=device))
            for name, s in (("train", data.train), ("val", data.val), ("test", data.test)) if s is not None}
        self.n, self.image = len(data.train), data.shape  # image: the geometry of the rows
        self.batch_size = batch_size_for(trial, self.n)
        self.steps_per_epoch = self.n // self.batch_size  # the last incomplete batch is dropped

    def leaves(self, arrays) -> list[tuple[torch.Tensor, ...]]:
        """Each layer's host arrays ((W, b), or a batch-normalised layer's (W, b, gamma, beta)) as
        leaf tensors on the device."""
        return [tuple(torch.tensor(a, device=self.device, requires_grad=True) for a in p) for p in arrays]

    def example_batch(self, lead: tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
        """A throw-away batch (zeros) of a step's shapes, (*lead, batch, 784) images and their
        labels: to compile a step on without training."""
        x, b = self.splits["train"][0], self.batch_size
        return x.new_zeros((*lead, b, x.shape[1])), torch.zeros((*lead, b), dtype=torch.int64, device=self.device)

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


class EpochPlan(NamedTuple):
    """What one epoch of one trial draws: its data order, each position's negative (a label,
    partner or image index; None in a read-out or BP epoch), its hash keys (hybrid masks,
    jitter: `rng.stream_key`) and a joint read-out's own learning rate. A pack's plan
    (`stack`) has its members' tensors on a leading axis, keys as a (K,) tensor and learning
    rates as a list."""

    order: torch.Tensor
    negatives: torch.Tensor | None = None
    mask_key: int | torch.Tensor = 0
    jitter_key: int | torch.Tensor = 0
    readout_lr: float | list[float] = 0.0

    @classmethod
    def stack(cls, plans: list[EpochPlan]) -> EpochPlan:
        first, device = plans[0], plans[0].order.device
        keys = [torch.tensor([getattr(p, k) for p in plans], dtype=torch.int64, device=device)
                for k in ("mask_key", "jitter_key")]
        negatives = None if first.negatives is None else torch.stack([p.negatives for p in plans])
        return cls(torch.stack([p.order for p in plans]), negatives, *keys, [p.readout_lr for p in plans])


def _stacked(*tensors: torch.Tensor | None) -> torch.Tensor | None:
    """The members' tensors stacked as one new leaf (None: the members have none)."""
    if tensors[0] is None:
        return None
    return torch.stack([t.detach() for t in tensors]).requires_grad_(tensors[0].requires_grad)


def _over_members(fn: Callable) -> Callable:
    """`fn` mapped over the leading member axis of its arguments (`torch.func.vmap`); an
    argument that is None (no read-out) stays None."""
    def mapped(*args):
        return torch.func.vmap(fn, in_dims=tuple(None if a is None else 0 for a in args))(*args)
    return mapped


class PackedTorchTrainer(PackedTrainer):
    """Trials of one pack key trained as one program. Their tensors are stacked on a leading
    member axis: the trained ones (`STACKED`: weights, read-out) as leaf tensors the pack's
    optimiser updates in place, each member keeping views of its slice (so its evaluation
    and `state()` read the pack's weights); the carried ones (`CARRIED`: running means,
    replaced every step) held by the pack, each member given its slice again after every epoch.
    Each step gathers every member's batch from its own plan at once and runs the step objective under `torch.func.vmap`."""

    def __init__(self, members: list[Any]):
        self.members = members
        self.stack = SimpleNamespace(layer_opts={})
        lead = members[0]
        for name in lead.STACKED + lead.CARRIED:
            stacked = tree_map(_stacked, *(getattr(m, name) for m in members))
            setattr(self.stack, name, stacked)
            for k, m in enumerate(members):
                with torch.no_grad():  # views that share the stacked storage, outside autograd
                    setattr(m, name, tree_map(lambda t, k=k: None if t is None else t[k], stacked))

    def begin_phase(self, phase: Phase) -> None:
        lead = self.members[0]
        objective = [m.setup_phase(phase) for m in self.members][0]  # the members' programs are the same
        lead.make_optimizers(phase, self.stack, members=len(self.members))
        self._objective = lead.compile_step(phase, self.stack, _over_members(objective), (len(self.members),))

    def train_epoch(self, phase: Phase, epoch: int, lrs: list[float]) -> list[Any]:
        plan = EpochPlan.stack([m.epoch_plan(phase, epoch) for m in self.members])
        sums = self.members[0].run_epoch(phase, plan, self.stack, self._objective, lrs)
        for k, m in enumerate(self.members):
            for name in m.CARRIED:  # the epoch's last carried values (batch norm's statistics: read by evaluation)
                setattr(m, name, tree_map(lambda t, k=k: None if t is None else t[k], getattr(self.stack, name)))
            m.end_epoch(phase)
        return [{name: v[k] for name, v in sums.items()} for k in range(len(self.members))]
