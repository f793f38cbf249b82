"""Parity probes for `ffbench check`: NumPy in, NumPy out, through the trainer's own code."""

from __future__ import annotations

import keras
import numpy as np
from ffbench_backends.keras import ops as kops
from ffbench_backends.keras.optim import SpecOptimizer
from keras import ops

from ffbench.backend import bound_objective
from ffbench.reference.ff import probe_running
from ffbench.spec import FFSpec, OptimizerSpec


def _np(t) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(t))


def _stack(params, x_pos, x_neg, ff, running, labels=None):
    h_pos, h_neg, out = ops.convert_to_tensor(x_pos), ops.convert_to_tensor(x_neg), []
    objective = bound_objective(ff, "keras")
    labels = None if labels is None else ops.convert_to_tensor(labels)
    for i, q in enumerate(params):
        step = kops.layer_step(h_pos, h_neg, q, ff, running[i], objective, None, i, labels)
        out.append(step)
        h = step[3]
        h_pos, h_neg = h[: x_pos.shape[0]], h[x_pos.shape[0]:]
    return out


def ff_layers(params, x_pos, x_neg, ff: FFSpec, labels=None) -> list[dict]:
    p = [(ops.convert_to_tensor(kops.to_kernel(q[0])), *(ops.convert_to_tensor(a) for a in q[1:])) for q in params]
    running = [ops.convert_to_tensor(r) for r in probe_running(params, ff)]
    n = x_pos.shape[0]
    steps = _stack(p, x_pos, x_neg, ff, running, labels)
    return [{"g_pos": _np(g)[:n], "g_neg": _np(g)[n:], "loss": float(_np(loss)), "peer_loss": float(_np(peer)),
             "dW": kops.from_kernel(_np(grads[0])), "db": _np(grads[1]), "dbn": [_np(t) for t in grads[2:]]}
            for loss, peer, g, _, grads, _ in steps]


def ff_steps(params, x_pos, x_neg, ff: FFSpec, opt: OptimizerSpec, steps: int) -> list[tuple[np.ndarray, np.ndarray]]:
    p = [(keras.Variable(w.T), keras.Variable(b)) for w, b in params]
    running = [ops.convert_to_tensor(r) for r in probe_running(params, ff)]
    optimizer = SpecOptimizer(opt)
    for _ in range(steps):
        out = _stack(p, x_pos, x_neg, ff, running)
        running = [o[5] for o in out]
        optimizer.apply([g for o in out for g in o[4]], [v for kb in p for v in kb])
    return [(_np(k).T.copy(), _np(b)) for k, b in p]


def bp_grads(params, x, y) -> dict:
    """The Keras model's own forward and loss; gradients by the backend's autodiff."""
    backend = keras.backend.backend()
    ws = [(ops.convert_to_tensor(w.T), ops.convert_to_tensor(b)) for w, b in params]
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def forward(flat):
        h = ops.convert_to_tensor(x)
        pairs = list(zip(flat[::2], flat[1::2]))
        for k, b in pairs[:-1]:
            h = ops.relu(ops.matmul(h, k) + b)
        logits = ops.matmul(h, pairs[-1][0]) + pairs[-1][1]
        return loss_fn(ops.convert_to_tensor(y.astype(np.int32)), logits), logits

    flat = [t for kb in ws for t in kb]
    if backend == "tensorflow":
        import tensorflow as tf
        flat = [tf.Variable(t) for t in flat]
        with tf.GradientTape() as tape:
            loss, logits = forward(flat)
        grads = tape.gradient(loss, flat)
    elif backend == "jax":
        import jax
        (loss, logits), grads = jax.value_and_grad(forward, has_aux=True)(flat)
    else:
        raise NotImplementedError(f"keras probe: backend {backend!r}")
    grads = [_np(g) for g in grads]
    return {"logits": _np(logits), "loss": float(_np(loss)),
            "grads": [(grads[2 * i].T, grads[2 * i + 1]) for i in range(len(params))]}
