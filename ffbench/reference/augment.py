"""Training-data augmentation: `data.jitter` shifts each training image by up to +-k pixels.

The shift (dy, dx) of sample i in epoch e is `rng.jitter_shifts`: uniform over the (2k + 1)^2
shifts (k = 2: the paper's 25), a new one every epoch. Pixels shifted in from outside are 0.
FF labels are overlaid after the shift; test and validation images are never shifted.
"""

from __future__ import annotations

import numpy as np

from ffbench.reference import rng

SIDE = 28  # MNIST images are 28 x 28


def shift_images(x: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """out[b, r, c] = x[b, r - dy[b], c - dx[b]] where that pixel exists, else 0 (rows of 784)."""
    r = np.arange(SIDE)[None, :, None] - np.asarray(dy)[:, None, None]
    c = np.arange(SIDE)[None, None, :] - np.asarray(dx)[:, None, None]
    inside = (r >= 0) & (r < SIDE) & (c >= 0) & (c < SIDE)
    src = np.clip(r, 0, SIDE - 1) * SIDE + np.clip(c, 0, SIDE - 1)
    out = np.take_along_axis(x, src.reshape(len(x), -1), axis=1)
    return np.where(inside.reshape(len(x), -1), out, 0.0)


def batch_images(trial, x: np.ndarray, idx: np.ndarray, epoch: int) -> np.ndarray:
    """The training images of dataset indices `idx` in `epoch`, shifted if `data.jitter` > 0."""
    k = trial.data.jitter
    if not k:
        return x[idx]
    return shift_images(x[idx], *rng.jitter_shifts(trial.seed, epoch, idx, k))
