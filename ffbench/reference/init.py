"""Initial weights, drawn on the host so every backend starts from the same numbers.

Layout: W is (out, in), as torch's nn.Linear; b is (out,).
- uniform_fan_in (torch's nn.Linear default): W, b ~ U(-1/sqrt(in), 1/sqrt(in)).
- normal_fan_out (loeweX): W ~ N(0, 1/out), b = 0.
- glorot_uniform (Keras' Dense default): W ~ U(-sqrt(6/(in+out)), sqrt(6/(in+out))), b = 0.
"""

from __future__ import annotations

import numpy as np

from ffbench.reference.rng import init_rng


def layer_init(rng: np.random.Generator, fan_in: int, fan_out: int, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    if scheme == "uniform_fan_in":
        bound = 1.0 / np.sqrt(fan_in)
        w = rng.uniform(-bound, bound, size=(fan_out, fan_in))
        b = rng.uniform(-bound, bound, size=(fan_out,))
    elif scheme == "normal_fan_out":
        w = rng.normal(0.0, 1.0 / np.sqrt(fan_out), size=(fan_out, fan_in))
        b = np.zeros(fan_out)
    elif scheme == "glorot_uniform":
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-bound, bound, size=(fan_out, fan_in))
        b = np.zeros(fan_out)
    else:
        raise ValueError(f"unknown init scheme {scheme!r}")
    return w.astype(np.float32), b.astype(np.float32)


def stack_init(seed: int, widths: list[int], scheme: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Weights of a stack of linear layers with the given widths (input width first)."""
    return shapes_init(seed, [(widths[i + 1], widths[i]) for i in range(len(widths) - 1)], scheme)


def shapes_init(seed: int, shapes: list[tuple[int, int]], scheme: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Weights of layers of the given (out, in) shapes, drawn in order from the seed's stream."""
    rng = init_rng(seed)
    return [layer_init(rng, fan_in, fan_out, scheme) for fan_out, fan_in in shapes]


def ff_init(seed: int, d_in: int, hidden: list[int], ff) -> list[tuple[np.ndarray, np.ndarray]]:
    """An FF trial's initial weights: the feed-forward stack, or the recurrent net's [U | V] layers."""
    if ff.recurrent is None:
        return stack_init(seed, [d_in, *hidden], ff.init)
    from ffbench.reference.recurrent import weight_shapes
    return shapes_init(seed, weight_shapes(d_in, hidden), ff.init)
