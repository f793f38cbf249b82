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

`PackedStep` runs the steps of a pack's members (on jax only) as one program: `jax.vmap`
of the first member's stateless step over every member's variable values, stacked.
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
        self.compiled = False
        self.packed: PackedStep | None = None  # this step's pack program, if a pack made one
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
        if self.compiled:
            return
        self.compiled = True
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


class PackedStep:
    """The same step of K pack members as one program (KERAS_BACKEND=jax): `jax.vmap` of
    the first member's stateless step (`Step._pure`; every member's step runs the same
    `fn` on its own variables, listed in the same order) over the members' variable values
    stacked on a leading axis. Called with the members' batches one after the other on
    the leading axis (K * batch rows), it returns the members' outputs stacked.

    The pack holds the stacked values from `load()` (the members' variables, stacked) to
    `store()` (each member's slice assigned back to its variables): around an epoch."""

    def __init__(self, steps: list[Step]):
        import jax

        if steps[0].backend != "jax":
            raise ValueError("a pack of Keras steps needs KERAS_BACKEND=jax and the compiled step")
        self.steps, k = steps, len(steps)
        mapped = jax.vmap(steps[0]._pure)

        def program(values, *args):  # the members' rows to a member axis, inside the program
            return mapped(values, *[a.reshape(k, -1, *a.shape[1:]) for a in args])

        self.program = jax.jit(program, donate_argnums=0)  # the stacked values are the pack's own: updated in place
        self.values: list | None = None

    def precompile(self, *example: tuple[tuple[int, ...], str]) -> None:
        """`example`: (shape, dtype) of each argument as the pack is called (K * batch rows)."""
        import jax

        k = len(self.steps)
        values = [jax.ShapeDtypeStruct((k, *v.shape), v.dtype) for v in self.steps[0].variables]
        self.program = self.program.lower(values, *[jax.ShapeDtypeStruct(s, d) for s, d in example]).compile()

    def load(self) -> None:
        import jax.numpy as jnp

        self.values = [jnp.stack(vs) for vs in zip(*([v.value for v in s.variables] for s in self.steps))]

    def store(self) -> None:
        for k, step in enumerate(self.steps):
            for var, value in zip(step.variables, self.values):
                var.assign(value[k])
        self.values = None

    def __call__(self, *args):
        self.values, out = self.program(self.values, *args)
        return out
