"""A net's carried state, defined once for the reference and every backend: each layer's
parameters as a trainer's `state()` names them (W0, b0, gamma0, beta0, ...), and the statistics
a layer carries between steps (a batch-normalised conv layer's running [mean; variance], or the
peer-normalisation running mean). `ffbench.reference.ff` re-exports these."""

from __future__ import annotations

import numpy as np

from ffbench.spec import FFSpec

PEER_INIT = 0.5
STATE_KEYS = ("W", "b", "gamma", "beta")  # a layer's params in a trainer's `state()`: W0, b0, gamma0, ...; its
# running statistics (a batch-normalised layer's) are bn0, ...


def bn_initial(channels: int, dtype=np.float64) -> np.ndarray:
    """A batch-normalised layer's running [mean; variance] before training: [0; 1] (torch's BatchNorm2d)."""
    return np.stack([np.zeros(channels, dtype), np.ones(channels, dtype)])


def initial_running(ff: FFSpec, hidden: list[int]) -> list[np.ndarray]:
    """Each layer's carried statistics before training: a batch-normalised conv layer's running
    [mean; variance] (2, C) = [0; 1] (torch's BatchNorm2d), else the peer running mean (h,)."""
    out = []
    for i, h in enumerate(hidden):
        spec = ff.conv_layer(i) if ff.conv_layers is not None else None
        if spec is not None and spec.batch_norm:
            out.append(bn_initial(spec.channels, np.float32))
        else:
            out.append(np.full((h,), PEER_INIT, np.float32))
    return out


def probe_running(params: list[tuple], ff: FFSpec) -> list[np.ndarray]:
    """`initial_running` of a net given by its params (what `ffbench check`'s probes start from)."""
    conv_net = ff.conv_layers is not None
    return initial_running(ff, [ff.conv_layer(i).output.size if conv_net else p[0].shape[0] for i, p in enumerate(params)])


def frozen_bn(p: tuple, running) -> tuple | None:
    """(gamma, beta, running) of a batch-normalised layer with params `p` (W, b, gamma, beta), as
    its frozen and evaluated forward pass reads them (running None: the initial [0; 1]); None
    for any other layer. Arithmetic only: the backends call it on their own arrays."""
    if len(p) == 2:
        return None
    return p[2], p[3], running


def state_of(params, running=None) -> dict[str, np.ndarray]:
    """A trainer's `state()` of params and carried statistics (each layer's `STATE_KEYS`, W0, b0,
    ...), with a batch-normalised layer's running statistics as bn{i} (the initial ones where
    `running` has none for it: None, or shorter than `params`, as a BP net's output layer)."""
    out = {}
    for i, p in enumerate(params):
        out.update({f"{k}{i}": a for k, a in zip(STATE_KEYS, p)})
        if len(p) > 2:
            r = running[i] if running is not None and i < len(running) else None
            out[f"bn{i}"] = r if r is not None else bn_initial(len(p[2]))
    return out


def regroup(flat: list, like: list[tuple]) -> list[tuple]:
    """`flat` (the parameters of `like`'s layers in order) cut back into per-layer tuples."""
    out, at = [], 0
    for p in like:
        out.append(tuple(flat[at:at + len(p)]))
        at += len(p)
    return out
