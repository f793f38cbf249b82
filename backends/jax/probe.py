"""Parity probes for `ffbench check`: NumPy in, NumPy out, through the trainer's own code."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from ffbench_backends.jax import ops
from ffbench_backends.jax import optim as jopt
from ffbench_backends.jax.bp import logits as bp_logits
from ffbench_backends.jax.ff import ff_step_losses

from ffbench.backend import bound_objective
from ffbench.reference.ff import probe_running
from ffbench.spec import FFSpec, OptimizerSpec


def _arrays(params):
    return [tuple(jnp.asarray(a, jnp.float32) for a in q) for q in params]


def _grads(p, running, pos, neg, ff, labels=None):
    """`labels`: the positives' classes (the step's yb), for a `labelled` objective."""
    layers = tuple(range(len(p)))
    trainable = {"layers": dict(enumerate(p)), "readout": None}
    fn = jax.value_and_grad(ff_step_losses, argnums=3, has_aux=True)
    return fn(ff, "fp32", layers, trainable, p, running, pos, neg, None, None if labels is None else jnp.asarray(labels))


def ff_layers(params, x_pos, x_neg, ff: FFSpec, labels=None) -> list[dict]:
    p = _arrays(params)
    pos, neg = jnp.asarray(x_pos), jnp.asarray(x_neg)
    running = [jnp.asarray(r) for r in probe_running(params, ff)]
    (_, (losses, peers, _, _)), grads = _grads(p, running, pos, neg, ff, labels)
    out, h, n = [], jnp.concatenate([pos, neg]), pos.shape[0]
    obj, obj_params = bound_objective(ff, "jax")
    for i, q in enumerate(p):
        seen, h, _ = ops.trained_layer(h, q, running[i], ff, layer=i)
        g = np.asarray(ops.image_scores(obj.goodness(ops.objective_rows(seen, ff, i), ff, obj_params), ff, i))
        dw, db, *dbn = grads["layers"][i]
        out.append({"g_pos": g[:n], "g_neg": g[n:], "loss": float(losses[i]), "peer_loss": float(peers[i]),
                    "dW": np.asarray(dw), "db": np.asarray(db), "dbn": [np.asarray(t) for t in dbn]})
    return out


def ff_steps(params, x_pos, x_neg, ff: FFSpec, opt: OptimizerSpec, steps: int) -> list[tuple[np.ndarray, np.ndarray]]:
    p = _arrays(params)
    pos, neg = jnp.asarray(x_pos), jnp.asarray(x_neg)
    running = [jnp.asarray(r) for r in probe_running(params, ff)]
    tx = jopt.transform(opt)
    trainable = {"layers": dict(enumerate(p)), "readout": None}
    state = tx.init(trainable)
    for _ in range(steps):
        (_, (_, _, _, running)), grads = _grads(p, running, pos, neg, ff)
        direction, state = tx.update(grads, state, trainable)
        trainable = jopt.apply(trainable, direction, opt.lr)
        p = [trainable["layers"][i] for i in range(len(p))]
    return [(np.asarray(w), np.asarray(b)) for w, b in p]


def bp_grads(params, x, y) -> dict:
    p = _arrays(params)
    x, y = jnp.asarray(x), jnp.asarray(y, jnp.int32)
    loss, grads = jax.value_and_grad(lambda q: ops.cross_entropy(bp_logits(q, x)[0], y))(p)
    return {"logits": np.asarray(bp_logits(p, x)[0]), "loss": float(loss),
            "grads": [(np.asarray(w), np.asarray(b)) for w, b in grads]}
