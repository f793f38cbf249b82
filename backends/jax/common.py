"""What the JAX FF and BP trainers share: data on the device, the epoch program, error counting.

A trainer describes its epoch as a pure function (`setup_phase`) of its arguments
(`epoch_args`: the state first, then x and y, then per-epoch keys and learning rates).
`begin_phase` compiles it once per program; a pack (`PackedJaxTrainer`) compiles the same
function under `jax.vmap`, with the members' states and keys stacked and x, y shared.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import jax
import jax.numpy as jnp

from ffbench.backend import PackedTrainer, Phase, Trainer
from ffbench.data import Dataset
from ffbench.spec import BPTrial, FFTrial, batch_size_for


class JaxTrainer(Trainer):
    SHARED_ARGS = (1, 2)  # x and y: one copy for a whole pack

    def __init__(self, trial: FFTrial | BPTrial, data: Dataset, device, share: JaxTrainer | None = None):
        self.trial, self.device = trial, device
        self.splits = share.splits if share is not None else {
            name: (jax.device_put(jnp.asarray(s.x), device), jax.device_put(jnp.asarray(s.y, jnp.int32), device))
            for name, s in (("train", data.train), ("val", data.val), ("test", data.test)) if s is not None}
        self._programs: dict = {}
        self.n, self.image = len(data.train), data.shape  # image: the geometry of the rows
        self.batch_size = batch_size_for(trial, self.n)
        self.steps_per_epoch = self.n // self.batch_size  # the last incomplete batch is dropped

    def to_device(self, arrays) -> list[tuple[jax.Array, ...]]:
        """Each layer's host arrays ((W, b), or a batch-normalised layer's (W, b, gamma, beta)) on the device."""
        return [tuple(jax.device_put(jnp.asarray(a), self.device) for a in p) for p in arrays]

    @abc.abstractmethod
    def setup_phase(self, phase: Phase) -> tuple[object, Callable]:
        """Set up the phase's optimiser state; return (program key, the epoch function)."""

    @abc.abstractmethod
    def example_args(self) -> tuple:
        """Arguments of the shapes `epoch_args` gives, cheap to make (to compile ahead of time)."""

    @abc.abstractmethod
    def epoch_args(self, phase: Phase, epoch: int, lr: float) -> tuple:
        """The epoch function's arguments for global epoch `epoch` (draws this epoch's order and negatives)."""

    @abc.abstractmethod
    def take_state(self, state) -> None:
        """Take the epoch function's new state (then `end_epoch`)."""

    def end_epoch(self, phase: Phase) -> None:
        """What the trainer records once an epoch has run (`FFSchedule.end_epoch`)."""

    def begin_phase(self, phase: Phase) -> None:
        key, fn = self.setup_phase(phase)
        if key not in self._programs:  # ahead of time: compile time is reported apart
            self._programs[key] = jax.jit(fn).lower(*self.example_args()).compile()
        self._epoch = self._programs[key]

    def train_epoch(self, phase: Phase, epoch: int, lr: float):
        state, losses = self._epoch(*self.epoch_args(phase, epoch, lr))
        self.take_state(state)
        self.end_epoch(phase)
        return losses

    @abc.abstractmethod
    def predict(self, x: jax.Array) -> jax.Array:
        """Predicted classes of a batch with the current weights."""

    def error(self, split: str) -> float:
        x, y = self.splits[split]
        step = self.trial.eval_batch_size
        wrong = sum((self.predict(x[i:i + step]) != y[i:i + step]).sum() for i in range(0, x.shape[0], step))
        return int(wrong) / x.shape[0]  # the one host sync of an evaluation


class PackedJaxTrainer(PackedTrainer):
    """Members of one pack key trained by one program: the members' epoch function under
    `jax.vmap`, states and per-epoch arguments stacked on a leading axis, x and y shared."""

    def __init__(self, members: list[JaxTrainer]):
        self.members = members
        self._programs: dict = {}

    def begin_phase(self, phase: Phase) -> None:
        key, fn = [m.setup_phase(phase) for m in self.members][0]
        if key not in self._programs:
            k, shared = len(self.members), self.members[0].SHARED_ARGS
            example = self.members[0].example_args()
            stacked = [a if i in shared
                       else jax.tree.map(lambda v: jax.ShapeDtypeStruct((k, *jnp.shape(v)), jnp.result_type(v)), a)
                       for i, a in enumerate(example)]
            in_axes = tuple(None if i in shared else 0 for i in range(len(example)))
            self._programs[key] = jax.jit(jax.vmap(fn, in_axes=in_axes)).lower(*stacked).compile()
        self._epoch = self._programs[key]

    def train_epoch(self, phase: Phase, epoch: int, lrs: list[float]) -> list:
        shared = self.members[0].SHARED_ARGS
        per = [m.epoch_args(phase, epoch, lr) for m, lr in zip(self.members, lrs)]
        args = [per[0][i] if i in shared else jax.tree.map(lambda *a: jnp.stack(a), *(p[i] for p in per))
                for i in range(len(per[0]))]
        state, losses = self._epoch(*args)
        for k, m in enumerate(self.members):
            m.take_state(jax.tree.map(lambda a, k=k: a[k], state))
            m.end_epoch(phase)
        return [jax.tree.map(lambda a, k=k: a[k], losses) for k in range(len(self.members))]
