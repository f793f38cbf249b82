"""The recurrent FF net of the paper's sec. 3.4 (fig. 3), defined exactly (NumPy, analytic gradients).

A static image is treated as a video of identical frames. Hidden layers 0..L-1 sit between
the image x (below layer 0) and the label's one-hot vector y (above layer L-1, clamped: the
true label for positives, the negative strategy's label for negatives, each candidate label
for prediction). No label is overlaid on the image. Layer l has one weight matrix
W_l = [U_l | V_l] of shape (H_l, H_below + H_above), bottom-up U_l and top-down V_l, and a bias:
    u_l^t = [n(h_{l-1}^{t-1}), n(h_{l+1}^{t-1})]      n = `ff.normalize` (ff.norm, per row); h_{-1} = x, h_L = y
    z_l^t = u_l^t @ (M_l * W_l).T + b_l
    h_l^t = d h_l^{t-1} + (1 - d) relu(z_l^t)          d = recurrent.damping
for t = 1..T (recurrent.iterations), every layer at once from the states of t-1 (synchronous).
The paper: "the new pre-normalized states being set to 0.3 of the previous pre-normalized
state plus 0.7 of the computed new state": d = 0.3 on the ReLU outputs, which are normalised
only as the next step's inputs.
The start, h^0 (recurrent.init; the paper does not say): `bottom_up`, one bottom-up pass with
no top-down input, h_l^0 = relu([n(h_{l-1}^0), 0] @ (M_l * W_l).T + b_l) layer by layer; or
`zeros`.
M_l (ff.receptive_field k; all ones without): `ff.local_mask` over the concatenated input,
which is the bottom-up and the top-down windows side by side because every width is a whole
number of H x W maps; the label's 10 columns of the last layer are all ones (every unit of the
last hidden layer sees the label: the paper's "10 top-down inputs").

Training, per minibatch at fixed weights: the positive and the negative run side by side;
at each t in [loss_from, loss_to] every layer's objective loss on h^t, with u^t a constant
(no gradient flows back through time or between layers), so
    dz_l^t = (1 - d) dL/dh_l^t * relu'(z_l^t),   dW_l += dz^T u_l^t (masked),   db_l += sum dz;
the step minimises the mean over those iterations of the sum over layers: one optimiser step.
Scores (prediction, scored negatives): for label c, the sum over t in [score_from, score_to]
and over `ff.prediction_layers` of the objective's score of h^t (the paper: goodness averaged
over iterations 3 to 5 of 8). The one-pass softmax read-out reads the normalised activities of
the prediction layers at t = 0 of a bottom-up start, where no label has entered yet.
"""

from __future__ import annotations

import numpy as np

from ffbench.reference.ff import local_mask, normalize
from ffbench.spec import NUM_CLASSES, FFSpec
from ffbench.variants.objectives import objective


def weight_shapes(d_in: int, hidden: list[int]) -> list[tuple[int, int]]:
    """(out, in) of each layer's W = [U | V]: in = the width below + the width above (10 at the top)."""
    below, above = [d_in, *hidden[:-1]], [*hidden[1:], NUM_CLASSES]
    return [(h, b + a) for h, b, a in zip(hidden, below, above)]


def label_columns(layer: int, depth: int) -> int:
    """How many of layer `layer`'s input columns are the clamped label (dense under a receptive field)."""
    return NUM_CLASSES if layer == depth - 1 else 0


def mask(n_out: int, n_in: int, top: int, ff: FFSpec) -> np.ndarray | None:
    """M of a layer with `top` label columns at the end of its input; None: no receptive field."""
    if ff.receptive_field is None:
        return None
    local = local_mask(n_out, n_in - top, ff.receptive_field, ff.image)
    return np.concatenate([local, np.ones((n_out, top))], axis=1)


def weights(w: np.ndarray, top: int, ff: FFSpec) -> np.ndarray:
    m = mask(*w.shape, top, ff)
    return w if m is None else w * m.astype(w.dtype)


def one_hot(labels: np.ndarray, dtype=np.float64) -> np.ndarray:
    return np.eye(NUM_CLASSES, dtype=dtype)[np.asarray(labels)]


def start(x: np.ndarray, params, ff: FFSpec) -> list[np.ndarray]:
    """h^0 of every layer (recurrent.init)."""
    depth = len(params)
    if ff.recurrent.init == "zeros":
        return [np.zeros((len(x), w.shape[0]), x.dtype) for w, _ in params]
    hs, below = [], x
    for i, (w, b) in enumerate(params):
        width = below.shape[1]
        u = np.concatenate([normalize(below, ff.norm, ff.norm_eps), np.zeros((len(x), w.shape[1] - width), x.dtype)], axis=1)
        below = np.maximum(u @ weights(w, label_columns(i, depth), ff).T + b, 0)
        hs.append(below)
    return hs


def inputs(x: np.ndarray, y1: np.ndarray, hs: list[np.ndarray], ff: FFSpec) -> list[np.ndarray]:
    """u^t of every layer from the states hs = h^{t-1}, the image x and the clamped label y1."""
    below, above = [x, *hs[:-1]], [*hs[1:], y1]
    return [np.concatenate([normalize(b, ff.norm, ff.norm_eps), normalize(a, ff.norm, ff.norm_eps)], axis=1)
            for b, a in zip(below, above)]


def iterate(x: np.ndarray, y1: np.ndarray, params, ff: FFSpec, hs: list[np.ndarray]):
    """One synchronous update: (u^t, z^t, h^t) of every layer from h^{t-1} = hs."""
    d, depth = ff.recurrent.damping, len(params)
    us = inputs(x, y1, hs, ff)
    zs = [u @ weights(w, label_columns(i, depth), ff).T + b for i, (u, (w, b)) in enumerate(zip(us, params))]
    return us, zs, [d * h + (1 - d) * np.maximum(z, 0) for h, z in zip(hs, zs)]


def run(x: np.ndarray, labels: np.ndarray, params, ff: FFSpec) -> list[list[np.ndarray]]:
    """h^t of every layer for t = 0..T, with `labels` clamped at the top."""
    y1, hs = one_hot(labels, x.dtype), start(x, params, ff)
    out = [hs]
    for _ in range(ff.recurrent.iterations):
        hs = iterate(x, y1, params, ff, hs)[2]
        out.append(hs)
    return out


def step(x: np.ndarray, y_pos: np.ndarray, y_neg: np.ndarray, params, ff: FFSpec):
    """One training step's (mean loss per layer over the loss iterations, [(dW, db)] of the
    mean over those iterations of the summed layer losses)."""
    rec, obj, n, depth = ff.recurrent, objective(ff), len(x), len(params)
    p = obj.params(ff.objective_params)
    x2, y1 = np.concatenate([x, x]), np.concatenate([one_hot(y_pos, x.dtype), one_hot(y_neg, x.dtype)])
    hs, first, last = start(x2, params, ff), rec.loss_from, rec.last_loss_iteration
    losses = np.zeros(depth)
    grads = [(np.zeros_like(w), np.zeros_like(b)) for w, b in params]
    for t in range(1, last + 1):
        us, zs, hs = iterate(x2, y1, params, ff, hs)
        if t < first:
            continue
        for i, ((w, _), u, z, h) in enumerate(zip(params, us, zs, hs)):
            losses[i] += obj.loss(h, n, ff, p, w.shape[1])
            dz = (1 - rec.damping) * obj.grad_h(h, n, ff, p, w.shape[1])
            dz = dz if ff.relu_grad == "straight_through" else dz * (z > 0)
            m = mask(*w.shape, label_columns(i, depth), ff)
            dw = dz.T @ u
            grads[i] = (grads[i][0] + (dw if m is None else dw * m), grads[i][1] + dz.sum(axis=0))
    k = last - first + 1
    return losses / k, [(dw / k, db / k) for dw, db in grads]


def label_scores(x: np.ndarray, params, ff: FFSpec, layers: list[int]) -> np.ndarray:
    """(N, 10): the summed objective score over `layers` and the score iterations with each
    label clamped at the top; higher means "more positive"."""
    obj, n, rec = objective(ff), len(x), ff.recurrent
    p = obj.params(ff.objective_params)
    states = run(np.tile(x, (NUM_CLASSES, 1)), np.repeat(np.arange(NUM_CLASSES), n), params, ff)
    score = sum(obj.score(states[t][i], ff, p) for t in range(rec.score_from, rec.score_to + 1) for i in layers)
    return score.reshape(NUM_CLASSES, n).T


def readout_features(x: np.ndarray, params, ff: FFSpec) -> np.ndarray:
    """The one-pass softmax read-out's input: normalised h^0 of the prediction layers (bottom-up start)."""
    hs = start(x, params, ff)
    return np.concatenate([normalize(hs[i], ff.norm, ff.norm_eps) for i in ff.prediction_layers], axis=1)


def predict(x: np.ndarray, params, ff: FFSpec, w_out: np.ndarray | None = None) -> np.ndarray:
    if ff.prediction == "softmax":
        return (readout_features(x, params, ff) @ w_out.T).argmax(axis=1)
    return label_scores(x, params, ff, ff.prediction_layers).argmax(axis=1)

