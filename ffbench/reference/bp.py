"""The backprop baseline: a ReLU net with a linear 10-way output and mean cross-entropy.

params = [(W_1, b_1), ..., (W_L, b_L), (W_out, b_out)]; inputs are the scaled images
(no label overlay, no layer normalisation). `local` = (k, image geometry) makes the hidden
layers locally connected (`bp.receptive_field`): W_i is used as W_i * local_mask, so the
masked weights get no gradient; the output layer stays dense. `conv` (the trial's conv
layers, `spec_conv.ConvLayer`) makes them conv -> ReLU -> pool (`reference.conv`), the twin
of the FF conv net without its normalisation; the output reads the last map as a flat row.
"""

from __future__ import annotations

import numpy as np

from ffbench.reference import conv as C
from ffbench.reference.ff import local_mask, softmax_xent


def effective(params, local) -> list[np.ndarray]:
    """Each layer's weights as the forward pass uses them."""
    if local is None:
        return [w for w, _ in params]
    k, image = local
    return [w * local_mask(*w.shape, k, image) for w, _ in params[:-1]] + [params[-1][0]]


def forward(x: np.ndarray, params, local=None, conv=None) -> tuple[np.ndarray, list[np.ndarray]]:
    """(logits, each hidden layer's input as flat rows, then the output layer's); a conv net
    also appends each conv layer's pre-activation map (for `loss_and_grads`)."""
    acts, ws, maps = [x], effective(params, local), []
    for i, (w, (_, b)) in enumerate(zip(ws[:-1], params[:-1])):
        if conv is None:
            acts.append(np.maximum(acts[-1] @ w.T + b, 0))
        else:
            z, h = C.layer(acts[-1], w, b, conv[i])
            maps.append(z)
            acts.append(h.reshape(len(x), -1))
    return acts[-1] @ ws[-1].T + params[-1][1], acts + maps


def loss_and_grads(x: np.ndarray, labels: np.ndarray, params, local=None,
                   conv=None) -> tuple[float, list[tuple[np.ndarray, np.ndarray]]]:
    logits, acts = forward(x, params, local, conv)
    depth = len(params)
    acts, maps = acts[:depth], acts[depth:]
    loss, d = softmax_xent(logits, labels)
    ws, grads = effective(params, local), []
    for i in range(depth - 1, -1, -1):
        if conv is not None and i < depth - 1:
            dw, db, d = C.layer_backward(d, acts[i], maps[i], ws[i], conv[i], need_dx=i > 0)
            grads.append((dw, db))
            continue
        dw = d.T @ acts[i]
        grads.append((dw if local is None or i == depth - 1 else dw * local_mask(*dw.shape, local[0], local[1]),
                      d.sum(axis=0)))
        if i and conv is None:
            d = (d @ ws[i]) * (acts[i] > 0)
        elif i:
            d = d @ ws[i]  # into the last map; its ReLU and pooling are the conv layer's backward
    return loss, grads[::-1]


def predict(x: np.ndarray, params, local=None, conv=None) -> np.ndarray:
    return forward(x, params, local, conv)[0].argmax(axis=1)
