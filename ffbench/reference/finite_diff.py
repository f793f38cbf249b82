"""Central finite differences in float64: the gradient every backend's autodiff is held to."""

from __future__ import annotations

import numpy as np


def central_difference(f, x: np.ndarray, at: np.ndarray | None = None, rel_step: float = 1e-6) -> np.ndarray:
    """d f / d x of a scalar function f, entry by entry: (f(x + e) - f(x - e)) / 2e with
    e = rel_step * max(1, |x|). With `at` (flat indices), only those entries, as a 1-D array;
    else every entry, in the shape of x."""
    x = np.array(x, np.float64, copy=True)
    flat = x.reshape(-1)
    entries = np.arange(flat.size) if at is None else np.asarray(at, np.int64)
    grad = np.empty(len(entries))
    for j, i in enumerate(entries):
        v = flat[i]
        e = rel_step * max(1.0, abs(v))
        flat[i] = v + e
        up = f(x)
        flat[i] = v - e
        down = f(x)
        flat[i] = v
        grad[j] = (up - down) / (2 * e)
    return grad.reshape(x.shape) if at is None else grad


def probe_entries(guide: np.ndarray, limit: int, seed: int = 0) -> np.ndarray | None:
    """Which entries of a tensor to difference: None (all of them) when it has at most `limit`,
    else the limit // 2 with the largest |guide| (a gradient: where the signal is) and as many
    others drawn at random (seeded), sorted."""
    flat = np.abs(np.asarray(guide)).reshape(-1)
    if flat.size <= limit:
        return None
    top = np.argsort(-flat, kind="stable")[: limit // 2]
    rest = np.setdiff1d(np.arange(flat.size), top)
    drawn = np.random.default_rng(seed).choice(rest, limit - len(top), replace=False)
    return np.sort(np.concatenate([top, drawn]))
