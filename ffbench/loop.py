"""The one training loop every backend runs under: phases, epochs, timing, curves.

Train time counts only `train_epoch` up to a device sync; evaluation, set-up (copying
data and weights to the device) and `begin_phase` (where a compiling backend compiles the
phase's epoch program) are timed apart. The learning rate of each epoch comes from
the reference schedule. A non-finite epoch loss stops the trial as diverged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ffbench.backend import Backend, PackedTrainer, Phase, Trainer
from ffbench.data import Dataset
from ffbench.errors import Diverged
from ffbench.reference.optim import lr_at
from ffbench.spec import BPTrial, FFTrial


@dataclass
class Outcome:
    test_error: float
    train_error: float
    val_error: float | None
    train_seconds: float
    eval_seconds: float
    setup_seconds: float
    compile_seconds: float  # begin_phase: building (JAX: compiling) each phase's program
    samples_per_second: float
    kept_layers: int | None  # ff.grow_patience: the depth the net grew to (else None)
    peak_memory_bytes: int | None
    peak_memory_source: str
    epochs_run: int
    steps_run: int
    final_losses: dict[str, float | dict[int, float]]
    curves: list[dict[str, Any]] = field(default_factory=list)  # tidy rows: epoch, phase, metric, layer, value


def _curve_rows(epoch: int, phase: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for metric, v in values.items():
        if isinstance(v, dict):
            rows += [{"epoch": epoch, "phase": phase, "metric": metric, "layer": i, "value": float(x)} for i, x in v.items()]
        elif v is not None:
            rows.append({"epoch": epoch, "phase": phase, "metric": metric, "layer": None, "value": float(v)})
    return rows


def _finite(losses: dict[str, Any]) -> bool:
    return all(math.isfinite(x) for v in losses.values() for x in (v.values() if isinstance(v, dict) else [v]))


class _Alone(PackedTrainer):
    """One trial on its own, as a pack of one, so one loop trains both."""

    def __init__(self, trainer: Trainer):
        self.members = [trainer]

    def begin_phase(self, phase: Phase) -> None:
        self.members[0].begin_phase(phase)

    def train_epoch(self, phase: Phase, epoch: int, lrs: list[float]) -> list[Any]:
        return [self.members[0].train_epoch(phase, epoch, lrs[0])]


def fit(backend: Backend, trial: FFTrial | BPTrial, data: Dataset,
        on_epoch: Callable[[int, int, dict[str, Any]], None] | None = None,
        curves: list[dict[str, Any]] | None = None) -> Outcome:
    """Train one trial and evaluate it; raises Diverged if its loss goes non-finite.
    `on_epoch(done, total, info)` reports progress (and may raise to stop the trial); the
    curve rows are appended to `curves` as epochs finish, so a trial stopped part-way still
    has them."""
    report = (lambda k, done, total, info: on_epoch(done, total, info)) if on_epoch else None
    out = fit_unit(backend, [trial], data, report, None if curves is None else [curves])[0]
    if isinstance(out, Diverged):
        raise out
    return out


def fit_unit(backend: Backend, trials: list[FFTrial | BPTrial], data: Dataset,
             on_epoch: Callable[[int, int, int, dict[str, Any]], None] | None = None,
             curves: list[list[dict[str, Any]]] | None = None) -> list[Outcome | Diverged]:
    """Train one trial alone, or several of one pack key as one program
    (`Backend.packed_trainer`); one Outcome per trial, or the Diverged of a trial whose loss
    went non-finite (the others go on).

    Times are each member's share of the pack: the pack's train, compile and set-up time
    divided by the pack size (the pack's whole is `train_seconds * pack_size`), so a
    member's `samples_per_second` is the pack's aggregate rate, and its curves are in
    shared time too. Evaluation is per member. `on_epoch(k, done, total, info)` reports
    member k's progress.
    """
    grows = [t.algorithm == "ff" and t.ff.grow_patience is not None for t in trials]
    if len(trials) > 1 and any(grows):
        raise ValueError("a grown trial (ff.grow_patience) decides its own depth: it is never packed")
    backend.reset_peak_memory()
    t0 = time.perf_counter()
    packed = _Alone(backend.trainer(trials[0], data)) if len(trials) == 1 else backend.packed_trainer(trials, data)
    packed.sync()
    setup_s = time.perf_counter() - t0
    members, phases = packed.members, packed.phases()
    total = sum(p.epochs for p in phases)
    curves = [[] for _ in trials] if curves is None else curves
    train_s, eval_s, compile_s = 0.0, [0.0] * len(trials), 0.0
    epoch = steps = 0
    losses: list[dict[str, Any]] = [{} for _ in trials]
    diverged: dict[int, Diverged] = {}
    grown: set[int] = set()  # members whose growth has stopped (at their best depth)
    last_eval: list[dict[str, float]] = [{} for _ in trials]  # errors after the final epoch: not measured twice
    member_phases = [m.phases() for m in members]
    for i, phase in enumerate(phases):
        t0 = time.perf_counter()
        packed.begin_phase(phase)
        packed.sync()
        compile_s += time.perf_counter() - t0
        for e in range(phase.epochs):
            lrs = [lr_at(own[i].optimizer, e, phase.epochs) for own in member_phases]  # each member's own lr
            t0 = time.perf_counter()
            device_losses = packed.train_epoch(phase, epoch, lrs)
            packed.sync()
            train_s += time.perf_counter() - t0
            steps += packed.steps_per_epoch
            last_of_phase = e + 1 == phase.epochs
            for k, (trial, member) in enumerate(zip(trials, members)):
                if k in diverged:
                    continue
                losses[k] = member.epoch_losses(device_losses[k])
                if not _finite(losses[k]):
                    diverged[k] = Diverged(f"{phase.name} epoch {e + 1}")
                    continue
                row: dict[str, Any] = {"lr": lrs[k], "train_seconds": train_s / len(trials), **losses[k]}
                due = trial.eval_every and ((e + 1) % trial.eval_every == 0 or last_of_phase)
                last_eval[k] = {}
                if due and member.can_evaluate(phase):
                    t0 = time.perf_counter()
                    row["test_error"] = last_eval[k]["test"] = member.error("test")
                    if data.val is not None:
                        row["val_error"] = last_eval[k]["val"] = member.error("val")
                    eval_s[k] += time.perf_counter() - t0
                curves[k].extend(_curve_rows(epoch, phase.name, row))
                if on_epoch:
                    on_epoch(k, epoch + 1, total, {"phase": phase.name, **{n: v for n, v in row.items() if n != "lr"}})
            epoch += 1
            if len(diverged) == len(trials):
                break
        for k, member in enumerate(members):  # a grown net's depth done: grow on, or stop at its best depth
            if grows[k] and k not in diverged and member.grow_point(phase):
                t0 = time.perf_counter()
                val = last_eval[k]["val"] if "val" in last_eval[k] else member.error("val")
                eval_s[k] += time.perf_counter() - t0
                keep = member.keep_growing(val)
                curves[k].extend(_curve_rows(epoch - 1, phase.name, {"grow_val_error": val, "kept_layers": len(member.trained)}))
                if not keep:
                    grown.add(k)
                    last_eval[k] = {}  # the errors were of a deeper net than the one kept
        if len(diverged) + len(grown) == len(trials):
            break
    peak, source = backend.peak_memory()
    train_s, setup_s, compile_s = (t / len(trials) for t in (train_s, setup_s, compile_s))
    out: list[Outcome | Diverged] = []
    for k, member in enumerate(members):
        if k in diverged:
            out.append(diverged[k])
            continue
        t0 = time.perf_counter()
        errors = {s: last_eval[k][s] if s in last_eval[k] else member.error(s)
                  for s in ("train", "test") + (("val",) if data.val is not None else ())}
        eval_s[k] += time.perf_counter() - t0
        out.append(Outcome(
            test_error=errors["test"], train_error=errors["train"], val_error=errors.get("val"),
            train_seconds=train_s, eval_seconds=eval_s[k], setup_seconds=setup_s, compile_seconds=compile_s,
            samples_per_second=steps * packed.batch_size / train_s if train_s > 0 else float("nan"),
            kept_layers=len(member.trained) if grows[k] else None,
            peak_memory_bytes=peak, peak_memory_source=source, epochs_run=epoch, steps_run=steps,
            final_losses=losses[k], curves=curves[k]))
    return out
