"""Training-data augmentation: `data.jitter` shifts each training image by up to +-k pixels.

The shift (dy, dx) of sample i in epoch e is `rng.jitter_shifts`: uniform over the (2k + 1)^2
shifts (k = 2: the paper's 25), a new one every epoch. Pixels shifted in from outside are 0.
FF labels are overlaid after the shift; test and validation images are never shifted.
"""

from __future__ import annotations

import numpy as np

from ffbench.geometry import Geometry
from ffbench.reference import rng


def shift_images(x: np.ndarray, dy: np.ndarray, dx: np.ndarray, image: Geometry) -> np.ndarray:
    """out[b, ch, r, c] = x[b, ch, r - dy[b], c - dx[b]] where that pixel exists, else 0 (flat
    rows in (channel, row, column) order: every channel shifts alike)."""
    n, h, w = len(x), image.height, image.width
    r = np.arange(h)[None, :, None] - np.asarray(dy)[:, None, None]
    c = np.arange(w)[None, None, :] - np.asarray(dx)[:, None, None]
    inside = ((r >= 0) & (r < h) & (c >= 0) & (c < w)).reshape(n, 1, -1)
    src = (np.clip(r, 0, h - 1) * w + np.clip(c, 0, w - 1)).reshape(n, 1, -1)
    out = np.take_along_axis(x.reshape(n, image.channels, -1), src, axis=2)
    return np.where(inside, out, 0.0).reshape(n, -1)


def batch_images(trial, x: np.ndarray, idx: np.ndarray, epoch: int) -> np.ndarray:
    """The training images of dataset indices `idx` in `epoch`, shifted if `data.jitter` > 0."""
    k = trial.data.jitter
    if not k:
        return x[idx]
    return shift_images(x[idx], *rng.jitter_shifts(trial.seed, epoch, idx, k), trial.data.image)
