"""One Keras training epoch as one compiled program, on the Keras backend underneath.

`Step(fn, variables)` holds `fn` (one training step written in `keras.ops`) and every Keras
variable it reads and updates (weights, running means, optimiser slots, step counter,
learning rate). `Step.run(steps, body, sums, inputs)` runs an epoch: `steps` calls of the
trainer's `body(s, sums, inputs, apply)`, which gathers step `s`'s batch from `inputs` (the
data, the epoch's order and negatives, its keys), calls `apply(*batch)` (the step) and
returns the epoch's running sums. The whole epoch, gathers included, is one program:

- jax: `jax.jit` of a `lax.fori_loop` over `body`, with the variables' values in the
  loop's carry; `fn` runs in a `keras.StatelessScope` (the pattern Keras's own JAX trainer
  uses: `optimizer.stateless_apply` is built on it). The values go in at the epoch's start
  and are assigned back at its end.
- tensorflow: `tf.function(jit_compile=True)` of a `tf.while_loop` over `body`; TF updates
  the variables in place. The step count is an input, so that `precompile` can have XLA
  compile the program (at its first call) by running it for 0 steps. A plain graph (no
  XLA) was tried for the step: on a CPU it was faster for small nets, but its joint
  read-out loss differed between runs of the same trial (independent branches of the
  graph run concurrently); XLA gave the same numbers every time.

No host work, no dispatch and no variable assign from Python happen inside an epoch. `fn`
and `body` must take tensors of fixed shapes. Every optimiser must be built before the first
call (`build_optimizer`): a compiled program cannot create variables.
`FFBENCH_KERAS_EAGER=1` runs `body` and `fn` eagerly in a Python loop instead (for debugging).

`function(fn, *static)` compiles a pure function of tensors (no variables) on its own: the
epoch's plan (order, negatives) is one. `Reader(fn, variables)` compiles (on jax) a
function that reads variables and updates none: a prediction.

`PackedStep` runs the steps of a pack's members (on jax only) as one program: `jax.vmap`
of the first member's stateless step over every member's variable values, stacked.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import keras

# body(s, sums, inputs, apply) -> sums: one step of an epoch (s: the step's index, a traced
# scalar when compiled); apply(*batch) runs the step on the batch and returns its output.
Body = Callable[[Any, Any, Any, Callable], Any]


def enabled() -> bool:
    return os.environ.get("FFBENCH_KERAS_EAGER", "") in ("", "0") and keras.backend.backend() in ("tensorflow", "jax")


_functions: dict[tuple, Callable] = {}


def function(fn: Callable, *static) -> Callable:
    """`partial(fn, *static)` as one compiled program (`jax.jit`, or an XLA `tf.function`;
    as it is when eager), made once per process: `fn` (a module-level function) takes
    tensors and returns tensors, and reads or updates no variable; `static` are Python values
    that shape it."""
    backend = keras.backend.backend() if enabled() else None
    key = (fn, static, backend)
    if key not in _functions:
        f = functools.partial(fn, *static)
        if backend == "tensorflow":
            import tensorflow as tf
            f = tf.function(f, jit_compile=True, autograph=False)
        elif backend == "jax":
            import jax
            f = jax.jit(f)
        _functions[key] = f
    return _functions[key]


def build_optimizer(opt: keras.optimizers.Optimizer, variables: Sequence[keras.Variable]) -> None:
    if not opt.built:
        opt.build(list(variables))


class _Epochs:
    """Runs epochs of a step: the subclass gives `backend` (None: eager) and, for jax,
    `pure` (the step on the variables' values), `values()` / `set_values()` / `abstract_values()`.
    A step program has one body and one epoch length: the first compiled is kept."""

    backend: str | None
    donate = False
    epoch_program: Any = None

    def __call__(self, *batch):  # the eager step
        return self.fn(*batch)

    def _compile(self, steps: int, body: Body):
        if self.backend == "tensorflow":
            import tensorflow as tf

            def tf_program(steps, sums, inputs):  # steps: a tensor, so that 0 steps compiles the program
                def one(s, sums):
                    return s + 1, body(s, sums, inputs, self.fn)
                return tf.while_loop(lambda s, _: s < steps, one, (tf.constant(0), sums))[1]
            return tf.function(tf_program, jit_compile=True, autograph=False)  # explicit loops: nothing to convert
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

    @property
    def ready(self) -> bool:
        """Nothing left to compile (eager, or compiled)."""
        return self.backend is None or self.epoch_program is not None

    def precompile(self, steps: int, body: Body, sums, inputs) -> None:
        """Compiles the epoch program ahead of its first epoch, with `sums` and `inputs` of
        the epoch's shapes and dtypes (e.g. a zero plan's). On TensorFlow, XLA compiles at a
        program's first call: this call runs it for 0 steps (the loop's body, where every
        variable is updated, never runs)."""
        if self.ready:
            return
        program = self._compile(steps, body)
        if self.backend == "tensorflow":
            import tensorflow as tf
            program.get_concrete_function(tf.constant(0), sums, inputs)  # traced apart: TF's retracing warning counts
            program(tf.constant(0), sums, inputs)  # every Step's program as one function (one code object) otherwise
            self.epoch_program = program
        else:
            self.epoch_program = program.lower(self.abstract_values(), sums, inputs).compile()

    def run(self, steps: int, body: Body, sums, inputs):
        if self.backend is None:
            for s in range(steps):
                sums = body(s, sums, inputs, self)
            return sums
        if self.epoch_program is None:
            self.epoch_program = self._compile(steps, body)
        if self.backend == "tensorflow":
            import tensorflow as tf
            return self.epoch_program(tf.constant(steps), sums, inputs)
        values, sums = self.epoch_program(self.values(), sums, inputs)
        self.set_values(values)
        return sums


class Step(_Epochs):
    """`fn` on `variables`, compiled into its epoch's program."""

    def __init__(self, fn: Callable, variables: Sequence[keras.Variable]):
        self.fn, self.variables, self.backend = fn, list(variables), keras.backend.backend() if enabled() else None
        self.packed: PackedStep | None = None  # this step's pack program, if a pack made one

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


class Reader:
    """`fn(*args)`, which reads Keras variables and updates none (a prediction): on jax one
    compiled program per input shape, `jax.jit` of `fn` on the variables' current values
    (`Step.pure`: every variable `fn` reads must be in `variables`, or jit would bake its
    value in); elsewhere `fn` as it is. On TensorFlow an XLA `tf.function` was measured: it
    saved nothing where the matmuls dominate (the smoke suite's Keras evaluation, 7.95 ->
    7.9 s) and cost its compile (about 0.5 s) per trial and prediction key, where eager
    TensorFlow compiles nothing."""

    def __init__(self, fn: Callable, variables: Sequence[keras.Variable]):
        self._step = Step(fn, variables)
        self._program = None
        if self._step.backend == "jax":
            import jax
            self._program = jax.jit(lambda values, *args: self._step.pure(values, *args)[1])

    def __call__(self, *args):
        if self._program is not None:
            return self._program(self._step.values(), *args)
        return self._step.fn(*args)


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
