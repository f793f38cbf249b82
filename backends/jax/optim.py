"""The spec's optimisers (`ffbench.reference.optim`) as optax transformations.

`transform(spec)` gives the update direction u (weight decay, then the moments; decoupled weight
decay after them; an update's `decay_rate` factor last); the step is p -= lr * u with lr a
traced scalar, so a learning-rate schedule never recompiles.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from ffbench.spec import OptimizerSpec


class AdamBeforeState(NamedTuple):
    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def scale_by_adam_eps_before_bias_correction(b1: float, b2: float, eps: float) -> optax.GradientTransformation:
    """Keras' Adam: u = sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)."""

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return AdamBeforeState(jnp.zeros((), jnp.int32), zeros, jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, updates)
        t = (state.count + 1).astype(jnp.float32)
        scale = jnp.sqrt(1 - b2**t) / (1 - b1**t)
        return jax.tree.map(lambda m, v: scale * m / (jnp.sqrt(v) + eps), mu, nu), AdamBeforeState(state.count + 1, mu, nu)

    return optax.GradientTransformation(init, update)


def scale_by_step_decay(rate: float, every: int) -> optax.GradientTransformation:
    """u *= rate^floor(k / every) at the k-th update (`OptimizerSpec.decay`), its own count."""

    def init(params):
        return optax.ScaleByScheduleState(jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        count = state.count + 1
        factor = jnp.float32(rate) ** (count // every).astype(jnp.float32)
        return jax.tree.map(lambda u: factor * u, updates), optax.ScaleByScheduleState(count)

    return optax.GradientTransformation(init, update)


def transform(spec: OptimizerSpec) -> optax.GradientTransformation:
    decoupled = spec.weight_decay and spec.weight_decay_mode == "decoupled"
    parts = [optax.add_decayed_weights(spec.weight_decay)] if spec.weight_decay and not decoupled else []
    if spec.name == "adam":
        if spec.eps_mode == "after_bias_correction":
            parts.append(optax.scale_by_adam(spec.beta1, spec.beta2, spec.eps))
        else:
            parts.append(scale_by_adam_eps_before_bias_correction(spec.beta1, spec.beta2, spec.eps))
    else:
        parts.append(optax.trace(decay=spec.momentum, nesterov=False))  # buf = momentum * buf + g
    if decoupled:  # torch's AdamW: u + wd * p, the step lr * u shrinking p by lr * wd
        parts.append(optax.add_decayed_weights(spec.weight_decay))
    if spec.decay_rate is not None:
        parts.append(scale_by_step_decay(spec.decay_rate, spec.decay_every))
    return optax.chain(*parts)


def apply(params, direction, lr):
    return jax.tree.map(lambda p, u: p - lr * u, params, direction)
