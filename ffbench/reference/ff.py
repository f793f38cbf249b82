"""Forward-Forward math, defined exactly (NumPy, analytic gradients).

One layer, given its (detached) input x:
    xn = x / (sqrt(reduce(x^2)) + eps)          reduce = sum (l2) or mean (rms), per row
    z  = xn @ W.T + b;   h = relu(z)                 (W masked by `local_mask` with ff.receptive_field)
    a conv layer (the trial's `conv`): z = conv(xn as a C x H x W map), h = pool(relu(z)) as a
    flat row (`reference.conv`), batch-normalised where the layer's norm is `batch` (its params
    are then (W, b, gamma, beta) and its running statistics (2, C) ride where a dense layer's
    peer running mean does); with ff.goodness_over: position the objective sees each
    position's C activities as a row of its own (`objective_rows`)
    loss  = objective.loss(h, N, ...)            the layer objective (`ffbench.variants.OBJECTIVES`); the
                                                 paper's `logistic`: g = reduce'(h^2), logit = s * (g - threshold),
                                                 softplus(-logit) for positives, softplus(logit) for negatives
    peer  = mean_j (mean(r) - r_j)^2,  r = momentum * r_old + (1 - momentum) * mean_pos(h)
    objective = loss + peer_weight * peer
The running mean r starts at 0.5 and is carried between steps (its old value is a constant).
Simultaneous training: every layer is updated on the output of the layer below computed
with that layer's pre-update weights of the same step. A batch-normalised layer uses its
batch's statistics (positives and negatives together) where it trains, its running ones
where it is frozen (greedy) and at evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ffbench.geometry import Geometry
from ffbench.reference import conv, optim
from ffbench.reference.state import (  # noqa: F401 (re-exported: the backends and `ffbench check` read them here)
    PEER_INIT,
    STATE_KEYS,
    bn_initial,
    frozen_bn,
    initial_running,
    probe_running,
    regroup,
    state_of,
)
from ffbench.spec import NUM_CLASSES, FFSpec, OptimizerSpec
from ffbench.variants.negatives import NEGATIVES
from ffbench.variants.objectives import objective, objective_args


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def label_groups(ff: FFSpec) -> int:
    """G: the flat row is read as G equal groups (G = C with `label_channels: all`, one per
    channel; else 1), and the label takes the first 10 values of each group."""
    return ff.image.channels if ff.label_channels == "all" else 1


def overlay(x: np.ndarray, labels: np.ndarray | None, ff: FFSpec) -> np.ndarray:
    """Replace the first 10 values of each label group (`label_groups`) by the one-hot label (or
    the neutral label if None); unsupervised FF (hybrid_image negatives) embeds no label: x unchanged."""
    out = np.array(x, copy=True)
    if not ff.embeds_labels:
        return out
    n, groups = out.shape[0], out.reshape(out.shape[0], label_groups(ff), -1)  # a view of out
    if labels is None:
        groups[:, :, :NUM_CLASSES] = ff.label_neutral
        return out
    on = ff.label_on * (x.max(axis=1) if ff.label_on_mode == "image_max" else np.ones(n, x.dtype))
    groups[:, :, :NUM_CLASSES] = 0
    groups[np.arange(n), :, np.asarray(labels)] = on[:, None]
    return out


def eval_rows(x: np.ndarray, ff: FFSpec) -> np.ndarray:
    """What the net reads of images x outside training (the softmax read-out's pass, its
    training included): the neutral-label overlay, or a strategy's own rows (`pairs`:
    `self_contrastive`'s pair of the standardised image with itself)."""
    strat = NEGATIVES.get(ff.negatives)
    return strat.eval_inputs(ff, x) if strat.pairs else overlay(x, None, ff)


def normalize(x: np.ndarray, kind: str, eps: float) -> np.ndarray:
    """Each row x / (sqrt(reduce(x^2)) + eps) (l2: the sum, rms: the mean), x itself (none), or
    standardised, (x - mean(x)) / (std(x) + eps) with the unbiased std (std: SCFF's stdnorm)."""
    if kind == "none":
        return x
    if kind == "std":
        c = x - x.mean(axis=1, keepdims=True)
        return c / (np.sqrt((c * c).sum(axis=1, keepdims=True) / (x.shape[1] - 1)) + eps)
    sq = x * x
    r = np.sqrt(sq.sum(axis=1, keepdims=True) if kind == "l2" else sq.mean(axis=1, keepdims=True))
    return x / (r + eps)


def local_mask(n_out: int, n_in: int, k: int, image: Geometry) -> np.ndarray:
    """(n_out, n_in) in {0, 1}: unit u of a layer sits at pixel u mod H*W of the image's H x W
    grid (row-major; an input value at its pixel whatever its channel); out-unit o sees in-unit
    i iff their rows and their columns differ by at most k // 2."""
    hw, width = image.pixels, image.width
    po, pi = np.arange(n_out) % hw, np.arange(n_in) % hw
    near = lambda a, b: np.abs(a[:, None] - b[None, :]) <= k // 2  # noqa: E731
    return (near(po // width, pi // width) & near(po % width, pi % width)).astype(np.float64)


def effective_weights(w: np.ndarray, ff: FFSpec) -> np.ndarray:
    """W, or W with the connections outside each unit's receptive field zeroed (`ff.receptive_field`):
    the forward pass uses these, so the masked weights get no gradient."""
    return w if ff.receptive_field is None else w * local_mask(*w.shape, ff.receptive_field, ff.image).astype(w.dtype)


def pair_sum(xn: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float]:
    """What a dense layer with weights `w` (out, in) multiplies, and its bias's factor: rows of
    width `in` as they are (1); rows of twice that width are pairs [a | b] read with shared
    weights, W a + W b + 2 bias (SCFF's layer on its pairs: `self_contrastive`), so (a + b, 2)."""
    d = w.shape[1]
    if xn.shape[1] == 2 * d:
        return xn[:, :d] + xn[:, d:], 2.0
    return xn, 1.0


def activate(z: np.ndarray, ff: FFSpec) -> np.ndarray:
    """A dense layer's activities (what the next layer, the read-out and predictions read): relu(z),
    or with ff.activation: triangle relu(z - mean over the layer's units of z) (SCFF's). The
    layer objective always reads relu(z) (`objective_activities`)."""
    return np.maximum(z - z.mean(axis=1, keepdims=True) if ff.activation == "triangle" else z, 0)


def layer_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, ff: FFSpec,
                  layer: int | None = None, bn=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(normalised input, pre-activation, activation) of layer `layer` (a conv net's ops need
    the index; a conv layer's pre-activation is its (N, C, H, W) map before ReLU and pooling).
    `bn`: a batch-normalised layer's `frozen_bn` (its running statistics: frozen or evaluated)."""
    xn = normalize(x, ff.norm, ff.norm_eps)
    spec = ff.conv_layer(layer)
    if spec is not None:
        z, h = conv.layer(xn, w, b, spec, _running_or_initial(bn, spec))
        return xn, z, h.reshape(len(x), spec.output.size)
    xs, scale = pair_sum(xn, w)
    z = xs @ effective_weights(w, ff).T + scale * b
    return xn, z, activate(z, ff)


def objective_activities(z: np.ndarray, h: np.ndarray, ff: FFSpec, layer: int | None) -> np.ndarray:
    """What layer `layer`'s objective reads of its pre-activation z and activities h: h, or where a
    dense layer's activities are not relu(z) (ff.activation: triangle), relu(z)."""
    return h if ff.activation == "relu" or ff.conv_layer(layer) is not None else np.maximum(z, 0)


def objective_rows(h: np.ndarray, ff: FFSpec, layer: int | None) -> np.ndarray:
    """The rows layer `layer`'s objective sees: h, or with ff.goodness_over: position each
    image's H*W positions as rows of C activities, image-major (the positives stay first)."""
    k = ff.positions(layer)
    if k == 1:
        return h
    return h.reshape(len(h), -1, k).transpose(0, 2, 1).reshape(len(h) * k, -1)


def rows_back(d: np.ndarray, ff: FFSpec, layer: int | None) -> np.ndarray:
    """`objective_rows`' inverse: per-position rows back to flat (C, H, W) rows."""
    k = ff.positions(layer)
    if k == 1:
        return d
    return d.reshape(-1, k, d.shape[1]).transpose(0, 2, 1).reshape(len(d) // k, -1)


def image_scores(s: np.ndarray, ff: FFSpec, layer: int | None) -> np.ndarray:
    """Per-image goodness or score from per-row ones: the mean over an image's positions."""
    k = ff.positions(layer)
    return s if k == 1 else s.reshape(-1, k).mean(axis=1)


@dataclass
class LayerStep:
    """Everything one layer computes in one step, at its current weights."""

    loss: float
    peer_loss: float
    g_pos: np.ndarray
    g_neg: np.ndarray
    dw: np.ndarray
    db: np.ndarray
    h_pos: np.ndarray  # this layer's outputs: the next layer's inputs
    h_neg: np.ndarray
    running_mean: np.ndarray  # a batch-normalised layer's: its running statistics (2, C)
    dbn: tuple[np.ndarray, ...] = ()  # a batch-normalised layer's (dgamma, dbeta)

    @property
    def grads(self) -> tuple[np.ndarray, ...]:
        return (self.dw, self.db, *self.dbn)


def _running_or_initial(bn, spec):
    """`bn` with a running None replaced by the initial [0; 1] (a layer never trained)."""
    if bn is None or not spec.batch_norm or bn[2] is not None:
        return bn
    return bn[0], bn[1], bn_initial(spec.channels)


def _train_forward(x: np.ndarray, w, b, ff: FFSpec, layer, bn, running):
    """`layer_forward` of a layer being trained: a batch-normalised layer on its batch's statistics.
    Returns (xn, z, h, backward of the norm (or None), new running)."""
    spec = ff.conv_layer(layer)
    if spec is None or not spec.batch_norm:
        return (*layer_forward(x, w, b, ff, layer), None, running)
    gamma, beta = bn
    running = _running_or_initial((gamma, beta, running), spec)[2]
    xn = normalize(x, ff.norm, ff.norm_eps)
    z, _, y, cache, running = conv.layer_train(xn, w, b, spec, gamma, beta, running)
    return xn, z, y.reshape(len(x), -1), (lambda dh: conv.batch_norm_backward(dh.reshape(y.shape), cache, gamma)), running


def peer_update(h_pos: np.ndarray, running_mean: np.ndarray | None, ff: FFSpec) -> tuple[float, np.ndarray]:
    """(peer loss, new running mean) of a layer whose positives' activities are `h_pos`."""
    r_old = np.full(h_pos.shape[1], PEER_INIT, h_pos.dtype) if running_mean is None else running_mean
    r = ff.peer_momentum * r_old + (1 - ff.peer_momentum) * h_pos.mean(axis=0)
    return float(((r.mean() - r) ** 2).mean()), r


def layer_objective(x_pos, x_neg, w, b, ff: FFSpec, running_mean: np.ndarray | None = None, layer: int | None = None,
                    labels: np.ndarray | None = None, bn=None) -> float:
    """The value one layer minimises in one step: objective loss + peer_weight * peer loss
    (forward only: `ffbench check` differentiates it by central differences). `labels`: the
    positives' classes (read by a `labelled` objective only). `bn`: a batch-normalised layer's
    (gamma, beta), on the batch's statistics."""
    obj = objective(ff)
    _, z, h, _, _ = _train_forward(np.concatenate([x_pos, x_neg]), w, b, ff, layer, bn, running_mean)
    h, k = objective_activities(z, h, ff, layer), ff.positions(layer)
    loss = obj.loss(objective_rows(h, ff, layer), k * x_pos.shape[0], ff, obj.params(ff.objective_params), x_pos.shape[1],
                    **objective_args(ff, labels, layer))
    return float(loss) + (ff.peer_weight * peer_update(h[: x_pos.shape[0]], running_mean, ff)[0] if ff.peer_weight > 0 else 0.0)


def layer_step(x_pos, x_neg, w, b, ff: FFSpec, running_mean: np.ndarray | None = None, layer: int | None = None,
               labels: np.ndarray | None = None, bn=None) -> LayerStep:
    """One layer's step at its current weights; `bn`: a batch-normalised layer's (gamma, beta)."""
    n, obj = x_pos.shape[0], objective(ff)
    xn, z, out, bn_back, bn_running = _train_forward(np.concatenate([x_pos, x_neg]), w, b, ff, layer, bn, running_mean)
    h = objective_activities(z, out, ff, layer)
    p, rows, k = obj.params(ff.objective_params), objective_rows(h, ff, layer), ff.positions(layer)
    g = image_scores(obj.goodness(rows, ff, p), ff, layer)
    kw = objective_args(ff, labels, layer)
    loss = obj.loss(rows, k * n, ff, p, x_pos.shape[1], **kw)
    dh = rows_back(obj.grad_h(rows, k * n, ff, p, x_pos.shape[1], **kw), ff, layer)
    spec = ff.conv_layer(layer)
    if spec is not None:
        dbn = ()
        if bn_back is not None:
            dh, *dbn = bn_back(dh)
        dw, db, _ = conv.layer_backward(dh, xn, z, w, spec, ff.relu_grad)
        return LayerStep(float(loss), 0.0, g[:n], g[n:], dw, db, h[:n], h[n:], bn_running, tuple(dbn))
    peer_loss, r = 0.0, running_mean
    if ff.peer_weight > 0:
        peer_loss, r = peer_update(h[:n], running_mean, ff)
        dr = 2.0 * (r - r.mean()) / h.shape[1]
        dh[:n] += ff.peer_weight * (1 - ff.peer_momentum) * dr / n
    dz = dh if ff.relu_grad == "straight_through" else dh * (z > 0)
    xs, scale = pair_sum(xn, w)
    dw = dz.T @ xs if ff.receptive_field is None else (dz.T @ xs) * local_mask(*w.shape, ff.receptive_field, ff.image)
    return LayerStep(float(loss), peer_loss, g[:n], g[n:], dw, scale * dz.sum(axis=0), out[:n], out[n:], r)


def forward_stack(x: np.ndarray, params: list[tuple], ff: FFSpec, running=None) -> list[np.ndarray]:
    """Activations h of every layer for inputs x (labels already overlaid), batch-normalised
    layers on their `running` statistics (None: every layer's initial ones)."""
    hs, running = [], running or [None] * len(params)
    for i, p in enumerate(params):
        x = layer_forward(x, p[0], p[1], ff, i, frozen_bn(p, running[i]))[2]
        hs.append(x)
    return hs


def readout_features(hs: list[np.ndarray], ff: FFSpec, layers: list[int] | None = None) -> np.ndarray:
    """The read-out's input: the normalised activities of `ff.prediction_layers`, concatenated.
    With `layers` (a grown net: `FFSchedule.readout_layers`) a prediction layer not in it
    gives zeros, so the read-out's weights for it neither act nor learn."""
    return np.concatenate([normalize(hs[i], ff.norm, ff.norm_eps) if layers is None or i in layers else np.zeros_like(hs[i])
                           for i in ff.prediction_layers], axis=1)


def softmax_xent(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and its gradient wrt the logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = logits.shape[0]
    p = np.exp(logp)
    p[np.arange(n), labels] -= 1.0
    return float(-logp[np.arange(n), labels].mean()), p / n


def readout_step(x: np.ndarray, labels: np.ndarray, params, w_out: np.ndarray, ff: FFSpec,
                 layers: list[int] | None = None, running=None) -> tuple[float, np.ndarray]:
    """Read-out loss and gradient (no bias; W_out is (10, features)) on the neutral-label pass."""
    feats = readout_features(forward_stack(eval_rows(x, ff), params, ff, running), ff, layers)
    loss, dlogits = softmax_xent(feats @ w_out.T, labels)
    return loss, dlogits.T @ feats


def first_layer_all_labels(x: np.ndarray, w: np.ndarray, b: np.ndarray, ff: FFSpec, bn=None) -> np.ndarray:
    """(10, N, H): layer 0's activation with each label overlaid, from one (N, D) matmul.

    The overlays of x differ only in which of values 0-9 of each label group holds the on
    value, so all have the same norm: normalize(overlay(x, c)) = base + a sum_g e_(g, c), where
    base is the normalised overlay of label 0 with value 0 of every group zeroed and a is that
    value. Hence, with W_c the sum over groups of W's column c of the group,
        z_c = base @ W.T + a W_c + b,
    one matmul for the ten labels instead of ten (equal to `layer_forward` of each overlay up to
    the order of a sum; tests/test_reference.py checks it). A conv layer: each overlay in turn."""
    if ff.conv_layers is not None:
        return np.stack([layer_forward(overlay(x, np.full(len(x), c), ff), w, b, ff, 0, bn)[2] for c in range(NUM_CLASSES)])
    n, g = len(x), label_groups(ff)
    xn = normalize(overlay(x, np.zeros(n, np.int64), ff), ff.norm, ff.norm_eps)
    a = xn[:, 0].copy()
    xn.reshape(n, g, -1)[:, :, 0] = 0
    w = effective_weights(w, ff)
    wc = w.reshape(w.shape[0], g, -1)[:, :, :NUM_CLASSES].sum(axis=1)
    z = (xn @ w.T + b)[None] + a[None, :, None] * wc.T[:, None, :]
    return np.maximum(z, 0)


def label_scores(x: np.ndarray, params, ff: FFSpec, layers: list[int], running=None) -> np.ndarray:
    """(N, 10): the summed layer-objective score (`LayerObjective.score`; logistic: goodness,
    negated for min_ssq) over `layers` with each label overlaid: higher means "more positive".
    Rows are label-major inside: label 0's N rows, then label 1's, ... An objective that
    `scores_classes` (cwc): the sum of its `class_scores` over `layers`, from one pass of x."""
    obj = objective(ff)
    p = obj.params(ff.objective_params)
    running = running or [None] * len(params)
    if obj.scores_classes:
        hs = forward_stack(x, params[: max(layers) + 1], ff, running)
        return sum(obj.class_scores(hs[i], ff, p) for i in layers)
    h = first_layer_all_labels(x, *params[0][:2], ff, frozen_bn(params[0], running[0])).reshape(NUM_CLASSES * len(x), -1)
    score = image_scores(obj.score(objective_rows(h, ff, 0), ff, p), ff, 0) if 0 in layers else 0.0
    for i, q in enumerate(params[1: max(layers) + 1], start=1):
        h = layer_forward(h, q[0], q[1], ff, i, frozen_bn(q, running[i]))[2]
        if i in layers:
            score = score + image_scores(obj.score(objective_rows(h, ff, i), ff, p), ff, i)
    return score.reshape(NUM_CLASSES, len(x)).T


def predict(x: np.ndarray, params, ff: FFSpec, w_out: np.ndarray | None = None, layers: list[int] | None = None,
            running=None) -> np.ndarray:
    """Predicted classes, by summed goodness over `layers` (default `ff.prediction_layers`) with
    each label, or by the softmax read-out of `readout_features(..., layers)`; batch-normalised
    layers on their `running` statistics."""
    if ff.prediction == "softmax":
        feats = readout_features(forward_stack(eval_rows(x, ff), params, ff, running), ff, layers)
        return (feats @ w_out.T).argmax(axis=1)
    return label_scores(x, params, ff, ff.prediction_layers if layers is None else layers, running).argmax(axis=1)


@dataclass
class FFState:
    params: list[tuple[np.ndarray, ...]]
    opt: optim.OptState
    running_means: list[np.ndarray | None]  # per layer: the peer running mean or the batch norm's statistics


def ff_init_state(params, opt_spec: OptimizerSpec) -> FFState:
    return FFState(params, optim.init(opt_spec, [p for wb in params for p in wb]), [None] * len(params))


def simultaneous_step(state: FFState, x_pos, x_neg, ff: FFSpec, opt_spec: OptimizerSpec,
                      lr: float, labels: np.ndarray | None = None) -> tuple[FFState, list[LayerStep]]:
    """One simultaneous step of every layer on one batch (labels already overlaid; `labels`:
    the positives' classes, for a `labelled` objective)."""
    steps = []
    for i, (p, r) in enumerate(zip(state.params, state.running_means)):
        st = layer_step(x_pos, x_neg, p[0], p[1], ff, r, i, labels, p[2:] or None)
        steps.append(st)
        x_pos, x_neg = st.h_pos, st.h_neg
    flat = [p for wb in state.params for p in wb]
    grads = [g for st in steps for g in st.grads]
    new, opt_state = optim.update(opt_spec, grads, state.opt, flat, lr)
    return FFState(regroup(new, state.params), opt_state, [st.running_mean for st in steps]), steps
