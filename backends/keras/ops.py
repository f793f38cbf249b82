"""`ffbench.reference` in `keras.ops`, function for function: one code path for every Keras
backend (TensorFlow, JAX). The layer's own gradient (normalise, matmul, ReLU, peer loss) is
the reference's analytic one; the layer objective's gradient with respect to the layer's
activities comes from the Keras backend's autodiff (`grad_h`), so an objective is written
once, forward only.

Layout: Keras kernels are (in, out), the transpose of the reference's W.
"""

from __future__ import annotations

import functools

import numpy as np
from ffbench_backends.keras.conv import conv_layer, conv_layer_train
from keras import ops

from ffbench.geometry import Geometry
from ffbench.reference.ff import label_groups
from ffbench.reference.ff import local_mask as reference_local_mask
from ffbench.reference.negatives import VIEW_EPS
from ffbench.reference.rng import MUL1, MUL2
from ffbench.spec import NUM_CLASSES, FFSpec
from ffbench.variants.objectives import objective_args


# ---------------------------------------------------------------- rng.py
def _u32(v: int):
    return ops.convert_to_tensor(np.uint32(v))


def key_tensor(key: int):
    """A stream key as a uint32 device scalar: an input of a compiled program (a Python int
    would be a constant of it)."""
    return _u32(key)


def _arange_u32(n: int):
    return ops.cast(ops.arange(n, dtype="int32"), "uint32")  # XLA on TensorFlow has no uint32 Range


def _key(key, ndim: int = 1):
    """A stream key (`rng.stream_key`: an int, or a uint32 tensor), or one key per row (a
    pack: each row keyed by its member's key), shaped to xor with a hashed array of `ndim`
    dimensions, rows first."""
    if isinstance(key, (int, np.integer)):
        return _u32(key)
    return ops.reshape(ops.cast(key, "uint32"), (-1,) + (1,) * (ndim - 1))


def lowbias32(x):
    x = ops.bitwise_xor(x, ops.right_shift(x, 16))
    x = ops.multiply(x, _u32(MUL1))
    x = ops.bitwise_xor(x, ops.right_shift(x, 15))
    x = ops.multiply(x, _u32(MUL2))
    return ops.bitwise_xor(x, ops.right_shift(x, 16))


def epoch_order(key, index):
    """`index` is arange(n) as uint32 on the device."""
    return ops.argsort(lowbias32(ops.bitwise_xor(index, _key(key))))  # keys are distinct: the order is unique




def sample_hash(key, index):
    """`rng.sample_hash`; `key` is the draw's stream key (`rng.stream_key`, or `key_tensor`)."""
    return lowbias32(ops.bitwise_xor(index, _key(key)))


def below(h, n: int):
    """`rng.below`: an integer in 0..n-1 from each hash (int32)."""
    return ops.cast(ops.right_shift(ops.multiply(ops.right_shift(h, 8), _u32(n)), 24), "int32")


negatives_hash = sample_hash  # the built-in strategies' name for it


def uniform24(h):
    return ops.cast(ops.right_shift(h, 8), "float32") * (2.0**-24)


def wrong_labels(key, index, labels):
    h = negatives_hash(key, index)
    k = ops.cast(ops.right_shift(ops.multiply(ops.right_shift(h, 8), _u32(NUM_CLASSES - 1)), 24), "int32")
    return ops.mod(labels + k + 1, NUM_CLASSES)


def batch_permutations(key, steps: int, batch_size: int):
    h = lowbias32(ops.bitwise_xor(_arange_u32(steps * batch_size), _key(key)))
    return ops.argsort(ops.reshape(h, (steps, batch_size)), axis=1)  # distinct keys: the order is unique


# ---------------------------------------------------------------- augment.py
def jitter_shifts(key, index, k: int):
    h = lowbias32(ops.bitwise_xor(ops.cast(index, "uint32"), _key(key)))
    n = _u32(2 * k + 1)
    dy = ops.cast(ops.right_shift(ops.multiply(ops.right_shift(h, 8), n), 24), "int32") - k
    dx = ops.cast(ops.right_shift(ops.multiply(ops.right_shift(lowbias32(h), 8), n), 24), "int32") - k
    return dy, dx


def shift_images(x, dy, dx, image: Geometry):
    h, w, n = image.height, image.width, ops.shape(x)[0]
    r = ops.reshape(ops.arange(h, dtype="int32"), (1, h, 1)) - ops.reshape(dy, (-1, 1, 1))
    c = ops.reshape(ops.arange(w, dtype="int32"), (1, 1, w)) - ops.reshape(dx, (-1, 1, 1))
    inside = ops.reshape((r >= 0) & (r < h) & (c >= 0) & (c < w), (n, 1, -1))
    src = ops.reshape(ops.clip(r, 0, h - 1) * w + ops.clip(c, 0, w - 1), (n, 1, -1))
    src = ops.broadcast_to(src, (n, image.channels, image.pixels))
    out = ops.take_along_axis(ops.reshape(x, (n, image.channels, image.pixels)), src, axis=2)
    return ops.reshape(ops.where(inside, out, 0.0), (n, -1))


def batch_images(x, idx, key, k: int, image: Geometry):
    """Training images `idx`, shifted by up to +-k pixels (`reference.augment`); k = 0: as
    they are. `key`: the jitter stream's key, or one per row of `idx`."""
    xb = ops.take(x, idx, axis=0)
    return xb if not k else shift_images(xb, *jitter_shifts(key, idx, k), image)


# ---------------------------------------------------------------- negatives.py
def class_table(y):
    n = ops.shape(y)[0]
    members = ops.cast(ops.argsort(y * n + ops.arange(n, dtype="int32")), "int32")  # unique keys: a stable sort by class
    count = ops.cast(ops.bincount(y, minlength=NUM_CLASSES), "int32")
    return members, ops.cumsum(count) - count, count


def hybrid_partners(key, index, y, table):
    members, start, count = table
    h = lowbias32(ops.bitwise_xor(index, _key(key)))
    k = ops.cast(ops.right_shift(ops.multiply(ops.right_shift(h, 8), _u32(NUM_CLASSES - 1)), 24), "int32")
    other = ops.mod(y + k + 1, NUM_CLASSES)
    pos = ops.right_shift(ops.multiply(ops.right_shift(lowbias32(h), 16), ops.cast(ops.take(count, other), "uint32")), 16)
    return ops.take(members, ops.take(start, other) + ops.cast(pos, "int32"))


def blur(m, passes: int):
    for _ in range(passes):
        p = ops.concatenate([m[:, :, :1], m, m[:, :, -1:]], axis=2)
        m = 0.25 * p[:, :, :-2] + 0.5 * p[:, :, 1:-1] + 0.25 * p[:, :, 2:]
        p = ops.concatenate([m[:, :1], m, m[:, -1:]], axis=1)
        m = 0.25 * p[:, :-2] + 0.5 * p[:, 1:-1] + 0.25 * p[:, 2:]
    return m


def hybrid_masks(key, index, passes: int, image: Geometry):
    """`key`: the mask stream's key, or one per row of `index`."""
    hw = image.pixels
    pixel = ops.expand_dims(ops.cast(index, "uint32"), 1) * _u32(hw) + ops.expand_dims(_arange_u32(hw), 0)
    bits = ops.cast(ops.right_shift(lowbias32(ops.bitwise_xor(pixel, _key(key, 2))), 31), "float32")
    m = ops.reshape(ops.cast(blur(ops.reshape(bits, (-1, image.height, image.width)), passes) > 0.5, "float32"), (-1, hw))
    return m if image.channels == 1 else ops.tile(m, (1, image.channels))


def _label_mask(labels):
    return ops.cast(ops.one_hot(labels, NUM_CLASSES), "bool")


def best_wrong(scores, labels):
    return ops.cast(ops.argmax(ops.where(_label_mask(labels), -np.inf, scores), axis=1), "int32")


def sample_wrong(scores, labels, u):
    mask = _label_mask(labels)
    top = ops.max(ops.where(mask, -np.inf, scores), axis=1, keepdims=True)
    c = ops.cumsum(ops.where(mask, 0.0, ops.exp(scores - top)), axis=1)
    below = ops.cast(c <= ops.expand_dims(u * c[:, -1], 1), "int32")
    pick = ops.minimum(ops.sum(below, axis=1), NUM_CLASSES - 1)
    return ops.where(pick == labels, best_wrong(scores, labels), pick)


# ---------------------------------------------------------------- ff.py
def overlay(x, labels, ff: FFSpec):
    if not ff.embeds_labels:
        return x
    if labels is None:
        head = ops.full((ops.shape(x)[0], NUM_CLASSES), ff.label_neutral, dtype=x.dtype)
    else:
        on = ff.label_on * ops.max(x, axis=1, keepdims=True) if ff.label_on_mode == "image_max" else ff.label_on
        head = ops.one_hot(labels, NUM_CLASSES, dtype=x.dtype) * on
    groups = label_groups(ff)
    if groups == 1:
        return ops.concatenate([head, x[:, NUM_CLASSES:]], axis=1)
    n = ops.shape(x)[0]
    xg = ops.reshape(x, (n, groups, -1))
    head = ops.broadcast_to(ops.expand_dims(head, 1), (n, groups, NUM_CLASSES))
    return ops.reshape(ops.concatenate([head, xg[:, :, NUM_CLASSES:]], axis=2), (n, -1))


def normalize(x, kind: str, eps: float):
    if kind == "none":
        return x
    if kind == "std":  # over the last axis, as torch's (`pair_rows`)
        c = x - ops.mean(x, axis=-1, keepdims=True)
        return c / (ops.sqrt(ops.sum(c * c, axis=-1, keepdims=True) / (x.shape[-1] - 1)) + eps)
    sq = x * x
    r = ops.sqrt(ops.sum(sq, axis=1, keepdims=True) if kind == "l2" else ops.mean(sq, axis=1, keepdims=True))
    return x / (r + eps)


def grad_h(fn, h):
    """(fn(h), d fn / d h) of a scalar function of one tensor, by the Keras backend's autodiff
    (`jax.value_and_grad`, or a `tf.GradientTape`): both trace inside a compiled step."""
    (value, _), (grad,) = value_and_grads(lambda v: (fn(v), None), h)
    return value, grad


def value_and_grads(fn, *args):
    """((value, aux), gradients of value with respect to each of `args`) of `fn(*args) ->
    (scalar value, aux)`, by the Keras backend's autodiff (as `grad_h`)."""
    import keras
    args = [a.value if isinstance(a, keras.Variable) else a for a in args]  # in a compiled step, the traced value
    if keras.backend.backend() == "jax":
        import jax
        out, grads = jax.value_and_grad(fn, argnums=tuple(range(len(args))), has_aux=True)(*args)
        return out, list(grads)
    import tensorflow as tf
    with tf.GradientTape() as tape:
        for a in args:
            tape.watch(a)
        value, aux = fn(*args)
    return (value, aux), tape.gradient(value, args)


def to_kernel(w: np.ndarray) -> np.ndarray:
    """A reference weight in Keras's kernel layout: (in, out) of a dense W (out, in); (k, k,
    C_in/g, C_out) of a conv W (C_out, C_in/g, k, k)."""
    return w.T if w.ndim == 2 else w.transpose(2, 3, 1, 0)


def from_kernel(k: np.ndarray) -> np.ndarray:
    """`to_kernel`'s inverse."""
    return np.ascontiguousarray(k.T if k.ndim == 2 else k.transpose(3, 2, 0, 1))


def objective_rows(h, ff: FFSpec, layer: int | None):
    """`reference.ff.objective_rows`: per-position rows of C activities with goodness_over: position."""
    k = ff.positions(layer)
    n = ops.shape(h)[0]
    return h if k == 1 else ops.reshape(ops.transpose(ops.reshape(h, (n, -1, k)), (0, 2, 1)), (n * k, -1))


def image_scores(s, ff: FFSpec, layer: int | None):
    """`reference.ff.image_scores`: the mean over an image's positions."""
    k = ff.positions(layer)
    return s if k == 1 else ops.mean(ops.reshape(s, (-1, k)), axis=1)


@functools.lru_cache(maxsize=16)
def _local_mask(n_in: int, n_out: int, k: int, image: Geometry) -> np.ndarray:
    return np.ascontiguousarray(reference_local_mask(n_out, n_in, k, image).T.astype(np.float32))


def local_mask(n_in: int, n_out: int, k: int, image: Geometry):
    """(in, out): the reference's mask in the kernel layout, made once per shape (as NumPy: a
    cached backend tensor made inside a compiled step would belong to that step's graph)."""
    return ops.convert_to_tensor(_local_mask(n_in, n_out, k, image))


def effective_kernel(kernel, ff: FFSpec):
    return kernel if ff.receptive_field is None else kernel * local_mask(*kernel.shape, ff.receptive_field, ff.image)


def pair_sum(xn, kernel):
    """`reference.ff.pair_sum` in the kernel layout (in, out): (what the kernel multiplies, the bias's factor)."""
    d = kernel.shape[0]
    if xn.shape[1] == 2 * d:
        return xn[:, :d] + xn[:, d:], 2.0
    return xn, 1.0


def activate(z, ff: FFSpec):
    """`reference.ff.activate`: relu(z), or relu(z - mean z) (ff.activation: triangle)."""
    return ops.relu(z if ff.activation == "relu" else z - ops.mean(z, axis=1, keepdims=True))


def layer_forward(x, kernel, bias, ff: FFSpec, normalized: bool = False, layer: int | None = None, bn=None):
    """activate(normalize(x) K + b), or layer `layer`'s conv (a conv net's ops need the index);
    `normalized`: `x` is normalised already (`ffbench.frozen`); `bn`: a batch-normalised
    layer's `reference.ff.frozen_bn`."""
    xn = x if normalized else normalize(x, ff.norm, ff.norm_eps)
    spec = ff.conv_layer(layer)
    if spec is not None:
        return conv_layer(xn, kernel, bias, spec, ff.relu_grad, bn)
    xs, scale = pair_sum(xn, kernel)
    return activate(ops.matmul(xs, effective_kernel(kernel, ff)) + scale * bias, ff)


def eval_rows(x, ff: FFSpec):
    """`reference.ff.eval_rows`: the neutral-label overlay, or a pairing strategy's own rows."""
    return pair_rows(x, x) if ff.pairs else overlay(x, None, ff)


def pair_rows(a, b):
    """[a | b] of two views, each standardised on its own (`reference.negatives.views`)."""
    return ops.concatenate([normalize(a, "std", VIEW_EPS), normalize(b, "std", VIEW_EPS)], axis=-1)


def first_layer_all_labels(x, kernel, bias, ff: FFSpec, bn=None):
    """(10, B, H): layer 0's activation with each label overlaid, from one matmul
    (`reference.ff.first_layer_all_labels`: z_c = base @ W.T + b + a W_c); a conv layer: each overlay in turn."""
    if ff.conv_layers is not None:
        return ops.stack([layer_forward(overlay(x, ops.full((ops.shape(x)[0],), c, dtype="int32"), ff), kernel, bias, ff,
                                        layer=0, bn=bn) for c in range(NUM_CLASSES)])
    n, groups = ops.shape(x)[0], label_groups(ff)
    xn = normalize(overlay(x, ops.zeros((n,), dtype="int32"), ff), ff.norm, ff.norm_eps)
    kernel = effective_kernel(kernel, ff)
    xg = ops.reshape(xn, (n, groups, -1))
    base = ops.reshape(ops.concatenate([ops.zeros_like(xg[:, :, :1]), xg[:, :, 1:]], axis=2), (n, -1))
    kc = kernel[:NUM_CLASSES] if groups == 1 else ops.sum(
        ops.reshape(kernel, (groups, -1, kernel.shape[1]))[:, :NUM_CLASSES], axis=0)
    return ops.relu((ops.matmul(base, kernel) + bias)[None] + xn[None, :, :1] * kc[:, None, :])


def layer_step(x_pos, x_neg, p, ff: FFSpec, running, objective, xn=None, layer: int | None = None,
               labels=None):
    """reference.ff.layer_step of the layer with params `p` ((kernel, bias), or a batch-normalised
    layer's (kernel, bias, gamma, beta)): (loss, peer loss, goodness, h (its output, the next
    layer's input), [the gradient of each of p], new carried statistics: the peer running mean,
    or the batch norm's running statistics). `objective`: (the layer objective's Keras implementation, its parameters). `xn`:
    the normalised [x_pos; x_neg] where it is cached (`ffbench.frozen`; `x_pos`, `x_neg` unread).
    `labels`: the positives' classes, for a `labelled` objective (else None).
    A conv layer's gradients are the backend's autodiff through the conv and the pooling."""
    obj, obj_params = objective
    kw = objective_args(ff, labels, layer)
    if xn is None:
        xn = normalize(ops.concatenate([x_pos, x_neg], axis=0), ff.norm, ff.norm_eps)
    n = xn.shape[0] // 2 if x_pos is None else x_pos.shape[0]
    spec, kernel, bias = ff.conv_layer(layer), p[0], p[1]
    if spec is not None:
        k = ff.positions(layer)

        def f(*q):
            if spec.batch_norm:
                h, r = conv_layer_train(xn, *q, running, spec, ff.relu_grad)
            else:
                h, r = conv_layer(xn, *q, spec, ff.relu_grad), running
            return obj.loss(objective_rows(h, ff, layer), n * k, ff, obj_params, xn.shape[1], **kw), (h, r)
        (loss, (h, new_running)), grads = value_and_grads(f, *p)
        g = image_scores(obj.goodness(objective_rows(h, ff, layer), ff, obj_params), ff, layer)
        return loss, ops.zeros(()), g, h, list(grads), new_running
    xs, scale = pair_sum(xn, kernel)
    z = ops.matmul(xs, effective_kernel(kernel, ff)) + scale * bias
    h = ops.relu(z)  # what the objective reads; the layer passes on `activate(z)`
    units = h.shape[1]
    g = obj.goodness(h, ff, obj_params)
    loss, dh = grad_h(lambda v: obj.loss(v, n, ff, obj_params, xn.shape[1], **kw), h)
    peer_loss = ops.zeros(())
    if ff.peer_weight > 0:
        running = ff.peer_momentum * running + (1 - ff.peer_momentum) * ops.mean(h[:n], axis=0)
        peer_loss = ops.mean((ops.mean(running) - running) ** 2)
        dr = 2.0 * (running - ops.mean(running)) / units
        push = ops.broadcast_to(ff.peer_weight * (1 - ff.peer_momentum) * dr / n, (n, units))
        dh = dh + ops.concatenate([push, ops.zeros((h.shape[0] - n, units), h.dtype)], axis=0)
    dz = dh if ff.relu_grad == "straight_through" else dh * ops.cast(z > 0, h.dtype)
    dk = ops.matmul(ops.transpose(xs), dz)
    if ff.receptive_field is not None:
        dk = dk * local_mask(*kernel.shape, ff.receptive_field, ff.image)
    return loss, peer_loss, g, h if ff.activation == "relu" else activate(z, ff), [dk, scale * ops.sum(dz, axis=0)], running


def softmax_xent(logits, labels):
    """Mean cross-entropy and its gradient wrt the logits (reference.ff.softmax_xent)."""
    logp = ops.log_softmax(logits, axis=1)
    onehot = ops.one_hot(labels, NUM_CLASSES, dtype=logits.dtype)
    return -ops.mean(ops.sum(logp * onehot, axis=1)), (ops.exp(logp) - onehot) / logits.shape[0]
