"""The recurrent FF net in JAX: a translation of `ffbench.reference.recurrent`.

Layer i's weight is [U | V] (bottom-up | top-down), its input the normalised states below and
above at the previous iteration under `stop_gradient`: each iteration's layer losses give each
layer only its own gradient, through (1 - d) relu(z). The trainer (`ff.FFTrainer`) calls
these in place of the feed-forward step, scores and read-out features.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from ffbench_backends.jax import ops

from ffbench.reference.recurrent import label_columns
from ffbench.spec import NUM_CLASSES, FFSpec


def weights(w: jax.Array, top: int, ff: FFSpec) -> jax.Array:
    if ff.receptive_field is None:
        return w
    n_out, n_in = w.shape
    local = ops.local_mask(n_out, n_in - top, ff.receptive_field, ff.image)
    return w * jnp.concatenate([local, jnp.ones((n_out, top), local.dtype)], axis=1)


def start(x: jax.Array, params, ff: FFSpec, prec: str) -> list[jax.Array]:
    """h^0 (`reference.recurrent.start`)."""
    if ff.recurrent.init == "zeros":
        return [jnp.zeros((x.shape[0], w.shape[0]), x.dtype) for w, _ in params]
    hs, below = [], x
    for i, (w, b) in enumerate(params):
        u = jnp.pad(ops.normalize(below, ff.norm, ff.norm_eps), ((0, 0), (0, w.shape[1] - below.shape[1])))
        below = jax.nn.relu(ops.linear(u, weights(w, label_columns(i, len(params)), ff), b, prec))
        hs.append(below)
    return hs


def iterate(x: jax.Array, y1: jax.Array, params, ff: FFSpec, hs: list[jax.Array], prec: str) -> list[jax.Array]:
    """h^t of every layer from h^{t-1} = hs (inputs under stop_gradient)."""
    d, depth = ff.recurrent.damping, len(params)
    hs = [jax.lax.stop_gradient(h) for h in hs]
    below, above = [x, *hs[:-1]], [*hs[1:], y1]
    out = []
    for i, ((w, b), lo, hi, h) in enumerate(zip(params, below, above, hs)):
        u = jnp.concatenate([ops.normalize(lo, ff.norm, ff.norm_eps), ops.normalize(hi, ff.norm, ff.norm_eps)], axis=1)
        z = ops.linear(u, weights(w, label_columns(i, depth), ff), b, prec)
        out.append(d * h + (1 - d) * ops.relu(z, ff.relu_grad))
    return out


def run(x: jax.Array, labels: jax.Array, params, ff: FFSpec, prec: str) -> list[list[jax.Array]]:
    y1, hs = jax.nn.one_hot(labels, NUM_CLASSES, dtype=x.dtype), start(x, params, ff, prec)
    out = [hs]
    for _ in range(ff.recurrent.iterations):
        hs = iterate(x, y1, params, ff, hs, prec)
        out.append(hs)
    return out


def features(ff: FFSpec, prec: str, params, x: jax.Array) -> jax.Array:
    """`reference.recurrent.readout_features` (no gradient)."""
    hs = start(x, params, ff, prec)
    return jax.lax.stop_gradient(jnp.concatenate([ops.normalize(hs[i], ff.norm, ff.norm_eps)
                                                  for i in ff.prediction_layers], axis=1))


def label_scores(ff: FFSpec, objective, prec: str, layers, params, x: jax.Array) -> jax.Array:
    """(B, 10) (`reference.recurrent.label_scores`)."""
    (obj, p), n, rec = objective, x.shape[0], ff.recurrent
    states = run(jnp.tile(x, (NUM_CLASSES, 1)), jnp.repeat(jnp.arange(NUM_CLASSES), n), params, ff, prec)
    score = sum(obj.score(states[t][i], ff, p) for t in range(rec.score_from, rec.score_to + 1) for i in layers)
    return score.reshape(NUM_CLASSES, n).T


def step_losses(ff: FFSpec, prec: str, trainable, params, xb: jax.Array, yb: jax.Array, negb: jax.Array, objective):
    """`reference.recurrent.step` as a loss for autodiff: the mean over the loss iterations of
    the summed layer losses, and (FF loss per layer, read-out loss). `trainable`: every
    layer and, for a joint read-out, its weights."""
    (obj, p), rec, n = objective, ff.recurrent, xb.shape[0]
    params = [trainable["layers"][i] for i in range(len(params))]
    x2 = jnp.concatenate([xb, xb])
    y1 = jax.nn.one_hot(jnp.concatenate([yb, negb]), NUM_CLASSES, dtype=xb.dtype)
    first, last = rec.loss_from, rec.last_loss_iteration
    hs, losses = start(x2, params, ff, prec), [jnp.zeros(())] * len(params)
    for t in range(1, last + 1):
        hs = iterate(x2, y1, params, ff, hs, prec)
        if t >= first:
            losses = [acc + obj.loss(h, n, ff, p, w.shape[1]) / (last - first + 1)
                      for acc, h, (w, _) in zip(losses, hs, params)]
    total, readout_loss = sum(losses), jnp.zeros(())
    if trainable["readout"] is not None:
        readout_loss = ops.cross_entropy(ops.linear(features(ff, prec, params, xb), trainable["readout"], None, prec), yb)
        total = total + readout_loss
    return total, (jnp.stack(losses), readout_loss)
