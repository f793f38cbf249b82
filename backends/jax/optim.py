"""The spec's optimisers (`ffbench.reference.optim`) as optax transformations.

`transform(spec)` gives the update direction u (weight decay, then the moments); the step is
p -= lr * u with lr a traced scalar, so a learning-rate schedule never recompiles.
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


def transform(spec: OptimizerSpec) -> optax.GradientTransformation:
    parts = [optax.add_decayed_weights(spec.weight_decay)] if spec.weight_decay else []
    if spec.name == "adam":
        if spec.eps_mode == "after_bias_correction":
            parts.append(optax.scale_by_adam(spec.beta1, spec.beta2, spec.eps))
        else:
            parts.append(scale_by_adam_eps_before_bias_correction(spec.beta1, spec.beta2, spec.eps))
    else:
        parts.append(optax.trace(decay=spec.momentum, nesterov=False))  # buf = momentum * buf + g
    return optax.chain(*parts)


def apply(params, direction, lr):
    return jax.tree.map(lambda p, u: p - lr * u, params, direction)
