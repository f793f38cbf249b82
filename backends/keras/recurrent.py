"""The recurrent FF net in Keras 3: a translation of `ffbench.reference.recurrent`.

Layer i's kernel is [U | V].T (in, out): bottom-up rows, then top-down rows. As in the
feed-forward step, each layer's gradient is written out (`reference.recurrent.step`: dz =
(1 - d) dL/dh relu'(z), d kernel = u^T dz) with dL/dh from the objective by autodiff
(`ops.grad_h`); the trainer is the feed-forward one with the step, the label scores and the
read-out's features replaced, inside the same compiled epoch.
"""

from __future__ import annotations

import functools

import numpy as np
from ffbench_backends.keras import ops as kops
from ffbench_backends.keras.ff import FFTrainer
from keras import ops

from ffbench.reference.ff import local_mask
from ffbench.reference.recurrent import label_columns
from ffbench.spec import NUM_CLASSES, FFSpec


@functools.lru_cache(maxsize=16)
def _mask(n_in: int, n_out: int, top: int, k: int, image) -> np.ndarray:
    """(in, out): `reference.recurrent.mask` in the kernel layout, made once per shape (NumPy:
    a cached backend tensor made inside a compiled step would belong to that step's graph)."""
    local = local_mask(n_out, n_in - top, k, image).T
    return np.ascontiguousarray(np.concatenate([local, np.ones((top, n_out))], axis=0).astype(np.float32))


def kernel_mask(kernel, top: int, ff: FFSpec):
    """The (in, out) mask of a layer's kernel, or None (no receptive field)."""
    if ff.receptive_field is None:
        return None
    return ops.convert_to_tensor(_mask(*kernel.shape, top, ff.receptive_field, ff.image))


def effective(kernel, top: int, ff: FFSpec):
    m = kernel_mask(kernel, top, ff)
    return kernel if m is None else kernel * m


def start(x, params, ff: FFSpec) -> list:
    """h^0 (`reference.recurrent.start`)."""
    n = ops.shape(x)[0]
    if ff.recurrent.init == "zeros":
        return [ops.zeros((n, kernel.shape[1])) for kernel, _ in params]
    hs, below = [], x
    for i, (kernel, bias) in enumerate(params):
        pad = ops.zeros((n, kernel.shape[0] - below.shape[1]), below.dtype)
        u = ops.concatenate([kops.normalize(below, ff.norm, ff.norm_eps), pad], axis=1)
        below = ops.relu(ops.matmul(u, effective(kernel, label_columns(i, len(params)), ff)) + bias)
        hs.append(below)
    return hs


def iterate(x, y1, params, ff: FFSpec, hs: list):
    """(u^t, z^t, h^t) of every layer from h^{t-1} = hs."""
    d, depth = ff.recurrent.damping, len(params)
    below, above = [x, *hs[:-1]], [*hs[1:], y1]
    us = [ops.concatenate([kops.normalize(lo, ff.norm, ff.norm_eps), kops.normalize(hi, ff.norm, ff.norm_eps)], axis=1)
          for lo, hi in zip(below, above)]
    zs = [ops.matmul(u, effective(kernel, label_columns(i, depth), ff)) + bias
          for i, (u, (kernel, bias)) in enumerate(zip(us, params))]
    return us, zs, [d * h + (1 - d) * ops.relu(z) for h, z in zip(hs, zs)]


class RecurrentFFTrainer(FFTrainer):
    def _ff_core(self, xb, negb, _xb, yb):
        """One step of every layer (`reference.recurrent.step`) on the images and both labels;
        returns FF loss per layer, peer loss per layer (0), read-out loss."""
        ff, (obj, p), rec, depth, n = self.ff, self.objective_fn, self.ff.recurrent, len(self.params), xb.shape[0]
        readout_grad = self._readout_grad(xb, yb) if self.joint_readout else None  # at the pre-update weights
        x2 = ops.concatenate([xb, xb], axis=0)
        y1 = ops.one_hot(ops.concatenate([yb, negb], axis=0), NUM_CLASSES, dtype=xb.dtype)
        first, last = rec.loss_from, rec.last_loss_iteration
        k = last - first + 1
        hs, zero = start(x2, self.params, ff), ops.zeros(())
        losses, grads = [zero] * depth, [[0.0, 0.0] for _ in range(depth)]
        for t in range(1, last + 1):
            us, zs, hs = iterate(x2, y1, self.params, ff, hs)
            if t < first:
                continue
            for i, ((kernel, _), u, z, h) in enumerate(zip(self.params, us, zs, hs)):
                loss, dh = kops.grad_h(lambda v, fan_in=kernel.shape[0]: obj.loss(v, n, ff, p, fan_in), h)
                dz = (1 - rec.damping) * dh
                dz = dz if ff.relu_grad == "straight_through" else dz * ops.cast(z > 0, h.dtype)
                dk, m = ops.matmul(ops.transpose(u), dz), kernel_mask(kernel, label_columns(i, depth), ff)
                dk = dk if m is None else dk * m
                losses[i] = losses[i] + loss / k
                grads[i] = [grads[i][0] + dk / k, grads[i][1] + ops.sum(dz, axis=0) / k]
        flat, variables = [g for pair in grads for g in pair], [v for kb in self.params for v in kb]
        readout_loss = self.apply_step(flat, variables, readout_grad)
        return ops.stack(losses + [zero] * depth + [readout_loss])

    def features(self, xb):
        """`reference.recurrent.readout_features`: normalised h^0 of the prediction layers."""
        hs = start(xb, self.params, self.ff)
        return ops.concatenate([kops.normalize(hs[i], self.ff.norm, self.ff.norm_eps) for i in self.ff.prediction_layers],
                               axis=1)

    def label_scores(self, xb, layers: list[int]):
        """(B, 10) (`reference.recurrent.label_scores`)."""
        ff, (obj, p), rec, n = self.ff, self.objective_fn, self.ff.recurrent, xb.shape[0]
        x10 = ops.tile(xb, (NUM_CLASSES, 1))
        y1 = ops.one_hot(ops.repeat(ops.arange(NUM_CLASSES), n), NUM_CLASSES, dtype=xb.dtype)
        hs = start(x10, self.params, ff)
        score = sum(obj.score(hs[i], ff, p) for i in layers) if rec.score_from == 0 else 0.0
        for t in range(1, rec.score_to + 1):
            hs = iterate(x10, y1, self.params, ff, hs)[2]
            if t >= rec.score_from:
                score = score + sum(obj.score(hs[i], ff, p) for i in layers)
        return ops.transpose(ops.reshape(score, (NUM_CLASSES, n)))
