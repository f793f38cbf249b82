"""One Keras step as one compiled program, on the Keras backend underneath.

`Step(fn, variables)` is a callable with `fn`'s signature that runs `fn` compiled,
with every Keras variable in `variables` (weights, running means, optimiser slots, step
counter, learning rate) read and updated as `fn` would eagerly:

- tensorflow: `tf.function`, an XLA program (`jit_compile=True`) where TensorFlow sees a
  GPU, a plain graph on a CPU (measured on 2 cores: XLA was no faster at 3x1000 and 1.5x
  slower at 2x100, and compiles longer); `FFBENCH_KERAS_XLA=1` or `0` forces it. TF updates
  the variables in place.
- jax: `jax.jit` of a stateless version: the variables' values go in, `fn` runs in a
  `keras.StatelessScope`, and the new values come out and are assigned back. This is the
  pattern Keras's own JAX trainer uses (`optimizer.stateless_apply` is built on it).

`fn` must take tensors of fixed shapes (one trace per program) and do no host work. Every
optimiser must be built before the first call (`build_optimizer`): a compiled program
cannot create variables. `FFBENCH_KERAS_EAGER=1` runs `fn` eagerly instead (for debugging).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import keras


def enabled() -> bool:
    return os.environ.get("FFBENCH_KERAS_EAGER", "") in ("", "0") and keras.backend.backend() in ("tensorflow", "jax")


def build_optimizer(opt: keras.optimizers.Optimizer, variables: Sequence[keras.Variable]) -> None:
    if not opt.built:
        opt.build(list(variables))


def _xla(tf) -> bool:
    forced = os.environ.get("FFBENCH_KERAS_XLA")
    return forced == "1" if forced in ("0", "1") else bool(tf.config.list_physical_devices("GPU"))


class Step:
    """`fn` as a compiled program; `precompile(*example)` compiles it ahead of the first call
    (example: (shape, dtype) per argument), so compile time is reported apart from training."""

    def __init__(self, fn: Callable, variables: Sequence[keras.Variable]):
        self.fn, self.variables, self.backend = fn, list(variables), keras.backend.backend() if enabled() else None
        if self.backend == "tensorflow":
            import tensorflow as tf
            self.program = tf.function(fn, jit_compile=_xla(tf), reduce_retracing=True)
        elif self.backend == "jax":
            import jax
            self.program = jax.jit(self._pure)

    def _pure(self, values, *args):
        with keras.StatelessScope(state_mapping=list(zip(self.variables, values))) as scope:
            out = self.fn(*args)
        new = [scope.get_current_value(v) for v in self.variables]
        return [v if n is None else n for v, n in zip(values, new)], out

    def precompile(self, *example: tuple[tuple[int, ...], str]) -> None:
        if self.backend == "tensorflow":
            import tensorflow as tf
            self.program.get_concrete_function(*[tf.TensorSpec(shape, dtype) for shape, dtype in example])  # traces
        elif self.backend == "jax":
            import jax
            args = [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in example]
            self.program = self.program.lower([v.value for v in self.variables], *args).compile()

    def __call__(self, *args):
        if self.backend == "jax":
            values, out = self.program([v.value for v in self.variables], *args)
            for var, value in zip(self.variables, values):
                var.assign(value)
            return out
        if self.backend == "tensorflow":
            return self.program(*args)
        return self.fn(*args)
