"""Optimisers and the learning-rate schedule, exactly as `ffbench.spec.OptimizerSpec` states.

Pure functions in the style of optax: `init(spec, params) -> state` and
`update(spec, grads, state, params, lr) -> (new_params, new_state)`. Params and grads are
lists of arrays; the state holds the step count `t` and one or two buffers per param.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ffbench.spec import OptimizerSpec


@dataclass
class OptState:
    t: int
    m: list[np.ndarray]  # adam: first moment; sgd: momentum buffer
    v: list[np.ndarray]  # adam: second moment; sgd: unused (empty)


def lr_at(spec: OptimizerSpec, epoch: int, epochs: int) -> float:
    """Learning rate for epoch `epoch` (0-based) of a phase of `epochs` epochs (an update's
    `decay_rate` factor aside: `update`)."""
    if spec.milestones is not None:
        return spec.lr * spec.milestone_factor ** sum(m <= epoch for m in spec.milestones)
    if spec.cooldown_start is None:
        return spec.lr
    start = math.floor(spec.cooldown_start * epochs)
    if epoch < start:
        return spec.lr
    return spec.lr * (epochs - epoch) / (epochs - start)


def init(spec: OptimizerSpec, params: list[np.ndarray]) -> OptState:
    zeros = [np.zeros_like(p) for p in params]
    return OptState(0, zeros, [np.zeros_like(p) for p in params] if spec.name == "adam" else [])


def adam_coefficients(spec: OptimizerSpec, t: int, lr: float) -> tuple[float, float, float]:
    """(step, denom_scale, eps) so that  p -= step * m / (sqrt(v) * denom_scale + eps).

    after_bias_correction:  p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
    before_bias_correction: p -= lr*sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)
    Backends use these same three numbers, computed on the host.
    """
    bc1 = 1.0 - spec.beta1**t
    bc2 = 1.0 - spec.beta2**t
    if spec.eps_mode == "after_bias_correction":
        return lr / bc1, 1.0 / math.sqrt(bc2), spec.eps
    return lr * math.sqrt(bc2) / bc1, 1.0, spec.eps


def update(spec: OptimizerSpec, grads: list[np.ndarray], state: OptState, params: list[np.ndarray], lr: float):
    """One update at the epoch's rate `lr` (`lr_at`), times this update's `decay_rate` factor."""
    t = state.t + 1
    lr = lr * spec.decay(t)
    if spec.weight_decay and spec.weight_decay_mode == "decoupled":  # torch's AdamW: shrink, then the Adam step
        params = [p * (1.0 - lr * spec.weight_decay) for p in params]
    elif spec.weight_decay:
        grads = [g + spec.weight_decay * p for g, p in zip(grads, params)]
    if spec.name == "adam":
        m = [spec.beta1 * m + (1 - spec.beta1) * g for m, g in zip(state.m, grads)]
        v = [spec.beta2 * v + (1 - spec.beta2) * g * g for v, g in zip(state.v, grads)]
        step, scale, eps = adam_coefficients(spec, t, lr)
        new = [p - step * mi / (np.sqrt(vi) * scale + eps) for p, mi, vi in zip(params, m, v)]
        return new, OptState(t, m, v)
    buf = [spec.momentum * b + g for b, g in zip(state.m, grads)]
    return [p - lr * b for p, b in zip(params, buf)], OptState(t, buf, [])
