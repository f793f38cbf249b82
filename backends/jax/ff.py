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
from ffbench_backends.jax import ops, recurrent
from ffbench_backends.jax import optim as jopt
from ffbench_backends.jax.common import JaxTrainer

from ffbench import frozen
from ffbench.backend import FFSchedule, Phase, bound_objective
from ffbench.data import Dataset
from ffbench.reference import rng
from ffbench.reference.ff import STATE_KEYS, frozen_bn, initial_running
from ffbench.reference.init import ff_init
from ffbench.reference.negatives import negatives_epoch, score_layers, training_images
from ffbench.reference.optim import lr_at
from ffbench.spec import NUM_CLASSES, FFTrial
from ffbench.variants import Batch
from ffbench.variants.objectives import objective_args, scores_classes


class FFTrainer(FFSchedule, JaxTrainer):
    def __init__(self, trial: FFTrial, data: Dataset, device, share: FFTrainer | None = None):
        super().__init__(trial, data, device, share)
        self.init_schedule("jax", data)
        self.params = self.to_device(ff_init(trial.seed, data.train.x.shape[1], trial.hidden, self.ff))
        self.running = [jax.device_put(jnp.asarray(r), device) for r in initial_running(self.ff, trial.hidden)]
        self.readout = None
        if self.ff.prediction == "softmax":
            feats = sum(trial.hidden[i] for i in self.ff.prediction_layers)
            self.readout = jax.device_put(jnp.zeros((NUM_CLASSES, feats), jnp.float32), device)
        if share is not None:  # a pack's members share the data on the device
            self.index, self.images = share.index, share.images
        else:
            self.index = jax.device_put(jnp.arange(self.n, dtype=jnp.uint32), device)
            pool = training_images(self.ff, data)  # class_split: the training images + the pool
            self.images = self.splits["train"][0] if pool is None else jax.device_put(jnp.asarray(pool), device)
        self._order = share._order if share else jax.jit(partial(_order, self.n, self.steps_per_epoch * self.batch_size))
        self._predictors: dict[tuple[int, ...], object] = {}
        self._layer_states: dict[tuple[int, ...], object] = {}  # a layer's optimiser state, kept across episodes
        self._scorers: dict[tuple[int, ...], object] = {}

    # ------------------------------------------------------------------ phases
    def setup_phase(self, phase: Phase):
        if self.phase is not None and self.phase.layers:
            if self.per_layer_optimizers:  # each layer's own state (`ff.layer_epochs`)
                self._layer_states.update({(i,): s for i, s in self.opt_state.items()})
            else:
                self._layer_states[self.phase.layers] = self.opt_state
        self.enter_phase(phase)
        main_has_readout = phase.name == "readout" or (self.joint_readout and not self.separate_readout)
        if phase.name == "readout":  # each read-out phase starts from zero
            self.readout = jnp.zeros_like(self.readout)
        self.tx = jopt.transform(phase.optimizer)
        if self.per_layer_optimizers and phase.layers:
            self.opt_state = {i: self._layer_states[(i,)] if (i,) in self._layer_states else self.tx.init(self.params[i])
                              for i in phase.layers}
        elif phase.layers in self._layer_states:
            self.opt_state = self._layer_states[phase.layers]
        else:
            self.opt_state = self.tx.init({"layers": {i: self.params[i] for i in phase.layers},
                                           "readout": self.readout if main_has_readout else None})
        self.rtx = jopt.transform(self.ff.readout_optimizer) if self.separate_readout else None
        self.ropt_state = self.rtx.init(self.readout) if self.rtx else None
        self._rows = None  # the phase's cached, normalised input of its first layer (`ffbench.frozen`)
        plan = self.plan_frozen(phase) if phase.layers else None
        cached = None if plan is None or not plan.positives else "both" if plan.negatives else "positives"
        program = (phase.layers, phase.name == "readout", self.readout_layers, cached)
        return program, partial(_ff_epoch, self, *program)

    def example_args(self):
        positions, zero = jnp.zeros(self.steps_per_epoch * self.batch_size, jnp.int32), jnp.float32(0)
        plan, cached = self.frozen, None
        if plan is not None and plan.positives:
            cached = jax.ShapeDtypeStruct(((1 + plan.negatives) * self.n, plan.width), jnp.float32)
        return (self._state(), self.images, self.splits["train"][1], positions, positions,
                jnp.uint32(0), jnp.uint32(0), zero, zero, cached)

    def frozen_rows(self, labels):
        """(n, width): the normalised input of the phase's first layer on the training images
        with `labels` overlaid (None: the images as they are), one program over chunks of
        `eval_batch_size`."""
        x, step, below = self.splits["train"][0], self.trial.eval_batch_size, self.frozen.below
        if ("frozen", below) not in self._scorers:
            self._scorers[("frozen", below)] = jax.jit(partial(_frozen_rows, self.ff, self.trial.precision))
        fn = self._scorers[("frozen", below)]
        return jnp.concatenate([fn(self.params[:below], self.running[:below], x[i:i + step],
                                   None if labels is None else labels[i:i + step])
                                for i in range(0, self.n, step)])

    def cached_rows(self):
        """The phase's cached rows, filled where due (timed as training): the positives' n rows
        once per phase, then (where kept) the negatives' n rows at each draw."""
        plan = self.frozen
        if plan is None or not plan.positives:
            return None
        if self._rows is None:
            self._rows = self.frozen_rows(self.splits["train"][1] if self.ff.embeds_labels else None)
        redrawn = self.frozen_negatives_due()
        if redrawn is not None:
            self._rows = jnp.concatenate([self._rows[: self.n], self.frozen_rows(redrawn)])
        return self._rows

    def _state(self):
        return (self.params, self.readout, self.running, self.opt_state, self.ropt_state)

    # ------------------------------------------------------------------ training
    def epoch_args(self, phase: Phase, epoch: int, lr: float):
        x, y = self.images, self.splits["train"][1]
        order = self._order(jnp.uint32(rng.stream_key(self.trial.seed, rng.STREAM_ORDER, epoch)))
        neg = order if phase.name == "readout" else self._negatives(phase, epoch, order)
        readout_lr = lr_at(self.ff.readout_optimizer, self.phase_epoch, phase.epochs) if self.rtx else 0.0
        mask_key = jnp.uint32(rng.stream_key(self.trial.seed, rng.STREAM_MASK, negatives_epoch(self.trial, epoch)))
        jitter_key = jnp.uint32(rng.stream_key(self.trial.seed, rng.STREAM_JITTER, epoch))
        return (self._state(), x, y, order, neg, mask_key, jitter_key, jnp.float32(lr), jnp.float32(readout_lr),
                self.cached_rows() if phase.layers else None)

    def take_state(self, state) -> None:
        self.params, self.readout, self.running, self.opt_state, self.ropt_state = state

    def _negatives(self, phase: Phase, epoch: int, order: jax.Array) -> jax.Array:
        """The negative of each position of the epoch's order (`reference.negatives.Draws`)."""
        if self.by_position:
            self.negatives_seconds = None
            return self.strategy.sample_by_position(self, negatives_epoch(self.trial, epoch), order)
        return self.sample_negatives(phase, epoch)[order]

    def wait(self, value) -> None:
        jax.block_until_ready(value)

    def hard_scores(self, phase: Phase) -> jax.Array:
        """(n, 10) label scores of the training set at the current weights, over the layers
        `reference.negatives.score_layers` names (a scored strategy's input)."""
        x = self.splits["train"][0]
        layers, step = tuple(score_layers(self.ff, self.score_upto(phase))), self.trial.eval_batch_size
        if layers not in self._scorers:
            self._scorers[layers] = jax.jit(partial(_label_scores, self.ff, self.objective_fn, self.trial.precision, layers))
        return jnp.concatenate([self._scorers[layers](self.params, self.running, x[i:i + step]) for i in range(0, self.n, step)])

    def epoch_losses(self, device_losses) -> dict[str, float | dict[int, float]]:
        ff_loss, peer, readout, collisions = (np.asarray(v, dtype=np.float64) for v in device_losses)
        return self.epoch_record(ff_loss, peer, readout, float(collisions) / self.batch_size)

    def sync(self) -> None:
        jax.block_until_ready((self.params, self.readout))

    def state(self) -> dict:
        out = {f"{k}{i}": np.asarray(t) for i, wb in enumerate(self.params) for k, t in zip(STATE_KEYS, wb)}
        out |= {f"bn{i}": np.asarray(self.running[i]) for i, p in enumerate(self.params) if len(p) > 2}
        if self.readout is not None:
            out["readout"] = np.asarray(self.readout)
        return out

    def load_state(self, state: dict) -> None:
        put = lambda key: jax.device_put(jnp.asarray(state[key]), self.device)  # noqa: E731
        self.params = [tuple(put(f"{k}{i}") for k in STATE_KEYS[:len(p)]) for i, p in enumerate(self.params)]
        self.running = [put(f"bn{i}") if len(p) > 2 else r for i, (p, r) in enumerate(zip(self.params, self.running))]
        if self.readout is not None:
            self.readout = jax.device_put(jnp.asarray(state["readout"]), self.device)
        self.trained, self.readout_trained = set(range(len(self.params))), True

    # ------------------------------------------------------------------ evaluation
    def predict(self, x):
        layers = self.readout_layers if self.readout is not None else \
            tuple(i for i in self.ff.prediction_layers if i in self.trained)
        if layers not in self._predictors:
            self._predictors[layers] = jax.jit(partial(_predict, self.ff, self.objective_fn, self.trial.precision, layers))
        return self._predictors[layers](self.params, self.running, self.readout, x)


def features(ff, prec, params, running, x, active=None):
    """Normalised activities of the prediction layers on the neutral-label pass (no gradient);
    zeros for a prediction layer not in `active` (`reference.ff.readout_features`)."""
    if ff.recurrent is not None:
        return recurrent.features(ff, prec, params, x)
    active = ff.prediction_layers if active is None else active
    h, feats = ops.eval_rows(x, ff), {}
    for i, q in enumerate(params[: max(active) + 1]):
        h = ops.layer_forward(h, q[0], q[1], ff, prec, layer=i, bn=frozen_bn(q, running[i]))
        if i in active:
            feats[i] = ops.normalize(h, ff.norm, ff.norm_eps)
    width = lambda i: params[i][0].shape[0] if ff.conv_layers is None else ff.conv_layer(i).output.size  # noqa: E731
    return jax.lax.stop_gradient(jnp.concatenate(
        [feats[i] if i in feats else jnp.zeros((x.shape[0], width(i)), h.dtype)
         for i in ff.prediction_layers], axis=1))


def _label_scores(ff, objective, prec, layers, params, running, x):
    """(B, 10) summed objective scores over `layers` with each label overlaid (`reference.ff.label_scores`)."""
    if ff.recurrent is not None:
        return recurrent.label_scores(ff, objective, prec, layers, params, x)
    obj, p = objective
    if scores_classes(ff):  # one label-free pass (`reference.ff.label_scores`)
        h, score = x, 0.0
        for i, q in enumerate(params[: max(layers) + 1]):
            h = ops.layer_forward(h, q[0], q[1], ff, prec, layer=i, bn=frozen_bn(q, running[i]))
            if i in layers:
                score = score + obj.class_scores(h, ff, p)
        return score
    first = params[0]
    h = ops.first_layer_all_labels(x, first[0], first[1], ff, prec,
                                   frozen_bn(first, running[0])).reshape(NUM_CLASSES * x.shape[0], -1)
    score = ops.image_scores(obj.score(ops.objective_rows(h, ff, 0), ff, p), ff, 0) if 0 in layers else 0.0
    for i, q in enumerate(params[1: max(layers) + 1], start=1):
        h = ops.layer_forward(h, q[0], q[1], ff, prec, layer=i, bn=frozen_bn(q, running[i]))
        if i in layers:
            score = score + ops.image_scores(obj.score(ops.objective_rows(h, ff, i), ff, p), ff, i)
    return score.reshape(NUM_CLASSES, x.shape[0]).T


def _predict(ff, objective, prec, layers, params, running, readout, x):
    if readout is not None:
        return ops.linear(features(ff, prec, params, running, x, layers), readout, None, prec).argmax(axis=1)
    return _label_scores(ff, objective, prec, layers, params, running, x).argmax(axis=1)


def _frozen_rows(ff, prec, params, running, x, labels, normalized=True):
    """`x` (with `labels` overlaid; None: as it is) through the frozen layers `params` (batch
    norm on the `running` statistics); with `normalized`, normalised as the next layer's input
    (`ffbench.frozen`)."""
    h = x if labels is None else ops.overlay(x, labels, ff)
    for i, q in enumerate(params):
        h = ops.layer_forward(h, q[0], q[1], ff, prec, layer=i, bn=frozen_bn(q, running[i]))
    return ops.normalize(h, ff.norm, ff.norm_eps) if normalized else h


def _order(n, used, key):
    return ops.epoch_order(key, n)[:used].astype(jnp.int32)


def ff_step_losses(ff, prec, layers, trainable, params, running, pos, neg, xb, yb, objective=None, rows=None):
    """Total objective of one step, and (per-layer FF losses, per-layer peer losses, read-out loss,
    new carried statistics: running means, or a batch-normalised layer's running statistics).

    `trainable` holds the layers being trained and, for a joint read-out, its weights; the
    read-out reads the pre-update layers and its gradient never reaches them. `rows`: the
    step's rows of the phase's cached, normalised input of its first layer (`ffbench.frozen`):
    of both halves (then `pos`, `neg` are not read) or of the positives.
    """
    both = rows is not None and neg is None
    depth, n = len(params), pos.shape[0] if rows is None else rows.shape[0] // 2 if both else rows.shape[0]
    obj, p = objective or bound_objective(ff, "jax")
    params = [trainable["layers"].get(i, p) for i, p in enumerate(params)]
    ff_losses, peer_losses, running = [jnp.zeros(())] * depth, [jnp.zeros(())] * depth, list(running)
    total, below = jnp.zeros(()), params[: min(layers)]
    if rows is None:  # the frozen layers, over both halves at once
        h = jax.lax.stop_gradient(_frozen_rows(ff, prec, below, running, jnp.concatenate([pos, neg]), None, normalized=False))
    else:
        h = rows if both else jnp.concatenate([rows, jax.lax.stop_gradient(_frozen_rows(ff, prec, below, running, neg, None))])
    readout_running = list(running)  # a joint read-out reads the pre-update statistics, as the pre-update layers
    for i in range(min(layers), max(layers) + 1):
        width = h.shape[1]
        seen, h, running[i] = ops.trained_layer(jax.lax.stop_gradient(h), params[i], running[i], ff, prec,
                                                normalized=rows is not None and i == min(layers), layer=i)
        ff_losses[i] = obj.loss(ops.objective_rows(seen, ff, i), n * ff.positions(i), ff, p, width,
                                **objective_args(ff, yb, i))
        total = total + ff_losses[i]
        if ff.peer_weight > 0:
            peer_losses[i], running[i] = ops.peer_loss(seen[:n], running[i], ff)
            total = total + ff.peer_weight * peer_losses[i]
    readout_loss = jnp.zeros(())
    if trainable["readout"] is not None:
        readout_loss = ops.cross_entropy(ops.linear(features(ff, prec, params, readout_running, xb), trainable["readout"], None,
                                                    prec), yb)
        total = total + readout_loss
    return total, (jnp.stack(ff_losses), jnp.stack(peer_losses), readout_loss, running)


def _ff_epoch(tr: FFTrainer, layers, readout_only, active, kept, state, x, y, order, neg, mask_key, jitter_key, lr,
              readout_lr, cached):
    ff, bsz, steps, jitter, prec = tr.ff, tr.batch_size, tr.steps_per_epoch, tr.trial.data.jitter, tr.trial.precision
    order, neg = order.reshape(steps, bsz), neg.reshape(steps, bsz)

    def readout_step(carry, batch):
        idx, _ = batch
        params, readout, running, opt_state, ropt_state = carry
        xb, yb = ops.batch_images(x, idx, jitter_key, jitter, tr.image), y[idx]
        loss, grad = jax.value_and_grad(
            lambda w: ops.cross_entropy(ops.linear(features(ff, prec, params, running, xb, active), w, None, prec), yb))(readout)
        direction, opt_state = tr.tx.update({"layers": {}, "readout": grad}, opt_state, {"layers": {}, "readout": readout})
        readout = jopt.apply(readout, direction["readout"], lr)
        zeros = jnp.zeros(len(params))
        return (params, readout, running, opt_state, ropt_state), (zeros, zeros, loss, jnp.zeros((), jnp.int32))

    def ff_step(carry, batch):
        idx, negb = batch
        params, readout, running, opt_state, ropt_state = carry
        xb, yb = ops.batch_images(x, idx, jitter_key, jitter, tr.image), y[idx]
        trainable = {"layers": {i: params[i] for i in layers}, "readout": readout if tr.joint_readout else None}
        if ff.recurrent is not None:  # the label clamped at the top: the images and both labels
            grad_fn = jax.value_and_grad(recurrent.step_losses, argnums=2, has_aux=True)
            (_, (ffl, rl)), grads = grad_fn(ff, prec, trainable, params, xb, yb, negb, tr.objective_fn)
            peer = jnp.zeros_like(ffl)
        else:
            at = None if kept is None else frozen.row_index(idx, tr.n, kept == "both", jnp.concatenate)  # `ffbench.frozen`
            rows = None if kept is None else cached if at is None else cached[at]
            if kept == "both":
                pos = neg = None
            elif ff.embeds_labels:
                pos, neg = ops.overlay(xb, yb, ff), ops.overlay(xb, negb, ff)
            else:  # the strategy's own negative images (x: the training images, and any pool), and pairs
                batch = Batch(x, xb, yb, idx, negb, mask_key, jitter_key)
                pos, neg = tr.strategy.positives(tr, batch) if ff.pairs else xb, tr.strategy.inputs(tr, batch)
            grad_fn = jax.value_and_grad(ff_step_losses, argnums=3, has_aux=True)
            (_, (ffl, peer, rl, running)), grads = grad_fn(ff, prec, layers, trainable, params, running, pos, neg, xb, yb,
                                                           tr.objective_fn, rows)
        if tr.separate_readout:  # the read-out's gradient goes to its own optimiser
            rdir, ropt_state = tr.rtx.update(grads["readout"], ropt_state, readout)
            readout = jopt.apply(readout, rdir, readout_lr)
            trainable, grads = ({**t, "readout": None} for t in (trainable, grads))
        if tr.per_layer_optimizers:  # each layer's own state and step count (`ff.layer_epochs`; no joint read-out)
            steps = {i: tr.tx.update(grads["layers"][i], opt_state[i], trainable["layers"][i]) for i in layers}
            opt_state = {i: s for i, (_, s) in steps.items()}
            trainable = {**trainable, "layers": {i: jopt.apply(trainable["layers"][i], d, lr) for i, (d, _) in steps.items()}}
        else:
            direction, opt_state = tr.tx.update(grads, opt_state, trainable)
            trainable = jopt.apply(trainable, direction, lr)
        params = [trainable["layers"].get(i, p) for i, p in enumerate(params)]
        if trainable["readout"] is not None:
            readout = trainable["readout"]
        return (params, readout, running, opt_state, ropt_state), (ffl, peer, rl, (negb == yb).sum())

    state, (ffl, peer, rl, hits) = jax.lax.scan(readout_step if readout_only else ff_step, state, (order, neg))
    return state, (ffl.mean(axis=0), peer.mean(axis=0), rl.mean(), hits.mean())
