"""Per-layer epoch windows (`ff.layer_epochs`, CwComp's ILT): layer i trains in epochs
[start_i, end_i) of the trial's `epochs`, and is frozen outside them.

The epochs split into stretches with one set of training layers each; every set must be a
contiguous range of layers (the layers below it run frozen, those above it are not computed)
and no epoch may train nothing. Each stretch is a phase (`ffbench.backend.Phase`) named by its
layers, `ff.layers1-3`. Each layer keeps its own optimiser state across the phases it trains
in, its step count included (CwComp gives every layer its own Adam), so a layer that starts
later has its own bias correction. `reference.train.ff_windowed_run` defines it.
"""

from __future__ import annotations


def stretches(windows: list[tuple[int, int]], epochs: int) -> list[tuple[int, int, tuple[int, ...]]]:
    """(first epoch, end epoch, the layers that train) of each stretch of `epochs`, in order;
    raises ValueError where `windows` leave an epoch with no layer, or one with a set of
    layers that is not a contiguous range."""
    out: list[tuple[int, int, tuple[int, ...]]] = []
    for e in range(epochs):
        layers = tuple(i for i, (s, t) in enumerate(windows) if s <= e < t)
        if not layers:
            raise ValueError(f"ff.layer_epochs: no layer trains in epoch {e}")
        if layers != tuple(range(layers[0], layers[-1] + 1)):
            raise ValueError(f"ff.layer_epochs: the layers training in epoch {e}, {list(layers)}, are not a contiguous "
                             "range (the layers below them run frozen, those above are not computed)")
        if out and out[-1][2] == layers:
            out[-1] = (out[-1][0], e + 1, layers)
        else:
            out.append((e, e + 1, layers))
    return out


def phase_name(layers: tuple[int, ...]) -> str:
    return f"ff.layers{layers[0]}-{layers[-1]}"


def check(trial) -> None:
    """What per-layer windows need of the rest of the trial."""
    ff, depth, epochs = trial.ff, len(trial.hidden), trial.epochs
    windows = ff.layer_epochs
    if len(windows) != depth:
        raise ValueError(f"ff.layer_epochs: expected one [start, end) window per layer ({depth}); got {len(windows)}")
    bad = [list(w) for w in windows if not 0 <= w[0] < w[1] <= epochs]
    if bad:
        raise ValueError(f"ff.layer_epochs: windows {bad} are not [start, end) with 0 <= start < end <= epochs ({epochs})")
    for field, value, plain in (("ff.schedule", ff.schedule, "simultaneous"), ("ff.recurrent", ff.recurrent, None),
                                ("optimizer.cooldown_start", trial.optimizer.cooldown_start, None)):
        if value != plain:
            raise ValueError(f"ff.layer_epochs sets when each layer trains: it does not combine with {field} "
                             f"(leave it at {plain})")
    if ff.prediction == "softmax" and ff.readout_phase == "joint":
        raise ValueError("ff.layer_epochs: a joint read-out would share the layers' optimiser: "
                         "set ff.readout_phase: after")
    stretches(windows, epochs)
