"""What the JAX FF and BP trainers share: data on the device, batches, error counting."""

from __future__ import annotations

import abc

import jax
import jax.numpy as jnp

from ffbench.backend import Trainer
from ffbench.data import Dataset
from ffbench.reference.init import stack_init
from ffbench.spec import BPTrial, FFTrial, batch_size_for


class JaxTrainer(Trainer):
    def __init__(self, trial: FFTrial | BPTrial, data: Dataset, device):
        self.trial, self.device = trial, device
        self.splits = {name: (jax.device_put(jnp.asarray(s.x), device), jax.device_put(jnp.asarray(s.y, jnp.int32), device))
                       for name, s in (("train", data.train), ("val", data.val), ("test", data.test)) if s is not None}
        self.n = len(data.train)
        self.batch_size = batch_size_for(trial, self.n)
        self.steps_per_epoch = self.n // self.batch_size  # the last incomplete batch is dropped

    def init_params(self, widths: list[int], scheme: str) -> list[tuple[jax.Array, jax.Array]]:
        return [(jax.device_put(jnp.asarray(w), self.device), jax.device_put(jnp.asarray(b), self.device))
                for w, b in stack_init(self.trial.seed, widths, scheme)]

    @abc.abstractmethod
    def predict(self, x: jax.Array) -> jax.Array:
        """Predicted classes of a batch with the current weights."""

    def error(self, split: str) -> float:
        x, y = self.splits[split]
        step = self.trial.eval_batch_size
        wrong = sum((self.predict(x[i:i + step]) != y[i:i + step]).sum() for i in range(0, x.shape[0], step))
        return int(wrong) / x.shape[0]  # the one host sync of an evaluation
