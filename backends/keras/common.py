"""What the Keras FF and BP trainers share: data as backend tensors, batches, the epoch as
a `compile.Step` run, error counting, and packing.

A trainer's epoch is its `epoch_plan` (order, negatives, keys: drawn on the device by
compiled `compile.function`s) and its `epoch_body` (one step: the batch gathered from the
plan, the step program applied), run by the phase's step program (`compile.Step.run`: the
epoch as one compiled loop, a `lax.fori_loop` on jax, a `tf.while_loop` on TensorFlow).
Evaluation runs compiled too on jax (`reader`: a `compile.Reader` per prediction key).

A pack (`PackedKerasTrainer`, KERAS_BACKEND=jax) runs its first member's epoch body on
every member's plan at once: each step gathers the members' batches one after the other
(K * batch rows) and runs the members' compiled steps as one `compile.PackedStep`.
"""

from __future__ import annotations

import abc
from typing import Any, NamedTuple

import keras
import numpy as np
from ffbench_backends.keras import compile as kcompile
from ffbench_backends.keras import ops as kops
from ffbench_backends.keras.compile import Body, PackedStep, Reader, Step
from keras import ops

from ffbench.backend import PackedTrainer, Phase, Trainer
from ffbench.data import Dataset
from ffbench.reference import rng
from ffbench.spec import BPTrial, FFTrial, batch_size_for


def set_matmul_precision(precision: str) -> None:
    """Process-wide, set by every trainer for its trial: float32 matmuls use TF32 only with
    `precision: tf32` (TensorFlow enables TF32 by default on GPUs that have it; JAX's default
    precision is TF32 there too)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        tf.config.experimental.enable_tensor_float_32_execution(precision == "tf32")
    elif backend == "jax":
        import jax
        jax.config.update("jax_default_matmul_precision", "tensorfloat32" if precision == "tf32" else "highest")


class KerasTrainer(Trainer):
    def __init__(self, trial: FFTrial | BPTrial, data: Dataset, share: KerasTrainer | None = None):
        """`share`: a trainer of the same data whose tensors this one uses (a pack's first member)."""
        self.trial = trial
        set_matmul_precision(trial.precision)
        self.splits = share.splits if share is not None else {
            name: (ops.convert_to_tensor(s.x), ops.convert_to_tensor(s.y.astype(np.int32)))
            for name, s in (("train", data.train), ("val", data.val), ("test", data.test)) if s is not None}
        self.n, self.image = len(data.train), data.shape  # image: the geometry of the rows
        self.batch_size = batch_size_for(trial, self.n)
        self.steps_per_epoch = self.n // self.batch_size  # the last incomplete batch is dropped
        self.index = share.index if share is not None else ops.convert_to_tensor(np.arange(self.n, dtype=np.uint32))
        self._readers: dict[tuple, Reader] = {}  # compiled predictions (`reader`)

    def order_key(self, epoch: int):
        """The key of the epoch's data order (`reference.rng.epoch_order`), as a device scalar."""
        return kops.key_tensor(rng.stream_key(self.trial.seed, rng.STREAM_ORDER, epoch))

    def epoch_order(self, epoch: int):
        """The epoch's data order, on the device, cut to whole batches (one compiled call)."""
        return kcompile.function(ordered, self.steps_per_epoch * self.batch_size)(self.order_key(epoch), self.index)

    @staticmethod
    def variables(params, name: str) -> list[tuple[keras.Variable, ...]]:
        """The reference's initial weights as Keras variables: the kernel (`ops.to_kernel`), the bias
        (and a batch-normalised layer's gamma, beta)."""
        return [(keras.Variable(kops.to_kernel(p[0]), name=f"{name}{i}_kernel"),
                 *(keras.Variable(a, name=f"{name}{i}_{k}") for k, a in zip(("bias", "gamma", "beta"), p[1:])))
                for i, p in enumerate(params)]

    @abc.abstractmethod
    def predict(self, x):
        """Predicted classes of a batch with the current weights."""

    def predict_key(self) -> tuple:
        """What decides `predict`'s program besides its input and the variables' values (e.g.
        which layers are trained yet): a compiled prediction is kept per key."""
        return ()

    def reader(self, key: tuple, fn) -> Reader:
        """`fn` (it reads this trainer's variables, updates none) compiled, kept under `key`."""
        if key not in self._readers:
            self._readers[key] = Reader(fn, self.all_variables())
        return self._readers[key]

    def error(self, split: str) -> float:
        """The split's error, counted per chunk of `eval_batch_size` images (on jax by a
        compiled program)."""
        x, y = self.splits[split]
        step = self.trial.eval_batch_size
        count = self.reader(("wrong", self.predict_key()), lambda xb, yb: ops.sum(ops.cast(self.predict(xb) != yb, "int32")))
        wrong = sum(count(x[i:i + step], y[i:i + step]) for i in range(0, x.shape[0], step))
        return int(ops.convert_to_numpy(wrong)) / x.shape[0]

    @abc.abstractmethod
    def all_variables(self) -> list[keras.Variable]:
        """Every variable an epoch updates."""

    def sync(self) -> None:
        """Waits for the device: jax dispatches asynchronously (an epoch is one program);
        TensorFlow's eager GPU ops are queued on one stream, so reading a value waits for them."""
        variables = self.all_variables()
        if keras.backend.backend() == "jax":
            import jax
            jax.block_until_ready([v.value for v in variables])
        else:
            ops.convert_to_numpy(ops.reshape(variables[0], (-1,))[:1])

    # ------------------------------------------------------------ the epoch
    def train_epoch(self, phase: Phase, epoch: int, lr: float):
        self.start_epoch(phase, lr)
        sums = self.run_epoch(phase, self.epoch_plan(phase, epoch), self._step)
        self.end_epoch(phase)
        return sums

    @abc.abstractmethod
    def start_epoch(self, phase: Phase, lr: float) -> None:
        """The epoch's learning rates, into the optimisers' variables."""

    @abc.abstractmethod
    def epoch_plan(self, phase: Phase, epoch: int) -> EpochPlan:
        """The epoch's order, negatives and keys (drawn on the device)."""

    @abc.abstractmethod
    def end_epoch(self, phase: Phase) -> None:
        """What the trainer records once an epoch has run."""

    @abc.abstractmethod
    def zero_plan(self, phase: Phase) -> EpochPlan:
        """A plan of the phase's shapes and dtypes (zeros), to compile the epoch ahead."""

    @abc.abstractmethod
    def epoch_sums(self, plan: EpochPlan) -> dict:
        """The epoch's running sums, zero."""

    @abc.abstractmethod
    def epoch_body(self, phase: Phase, plan: EpochPlan) -> Body:
        """One step of the phase's epoch (`compile.Body`) on plans shaped as `plan`."""

    def epoch_inputs(self, plan: EpochPlan) -> dict:
        """What the epoch body reads: the training split and the plan, in fixed dtypes."""
        x, y = self.splits["train"]

        def key(k):
            return ops.convert_to_tensor(np.uint32(k)) if isinstance(k, (int, np.integer)) else ops.cast(k, "uint32")
        return {"x": x, "y": y, "order": ops.cast(plan.order, "int32"),
                "negatives": None if plan.negatives is None else ops.cast(plan.negatives, "int32"),
                "mask_key": key(plan.mask_key), "jitter_key": key(plan.jitter_key)}

    def epoch_args(self, phase: Phase, plan: EpochPlan) -> tuple:
        return self.steps_per_epoch, self.epoch_body(phase, plan), self.epoch_sums(plan), self.epoch_inputs(plan)

    def run_epoch(self, phase: Phase, plan: EpochPlan, step: Step | PackedStep) -> dict:
        """The epoch's steps: this trial's (`step`: its own program, `plan`: its own), or a
        pack's (the members' rows one after the other in each step)."""
        return step.run(*self.epoch_args(phase, plan))

    def precompile(self, phase: Phase, step: Step | PackedStep, plan: EpochPlan | None = None) -> None:
        """Compiles the phase's program ahead of training, with `plan`'s shapes (default:
        this trainer's zero plan), unless it is compiled already."""
        if not step.ready:
            step.precompile(*self.epoch_args(phase, self.zero_plan(phase) if plan is None else plan))

    def batch_at(self, s, inputs: dict, rows: int):
        """Step `s`'s rows of the epoch's order: (their indices, images (jittered), labels)."""
        idx = ops.slice(inputs["order"], (s * rows,), (rows,))
        xb = kops.batch_images(inputs["x"], idx, inputs["jitter_key"], self.trial.data.jitter, self.image)
        return idx, xb, ops.take(inputs["y"], idx, axis=0)


def ordered(used: int, key, index, *by_sample):
    """The epoch order of `key` cut to its first `used` positions (whole batches), and each
    array of `by_sample` (one entry per training sample) in that order."""
    order = kops.epoch_order(key, index)[:used]
    return order if not by_sample else (order, *(ops.take(a, order, axis=0) for a in by_sample))


class EpochPlan(NamedTuple):
    """What one epoch of one trial draws: its data order, each position's negative (a label,
    partner or image index; None in a read-out or BP epoch) and its hash keys (hybrid masks,
    jitter: `rng.stream_key`). A pack's plan (`stack`) lays its members' batches one after
    the other within each step (K * batch rows a step) and keys each row by its member."""

    order: Any
    negatives: Any = None
    mask_key: Any = 0
    jitter_key: Any = 0
    members: tuple[int, ...] = ()  # () alone; (K,) a pack of K

    @classmethod
    def zeros(cls, length: int, negatives: bool) -> EpochPlan:
        z = ops.zeros((length,), "int32")
        return cls(z, z if negatives else None)

    @property
    def width(self) -> int:
        """Trials stepped at once: a step's batch has `rows * batch_size` rows."""
        return self.members[0] if self.members else 1

    @classmethod
    def stack(cls, plans: list[EpochPlan], batch_size: int) -> EpochPlan:
        k = len(plans)

        def rows(arrays):  # (K, steps * B) -> step by step, member by member
            return ops.reshape(ops.transpose(ops.reshape(ops.stack(arrays), (k, -1, batch_size)), (1, 0, 2)), (-1,))

        def keys(name):  # a key per row of a step
            return ops.convert_to_tensor(np.repeat(np.array([getattr(p, name) for p in plans], np.uint32), batch_size))
        negatives = None if plans[0].negatives is None else rows([p.negatives for p in plans])
        return cls(rows([p.order for p in plans]), negatives, keys("mask_key"), keys("jitter_key"), (k,))


class PackedKerasTrainer(PackedTrainer):
    """Trials of one pack key trained as one program (KERAS_BACKEND=jax). Each member keeps
    its own Keras variables and sets up its own phases and learning rates; the pack stacks
    their values around each epoch (`compile.PackedStep`) and runs the first member's
    `run_epoch` on the members' stacked plans."""

    def __init__(self, members: list[Any]):
        self.members = members

    def begin_phase(self, phase: Phase) -> None:
        steps = [m.setup_phase(phase) for m in self.members]
        lead, first = steps[0], self.members[0]
        if lead.packed is None:  # a fresh step program (a member's is fresh with it)
            lead.packed = PackedStep(steps)
            first.precompile(phase, lead.packed, EpochPlan.stack([first.zero_plan(phase)] * len(steps), first.batch_size))
        self._step = lead.packed

    def train_epoch(self, phase: Phase, epoch: int, lrs: list[float]) -> list[Any]:
        lead = self.members[0]
        for m, lr in zip(self.members, lrs):
            m.start_epoch(phase, lr)
        plan = EpochPlan.stack([m.epoch_plan(phase, epoch) for m in self.members], lead.batch_size)
        self._step.load()
        sums = lead.run_epoch(phase, plan, self._step)
        self._step.store()
        for m in self.members:
            m.end_epoch(phase)
        return [{name: v[k] for name, v in sums.items()} for k in range(len(self.members))]
