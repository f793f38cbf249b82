"""Forward-Forward training in JAX: a translation of `ffbench.reference.ff`.

A whole epoch of one phase is one jitted program: `lax.scan` over the minibatches, with
data, labels, order and negatives on the device and no host sync inside. Each layer's loss
is computed on the stop-gradient output of the layer below, so the gradient of the summed
losses gives every layer exactly its own gradient (the simultaneous schedule).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from ffbench_backends.jax import ops
from ffbench_backends.jax import optim as jopt
from ffbench_backends.jax.common import JaxTrainer

from ffbench.backend import FFSchedule, Phase
from ffbench.data import Dataset
from ffbench.reference.ff import PEER_INIT
from ffbench.reference.optim import lr_at
from ffbench.reference.rng import STREAM_NEGATIVES, STREAM_ORDER, stream_key
from ffbench.spec import NUM_CLASSES, FFTrial


class FFTrainer(FFSchedule, JaxTrainer):
    def __init__(self, trial: FFTrial, data: Dataset, device):
        super().__init__(trial, data, device)
        self.ff = trial.ff
        self.params = self.init_params([data.train.x.shape[1], *trial.hidden], self.ff.init)
        self.running = [jnp.full((h,), PEER_INIT, jnp.float32) for h in trial.hidden]
        self.readout = None
        if self.ff.prediction == "softmax":
            feats = sum(trial.hidden[i] for i in self.ff.prediction_layers)
            self.readout = jax.device_put(jnp.zeros((NUM_CLASSES, feats), jnp.float32), device)
        self.index = jax.device_put(jnp.arange(self.n, dtype=jnp.uint32), device)
        self.trained: set[int] = set()
        self.readout_trained = False
        self._predictors: dict[tuple[int, ...], object] = {}

    # ------------------------------------------------------------------ phases
    def begin_phase(self, phase: Phase) -> None:
        self.phase, self.phase_epoch = phase, 0
        self.joint_readout = self.readout is not None and self.ff.readout_phase == "joint" and bool(phase.layers)
        self.separate_readout = self.joint_readout and self.ff.readout_optimizer is not None
        main_has_readout = phase.name == "readout" or (self.joint_readout and not self.separate_readout)
        self.tx = jopt.transform(phase.optimizer)
        self.opt_state = self.tx.init({"layers": {i: self.params[i] for i in phase.layers},
                                       "readout": self.readout if main_has_readout else None})
        self.rtx = jopt.transform(self.ff.readout_optimizer) if self.separate_readout else None
        self.ropt_state = self.rtx.init(self.readout) if self.rtx else None
        x, y = self.splits["train"]
        key, zero = jnp.uint32(0), jnp.float32(0)
        self._epoch = jax.jit(partial(_ff_epoch, self, phase.layers, phase.name == "readout")).lower(
            self._state(), x, y, self.index, key, key, zero, zero).compile()  # ahead of time: compile time is reported apart

    def _state(self):
        return (self.params, self.readout, self.running, self.opt_state, self.ropt_state)

    # ------------------------------------------------------------------ training
    def train_epoch(self, phase: Phase, epoch: int, lr: float):
        x, y = self.splits["train"]
        order_key = jnp.uint32(stream_key(self.trial.seed, STREAM_ORDER, epoch))
        neg_epoch = epoch if self.ff.negatives_refresh == "epoch" else 0
        neg_key = jnp.uint32(stream_key(self.trial.seed, STREAM_NEGATIVES, neg_epoch))
        readout_lr = lr_at(self.ff.readout_optimizer, self.phase_epoch, phase.epochs) if self.rtx else 0.0
        self.phase_epoch += 1
        state, losses = self._epoch(self._state(), x, y, self.index, order_key, neg_key, jnp.float32(lr), jnp.float32(readout_lr))
        self.params, self.readout, self.running, self.opt_state, self.ropt_state = state
        self.trained.update(phase.layers)
        self.readout_trained |= phase.name == "readout" or self.joint_readout
        return losses

    def epoch_losses(self, device_losses) -> dict[str, float | dict[int, float]]:
        ff_loss, peer, readout = (np.asarray(v, dtype=np.float64) for v in device_losses)
        out: dict[str, float | dict[int, float]] = {}
        if self.phase.layers:
            out["ff_loss"] = {i: float(ff_loss[i]) for i in self.phase.layers}
            if self.ff.peer_weight > 0:
                out["peer_loss"] = {i: float(peer[i]) for i in self.phase.layers}
        if self.phase.name == "readout" or self.joint_readout:
            out["readout_loss"] = float(readout)
        return out

    def sync(self) -> None:
        jax.block_until_ready((self.params, self.readout))

    def state(self) -> dict:
        out = {f"{k}{i}": np.asarray(t) for i, wb in enumerate(self.params) for k, t in zip("Wb", wb)}
        if self.readout is not None:
            out["readout"] = np.asarray(self.readout)
        return out

    def load_state(self, state: dict) -> None:
        self.params = [(jax.device_put(jnp.asarray(state[f"W{i}"]), self.device), jax.device_put(jnp.asarray(state[f"b{i}"]), self.device))
                       for i in range(len(self.params))]
        if self.readout is not None:
            self.readout = jax.device_put(jnp.asarray(state["readout"]), self.device)
        self.trained, self.readout_trained = set(range(len(self.params))), True

    # ------------------------------------------------------------------ evaluation
    def predict(self, x):
        layers = tuple(self.ff.prediction_layers) if self.readout is not None else \
            tuple(i for i in self.ff.prediction_layers if i in self.trained)
        if layers not in self._predictors:
            self._predictors[layers] = jax.jit(partial(_predict, self.ff, layers))
        return self._predictors[layers](self.params, self.readout, x)


def features(ff, params, x):
    """Normalised activities of the prediction layers on the neutral-label pass (no gradient)."""
    h, feats = ops.overlay(x, None, ff), []
    for i, (w, b) in enumerate(params[: max(ff.prediction_layers) + 1]):
        h = ops.layer_forward(h, w, b, ff)
        if i in ff.prediction_layers:
            feats.append(ops.normalize(h, ff.norm, ff.norm_eps))
    return jax.lax.stop_gradient(jnp.concatenate(feats, axis=1))


def _predict(ff, layers, params, readout, x):
    if readout is not None:
        return ops.linear(features(ff, params, x), readout).argmax(axis=1)
    h, score = ops.overlay_all_labels(x, ff), 0.0
    for i, (w, b) in enumerate(params[: max(layers) + 1]):
        h = ops.layer_forward(h, w, b, ff)
        if i in layers:
            score = score + ops.goodness(h, ff.goodness)
    score = score.reshape(NUM_CLASSES, x.shape[0])
    return score.argmax(axis=0) if ff.sign == "max_ssq" else score.argmin(axis=0)


def ff_step_losses(ff, layers, trainable, params, running, pos, neg, xb, yb):
    """Total objective of one step, and (per-layer FF losses, per-layer peer losses, read-out loss, new running means).

    `trainable` holds the layers being trained and, for a joint read-out, its weights; the
    read-out reads the pre-update layers and its gradient never reaches them.
    """
    depth, n = len(params), pos.shape[0]
    params = [trainable["layers"].get(i, p) for i, p in enumerate(params)]
    ff_losses, peer_losses, running = [jnp.zeros(())] * depth, [jnp.zeros(())] * depth, list(running)
    total = jnp.zeros(())
    h = jnp.concatenate([pos, neg])
    for i in range(min(layers)):  # frozen layers below (greedy)
        h = jax.lax.stop_gradient(ops.layer_forward(h, *params[i], ff))
    for i in range(min(layers), max(layers) + 1):
        h = ops.layer_forward(jax.lax.stop_gradient(h), *params[i], ff)
        ff_losses[i] = ops.ff_loss(ops.goodness(h, ff.goodness), n, ff)
        total = total + ff_losses[i]
        if ff.peer_weight > 0:
            peer_losses[i], running[i] = ops.peer_loss(h[:n], running[i], ff)
            total = total + ff.peer_weight * peer_losses[i]
    readout_loss = jnp.zeros(())
    if trainable["readout"] is not None:
        readout_loss = ops.cross_entropy(ops.linear(features(ff, params, xb), trainable["readout"]), yb)
        total = total + readout_loss
    return total, (jnp.stack(ff_losses), jnp.stack(peer_losses), readout_loss, running)


def _ff_epoch(tr: FFTrainer, layers, readout_only, state, x, y, index, order_key, neg_key, lr, readout_lr):
    ff, bsz, steps = tr.ff, tr.batch_size, tr.steps_per_epoch
    order = ops.epoch_order(order_key, x.shape[0])[: steps * bsz].reshape(steps, bsz)
    wrong = ops.wrong_labels(neg_key, index, y)

    def readout_step(carry, idx):
        params, readout, running, opt_state, ropt_state = carry
        xb, yb = x[idx], y[idx]
        loss, grad = jax.value_and_grad(lambda w: ops.cross_entropy(ops.linear(features(ff, params, xb), w), yb))(readout)
        direction, opt_state = tr.tx.update({"layers": {}, "readout": grad}, opt_state, {"layers": {}, "readout": readout})
        readout = jopt.apply(readout, direction["readout"], lr)
        zeros = jnp.zeros(len(params))
        return (params, readout, running, opt_state, ropt_state), (zeros, zeros, loss)

    def ff_step(carry, idx):
        params, readout, running, opt_state, ropt_state = carry
        xb, yb = x[idx], y[idx]
        pos, neg = ops.overlay(xb, yb, ff), ops.overlay(xb, wrong[idx], ff)
        trainable = {"layers": {i: params[i] for i in layers}, "readout": readout if tr.joint_readout else None}
        grad_fn = jax.value_and_grad(ff_step_losses, argnums=2, has_aux=True)
        (_, (ffl, peer, rl, running)), grads = grad_fn(ff, layers, trainable, params, running, pos, neg, xb, yb)
        if tr.separate_readout:  # the read-out's gradient goes to its own optimiser
            rdir, ropt_state = tr.rtx.update(grads["readout"], ropt_state, readout)
            readout = jopt.apply(readout, rdir, readout_lr)
            trainable, grads = ({**t, "readout": None} for t in (trainable, grads))
        direction, opt_state = tr.tx.update(grads, opt_state, trainable)
        trainable = jopt.apply(trainable, direction, lr)
        params = [trainable["layers"].get(i, p) for i, p in enumerate(params)]
        if trainable["readout"] is not None:
            readout = trainable["readout"]
        return (params, readout, running, opt_state, ropt_state), (ffl, peer, rl)

    state, (ffl, peer, rl) = jax.lax.scan(readout_step if readout_only else ff_step, state, order)
    return state, (ffl.mean(axis=0), peer.mean(axis=0), rl.mean())
