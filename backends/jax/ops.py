"""JAX translations of `ffbench.reference` (rng, ff), function for function."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from ffbench.geometry import Geometry
from ffbench.reference.ff import label_groups
from ffbench.reference.negatives import VIEW_EPS
from ffbench.reference.rng import MUL1, MUL2
from ffbench.spec import NUM_CLASSES, FFSpec

HIGHEST = lax.Precision.HIGHEST  # fp32 means fp32 matmuls (no TF32) on every device
MATMUL_PRECISION = {"fp32": HIGHEST, "tf32": lax.Precision.DEFAULT}  # DEFAULT: TF32 where the GPU has it


# ---------------------------------------------------------------- rng.py
def lowbias32(x: jax.Array) -> jax.Array:
    x = x.astype(jnp.uint32)
    x = x ^ (x >> 16)
    x = x * jnp.uint32(MUL1)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(MUL2)
    return x ^ (x >> 16)


def epoch_order(key: jax.Array, n: int) -> jax.Array:
    """`key` is the host-computed stream key (a uint32 scalar), so epochs share one compilation."""
    return jnp.argsort(lowbias32(jnp.arange(n, dtype=jnp.uint32) ^ key), stable=True)




def sample_hash(key, index: jax.Array) -> jax.Array:
    """`rng.sample_hash`; `key` is the draw's stream key (`rng.stream_key`)."""
    return lowbias32(index.astype(jnp.uint32) ^ jnp.uint32(key))


def below(h: jax.Array, n: int) -> jax.Array:
    """`rng.below`: an integer in 0..n-1 from each hash (int32)."""
    return (((h >> 8) * jnp.uint32(n)) >> 24).astype(jnp.int32)


negatives_hash = sample_hash  # the built-in strategies' name for it


def uniform24(h: jax.Array) -> jax.Array:
    return (h >> 8).astype(jnp.float32) * 2.0**-24


def wrong_labels(key: jax.Array, index: jax.Array, labels: jax.Array) -> jax.Array:
    h = negatives_hash(key, index)
    k = (((h >> 8) * jnp.uint32(NUM_CLASSES - 1)) >> 24).astype(labels.dtype)
    return (labels + k + 1) % NUM_CLASSES


def batch_permutations(key: jax.Array, steps: int, batch_size: int) -> jax.Array:
    h = lowbias32(jnp.arange(steps * batch_size, dtype=jnp.uint32) ^ key)
    return jnp.argsort(h.reshape(steps, batch_size), axis=1, stable=True)


# ---------------------------------------------------------------- augment.py
def jitter_shifts(key: jax.Array, index: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    h = lowbias32(index.astype(jnp.uint32) ^ key)
    n = jnp.uint32(2 * k + 1)
    return ((((h >> 8) * n) >> 24).astype(jnp.int32) - k, (((lowbias32(h) >> 8) * n) >> 24).astype(jnp.int32) - k)


def shift_images(x: jax.Array, dy: jax.Array, dx: jax.Array, image: Geometry) -> jax.Array:
    n, h, w = x.shape[0], image.height, image.width
    r = jnp.arange(h, dtype=jnp.int32)[None, :, None] - dy[:, None, None]
    c = jnp.arange(w, dtype=jnp.int32)[None, None, :] - dx[:, None, None]
    inside = ((r >= 0) & (r < h) & (c >= 0) & (c < w)).reshape(n, 1, -1)
    src = (jnp.clip(r, 0, h - 1) * w + jnp.clip(c, 0, w - 1)).reshape(n, 1, -1)
    out = jnp.take_along_axis(x.reshape(n, image.channels, -1), src, axis=2)
    return jnp.where(inside, out, 0.0).reshape(n, -1)


def batch_images(x: jax.Array, idx: jax.Array, key: jax.Array, k: int, image: Geometry) -> jax.Array:
    """Training images `idx`, shifted by up to +-k pixels (`reference.augment`); k = 0: as they are."""
    return x[idx] if not k else shift_images(x[idx], *jitter_shifts(key, idx, k), image)


# ---------------------------------------------------------------- negatives.py
def class_table(y: jax.Array):
    members = jnp.argsort(y, stable=True).astype(jnp.int32)
    count = jnp.bincount(y, length=NUM_CLASSES).astype(jnp.int32)
    return members, jnp.cumsum(count) - count, count


def hybrid_partners(key: jax.Array, index: jax.Array, y: jax.Array, table) -> jax.Array:
    members, start, count = table
    h = lowbias32(index.astype(jnp.uint32) ^ key)
    other = (y + (((h >> 8) * jnp.uint32(NUM_CLASSES - 1)) >> 24).astype(y.dtype) + 1) % NUM_CLASSES
    pos = ((lowbias32(h) >> 16) * count[other].astype(jnp.uint32)) >> 16
    return members[start[other] + pos.astype(jnp.int32)]


def blur(m: jax.Array, passes: int) -> jax.Array:
    for _ in range(passes):
        p = jnp.concatenate([m[:, :, :1], m, m[:, :, -1:]], axis=2)
        m = 0.25 * p[:, :, :-2] + 0.5 * p[:, :, 1:-1] + 0.25 * p[:, :, 2:]
        p = jnp.concatenate([m[:, :1], m, m[:, -1:]], axis=1)
        m = 0.25 * p[:, :-2] + 0.5 * p[:, 1:-1] + 0.25 * p[:, 2:]
    return m


def hybrid_masks(key: jax.Array, index: jax.Array, passes: int, image: Geometry) -> jax.Array:
    hw = image.pixels
    pixel = index.astype(jnp.uint32)[:, None] * jnp.uint32(hw) + jnp.arange(hw, dtype=jnp.uint32)[None, :]
    bits = (lowbias32(pixel ^ key) >> 31).astype(jnp.float32)
    m = (blur(bits.reshape(-1, image.height, image.width), passes) > 0.5).astype(jnp.float32).reshape(-1, hw)
    return jnp.tile(m, (1, image.channels))


def best_wrong(scores: jax.Array, labels: jax.Array) -> jax.Array:
    mask = labels[:, None] == jnp.arange(NUM_CLASSES)[None, :]
    return jnp.where(mask, -jnp.inf, scores).argmax(axis=1).astype(labels.dtype)


def sample_wrong(scores: jax.Array, labels: jax.Array, u: jax.Array) -> jax.Array:
    mask = labels[:, None] == jnp.arange(NUM_CLASSES)[None, :]
    top = jnp.where(mask, -jnp.inf, scores).max(axis=1, keepdims=True)
    c = jnp.cumsum(jnp.where(mask, 0.0, jnp.exp(scores - top)), axis=1)
    pick = jnp.minimum((c <= (u * c[:, -1])[:, None]).sum(axis=1), NUM_CLASSES - 1).astype(labels.dtype)
    return jnp.where(pick == labels, best_wrong(scores, labels), pick)


# ---------------------------------------------------------------- ff.py
def overlay(x: jax.Array, labels: jax.Array | None, ff: FFSpec) -> jax.Array:
    if not ff.embeds_labels:
        return x
    if labels is None:
        head = jnp.full((x.shape[0], NUM_CLASSES), ff.label_neutral, x.dtype)
    else:
        on = ff.label_on * x.max(axis=1, keepdims=True) if ff.label_on_mode == "image_max" else ff.label_on
        head = jax.nn.one_hot(labels, NUM_CLASSES, dtype=x.dtype) * on
    n, groups = x.shape[0], label_groups(ff)
    xg = x.reshape(n, groups, -1)
    return jnp.concatenate([jnp.broadcast_to(head[:, None], (n, groups, NUM_CLASSES)), xg[:, :, NUM_CLASSES:]],
                           axis=2).reshape(n, -1)


def normalize(x: jax.Array, kind: str, eps: float) -> jax.Array:
    if kind == "none":
        return x
    if kind == "std":  # over the last axis, as torch's (`pair_rows`)
        c = x - x.mean(axis=-1, keepdims=True)
        return c / (jnp.sqrt((c * c).sum(axis=-1, keepdims=True) / (x.shape[-1] - 1)) + eps)
    sq = x * x
    r = jnp.sqrt(sq.sum(axis=1, keepdims=True) if kind == "l2" else sq.mean(axis=1, keepdims=True))
    return x / (r + eps)


def relu(z: jax.Array, grad: str) -> jax.Array:
    h = jax.nn.relu(z)
    return z + lax.stop_gradient(h - z) if grad == "straight_through" else h


def linear(x: jax.Array, w: jax.Array, b: jax.Array | None = None, precision: str = "fp32") -> jax.Array:
    """x @ w.T + b. bf16: operands and product in bfloat16 (so is the backward), then float32;
    the bias is added in float32."""
    if precision == "bf16":
        y = jnp.matmul(x.astype(jnp.bfloat16), w.T.astype(jnp.bfloat16)).astype(jnp.float32)
    else:
        y = jnp.matmul(x, w.T, precision=MATMUL_PRECISION[precision])
    return y if b is None else y + b


def local_mask(n_out: int, n_in: int, k: int, image: Geometry) -> jax.Array:
    """Built from iotas inside the program (XLA fuses it into the multiply), not a baked constant."""
    hw, width = image.pixels, image.width
    po, pi = jnp.arange(n_out) % hw, jnp.arange(n_in) % hw
    near = lambda a, b: jnp.abs(a[:, None] - b[None, :]) <= k // 2  # noqa: E731
    return (near(po // width, pi // width) & near(po % width, pi % width)).astype(jnp.float32)


def effective_weights(w: jax.Array, ff: FFSpec) -> jax.Array:
    return w if ff.receptive_field is None else w * local_mask(*w.shape, ff.receptive_field, ff.image)


def conv_as_matmul(x4: jax.Array, w: jax.Array, stride: int, padding: int, groups: int, precision,
                   epilogue: Callable[[jax.Array], jax.Array] | None = None) -> jax.Array:
    """`reference.conv.conv2d` in its own im2col form (no bias), group-major and channels-last:
    the input as (g, N, H, W, C/g), its k*k shifted, strided views concatenated along channels,
    then one batched matmul (g, N*Ho*Wo, k*k*C/g) @ (g, k*k*C/g, O/g), whose operands need no
    transpose; `epilogue` (elementwise: the bias and ReLU) applied to that product, before its
    transpose to NCHW (a CwComp epoch on 2 CPU threads: 2.53 s, against 2.63 s with them after it).
    XLA's CPU convolution computes the kernel's gradient slowly (jax-ml/jax#31662,
    openxla/xla#34273: ff-conv took 65x torch's epoch on this CPU); the gradient of this form is
    a matmul. (The NCHW patches this replaced, contracted in the middle of their axes, took 1.5x
    its time forward and backward on CwComp's grouped 480-channel layer: benchmarks/RESULTS.md.)"""
    k, (n, c, h, wd), o = w.shape[2], x4.shape, w.shape[0]
    ho, wo, cg = (h + 2 * padding - k) // stride + 1, (wd + 2 * padding - k) // stride + 1, c // groups
    xg = x4.reshape(n, groups, cg, h, wd).transpose(1, 0, 3, 4, 2)
    xp = jnp.pad(xg, ((0, 0), (0, 0), (padding, padding), (padding, padding), (0, 0)))
    cols = jnp.concatenate([xp[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
                            for i in range(k) for j in range(k)], axis=-1)  # (g, N, Ho, Wo, k*k*C/g): (i, j, c) order
    wk = w.reshape(groups, o // groups, cg, k, k).transpose(0, 3, 4, 2, 1).reshape(groups, k * k * cg, o // groups)
    z = jnp.matmul(cols.reshape(groups, n * ho * wo, k * k * cg), wk, precision=precision)  # explicit sizes: N may be 0
    z = z if epilogue is None else epilogue(z)
    return z.reshape(groups, n, ho, wo, o // groups).transpose(1, 0, 4, 2, 3).reshape(n, o, ho, wo)


def conv2d(x4: jax.Array, w: jax.Array, spec, precision) -> jax.Array:
    """`reference.conv.conv2d` without the bias: XLA's convolution, or on a CPU `conv_as_matmul`."""
    if jax.default_backend() == "cpu":
        return conv_as_matmul(x4, w, spec.stride, spec.padding, spec.groups, precision)
    p = spec.padding
    return lax.conv_general_dilated(x4, w, (spec.stride, spec.stride), ((p, p), (p, p)), precision=precision,
                                    dimension_numbers=("NCHW", "OIHW", "NCHW"), feature_group_count=spec.groups)


def conv_layer(x: jax.Array, w: jax.Array, b: jax.Array, spec, relu_grad: str = "standard",
               precision: str = "fp32", bn=None) -> jax.Array:
    """`reference.conv.layer`: pool(relu(conv(x))) of flat rows x, as flat rows; a batch-normalised
    layer then normalised by `bn` = (gamma, beta, running (2, C)), frozen. bf16: the conv's
    operands and result in bfloat16, as `linear`'s."""
    a = _conv_pool(x, w, b, spec, relu_grad, precision)
    if spec.batch_norm:
        gamma, beta, running = bn
        a = _affine(a, gamma * lax.rsqrt(running[1] + spec.bn_eps), running[0], beta)
    return a.reshape(x.shape[0], spec.output.size)  # explicit: a step of no negatives has 0 rows


def conv_layer_train(x: jax.Array, w: jax.Array, b: jax.Array, gamma, beta, running: jax.Array, spec,
                     relu_grad: str = "standard", precision: str = "fp32") -> tuple[jax.Array, jax.Array]:
    """`reference.conv.layer_train`: a batch-normalised layer on its batch's statistics, as flat
    rows, and its new running statistics."""
    a = _conv_pool(x, w, b, spec, relu_grad, precision)
    mean, var = a.mean(axis=(0, 2, 3)), a.var(axis=(0, 2, 3))
    count = a.size // a.shape[1]
    y = _affine(a, gamma * lax.rsqrt(var + spec.bn_eps), mean, beta)
    batch = lax.stop_gradient(jnp.stack([mean, var * count / (count - 1)]))
    return y.reshape(x.shape[0], spec.output.size), (1.0 - spec.bn_momentum) * running + spec.bn_momentum * batch


def _affine(a: jax.Array, scale: jax.Array, mean: jax.Array, beta: jax.Array) -> jax.Array:
    """scale (a - mean) + beta, per channel of (N, C, H, W) maps."""
    return scale[:, None, None] * (a - mean[:, None, None]) + beta[:, None, None]


def _conv_pool(x: jax.Array, w: jax.Array, b: jax.Array, spec, relu_grad: str, precision: str) -> jax.Array:
    x4 = x.reshape(x.shape[0], *spec.input)
    if precision == "bf16":
        z = conv2d(x4.astype(jnp.bfloat16), w.astype(jnp.bfloat16), spec, None).astype(jnp.float32)
        a = relu(z + b[:, None, None], relu_grad)
    elif jax.default_backend() == "cpu":  # the bias (b's channels are group-major too) and ReLU on the im2col product
        g = spec.groups
        a = conv_as_matmul(x4, w, spec.stride, spec.padding, g, MATMUL_PRECISION[precision],
                           lambda p: relu(p + b.reshape(g, 1, -1), relu_grad))
    else:
        a = relu(conv2d(x4, w, spec, MATMUL_PRECISION[precision]) + b[:, None, None], relu_grad)
    q = (1, 1, spec.pool_size, spec.pool_size)
    if spec.pool == "max":
        a = max_pool(a, spec.pool_size)
    elif spec.pool == "avg":
        a = lax.reduce_window(a, 0.0, lax.add, q, q, "VALID") / (spec.pool_size * spec.pool_size)
    return a


def _pool_views(a: jax.Array, q: int) -> list[jax.Array]:
    """The q*q strided views of `a`'s non-overlapping q x q windows (rows and columns that fill
    no window dropped), window-entry-major: view i*q + j holds each window's entry (i, j)."""
    a = a[:, :, : a.shape[2] // q * q, : a.shape[3] // q * q]
    return [a[:, :, i::q, j::q] for i in range(q) for j in range(q)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def max_pool(a: jax.Array, q: int) -> jax.Array:
    """`reference.conv.pool(a, "max", q)` of (N, C, H, W) maps, with the reference's gradient
    (split evenly among a window's maximal entries). Elementwise over the q*q strided views:
    XLA's CPU gradient of `reduce_window` (select-and-scatter) took 4-5x as long forward and
    backward on CwComp's pooled maps (benchmarks/RESULTS.md)."""
    return functools.reduce(jnp.maximum, _pool_views(a, q))


def _max_pool_fwd(a: jax.Array, q: int):
    m = max_pool(a, q)
    return m, (a, m)


def _max_pool_bwd(q: int, res, g: jax.Array):
    a, m = res
    hits = [(v == m).astype(g.dtype) for v in _pool_views(a, q)]
    share = g / functools.reduce(jnp.add, hits)
    n, c, h, w = a.shape
    d = jnp.stack([hit * share for hit in hits], axis=-1).reshape(n, c, h // q, w // q, q, q)
    d = d.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // q * q, w // q * q)
    return (jnp.pad(d, ((0, 0), (0, 0), (0, h - h // q * q), (0, w - w // q * q))),)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def dense(xn: jax.Array, w: jax.Array, b: jax.Array, ff: FFSpec, precision: str) -> jax.Array:
    """A dense layer's pre-activation z; rows twice its fan-in wide are pairs (`reference.ff.pair_sum`)."""
    w, d = effective_weights(w, ff), w.shape[1]
    if xn.shape[1] == 2 * d:
        return linear(xn[:, :d] + xn[:, d:], w, None, precision) + 2.0 * b
    return linear(xn, w, b, precision)


def activate(z: jax.Array, ff: FFSpec) -> jax.Array:
    """`reference.ff.activate`: relu(z), or relu(z - mean z) (ff.activation: triangle)."""
    return relu(z, ff.relu_grad) if ff.activation == "relu" else jax.nn.relu(z - z.mean(axis=1, keepdims=True))


def layer_forward(x: jax.Array, w: jax.Array, b: jax.Array, ff: FFSpec, precision: str = "fp32",
                  normalized: bool = False, layer: int | None = None, bn=None) -> jax.Array:
    """activate(W normalize(x) + b), or layer `layer`'s conv (a conv net's ops need the index);
    `normalized`: `x` is normalised already (`ffbench.frozen`); `bn`: a batch-normalised
    layer's `reference.ff.frozen_bn`."""
    xn = x if normalized else normalize(x, ff.norm, ff.norm_eps)
    spec = ff.conv_layer(layer)
    if spec is not None:
        return conv_layer(xn, w, b, spec, ff.relu_grad, precision, bn)
    return activate(dense(xn, w, b, ff, precision), ff)


def trained_layer(x: jax.Array, p: tuple, running: jax.Array, ff: FFSpec, precision: str = "fp32",
                  normalized: bool = False, layer: int | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(what its objective reads, its output, carried statistics) of layer `layer` (params `p`)
    where it trains: a batch-normalised conv layer on its batch's statistics
    (`reference.ff._train_forward`), else `layer_forward`; a triangle layer's objective reads
    relu(z) (`reference.ff.objective_activities`)."""
    xn = x if normalized else normalize(x, ff.norm, ff.norm_eps)
    if len(p) > 2:
        h, running = conv_layer_train(xn, *p, running, ff.conv_layer(layer), ff.relu_grad, precision)
        return h, h, running
    if ff.activation == "relu" or ff.conv_layer(layer) is not None:
        h = layer_forward(xn, *p, ff, precision, normalized=True, layer=layer)
        return h, h, running
    z = dense(xn, *p, ff, precision)
    return relu(z, ff.relu_grad), activate(z, ff), running


def eval_rows(x: jax.Array, ff: FFSpec) -> jax.Array:
    """`reference.ff.eval_rows`: the neutral-label overlay, or a pairing strategy's own rows."""
    return pair_rows(x, x) if ff.pairs else overlay(x, None, ff)


def pair_rows(a: jax.Array, b: jax.Array) -> jax.Array:
    """[a | b] of two views, each standardised on its own (`reference.negatives.views`)."""
    return jnp.concatenate([normalize(a, "std", VIEW_EPS), normalize(b, "std", VIEW_EPS)], axis=-1)


def objective_rows(h: jax.Array, ff: FFSpec, layer: int | None) -> jax.Array:
    """`reference.ff.objective_rows`: per-position rows of C activities with goodness_over: position."""
    k = ff.positions(layer)
    return h if k == 1 else h.reshape(h.shape[0], -1, k).transpose(0, 2, 1).reshape(h.shape[0] * k, -1)


def image_scores(s: jax.Array, ff: FFSpec, layer: int | None) -> jax.Array:
    """`reference.ff.image_scores`: the mean over an image's positions."""
    k = ff.positions(layer)
    return s if k == 1 else s.reshape(-1, k).mean(axis=1)


def first_layer_all_labels(x: jax.Array, w: jax.Array, b: jax.Array, ff: FFSpec, precision: str = "fp32",
                           bn=None) -> jax.Array:
    """(10, B, H): layer 0's activation with each label overlaid, from one matmul
    (`reference.ff.first_layer_all_labels`: z_c = base @ W.T + b + a W_c); a conv layer: each overlay in turn."""
    if ff.conv_layers is not None:
        return jnp.stack([layer_forward(overlay(x, jnp.full(x.shape[0], c, jnp.int32), ff), w, b, ff, precision, layer=0,
                                        bn=bn) for c in range(NUM_CLASSES)])
    n, groups = x.shape[0], label_groups(ff)
    xn = normalize(overlay(x, jnp.zeros(n, jnp.int32), ff), ff.norm, ff.norm_eps)
    w = effective_weights(w, ff)
    wc = w[:, :NUM_CLASSES] if groups == 1 else w.reshape(w.shape[0], groups, -1)[:, :, :NUM_CLASSES].sum(axis=1)
    base = xn.reshape(n, groups, -1).at[:, :, 0].set(0).reshape(n, -1)
    z = linear(base, w, b, precision)[None] + xn[None, :, :1] * wc.T[:, None, :]
    return jax.nn.relu(z)


def peer_loss(h_pos: jax.Array, running_mean: jax.Array, ff: FFSpec) -> tuple[jax.Array, jax.Array]:
    r = ff.peer_momentum * lax.stop_gradient(running_mean) + (1 - ff.peer_momentum) * h_pos.mean(axis=0)
    return ((r.mean() - r) ** 2).mean(), lax.stop_gradient(r)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(logits, axis=1)
    return -jnp.take_along_axis(logp, labels[:, None], axis=1).mean()
