"""The backprop baseline: a ReLU MLP with a linear 10-way output and mean cross-entropy.

params = [(W_1, b_1), ..., (W_L, b_L), (W_out, b_out)]; inputs are the scaled images
(no label overlay, no layer normalisation). `local` = (k, image geometry) makes the hidden
layers locally connected (`bp.receptive_field`): W_i is used as W_i * local_mask, so the
masked weights get no gradient; the output layer stays dense.
"""

from __future__ import annotations

import numpy as np

from ffbench.reference.ff import local_mask, softmax_xent


def effective(params, local) -> list[np.ndarray]:
    """Each layer's weights as the forward pass uses them."""
    if local is None:
        return [w for w, _ in params]
    k, image = local
    return [w * local_mask(*w.shape, k, image) for w, _ in params[:-1]] + [params[-1][0]]


def forward(x: np.ndarray, params, local=None) -> tuple[np.ndarray, list[np.ndarray]]:
    acts, ws = [x], effective(params, local)
    for w, (_, b) in zip(ws[:-1], params[:-1]):
        acts.append(np.maximum(acts[-1] @ w.T + b, 0))
    return acts[-1] @ ws[-1].T + params[-1][1], acts


def loss_and_grads(x: np.ndarray, labels: np.ndarray, params, local=None) -> tuple[float, list[tuple[np.ndarray, np.ndarray]]]:
    logits, acts = forward(x, params, local)
    loss, d = softmax_xent(logits, labels)
    ws, grads = effective(params, local), []
    for i in range(len(params) - 1, -1, -1):
        dw = d.T @ acts[i]
        grads.append((dw if local is None or i == len(params) - 1 else dw * local_mask(*dw.shape, local[0], local[1]),
                      d.sum(axis=0)))
        if i:
            d = (d @ ws[i]) * (acts[i] > 0)
    return loss, grads[::-1]


def predict(x: np.ndarray, params, local=None) -> np.ndarray:
    return forward(x, params, local)[0].argmax(axis=1)
