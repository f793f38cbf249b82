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
from ffbench.reference.bp import initial_running
from ffbench.reference.ff import STATE_KEYS, frozen_bn
from ffbench.reference.init import bp_init
from ffbench.reference.rng import STREAM_JITTER, STREAM_ORDER, stream_key
from ffbench.spec import NUM_CLASSES, BPTrial


def logits(params, x, local=None, conv=None, running=None, train: bool = False):
    """(logits, new running statistics). `local`: (k, image) of locally connected hidden layers
    (`reference.bp`), or None; `conv`: the conv layers of a conv net, or None. A batch-normalised
    conv layer normalises by the batch's statistics in training (`train`), else by `running`."""
    running = [None] * (len(params) - 1) if running is None else list(running)
    for i, p in enumerate(params[:-1]):
        if conv is not None and train and conv[i].batch_norm:
            x, running[i] = ops.conv_layer_train(x, *p, running[i], conv[i])
        elif conv is not None:
            x = ops.conv_layer(x, *p[:2], conv[i], bn=frozen_bn(p, running[i]))
        else:
            w = p[0] if local is None else p[0] * ops.local_mask(*p[0].shape, *local)
            x = jax.nn.relu(ops.linear(x, w, p[1]))
    return ops.linear(x, *params[-1]), running


class BPTrainer(JaxTrainer):
    def __init__(self, trial: BPTrial, data: Dataset, device, share: BPTrainer | None = None):
        super().__init__(trial, data, device, share)
        self.params = self.to_device(bp_init(trial, data.train.x.shape[1], NUM_CLASSES))
        conv = trial.conv_layers()
        self.net = (trial.local, None if conv is None else tuple(conv))  # static: how the hidden layers compute
        self.running = [None if r is None else jax.device_put(jnp.asarray(r, jnp.float32), device)
                        for r in initial_running(trial)]

    def phases(self) -> list[Phase]:
        return [Phase("bp", self.trial.epochs, self.trial.optimizer)]

    def setup_phase(self, phase: Phase):
        self.tx = jopt.transform(phase.optimizer)
        self.opt_state = self.tx.init(self.params)
        return "bp", partial(_bp_epoch, self.tx, self.batch_size, self.steps_per_epoch, self.trial.data.jitter, self.image,
                             self.net)

    def example_args(self):
        return ((self.params, self.opt_state, self.running), *self.splits["train"], jnp.uint32(0), jnp.uint32(0),
                jnp.float32(0))

    def epoch_args(self, phase: Phase, epoch: int, lr: float):
        key = jnp.uint32(stream_key(self.trial.seed, STREAM_ORDER, epoch))
        jitter_key = jnp.uint32(stream_key(self.trial.seed, STREAM_JITTER, epoch))
        return ((self.params, self.opt_state, self.running), *self.splits["train"], key, jitter_key, jnp.float32(lr))

    def take_state(self, state) -> None:
        self.params, self.opt_state, self.running = state

    def epoch_losses(self, device_losses) -> dict[str, float]:
        return {"bp_loss": float(np.asarray(device_losses))}

    def can_evaluate(self, phase: Phase) -> bool:
        return True

    def predict(self, x):
        return _predict(self.params, self.running, x, self.net)

    def sync(self) -> None:
        jax.block_until_ready(self.params)

    def state(self) -> dict:
        """Each layer's params (`reference.ff.STATE_KEYS`) and a batch-normalised layer's running statistics (bn{i})."""
        out = {f"{k}{i}": np.asarray(t) for i, p in enumerate(self.params) for k, t in zip(STATE_KEYS, p)}
        return out | {f"bn{i}": np.asarray(r) for i, r in enumerate(self.running) if r is not None}

    def load_state(self, state: dict) -> None:
        put = lambda key: jax.device_put(jnp.asarray(state[key]), self.device)  # noqa: E731
        self.params = [tuple(put(f"{k}{i}") for k in STATE_KEYS[:len(p)]) for i, p in enumerate(self.params)]
        self.running = [None if r is None else put(f"bn{i}") for i, r in enumerate(self.running)]


@partial(jax.jit, static_argnums=3)
def _predict(params, running, x, net):
    return logits(params, x, *net, running)[0].argmax(axis=1)


def _bp_epoch(tx, bsz, steps, jitter, image, net, state, x, y, key, jitter_key, lr):
    order = ops.epoch_order(key, x.shape[0])[: steps * bsz].reshape(steps, bsz)

    def step(carry, idx):
        params, opt_state, running = carry
        xb = ops.batch_images(x, idx, jitter_key, jitter, image)

        def loss_fn(p):
            out, new = logits(p, xb, *net, running, train=True)
            return ops.cross_entropy(out, y[idx]), new
        (loss, running), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        direction, opt_state = tx.update(grads, opt_state, params)
        return (jopt.apply(params, direction, lr), opt_state, running), loss

    state, losses = jax.lax.scan(step, state, order)
    return state, losses.mean()
