"""The backprop baseline in JAX: a translation of `ffbench.reference.bp`; an epoch is one `lax.scan`."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from ffbench_backends.jax import ops
from ffbench_backends.jax import optim as jopt
from ffbench_backends.jax.common import JaxTrainer

from ffbench.backend import Phase
from ffbench.data import Dataset
from ffbench.reference.init import bp_init
from ffbench.reference.rng import STREAM_JITTER, STREAM_ORDER, stream_key
from ffbench.spec import NUM_CLASSES, BPTrial


def logits(params, x, local=None, conv=None):
    """`local`: (k, image) of locally connected hidden layers (`reference.bp`), or None;
    `conv`: the conv layers of a conv net, or None."""
    for i, (w, b) in enumerate(params[:-1]):
        if conv is not None:
            x = ops.conv_layer(x, w, b, conv[i])
            continue
        w = w if local is None else w * ops.local_mask(*w.shape, *local)
        x = jax.nn.relu(ops.linear(x, w, b))
    return ops.linear(x, *params[-1])


class BPTrainer(JaxTrainer):
    def __init__(self, trial: BPTrial, data: Dataset, device, share: BPTrainer | None = None):
        super().__init__(trial, data, device, share)
        self.params = self.to_device(bp_init(trial, data.train.x.shape[1], NUM_CLASSES))
        conv = trial.conv_layers()
        self.net = (trial.local, None if conv is None else tuple(conv))  # static: how the hidden layers compute

    def phases(self) -> list[Phase]:
        return [Phase("bp", self.trial.epochs, self.trial.optimizer)]

    def setup_phase(self, phase: Phase):
        self.tx = jopt.transform(phase.optimizer)
        self.opt_state = self.tx.init(self.params)
        return "bp", partial(_bp_epoch, self.tx, self.batch_size, self.steps_per_epoch, self.trial.data.jitter, self.image,
                             self.net)

    def example_args(self):
        return ((self.params, self.opt_state), *self.splits["train"], jnp.uint32(0), jnp.uint32(0), jnp.float32(0))

    def epoch_args(self, phase: Phase, epoch: int, lr: float):
        key = jnp.uint32(stream_key(self.trial.seed, STREAM_ORDER, epoch))
        jitter_key = jnp.uint32(stream_key(self.trial.seed, STREAM_JITTER, epoch))
        return ((self.params, self.opt_state), *self.splits["train"], key, jitter_key, jnp.float32(lr))

    def take_state(self, state) -> None:
        self.params, self.opt_state = state

    def epoch_losses(self, device_losses) -> dict[str, float]:
        return {"bp_loss": float(np.asarray(device_losses))}

    def can_evaluate(self, phase: Phase) -> bool:
        return True

    def predict(self, x):
        return _predict(self.params, x, self.net)

    def sync(self) -> None:
        jax.block_until_ready(self.params)

    def state(self) -> dict:
        return {f"{k}{i}": np.asarray(t) for i, wb in enumerate(self.params) for k, t in zip("Wb", wb)}

    def load_state(self, state: dict) -> None:
        self.params = [(jax.device_put(jnp.asarray(state[f"W{i}"]), self.device),
                        jax.device_put(jnp.asarray(state[f"b{i}"]), self.device))
                       for i in range(len(self.params))]


@partial(jax.jit, static_argnums=2)
def _predict(params, x, net):
    return logits(params, x, *net).argmax(axis=1)


def _bp_epoch(tx, bsz, steps, jitter, image, net, state, x, y, key, jitter_key, lr):
    order = ops.epoch_order(key, x.shape[0])[: steps * bsz].reshape(steps, bsz)

    def step(carry, idx):
        params, opt_state = carry
        xb = ops.batch_images(x, idx, jitter_key, jitter, image)
        loss, grads = jax.value_and_grad(lambda p: ops.cross_entropy(logits(p, xb, *net), y[idx]))(params)
        direction, opt_state = tx.update(grads, opt_state, params)
        return (jopt.apply(params, direction, lr), opt_state), loss

    state, losses = jax.lax.scan(step, state, order)
    return state, losses.mean()
