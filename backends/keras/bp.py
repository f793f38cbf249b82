"""The backprop baseline in plain Keras: a Sequential of Dense layers, compiled with the
spec's optimiser formula and Keras's cross-entropy, trained by Keras's own `train_step`
(what `fit` runs) on each epoch's minibatches in the shared order, gathered on the device.

As FF's, the epoch is one compiled program (`compile.Step.run`): `fit` would run one program
per step and feed it from the host. On JAX the step is the stateless
`train_step(state, data)` that Keras's JAX trainer jits; on TensorFlow the stateful
`train_step(data)` that its `tf.function` runs. In a pack (KERAS_BACKEND=jax) the members'
JAX steps are vmapped (`compile.PackedStep`)."""

from __future__ import annotations

import keras
from ffbench_backends.keras import compile as kcompile
from ffbench_backends.keras import ops as kops
from ffbench_backends.keras.common import EpochPlan, KerasTrainer
from ffbench_backends.keras.optim import SpecOptimizer
from keras import ops

from ffbench.backend import Phase
from ffbench.data import Dataset
from ffbench.reference import rng
from ffbench.reference.bp import initial_running
from ffbench.reference.ff import STATE_KEYS, bn_initial, state_of
from ffbench.reference.init import bp_init
from ffbench.spec import NUM_CLASSES, BPTrial


class LocalDense(keras.layers.Dense):
    """A Dense ReLU layer whose kernel is used times the reference's local mask
    (`bp.receptive_field`): a locally connected layer without weight sharing."""

    def __init__(self, units: int, k: int, image, **kw):
        super().__init__(units, activation="relu", **kw)
        self.k, self.image = k, image

    def call(self, inputs):
        kernel = self.kernel * kops.local_mask(*self.kernel.shape, self.k, self.image)
        return ops.relu(ops.matmul(inputs, kernel) + self.bias)


def hidden_layer(units: int, local):
    return keras.layers.Dense(units, activation="relu") if local is None else LocalDense(units, *local)


class ConvBlock(keras.layers.Layer):
    """One conv layer of the BP twin (`reference.bp`) as the FF layers compute it (`kops.conv_layer`:
    flat (C, H, W) rows in and out, conv -> ReLU -> pool, on a CPU in im2col form). A
    batch-normalised layer (`norm: batch`) in training normalises by the batch's statistics and
    moves its running ones (`kops.conv_layer_train`), else it reads the running ones."""

    def __init__(self, spec, **kw):
        super().__init__(**kw)
        self.spec = spec

    def build(self, input_shape):
        s = self.spec
        self.kernel = self.add_weight(shape=(s.kernel, s.kernel, s.input.channels // s.groups, s.channels), name="kernel")
        self.bias = self.add_weight(shape=(s.channels,), initializer="zeros", name="bias")
        if s.batch_norm:
            self.gamma = self.add_weight(shape=(s.channels,), initializer="ones", name="gamma")
            self.beta = self.add_weight(shape=(s.channels,), initializer="zeros", name="beta")
            self.running = self.add_weight(shape=(2, s.channels), initializer=lambda shape, dtype=None: bn_initial(shape[1]),
                                           trainable=False, name="running")

    def call(self, x, training=False):
        s = self.spec
        if not s.batch_norm:
            return kops.conv_layer(x, self.kernel, self.bias, s)
        if training:
            y, running = kops.conv_layer_train(x, self.kernel, self.bias, self.gamma, self.beta, self.running, s)
            self.running.assign(running)
            return y
        return kops.conv_layer(x, self.kernel, self.bias, s, bn=(self.gamma, self.beta, self.running))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.spec.output.size)


class BPTrainer(KerasTrainer):
    def __init__(self, trial: BPTrial, data: Dataset, share: BPTrainer | None = None):
        super().__init__(trial, data, share)
        conv = trial.conv_layers()
        hidden = [hidden_layer(h, trial.local) for h in trial.hidden] if conv is None else [ConvBlock(s) for s in conv]
        self.model = keras.Sequential([keras.Input((data.train.x.shape[1],)), *hidden, keras.layers.Dense(NUM_CLASSES)])
        self.load_state(state_of(bp_init(trial, data.train.x.shape[1], NUM_CLASSES), initial_running(trial)))

    def weighted(self) -> list[keras.layers.Layer]:
        """The model's layers with weights, in the reference's order: each holds W, b (a
        batch-normalised conv layer: then gamma, beta and its running statistics)."""
        return [layer for layer in self.model.layers if layer.weights]

    def phases(self) -> list[Phase]:
        return [Phase("bp", self.trial.epochs, self.trial.optimizer)]

    def begin_phase(self, phase: Phase) -> None:
        self.precompile(phase, self.setup_phase(phase))

    def setup_phase(self, phase: Phase) -> kcompile.Step:
        """The phase's optimiser, the model compiled with it, and its step (not compiled yet)."""
        self.opt = SpecOptimizer(phase.optimizer)
        self.model.compile(optimizer=self.opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        x, y = (t[: self.batch_size] for t in self.splits["train"])
        self.model.compute_loss(y=y, y_pred=self.model(x))  # builds the compiled loss, as fit's first batch would
        kcompile.build_optimizer(self.opt, self.model.trainable_variables)
        m = self.model
        self._groups = (m.trainable_variables, m.non_trainable_variables, self.opt.variables, m.metrics_variables)
        self._step = kcompile.Step(self._train_step, [v for g in self._groups for v in g])
        return self._step

    def _train_step(self, xb, yb):
        """Keras's `train_step` (what `fit` compiles): on JAX on the variables' values, written back."""
        if keras.backend.backend() != "jax":
            return self.model.train_step((xb, yb))["loss"]
        logs, new = self.model.train_step(tuple([v.value for v in g] for g in self._groups), (xb, yb))
        for group, values in zip(self._groups, new):
            for var, value in zip(group, values):
                var.assign(value)
        return logs["loss"]  # the epoch's running mean, as fit's history reports it

    def epoch_losses(self, device_losses) -> dict[str, float]:
        return {"bp_loss": float(ops.convert_to_numpy(device_losses["bp_loss"]))}

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
        """Each layer's params (`reference.ff.STATE_KEYS`) and a batch-normalised layer's running statistics (bn{i})."""
        out = {}
        for i, layer in enumerate(self.weighted()):
            k, *rest = layer.get_weights()
            out |= dict(zip((f"{key}{i}" for key in (*STATE_KEYS, "bn")), (kops.from_kernel(k), *rest)))
        return out

    def load_state(self, state: dict) -> None:
        for i, layer in enumerate(self.weighted()):
            keys = [f"{key}{i}" for key in (*STATE_KEYS, "bn")][:len(layer.weights)]
            layer.set_weights([kops.to_kernel(state[keys[0]]), *(state[k] for k in keys[1:])])
