"""The backprop baseline in plain Keras: a Sequential of Dense layers trained with `fit`,
fed each epoch's minibatches in the shared order, with the spec's optimiser formula.

In a pack (KERAS_BACKEND=jax) the members' steps are Keras's own JAX train step (what
`fit` runs), vmapped over the members (`compile.PackedStep`), on batches gathered on the
device with the same order and jitter."""

from __future__ import annotations

import keras
import numpy as np
from ffbench_backends.keras import compile as kcompile
from ffbench_backends.keras.common import EpochPlan, KerasTrainer
from ffbench_backends.keras.optim import SpecOptimizer
from keras import ops

from ffbench.backend import Phase
from ffbench.data import Dataset
from ffbench.reference import augment, rng
from ffbench.reference.init import stack_init
from ffbench.spec import NUM_CLASSES, BPTrial


class BPTrainer(KerasTrainer):
    def __init__(self, trial: BPTrial, data: Dataset, share: BPTrainer | None = None):
        super().__init__(trial, data, share)
        self.host = (data.train.x, data.train.y.astype(np.int32))
        layers = [keras.layers.Dense(h, activation="relu") for h in trial.hidden] + [keras.layers.Dense(NUM_CLASSES)]
        self.model = keras.Sequential([keras.Input((data.train.x.shape[1],)), *layers])
        for layer, (w, b) in zip(self.model.layers, stack_init(trial.seed, [data.train.x.shape[1], *trial.hidden, NUM_CLASSES],
                                                                trial.bp.init)):
            layer.set_weights([w.T, b])

    def phases(self) -> list[Phase]:
        return [Phase("bp", self.trial.epochs, self.trial.optimizer)]

    def begin_phase(self, phase: Phase) -> None:
        self.opt = SpecOptimizer(phase.optimizer)
        self.model.compile(optimizer=self.opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    def train_epoch(self, phase: Phase, epoch: int, lr: float):
        x, y = self.host
        order = rng.epoch_order(self.trial.seed, epoch, self.n)[: self.steps_per_epoch * self.batch_size]
        self.opt.set_lr(lr)
        xs = augment.batch_images(self.trial, x, order, epoch)  # on the host, like the order: `fit` takes arrays
        history = self.model.fit(xs, y[order], batch_size=self.batch_size, epochs=1, shuffle=False, verbose=0)
        return {"bp_loss": history.history["loss"][-1]}

    def epoch_losses(self, device_losses) -> dict[str, float]:
        return {"bp_loss": float(device_losses["bp_loss"])}

    # ------------------------------------------------------------ in a pack (jax)
    def setup_phase(self, phase: Phase) -> kcompile.Step:
        """As `begin_phase`, with the step `fit` would run as a `compile.Step` (not compiled)."""
        self.begin_phase(phase)
        x, y = self.host[0][: self.batch_size], self.host[1][: self.batch_size]
        self.model.compute_loss(y=y, y_pred=self.model(x))  # builds the compiled loss, as fit's first batch would
        kcompile.build_optimizer(self.opt, self.model.trainable_variables)
        m = self.model
        self._groups = (m.trainable_variables, m.non_trainable_variables, self.opt.variables, m.metrics_variables)
        return kcompile.Step(self._train_step, [v for g in self._groups for v in g])

    def _train_step(self, xb, yb):
        """Keras's JAX `train_step` on the variables' values (what `fit` jits), written back."""
        logs, new = self.model.train_step(tuple([v.value for v in g] for g in self._groups), (xb, yb))
        for group, values in zip(self._groups, new):
            for var, value in zip(group, values):
                var.assign(value)
        return logs["loss"]  # the epoch's running mean, as fit's history reports it

    def start_epoch(self, phase: Phase, lr: float) -> None:
        self.opt.set_lr(lr)
        self.model.reset_metrics()  # as fit does at each epoch's start

    def epoch_plan(self, phase: Phase, epoch: int) -> EpochPlan:
        order = self.epoch_order(epoch)
        return EpochPlan(order, jitter_key=rng.stream_key(self.trial.seed, rng.STREAM_JITTER, epoch))

    def zero_plan(self, phase: Phase) -> EpochPlan:
        return EpochPlan.zeros(self.steps_per_epoch * self.batch_size, negatives=False)

    def epoch_sums(self, plan: EpochPlan) -> dict:
        return {"bp_loss": ops.zeros(plan.members)}

    def epoch_body(self, phase: Phase, plan: EpochPlan):
        rows = self.batch_size * plan.width

        def body(s, sums, d, apply):
            _, xb, yb = self.batch_at(s, d, rows)
            return {"bp_loss": apply(xb, yb)}  # the epoch's running mean so far
        return body

    def all_variables(self) -> list[keras.Variable]:
        return list(self.model.variables)  # (the optimiser's are made in begin_phase)

    def end_epoch(self, phase: Phase) -> None:
        pass

    def can_evaluate(self, phase: Phase) -> bool:
        return True

    def predict(self, x):
        return ops.cast(ops.argmax(self.model(x, training=False), axis=1), "int32")

    def state(self) -> dict:
        out = {}
        for i, layer in enumerate(self.model.layers):
            k, b = layer.get_weights()
            out[f"W{i}"], out[f"b{i}"] = k.T.copy(), b
        return out

    def load_state(self, state: dict) -> None:
        for i, layer in enumerate(self.model.layers):
            layer.set_weights([state[f"W{i}"].T, state[f"b{i}"]])
