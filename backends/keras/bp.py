"""The backprop baseline in plain Keras: a Sequential of Dense layers trained with `fit`,
fed each epoch's minibatches in the shared order, with the spec's optimiser formula."""

from __future__ import annotations

import keras
import numpy as np
from ffbench_backends.keras.common import KerasTrainer
from ffbench_backends.keras.optim import SpecOptimizer
from keras import ops

from ffbench.backend import Phase
from ffbench.data import Dataset
from ffbench.reference import augment, rng
from ffbench.reference.init import stack_init
from ffbench.spec import NUM_CLASSES, BPTrial


class BPTrainer(KerasTrainer):
    def __init__(self, trial: BPTrial, data: Dataset):
        super().__init__(trial, data)
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
        return history.history["loss"][-1]

    def epoch_losses(self, device_losses) -> dict[str, float]:
        return {"bp_loss": float(device_losses)}

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
