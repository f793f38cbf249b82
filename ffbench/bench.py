"""`ffbench bench`: time training epochs of one spec on each backend, in this process.

Per backend: build the trainer (data and weights to the device), `begin_phase` (a compiling
backend compiles here: `compile_seconds`), one warm-up epoch (`warmup_seconds`), then
`epochs` timed epochs, each ended by a device sync; `epoch_seconds` is their median. For the
greedy schedule every layer's phase is timed this way (the layers below run frozen) and
`epoch_seconds` is the sum of the phases' medians: the time of one epoch of every layer.
Achieved TFLOP/s counts the matmul FLOPs of one step (`step_flops`). After the timed epochs
the test split is evaluated twice (its error rate, as a trial's row has it): the first is a
warm-up (a compiling backend compiles its predictor there), the second is `eval_seconds`
(None where the spec's model cannot predict after these phases: a read-out trained after).

With `pack` N > 1, N trials (seeds 0..N-1) are trained as one packed program
(`Backend.packed_trainer`): `epoch_seconds` is one epoch of the whole pack, and
`samples_per_second` and `tflops` are the pack's aggregate.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from ffbench import registry
from ffbench.data import prepare
from ffbench.reference.optim import lr_at
from ffbench.spec import BPTrial, FFTrial, parse_trial


def step_flops(trial: FFTrial | BPTrial, input_dim: int = 784, batch: int | None = None) -> int:
    """Matmul FLOPs of one training step (simultaneous FF or BP; 2 FLOPs per multiply-add).

    FF: each layer runs its 2B positive and negative rows forward and computes its weight
    gradient (no input gradient: inputs are detached): 2 matmuls of 2B x in x out. Greedy: one
    step of every layer, where layer j also runs forward (frozen) in the depth-1-j phases above it. The joint
    softmax read-out adds a neutral-label forward pass of every layer up to the last one read.
    BP: forward, weight gradient and input gradient (not for the first layer) of B rows.
    A conv layer counts as the matmul of its im2col form: per image, (output positions) x
    C_out x (C_in / groups x k x k) multiply-adds.
    """
    macs, b = layer_macs(trial, input_dim), trial.batch_size if batch is None else batch
    if trial.algorithm == "bp":
        macs = [*macs, trial.hidden[-1] * 10]
        return sum(2 * b * m * (2 if k == 0 else 3) for k, m in enumerate(macs))
    ff, depth = trial.ff, len(trial.hidden)
    if ff.recurrent is not None:
        return recurrent_step_flops(trial, input_dim, b)
    passes = [2 + (depth - 1 - j if ff.schedule == "greedy" else 0) for j in range(depth)]
    flops = sum(2 * (2 * b) * m * k for m, k in zip(macs, passes))
    if ff.prediction == "softmax" and ff.readout_phase == "joint":
        last = max(ff.prediction_layers)
        flops += sum(2 * b * m for m in macs[: last + 1])
        feats = sum(trial.hidden[i] for i in ff.prediction_layers)
        flops += 2 * 2 * b * feats * 10
    return flops


def layer_macs(trial: FFTrial | BPTrial, input_dim: int) -> list[int]:
    """Multiply-adds of each hidden layer on one input row (dense: in x out; conv: its im2col matmul)."""
    layers = trial.conv_layers()
    if layers is not None:
        return [spec.conv_shape.pixels * spec.channels * spec.fan_in for spec in layers]
    widths = [input_dim, *trial.hidden]
    return [i * o for i, o in zip(widths, widths[1:])]


def recurrent_step_flops(trial: FFTrial, input_dim: int, b: int) -> int:
    """The recurrent net's step (`reference.recurrent`): with W_l of (out, below + above), the
    2B rows' bottom-up start and every iteration up to the last loss iteration run each layer
    forward, and each loss iteration adds its weight gradient; a joint softmax read-out adds
    the B rows' bottom-up start and the read-out."""
    from ffbench.reference.recurrent import weight_shapes
    ff, rec = trial.ff, trial.ff.recurrent
    sizes = [o * i for o, i in weight_shapes(input_dim, trial.hidden)]
    last = rec.last_loss_iteration
    flops = sum(2 * (2 * b) * m * (1 + last + (last - rec.loss_from + 1)) for m in sizes)
    if ff.prediction == "softmax" and ff.readout_phase == "joint":
        flops += sum(2 * b * m for m in sizes) + 2 * 2 * b * sum(trial.hidden[i] for i in ff.prediction_layers) * 10
    return flops


def bench_backend(name: str, spec: dict[str, Any], epochs: int, pack: int = 1) -> dict[str, Any]:
    backend = registry.load(name)
    trials = [parse_trial({**spec, "backend": name, "epochs": epochs + 1, "eval_every": 0, "seed": spec.get("seed", 0) + k})
              for k in range(pack)]
    trial = trials[0]
    if trial.algorithm == "ff" and trial.ff.episodes > 1:
        raise ValueError("bench times one pass of the layers: set ff.episodes to 1")
    if pack > 1 and backend.pack_skip(trial):
        raise ValueError(f"--pack {pack}: backend {name!r} cannot pack trials ({backend.pack_skip(trial)})")
    data = prepare(trial.data)
    backend.reset_peak_memory()
    t0 = time.perf_counter()
    tr = backend.packed_trainer(trials, data) if pack > 1 else backend.trainer(trial, data)
    tr.sync()
    setup = time.perf_counter() - t0
    compile_s, per_phase, epoch = 0.0, [], 0
    for phase in [p for p in tr.phases() if p.name != "readout"]:
        t0 = time.perf_counter()
        tr.begin_phase(phase)
        tr.sync()
        compile_s += time.perf_counter() - t0
        times = []
        for e in range(epochs + 1):  # epoch 0 is the warm-up
            t0 = time.perf_counter()
            lr = lr_at(phase.optimizer, e, epochs + 1)
            tr.train_epoch(phase, epoch, [lr] * pack if pack > 1 else lr)
            tr.sync()
            times.append(time.perf_counter() - t0)
            epoch += 1
        per_phase.append(times)
    eval_s, eval_warmup = _time_evaluation(tr.members if pack > 1 else [tr], phase)
    times = [sum(t) for t in zip(*per_phase)]  # one epoch of every phase
    epoch_s = sum(statistics.median(t[1:]) for t in per_phase)
    samples = tr.steps_per_epoch * tr.batch_size * pack
    peak, source = backend.peak_memory()
    return {"backend": name, "algorithm": trial.algorithm, "hidden": trial.hidden, "architecture": trial.architecture,
            "batch_size": tr.batch_size,
            "train_images": len(data.train), "epochs_timed": epochs, "epoch_seconds": epoch_s, "epoch_seconds_all": times[1:],
            "compile_seconds": compile_s, "warmup_seconds": times[0], "setup_seconds": setup,
            "test_images": len(data.test), "eval_seconds": eval_s, "eval_warmup_seconds": eval_warmup,
            "samples_per_second": samples / epoch_s,
            "tflops": step_flops(trial, data.train.x.shape[1], tr.batch_size) * tr.steps_per_epoch * pack / epoch_s / 1e12,
            "pack": pack,
            "schedule": trial.ff.schedule if trial.algorithm == "ff" else "bp",
            "peak_memory_bytes": peak, "peak_memory_source": source, "device_name": backend.device_name(),
            "versions": backend.versions()}


def _time_evaluation(members, phase) -> tuple[float | None, float | None]:
    """(seconds, warm-up seconds) of every member's test error, or Nones if it cannot predict yet."""
    if not all(m.can_evaluate(phase) for m in members):
        return None, None
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        for m in members:
            m.error("test")  # a float: the device has finished
        times.append(time.perf_counter() - t0)
    return times[1], times[0]
