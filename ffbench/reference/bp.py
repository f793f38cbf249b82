"""The backprop baseline: a ReLU net with a linear 10-way output and mean cross-entropy.

params = [(W_1, b_1), ..., (W_L, b_L), (W_out, b_out)]; inputs are the scaled images
(no label overlay, no layer normalisation). `local` = (k, image geometry) makes the hidden
layers locally connected (`bp.receptive_field`): W_i is used as W_i * local_mask, so the
masked weights get no gradient; the output layer stays dense. `conv` (the trial's conv
layers, `spec_conv.ConvLayer`) makes them conv -> ReLU -> pool (`reference.conv`), the twin
of the FF conv net without its normalisation of each layer's input; the output reads the last
map as a flat row. A conv layer with `norm: batch` is batch-normalised after its pooling, as
the FF net's: its params are (W, b, gamma, beta), its running [mean; variance] (2, C) are
carried from step to step (`running`, None for every other layer), a training step normalises
by the batch's statistics and moves the running ones, evaluation reads the running ones.
"""

from __future__ import annotations

import numpy as np

from ffbench.reference import conv as C
from ffbench.reference.ff import bn_initial, local_mask, softmax_xent


def initial_running(trial) -> list[np.ndarray | None]:
    """Each hidden layer's carried statistics before training: [0; 1] for a batch-normalised conv
    layer (torch's BatchNorm2d), None for every other (every layer of a dense net)."""
    conv = trial.conv_layers()
    return [None] * len(trial.hidden) if conv is None else [bn_initial(s.channels) if s.batch_norm else None for s in conv]


def effective(params, local) -> list[np.ndarray]:
    """Each layer's weights as the forward pass uses them."""
    if local is None:
        return [p[0] for p in params]
    k, image = local
    return [w * local_mask(*w.shape, k, image) for w, _ in params[:-1]] + [params[-1][0]]


def _running(running, i: int, spec):
    """Layer i's running statistics (the initial ones where `running` is None)."""
    r = None if running is None else running[i]
    return bn_initial(spec.channels) if r is None and spec.batch_norm else r


def forward(x: np.ndarray, params, local=None, conv=None, running=None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Evaluation: (logits, each hidden layer's input as flat rows, then the output layer's);
    a batch-normalised layer reads its `running` statistics (None: the initial ones)."""
    acts, ws = [x], effective(params, local)
    for i, (w, p) in enumerate(zip(ws[:-1], params[:-1])):
        if conv is None:
            acts.append(np.maximum(acts[-1] @ w.T + p[1], 0))
        else:
            bn = (*p[2:], _running(running, i, conv[i])) if conv[i].batch_norm else None
            acts.append(C.layer(acts[-1], w, p[1], conv[i], bn)[1].reshape(len(x), -1))
    return acts[-1] @ ws[-1].T + params[-1][1], acts


def _train_forward(x: np.ndarray, params, conv, running):
    """A conv net's training forward pass: (logits, each layer's input rows, each conv layer's
    (pre-activation map, batch norm's cache or None), new running statistics)."""
    acts, saved, new = [x], [], []
    for i, (p, spec) in enumerate(zip(params[:-1], conv)):
        if spec.batch_norm:
            z, _, y, cache, r = C.layer_train(acts[-1], *p[:2], spec, *p[2:], _running(running, i, spec))
        else:
            (z, y), cache, r = C.layer(acts[-1], *p[:2], spec), None, None
        saved.append((z, cache))
        new.append(r)
        acts.append(y.reshape(len(x), -1))
    return acts[-1] @ params[-1][0].T + params[-1][1], acts, saved, new


def loss_and_grads(x: np.ndarray, labels: np.ndarray, params, local=None, conv=None,
                   running=None) -> tuple[float, list[tuple[np.ndarray, ...]], list[np.ndarray | None]]:
    """(mean cross-entropy, each layer's gradients in its params' order, the new running
    statistics) of one training step on the batch (x, labels)."""
    depth = len(params)
    if conv is None:
        logits, acts = forward(x, params, local)
        saved, new = [], [None] * (depth - 1)
    else:
        logits, acts, saved, new = _train_forward(x, params, conv, running)
    loss, d = softmax_xent(logits, labels)
    ws, grads = effective(params, local), []
    for i in range(depth - 1, -1, -1):
        if conv is not None and i < depth - 1:
            z, cache = saved[i]
            dbn = ()
            if cache is not None:  # through the batch norm first: d is dL/d(its output)
                d, *dbn = C.batch_norm_backward(d.reshape(len(x), *conv[i].output), cache, params[i][2])
            dw, db, d = C.layer_backward(d, acts[i], z, ws[i], conv[i], need_dx=i > 0)
            grads.append((dw, db, *dbn))
            continue
        dw = d.T @ acts[i]
        grads.append((dw if local is None or i == depth - 1 else dw * local_mask(*dw.shape, local[0], local[1]),
                      d.sum(axis=0)))
        if i and conv is None:
            d = (d @ ws[i]) * (acts[i] > 0)
        elif i:
            d = d @ ws[i]  # into the last map; its norm, ReLU and pooling are the conv layer's backward
    return loss, grads[::-1], new


def predict(x: np.ndarray, params, local=None, conv=None, running=None) -> np.ndarray:
    return forward(x, params, local, conv, running)[0].argmax(axis=1)
