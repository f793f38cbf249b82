"""Convolution and pooling, defined exactly (NumPy, NCHW, analytic gradients).

conv:  z[n, o, y, x] = b[o] + sum_{c in o's group, i, j} w[o, c', i, j] * xp[n, c, s*y + i, s*x + j]
       xp: x zero-padded by p on every side; groups g split the C_in input and C_out output
       channels into g equal blocks, output block q reading input block q only (c' = c - q*C_in/g);
       y < (H + 2p - k) // s + 1, x likewise (torch's Conv2d).
pool:  non-overlapping q x q windows, the last rows and columns that fill no window dropped
       (torch's MaxPool2d / AvgPool2d with kernel = stride = q). max: the window's maximum;
       its gradient goes to the window's maximal entries, split evenly among ties (a tie of
       positive ReLU outputs has probability zero; one of zeros gets no gradient through ReLU).
       avg: the window's mean.
batch norm (a layer's norm `batch`, after pooling; torch's BatchNorm2d): per channel c, over
       the N x H x W values of the batch, mean m and biased variance v; in training
       y = gamma (a - m) / sqrt(v + eps) + beta, and the running statistics move to
       (1 - momentum) r + momentum * (m, v * M / (M - 1)), M = N x H x W (torch's unbiased
       running variance); frozen and evaluated, y = gamma (a - r_mean) / sqrt(r_var + eps) + beta.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _windows(x: np.ndarray, k: int, stride: int, padding: int) -> np.ndarray:
    """(N, C, Ho, Wo, k, k): the input window of every output position."""
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    return sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, padding: int, groups: int) -> np.ndarray:
    """(N, C_out, Ho, Wo) from x (N, C_in, H, W) and w (C_out, C_in/groups, k, k)."""
    cols, g = _windows(x, w.shape[2], stride, padding), groups
    n, c, ho, wo = cols.shape[:4]
    cols = cols.reshape(n, g, c // g, ho, wo, *w.shape[2:])
    z = np.einsum("ngcyxij,gocij->ngoyx", cols, w.reshape(g, -1, *w.shape[1:]), optimize=True)
    return z.reshape(n, w.shape[0], ho, wo) + b[None, :, None, None]


def conv2d_backward(dz: np.ndarray, x: np.ndarray, w: np.ndarray, stride: int, padding: int, groups: int,
                    need_dx: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(dw, db, dx) of `conv2d` given dL/dz."""
    k, g = w.shape[2], groups
    cols = _windows(x, k, stride, padding)
    n, c, ho, wo = cols.shape[:4]
    dzg = dz.reshape(n, g, -1, ho, wo)
    dw = np.einsum("ngoyx,ngcyxij->gocij", dzg, cols.reshape(n, g, c // g, ho, wo, k, k), optimize=True).reshape(w.shape)
    db = dz.sum(axis=(0, 2, 3))
    if not need_dx:
        return dw, db, None
    dcols = np.einsum("ngoyx,gocij->ngcyxij", dzg, w.reshape(g, -1, *w.shape[1:]), optimize=True).reshape(n, c, ho, wo, k, k)
    dxp = np.zeros((n, c, x.shape[2] + 2 * padding, x.shape[3] + 2 * padding), dz.dtype)
    for i in range(k):
        for j in range(k):
            dxp[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride] += dcols[..., i, j]
    return dw, db, dxp[:, :, padding:padding + x.shape[2], padding:padding + x.shape[3]]


def _blocks(a: np.ndarray, q: int) -> np.ndarray:
    """(N, C, H//q, q, W//q, q): `a`'s pooling windows."""
    n, c, h, w = a.shape
    return a[:, :, : h // q * q, : w // q * q].reshape(n, c, h // q, q, w // q, q)


def pool(a: np.ndarray, kind: str, q: int) -> np.ndarray:
    if kind == "none":
        return a
    blocks = _blocks(a, q)
    return blocks.max(axis=(3, 5)) if kind == "max" else blocks.mean(axis=(3, 5))


def pool_backward(dp: np.ndarray, a: np.ndarray, kind: str, q: int) -> np.ndarray:
    """dL/da of `pool(a)` given dL/d pool(a)."""
    if kind == "none":
        return dp
    blocks = _blocks(a, q)
    if kind == "max":
        hit = blocks == blocks.max(axis=(3, 5), keepdims=True)
        share = hit / hit.sum(axis=(3, 5), keepdims=True)
    else:
        share = np.full(blocks.shape, 1.0 / (q * q), dp.dtype)
    da = np.zeros_like(a)
    n, c, h, w = a.shape
    da[:, :, : h // q * q, : w // q * q] = (share * dp[:, :, :, None, :, None]).reshape(n, c, h // q * q, w // q * q)
    return da


def _channel(v: np.ndarray) -> np.ndarray:
    return v[None, :, None, None]


def batch_norm(a: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float):
    """Training mode on maps a (N, C, H, W): (y, (xhat, 1 / sqrt(v + eps)), batch mean, unbiased batch variance)."""
    count = a.size // a.shape[1]
    if count < 2:
        raise ValueError(f"batch norm needs more than one value per channel in a batch; got {count}")
    m, v = a.mean(axis=(0, 2, 3)), a.var(axis=(0, 2, 3))
    inv = 1.0 / np.sqrt(v + eps)
    xhat = (a - _channel(m)) * _channel(inv)
    return _channel(gamma) * xhat + _channel(beta), (xhat, inv), m, v * count / (count - 1)


def batch_norm_backward(dy: np.ndarray, cache, gamma: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(da, dgamma, dbeta) of `batch_norm` in training mode given dL/dy (the batch statistics differentiated)."""
    xhat, inv = cache
    count = dy.size // dy.shape[1]
    dxhat = dy * _channel(gamma)
    s1, s2 = dxhat.sum(axis=(0, 2, 3)), (dxhat * xhat).sum(axis=(0, 2, 3))
    da = _channel(inv / count) * (count * dxhat - _channel(s1) - xhat * _channel(s2))
    return da, (dy * xhat).sum(axis=(0, 2, 3)), dy.sum(axis=(0, 2, 3))


def batch_norm_frozen(a: np.ndarray, gamma, beta, mean, var, eps: float) -> np.ndarray:
    """Evaluation (and a frozen layer): the running statistics in place of the batch's."""
    return _channel(gamma / np.sqrt(var + eps)) * (a - _channel(mean)) + _channel(beta)


def running_update(running: np.ndarray, mean: np.ndarray, var: np.ndarray, momentum: float) -> np.ndarray:
    """(2, C) running [mean; variance] after one training batch."""
    return (1.0 - momentum) * running + momentum * np.stack([mean, var])


def layer(x: np.ndarray, w: np.ndarray, b: np.ndarray, spec, bn=None) -> tuple[np.ndarray, np.ndarray]:
    """(z, pool(relu(z))) of a conv layer (`spec_conv.ConvLayer`) on flat rows x; both (N, C, H, W).
    A batch-normalised layer: then normalised with `bn` = (gamma, beta, running (2, C)), as evaluated."""
    z = conv2d(x.reshape(len(x), *spec.input), w, b, spec.stride, spec.padding, spec.groups)
    a = pool(np.maximum(z, 0), spec.pool, spec.pool_size)
    if spec.batch_norm:
        gamma, beta, running = bn
        a = batch_norm_frozen(a, gamma, beta, running[0], running[1], spec.bn_eps)
    return z, a


def layer_train(x: np.ndarray, w: np.ndarray, b: np.ndarray, spec, gamma, beta, running: np.ndarray):
    """A batch-normalised conv layer in training: (z, pre-norm map, output map, norm cache, new running)."""
    z = conv2d(x.reshape(len(x), *spec.input), w, b, spec.stride, spec.padding, spec.groups)
    a = pool(np.maximum(z, 0), spec.pool, spec.pool_size)
    y, cache, m, v = batch_norm(a, gamma, beta, spec.bn_eps)
    return z, a, y, cache, running_update(running, m, v, spec.bn_momentum)


def layer_backward(dh: np.ndarray, x: np.ndarray, z: np.ndarray, w: np.ndarray, spec, relu_grad: str = "standard",
                   need_dx: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(dw, db, dx as flat rows or None) of `layer` given dL/d output (flat rows or maps)."""
    out = spec.output
    dp = dh.reshape(len(x), out.channels, out.height, out.width)
    da = pool_backward(dp, np.maximum(z, 0), spec.pool, spec.pool_size)
    dz = da if relu_grad == "straight_through" else da * (z > 0)
    dw, db, dx = conv2d_backward(dz, x.reshape(len(x), *spec.input), w, spec.stride, spec.padding, spec.groups, need_dx)
    return dw, db, None if dx is None else dx.reshape(x.shape)
