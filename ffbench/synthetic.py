"""Deterministic synthetic image datasets of a given geometry (for CI and timing, not for results).

Class c has a prototype: a random 7 x 7 (or 8 x 8) pattern per channel, blown up to H x W.
Image i of class y is a * prototype[y] + (1 - a) * prototype[z], with a second class z != y
and a uniform in [0.5, 0.85), shifted (cyclically) by up to 2 pixels each way, plus uniform
noise of up to 96 grey levels: a nearest-class-mean classifier gets about 93% of 28 x 28 test
images right, not all. Everything comes from one `numpy.random.Generator`
(PCG64) seeded by `SEED`: the same arrays in every process and on every machine.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from ffbench.geometry import Geometry

SEED = 20221227  # the day the FF paper's arXiv v3 appeared
VERSION = 1
CHUNK = 10_000


def checksum(shape: Geometry, n_train: int, n_test: int) -> str:
    """What a trial on the generated data records: the generator's identity, not the bytes."""
    what = {"generator": f"ffbench.synthetic v{VERSION}", "seed": SEED, "shape": list(shape),
            "train": n_train, "test": n_test}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def prototypes(shape: Geometry, rng: np.random.Generator, classes: int = 10) -> np.ndarray:
    """(classes, C, H, W) float32 patterns in [0, 200)."""
    cell = 7 if shape.height % 7 == 0 else 8
    coarse = rng.uniform(0, 200, (classes, shape.channels, cell, cell)).astype(np.float32)
    reps = (-(-shape.height // cell), -(-shape.width // cell))
    return np.kron(coarse, np.ones((1, 1, *reps), np.float32))[:, :, : shape.height, : shape.width]


def images(shape: Geometry, n: int, protos: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (n, C, H, W), labels (n,))."""
    y = rng.integers(0, len(protos), n)
    z = (y + rng.integers(1, len(protos), n)) % len(protos)
    a = rng.uniform(0.5, 0.85, n).astype(np.float32)
    shift = rng.integers(0, 25, n)  # (dy, dx) = (shift // 5 - 2, shift % 5 - 2)
    x = np.empty((n, *shape), np.uint8)
    for s in range(0, n, CHUNK):
        sl = slice(s, s + CHUNK)
        w = a[sl, None, None, None]
        mix = w * protos[y[sl]] + (1 - w) * protos[z[sl]]
        for k in np.unique(shift[sl]):
            sel = shift[sl] == k
            mix[sel] = np.roll(mix[sel], (k // 5 - 2, k % 5 - 2), axis=(2, 3))
        noise = rng.integers(0, 96, mix.shape, dtype=np.uint8)
        x[sl] = np.clip(mix + noise, 0, 255).astype(np.uint8)
    return x, y.astype(np.uint8)


def generate(shape: Geometry, n_train: int, n_test: int) -> dict[str, np.ndarray]:
    """x_train, y_train, x_test, y_test; one-channel images as (n, H, W), like MNIST's."""
    rng = np.random.default_rng(SEED)
    protos = prototypes(shape, rng)
    (xt, yt), (xs, ys) = images(shape, n_train, protos, rng), images(shape, n_test, protos, rng)
    if shape.channels == 1:
        xt, xs = xt[:, 0], xs[:, 0]
    return {"x_train": xt, "y_train": yt, "x_test": xs, "y_test": ys}
