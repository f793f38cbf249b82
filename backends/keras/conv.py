"""`ffbench.reference.conv` in `keras.ops`: the conv layer of flat (C, H, W) rows, computed
channels-last (the layout Keras's conv and pooling run on every backend's CPU); its im2col
convolution, max pooling and training batch norm, each with the reference's gradient."""

from __future__ import annotations

import functools

from keras import ops


@functools.cache
def on_cpu() -> bool:
    """Whether the Keras backend computes on the CPU (no GPU visible to it)."""
    import keras
    if keras.backend.backend() == "jax":
        import jax
        return jax.default_backend() == "cpu"
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        return not tf.config.list_physical_devices("GPU")
    return True


def conv_as_matmul(xp, kernel, stride: int, groups: int, epilogue=None):
    """A valid conv of the padded channels-last `xp` with a (k, k, C/g, C_out) kernel in the
    reference's im2col form, group-major as `ffbench_backends.jax.ops.conv_as_matmul`: the input
    as (g, N, H, W, C/g), its k*k shifted, strided views concatenated along channels, then one
    batched matmul whose operands need no transpose; `epilogue` (elementwise: the bias and ReLU)
    applied to that product, before its transpose to channels-last, as jax's. XLA's CPU
    convolution (TensorFlow's jit_compile, Keras on JAX) computes the kernel's gradient slowly;
    this form's is a matmul."""
    k, (n, h, w, c), co = kernel.shape[0], ops.shape(xp), kernel.shape[3]
    ho, wo, cg, og = (h - k) // stride + 1, (w - k) // stride + 1, c // groups, co // groups
    xg = ops.transpose(ops.reshape(xp, (n, h, w, groups, cg)), (3, 0, 1, 2, 4))
    cols = ops.concatenate([xg[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride, :]
                            for i in range(k) for j in range(k)], axis=-1)  # (g, N, Ho, Wo, k*k*C/g): (i, j, c) order
    wk = ops.reshape(ops.transpose(ops.reshape(kernel, (k, k, cg, groups, og)), (3, 0, 1, 2, 4)), (groups, k * k * cg, og))
    z = ops.matmul(ops.reshape(cols, (groups, n * ho * wo, k * k * cg)), wk)
    z = z if epilogue is None else epilogue(z)
    return ops.reshape(ops.transpose(ops.reshape(z, (groups, n, ho, wo, og)), (1, 2, 3, 0, 4)), (n, ho, wo, co))


def conv_layer(x, kernel, bias, spec, relu_grad: str = "standard", bn=None):
    """`reference.conv.layer`: pool(relu(conv(x))) of flat (C, H, W) rows, as flat rows; a
    batch-normalised layer then normalised by `bn` = (gamma, beta, running (2, C)), frozen.
    Computed channels-last (the layout Keras's conv and pooling run on every backend's CPU)."""
    a = _conv_pool(x, kernel, bias, spec, relu_grad)
    if spec.batch_norm:
        gamma, beta, running = bn
        a = (a - running[0]) * (gamma * ops.rsqrt(running[1] + spec.bn_eps)) + beta
    return _flat(a, spec)


def conv_layer_train(x, kernel, bias, gamma, beta, running, spec, relu_grad: str = "standard"):
    """`reference.conv.layer_train`: a batch-normalised layer on its batch's statistics, as flat
    rows, and its new running statistics."""
    a = _conv_pool(x, kernel, bias, spec, relu_grad)
    y = _batch_norm(spec.bn_eps)(a, gamma, beta)
    frozen = ops.stop_gradient(a)
    mean = _channel_mean(frozen)
    var = _channel_mean(ops.square(frozen - mean))
    count = ops.shape(a)[0] * spec.output.pixels
    batch = ops.stack([mean, var * (count / (count - 1))])
    return _flat(y, spec), (1.0 - spec.bn_momentum) * running + spec.bn_momentum * batch


@functools.lru_cache(maxsize=8)
def _batch_norm(eps: float):
    """Training-mode batch norm of channels-last maps, (a, gamma, beta) -> y, with the
    reference's gradient (`reference.conv.batch_norm_backward`) and every per-channel sum taken
    an axis at a time (`_channel_mean`): TensorFlow's autodiff of the forward sums a broadcast's
    gradient over all three axes at once, and its float32 rounding moved a 2-epoch run's
    weights by up to 1e-3 (relative) from the reference's."""
    @ops.custom_gradient
    def bn(a, gamma, beta):
        xc = a - _channel_mean(a)
        inv = ops.rsqrt(_channel_mean(ops.square(xc)) + eps)
        xhat = xc * inv

        def grad(*args, upstream=None):
            dy = args[0] if upstream is None else upstream
            dxhat = dy * gamma
            da = inv * (dxhat - _channel_mean(dxhat) - xhat * _channel_mean(dxhat * xhat))
            return da, _channel_sum(dy * xhat), _channel_sum(dy)
        return xhat * gamma + beta, grad
    return bn


def _channel_mean(a):
    """Per channel of channels-last maps, the mean over images and positions, an axis at a time:
    TensorFlow's float32 CPU reduction over all three at once was 1e-6 off the float64 mean (and
    5e-5 off the variance) on a 16 x 28 x 28 batch; axis by axis, 1e-7 (and 2e-6)."""
    return ops.mean(ops.mean(ops.mean(a, axis=2), axis=1), axis=0)


def _channel_sum(a):
    return ops.sum(ops.sum(ops.sum(a, axis=2), axis=1), axis=0)


def _flat(a, spec):
    return ops.reshape(ops.transpose(a, (0, 3, 1, 2)), (ops.shape(a)[0], spec.output.size))  # explicit: 0 rows of no negatives


def _conv_pool(x, kernel, bias, spec, relu_grad: str):
    n, p, q = ops.shape(x)[0], spec.padding, spec.pool_size
    x4 = ops.transpose(ops.reshape(x, (n, *spec.input)), (0, 2, 3, 1))
    if p:
        x4 = ops.pad(x4, ((0, 0), (p, p), (p, p), (0, 0)))
    if on_cpu():  # the bias (its channels group-major too) and ReLU on the im2col product
        g = spec.groups
        a = conv_as_matmul(x4, kernel, spec.stride, g, lambda z: _relu(z + ops.reshape(bias, (g, 1, -1)), relu_grad))
    else:
        a = _relu(ops.conv(x4, kernel, strides=spec.stride, padding="valid", data_format="channels_last") + bias, relu_grad)
    if spec.pool == "max":
        a = max_pool(a, q)
    elif spec.pool == "avg":
        a = ops.average_pool(a, q, q, padding="valid", data_format="channels_last")
    return a


def _relu(z, relu_grad: str):
    a = ops.relu(z)
    return z + ops.stop_gradient(a - z) if relu_grad == "straight_through" else a


def _pool_views(a, q: int) -> list:
    """The q*q strided views of channels-last `a`'s non-overlapping q x q windows (rows and
    columns that fill no window dropped), window-entry-major: view i*q + j holds entry (i, j)."""
    n, h, w, c = ops.shape(a)
    a = a[:, : h // q * q, : w // q * q, :]
    return [a[:, i::q, j::q, :] for i in range(q) for j in range(q)]


def max_pool(a, q: int):
    """`reference.conv.pool(a, "max", q)` of channels-last maps with the reference's gradient
    (split evenly among a window's maximal entries), elementwise over the q*q strided views as
    `ffbench_backends.jax.ops.max_pool`: XLA's gradient of a max pool (select-and-scatter) is
    slow on a CPU."""
    @ops.custom_gradient
    def pool(a):
        views = _pool_views(a, q)
        m = functools.reduce(ops.maximum, views)

        def grad(*args, upstream=None):
            g = args[0] if upstream is None else upstream
            hits = [ops.cast(ops.equal(v, m), g.dtype) for v in views]
            share = g / functools.reduce(ops.add, hits)
            n, h, w, c = ops.shape(a)
            d = ops.reshape(ops.stack([hit * share for hit in hits], axis=3), (n, h // q, w // q, q, q, c))
            d = ops.reshape(ops.transpose(d, (0, 1, 3, 2, 4, 5)), (n, h // q * q, w // q * q, c))
            return ops.pad(d, ((0, 0), (0, h - h // q * q), (0, w - w // q * q), (0, 0)))
        return m, grad
    return pool(a)
