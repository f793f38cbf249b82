"""Initial weights, drawn on the host so every backend starts from the same numbers.

Layout: W is (out, in), as torch's nn.Linear; b is (out,).
- uniform_fan_in (torch's nn.Linear default): W, b ~ U(-1/sqrt(in), 1/sqrt(in)).
- normal_fan_out (loeweX): W ~ N(0, 1/out), b = 0.
- glorot_uniform (Keras' Dense default): W ~ U(-sqrt(6/(in+out)), sqrt(6/(in+out))), b = 0.
A conv layer's W is (C_out, C_in/groups, k, k), torch's Conv2d layout, drawn as the
(C_out, C_in/groups * k * k) matrix of the same scheme with in = C_in/groups * k * k and (for
glorot, Keras' Conv2D) out = C_out * k * k; uniform_fan_in is then torch's Conv2d default.
"""

from __future__ import annotations

import numpy as np

from ffbench.reference.rng import init_rng


def layer_init(rng: np.random.Generator, fan_in: int, fan_out: int, scheme: str,
               receptive: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """W (fan_out, fan_in) and b (fan_out,); `receptive` (k * k of a conv layer) scales the
    fan-out of the schemes that read it (normal_fan_out, glorot_uniform)."""
    if scheme == "uniform_fan_in":
        bound = 1.0 / np.sqrt(fan_in)
        w = rng.uniform(-bound, bound, size=(fan_out, fan_in))
        b = rng.uniform(-bound, bound, size=(fan_out,))
    elif scheme == "normal_fan_out":
        w = rng.normal(0.0, 1.0 / np.sqrt(fan_out * receptive), size=(fan_out, fan_in))
        b = np.zeros(fan_out)
    elif scheme == "glorot_uniform":
        bound = np.sqrt(6.0 / (fan_in + fan_out * receptive))
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


def conv_init(seed: int, layers, scheme: str, dense_out: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Weights of conv `layers` (`spec_conv.ConvLayer`) in order from the seed's stream, then
    (a BP twin) a dense layer from the last map to `dense_out` classes."""
    rng, out = init_rng(seed), []
    for layer in layers:
        w, b = layer_init(rng, layer.fan_in, layer.channels, scheme, layer.kernel * layer.kernel)
        bn = (np.ones(layer.channels, np.float32), np.zeros(layer.channels, np.float32)) if layer.batch_norm else ()
        out.append((w.reshape(layer.weight_shape), b, *bn))
    if dense_out is not None:
        out.append(layer_init(rng, layers[-1].output.size, dense_out, scheme))
    return out


def bp_init(trial, d_in: int, classes: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """A BP trial's initial weights: its hidden layers (dense or conv), then the dense output."""
    layers = trial.conv_layers()
    if layers is not None:
        return conv_init(trial.seed, layers, trial.bp.init, classes)
    return stack_init(trial.seed, [d_in, *trial.hidden, classes], trial.bp.init)


def ff_init(seed: int, d_in: int, hidden: list[int], ff) -> list[tuple[np.ndarray, np.ndarray]]:
    """An FF trial's initial weights: the feed-forward stack (dense or conv), or the recurrent net's [U | V] layers."""
    if ff.conv_layers is not None:
        return conv_init(seed, ff.conv_layers, ff.init)
    if ff.recurrent is None:
        return stack_init(seed, [d_in, *hidden], ff.init)
    from ffbench.reference.recurrent import weight_shapes
    return shapes_init(seed, weight_shapes(d_in, hidden), ff.init)
