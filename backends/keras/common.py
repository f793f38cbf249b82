"""What the Keras FF and BP trainers share: data as backend tensors, batches, error counting."""

from __future__ import annotations

import abc

import keras
import numpy as np
from keras import ops

from ffbench.backend import Trainer
from ffbench.data import Dataset
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
    def __init__(self, trial: FFTrial | BPTrial, data: Dataset):
        self.trial = trial
        set_matmul_precision(trial.precision)
        self.splits = {name: (ops.convert_to_tensor(s.x), ops.convert_to_tensor(s.y.astype(np.int32)))
                       for name, s in (("train", data.train), ("val", data.val), ("test", data.test)) if s is not None}
        self.n = len(data.train)
        self.batch_size = batch_size_for(trial, self.n)
        self.steps_per_epoch = self.n // self.batch_size  # the last incomplete batch is dropped
        self.index = ops.convert_to_tensor(np.arange(self.n, dtype=np.uint32))

    @staticmethod
    def variables(params, name: str) -> list[tuple[keras.Variable, keras.Variable]]:
        """The reference's initial weights as Keras variables: kernel = W.T (in, out), bias."""
        return [(keras.Variable(w.T, name=f"{name}{i}_kernel"), keras.Variable(b, name=f"{name}{i}_bias"))
                for i, (w, b) in enumerate(params)]

    @abc.abstractmethod
    def predict(self, x):
        """Predicted classes of a batch with the current weights."""

    def error(self, split: str) -> float:
        x, y = self.splits[split]
        step = self.trial.eval_batch_size
        wrong = sum(ops.sum(ops.cast(self.predict(x[i:i + step]) != y[i:i + step], "int32")) for i in range(0, x.shape[0], step))
        return int(ops.convert_to_numpy(wrong)) / x.shape[0]

    def sync(self) -> None:
        pass  # eager Keras ops have finished when they return their tensors
