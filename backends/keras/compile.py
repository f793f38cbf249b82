"""One Keras step as one compiled program, on the Keras backend underneath.

`Step(fn, variables)` is a callable with `fn`'s signature that runs `fn` compiled,
with every Keras variable in `variables` (weights, running means, optimiser slots, step
counter, learning rate) read and updated as `fn` would eagerly:

- tensorflow: `tf.function(jit_compile=True)`, one XLA program; TF updates the variables in
  place. A plain graph (no XLA) was tried: on a CPU it was faster for small nets, but its
  joint read-out loss differed between runs of the same trial (independent branches of the
  graph run concurrently); the XLA program gave the same numbers every time.
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


class Step:
    """`fn` as a compiled program; `precompile(*example)` compiles it ahead of the first call
    (example: (shape, dtype) per argument), so compile time is reported apart from training."""

    def __init__(self, fn: Callable, variables: Sequence[keras.Variable]):
        self.fn, self.variables, self.backend = fn, list(variables), keras.backend.backend() if enabled() else None
        if self.backend == "tensorflow":
            import tensorflow as tf
            self.program = tf.function(fn, jit_compile=True, reduce_retracing=True)
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
