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


def layer(x: np.ndarray, w: np.ndarray, b: np.ndarray, spec) -> tuple[np.ndarray, np.ndarray]:
    """(z, pool(relu(z))) of a conv layer (`spec_conv.ConvLayer`) on flat rows x; both (N, C, H, W)."""
    z = conv2d(x.reshape(len(x), *spec.input), w, b, spec.stride, spec.padding, spec.groups)
    return z, pool(np.maximum(z, 0), spec.pool, spec.pool_size)


def layer_backward(dh: np.ndarray, x: np.ndarray, z: np.ndarray, w: np.ndarray, spec, relu_grad: str = "standard",
                   need_dx: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(dw, db, dx as flat rows or None) of `layer` given dL/d output (flat rows or maps)."""
    out = spec.output
    dp = dh.reshape(len(x), out.channels, out.height, out.width)
    da = pool_backward(dp, np.maximum(z, 0), spec.pool, spec.pool_size)
    dz = da if relu_grad == "straight_through" else da * (z > 0)
    dw, db, dx = conv2d_backward(dz, x.reshape(len(x), *spec.input), w, spec.stride, spec.padding, spec.groups, need_dx)
    return dw, db, None if dx is None else dx.reshape(x.shape)
