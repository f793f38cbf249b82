"""One Keras training epoch on the Keras backend underneath, its step compiled.

`Step(fn, variables)` runs `fn` (one training step written in `keras.ops`) with every Keras
variable in `variables` (weights, running means, optimiser slots, step counter, learning
rate) read and updated as `fn` would eagerly. `Step.run(steps, body, sums, inputs)` runs an
epoch: `steps` calls of the trainer's `body(s, sums, inputs, apply)`, which gathers step
`s`'s batch from `inputs` (the data, the epoch's order and negatives, its keys), calls
`apply(*batch)` (the step) and returns the epoch's running sums.

- jax: the whole epoch is one program: `jax.jit` of `lax.fori_loop` over `body`, with the
  variables' values in the loop's carry. `fn` runs in a `keras.StatelessScope` (the
  pattern Keras's own JAX trainer uses: `optimizer.stateless_apply` is built on it); the
  values go in at the epoch's start and are assigned back at its end. No host work, no
  dispatch, no variable assign inside the epoch.
- tensorflow: `fn` is `tf.function(jit_compile=True)`, one XLA program a step; TF updates the
  variables in place; `body` runs in a Python loop. A plain graph (no XLA) was tried: on a
  CPU it was faster for small nets, but its joint read-out loss differed between runs of
  the same trial (independent branches of the graph run concurrently); the XLA program gave
  the same numbers every time.

`fn` and `body` must take tensors of fixed shapes and do no host work. Every optimiser must
be built before the first call (`build_optimizer`): a compiled program cannot create
variables. `FFBENCH_KERAS_EAGER=1` runs everything eagerly instead (for debugging).

`PackedStep` runs the steps of a pack's members (on jax only) as one program: `jax.vmap`
of the first member's stateless step over every member's variable values, stacked.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import keras

# body(s, sums, inputs, apply) -> sums: one step of an epoch (s: the step's index, a traced
# scalar on jax); apply(*batch) runs the step program on the batch and returns its output.
Body = Callable[[Any, Any, Any, Callable], Any]


def enabled() -> bool:
    return os.environ.get("FFBENCH_KERAS_EAGER", "") in ("", "0") and keras.backend.backend() in ("tensorflow", "jax")


def build_optimizer(opt: keras.optimizers.Optimizer, variables: Sequence[keras.Variable]) -> None:
    if not opt.built:
        opt.build(list(variables))


class _Epochs:
    """An epoch of a step program: one `jax.jit`ted `lax.fori_loop` on jax (`pure`: the
    step on the variables' values; `values()` / `set_values()`: those values), a Python
    loop of `self(*batch)` otherwise. One step program has one body and one epoch length."""

    backend: str | None
    donate = False
    epoch_program: Any = None

    def _jit_epoch(self, steps: int, body: Body):
        import jax

        def program(values, sums, inputs):
            def one(s, carry):
                box = [carry[0]]

                def apply(*batch):
                    box[0], out = self.pure(box[0], *batch)
                    return out
                sums = body(s, carry[1], inputs, apply)
                return box[0], sums
            return jax.lax.fori_loop(0, steps, one, (values, sums))
        return jax.jit(program, donate_argnums=(0,) if self.donate else ())

    def precompile_step(self, *example: tuple[tuple[int, ...], str]) -> None:
        """Compiles the step program alone (TensorFlow's: run by a Python loop)."""

    def precompile(self, steps: int, body: Body, sums, inputs) -> None:
        """Compiles the epoch program ahead of its first epoch (jax), with `sums` and
        `inputs` of the epoch's shapes and dtypes (e.g. a zero plan's)."""
        if self.backend == "jax" and self.epoch_program is None:
            self.epoch_program = self._jit_epoch(steps, body).lower(self.abstract_values(), sums, inputs).compile()

    def run(self, steps: int, body: Body, sums, inputs):
        if self.backend != "jax":
            for s in range(steps):
                sums = body(s, sums, inputs, self)
            return sums
        if self.epoch_program is None:
            self.epoch_program = self._jit_epoch(steps, body)
        values, sums = self.epoch_program(self.values(), sums, inputs)
        self.set_values(values)
        return sums


class Step(_Epochs):
    """`fn` compiled, on `variables`; `precompile_step(*example)` compiles TensorFlow's step
    program ahead of the first call (example: (shape, dtype) per argument), so compile time
    is reported apart from training."""

    def __init__(self, fn: Callable, variables: Sequence[keras.Variable]):
        self.fn, self.variables, self.backend = fn, list(variables), keras.backend.backend() if enabled() else None
        self.packed: PackedStep | None = None  # this step's pack program, if a pack made one
        self.program = None
        if self.backend == "tensorflow":
            import tensorflow as tf
            self.program = tf.function(fn, jit_compile=True, reduce_retracing=True)

    def pure(self, values, *args):
        """`fn` on the variables' `values`: (their new values, `fn`'s output)."""
        with keras.StatelessScope(state_mapping=list(zip(self.variables, values))) as scope:
            out = self.fn(*args)
        new = [scope.get_current_value(v) for v in self.variables]
        return [v if n is None else n for v, n in zip(values, new)], out

    def values(self) -> list:
        return [v.value for v in self.variables]

    def abstract_values(self) -> list:
        import jax
        return [jax.ShapeDtypeStruct(v.shape, v.dtype) for v in self.values()]

    def set_values(self, values: list) -> None:
        for var, value in zip(self.variables, values):
            var.assign(value)

    def precompile_step(self, *example: tuple[tuple[int, ...], str]) -> None:
        if self.backend == "tensorflow":
            import tensorflow as tf
            self.program.get_concrete_function(*[tf.TensorSpec(shape, dtype) for shape, dtype in example])  # traces

    def __call__(self, *args):
        return self.fn(*args) if self.program is None else self.program(*args)


class PackedStep(_Epochs):
    """The same step of K pack members as one program (KERAS_BACKEND=jax): `jax.vmap` of
    the first member's stateless step (`Step.pure`; every member's step runs the same `fn`
    on its own variables, listed in the same order) over the members' variable values
    stacked on a leading axis. Called with the members' batches one after the other on the
    leading axis (K * batch rows), it returns the members' outputs stacked.

    The pack holds the stacked values from `load()` (the members' variables, stacked) to
    `store()` (each member's slice assigned back to its variables): around an epoch. They
    are the pack's own, so the epoch program takes them donated (updated in place)."""

    backend = "jax"
    donate = True

    def __init__(self, steps: list[Step]):
        import jax

        if steps[0].backend != "jax":
            raise ValueError("a pack of Keras steps needs KERAS_BACKEND=jax and the compiled step")
        self.steps, self.k = steps, len(steps)
        self._mapped = jax.vmap(steps[0].pure)
        self._values: list | None = None

    def pure(self, values, *args):
        return self._mapped(values, *[a.reshape(self.k, -1, *a.shape[1:]) for a in args])  # the members' rows to a member axis

    def values(self) -> list:
        return self._values

    def abstract_values(self) -> list:
        import jax
        return [jax.ShapeDtypeStruct((self.k, *v.shape), v.dtype) for v in self.steps[0].abstract_values()]

    def set_values(self, values: list) -> None:
        self._values = values

    def load(self) -> None:
        import jax.numpy as jnp

        self._values = [jnp.stack(vs) for vs in zip(*(s.values() for s in self.steps))]

    def store(self) -> None:
        for k, step in enumerate(self.steps):
            step.set_values([value[k] for value in self._values])
        self._values = None
