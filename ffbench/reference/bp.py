"""The backprop baseline: a ReLU MLP with a linear 10-way output and mean cross-entropy.

params = [(W_1, b_1), ..., (W_L, b_L), (W_out, b_out)]; inputs are the scaled images
(no label overlay, no layer normalisation).
"""

from __future__ import annotations

import numpy as np

from ffbench.reference.ff import softmax_xent


def forward(x: np.ndarray, params) -> tuple[np.ndarray, list[np.ndarray]]:
    acts = [x]
    for w, b in params[:-1]:
        acts.append(np.maximum(acts[-1] @ w.T + b, 0))
    w, b = params[-1]
    return acts[-1] @ w.T + b, acts


def loss_and_grads(x: np.ndarray, labels: np.ndarray, params) -> tuple[float, list[tuple[np.ndarray, np.ndarray]]]:
    logits, acts = forward(x, params)
    loss, d = softmax_xent(logits, labels)
    grads = []
    for i in range(len(params) - 1, -1, -1):
        w, _ = params[i]
        grads.append((d.T @ acts[i], d.sum(axis=0)))
        if i:
            d = (d @ w) * (acts[i] > 0)
    return loss, grads[::-1]


def predict(x: np.ndarray, params) -> np.ndarray:
    return forward(x, params)[0].argmax(axis=1)
