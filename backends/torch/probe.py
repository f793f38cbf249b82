"""Parity probes for `ffbench check`: NumPy in, NumPy out, through the trainer's own code."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from ffbench_backends.torch import ops
from ffbench_backends.torch.ff import ff_objective
from ffbench_backends.torch.optim import Optimizer

from ffbench.backend import bound_objective
from ffbench.reference.ff import probe_running
from ffbench.spec import FFSpec, OptimizerSpec


def _leaves(params):
    return [tuple(torch.tensor(np.asarray(a, np.float32), requires_grad=True) for a in p) for p in params]


def ff_layers(params, x_pos, x_neg, ff: FFSpec, labels=None) -> list[dict]:
    """Per layer, at the given weights: goodness of positives and negatives, loss, peer loss, dW,
    db (and a batch-normalised layer's dgamma, dbeta as dbn). `labels`: the positives' classes,
    for a `labelled` objective."""
    p = _leaves(params)
    pos, neg = torch.tensor(x_pos), torch.tensor(x_neg)
    running = [torch.as_tensor(r) for r in probe_running(params, ff)]
    total, losses, peers, _ = ff_objective(p, running, pos, neg, ff, tuple(range(len(p))),
                                           labels=None if labels is None else torch.as_tensor(labels))
    total.backward()
    out, h, n = [], torch.cat([pos, neg]), pos.shape[0]
    obj, obj_params = bound_objective(ff, "torch")
    with torch.no_grad():
        for i, q in enumerate(p):
            seen, h, _ = ops.trained_layer(h, q, running[i], ff, layer=i)
            g = ops.image_scores(obj.goodness(ops.objective_rows(seen, ff, i), ff, obj_params), ff, i)
            out.append({"g_pos": g[:n].numpy(), "g_neg": g[n:].numpy(), "loss": losses[i].item(),
                        "peer_loss": peers[i].item() if i in peers else 0.0, "dW": q[0].grad.numpy(), "db": q[1].grad.numpy(),
                        "dbn": [t.grad.numpy() for t in q[2:]]})
    return out


def ff_steps(params, x_pos, x_neg, ff: FFSpec, opt: OptimizerSpec, steps: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """`steps` simultaneous steps on one fixed (overlaid) batch."""
    p = _leaves(params)
    pos, neg = torch.tensor(x_pos), torch.tensor(x_neg)
    running = [torch.as_tensor(r) for r in probe_running(params, ff)]
    optimizer = Optimizer(opt, [t for wb in p for t in wb])
    optimizer.plan_epoch(opt.lr, steps)
    for _ in range(steps):
        total, _, _, running = ff_objective(p, running, pos, neg, ff, tuple(range(len(p))))
        total.backward()
        optimizer.step()
    return [(w.detach().numpy(), b.detach().numpy()) for w, b in p]


def bp_grads(params, x, y) -> dict:
    p = _leaves(params)
    h = torch.tensor(x)
    for w, b in p[:-1]:
        h = torch.relu(F.linear(h, w, b))
    logits = F.linear(h, *p[-1])
    loss = F.cross_entropy(logits, torch.tensor(y))
    loss.backward()
    return {"logits": logits.detach().numpy(), "loss": loss.item(), "grads": [(w.grad.numpy(), b.grad.numpy()) for w, b in p]}
