"""From validated trials to result rows: plan, run each trial in isolation, write it.

`plan()` gives every trial its id and checks, before anything runs, that each backend is
installed and can run its trials and that the data is there. `pack()` groups trials that can
train as one program. `run_unit()` is the unit of work an executor schedules: it trains one
trial or one pack and turns every outcome, including an exception or a NaN, into a row per
trial. `run()` feeds trials to an executor and writes each row the
moment it arrives, so a crash or Ctrl-C loses nothing that finished.
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from ffbench import compile_cache, registry, results, variants
from ffbench.data import dataset_checksum, prepare
from ffbench.env import environment
from ffbench.errors import BackendUnavailable, ConfigError, Diverged, TrialTimeout
from ffbench.loop import Outcome, fit_unit
from ffbench.packing import DEFAULT_PACK_SIZE, units
from ffbench.spec import BPTrial, FFTrial, batch_size_for, canonical_json, normal_form, parse_trial, trial_id


@dataclass(frozen=True)
class PlannedTrial:
    trial_id: str
    spec: dict[str, Any]  # plain data (crosses process boundaries); parse with .trial()

    def trial(self) -> FFTrial | BPTrial:
        return parse_trial(self.spec)


def plan(trials: Iterable[FFTrial | BPTrial]) -> list[PlannedTrial]:
    """Give each trial its id; identical trials (same id) are planned once."""
    planned: dict[str, PlannedTrial] = {}
    for t in trials:
        tid = trial_id(t, dataset_checksum(t.data.name))
        planned.setdefault(tid, PlannedTrial(tid, t.model_dump(mode="json")))
    return list(planned.values())


def check_runnable(planned: list[PlannedTrial]) -> None:
    """Fail up front if a backend is missing or refuses a trial (BackendUnavailable), the
    data cannot be found and verified (DataError), or a trial does not fit its data: a batch
    larger than its training split (ConfigError)."""
    missing = {}
    for name in sorted({p.spec["backend"] for p in planned}):
        ok, reason = registry.status(name)
        if not ok:
            missing[name] = reason
    if missing:
        raise BackendUnavailable("; ".join(f"backend {n!r} is not installed: {r}" for n, r in missing.items()))
    for p in planned:
        reason = variants.skip(p.trial()) or registry.traits(p.spec["backend"]).skip(p.trial())  # imports no framework
        if reason:
            raise BackendUnavailable(f"backend {p.spec['backend']!r} cannot run trial {p.trial_id}: {reason}")
    datasets = {}
    for p in planned:
        trial = p.trial()
        key = trial.data.model_dump_json()
        if key not in datasets:
            datasets[key] = prepare(trial.data)
        try:  # checks that need the split sizes belong to planning too: bad input, nothing run
            batch_size_for(trial, len(datasets[key].train))
        except ValueError as exc:
            what = trial.meta.experiment or trial.algorithm
            raise ConfigError(f"{exc} (experiment {what!r}, trial {p.trial_id})", field="batch_size") from None


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class TrialRecord:
    row: dict[str, Any]
    curves: list[dict[str, Any]] = field(default_factory=list)


OUTCOME_FIELDS = ("test_error", "train_error", "val_error", "train_seconds", "eval_seconds", "setup_seconds", "compile_seconds",
                  "samples_per_second", "kept_layers", "peak_memory_bytes", "peak_memory_source", "epochs_run", "steps_run")


def _failure(exc: BaseException) -> dict[str, Any]:
    """The status and error of a trial that raised: one line, with where it was raised."""
    if isinstance(exc, Diverged):
        return {"status": "diverged", "error": str(exc)}
    if isinstance(exc, TrialTimeout):
        return {"status": "timeout", "error": str(exc)}
    tb = traceback.extract_tb(exc.__traceback__)[-1:]
    where = f" at {Path(tb[0].filename).name}:{tb[0].lineno}" if tb else ""
    message = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")  # TF appends whole traces
    return {"status": "failed", "error": f"{type(exc).__name__}: {message}{where}"}


def _pack_columns(pack: list[str] | None) -> dict[str, Any]:
    return {"pack_size": len(pack) if pack else 1, "pack_ids": json.dumps(pack) if pack else None}


def _record(p: PlannedTrial, trial, backend, started: datetime, outcome: Outcome | BaseException | None,
            curves: list[dict[str, Any]], pack: list[str] | None = None) -> TrialRecord:
    row: dict[str, Any] = {"status": "ok", "error": None}
    if isinstance(outcome, BaseException):
        row.update(_failure(outcome))
    row.update(_describe(p, trial, backend, started, _now()))
    row.update(_pack_columns(pack))
    if isinstance(outcome, Outcome):
        row.update({k: getattr(outcome, k) for k in OUTCOME_FIELDS})
        row["final_losses"] = json.dumps(outcome.final_losses)
    else:
        row["epochs_run"] = len({c["epoch"] for c in curves})
    return TrialRecord(row, curves)


def _stopper(started: datetime, timeout: float | None):
    def check(done: int, total: int) -> None:
        if timeout is not None and (_now() - started).total_seconds() > timeout:
            raise TrialTimeout(f"ran past the {timeout:g}s trial timeout (stopped after epoch {done} of {total})")
    return check


def run_unit(unit: list[PlannedTrial], on_epoch: Callable[[PlannedTrial, int, int, dict[str, Any]], None] | None = None,
             timeout: float | None = None) -> list[TrialRecord]:
    """The unit of work an executor schedules: one trial, or trials of one pack key trained
    as one program (`loop.fit_unit`). Every outcome becomes a row, one per trial, each with
    its own status (never raises, except KeyboardInterrupt): a diverged member does not stop
    the others; an error of the unit as a whole is every member's failure.

    With `timeout` (seconds), the unit stops at the first epoch boundary past it and its
    trials are recorded as `timeout` with the curves so far; an executor that can kill a
    process (Ray) also enforces it inside an epoch.

    A pack formed without knowing the device (`Traits.pack_skip` with on_gpu None) that this
    worker's backend cannot pack here (`Backend.pack_skip`) trains its trials one by one."""
    if len(unit) > 1:
        try:
            alone = registry.load(unit[0].spec["backend"]).pack_skip(unit[0].trial())
        except Exception:  # noqa: BLE001 - a backend that fails to load fails every member, below
            alone = None
        if alone:
            return [record for p in unit for record in run_unit([p], on_epoch, timeout)]
    started = _now()
    trials = [p.trial() for p in unit]
    ids = [p.trial_id for p in unit] if len(unit) > 1 else None
    curves: list[list[dict[str, Any]]] = [[] for _ in unit]
    outcomes: list[Outcome | BaseException | None] = [None] * len(unit)
    backend = None
    stop = _stopper(started, timeout)

    def epoch_done(k: int, done: int, total: int, info: dict[str, Any]) -> None:
        if on_epoch:
            on_epoch(unit[k], done, total, info)
        stop(done, total)

    try:
        backend = registry.load(trials[0].backend)
        if (cache := compile_cache.directory()) is not None:
            backend.use_compile_cache(cache)
        outcomes = list(fit_unit(backend, trials, prepare(trials[0].data), epoch_done, curves))
    except Exception as exc:  # recorded as the trials' failure; the suite goes on
        outcomes = [exc] * len(unit)
    return [_record(p, t, backend, started, o, c, ids) for p, t, o, c in zip(unit, trials, outcomes, curves)]


def lost_trial(p: PlannedTrial, status: str, error: str, started: datetime | None = None,
               pack: list[str] | None = None) -> TrialRecord:
    """The row of a trial whose process never returned (killed at its timeout, or crashed
    more often than the retries allow): written by the driver, without metrics. `pack`: the
    trial ids of the pack it was trained in, if any."""
    finished = _now()
    trial = p.trial()
    return TrialRecord({"status": status, "error": error, **_describe(p, trial, None, started or finished, finished),
                        **_pack_columns(pack)})


def _describe(p: PlannedTrial, trial: FFTrial | BPTrial, backend, started: datetime, finished: datetime) -> dict[str, Any]:
    meta = trial.meta
    return {
        "trial_id": p.trial_id, "algorithm": trial.algorithm, "backend": trial.backend, "seed": trial.seed,
        "suite": meta.suite, "experiment": meta.experiment, "tags": meta.tags,
        "reference_error": meta.reference_error, "reference_source": meta.reference_source,
        "method": meta.method,
        "spec_json": canonical_json(p.spec), "spec_hash_input": canonical_json(normal_form(trial)),
        "dataset": trial.data.name, "dataset_checksum": dataset_checksum(trial.data.name),
        "framework_versions": json.dumps(backend.versions() if backend else {}),
        "device_name": backend.device_name() if backend else None,
        "started_at": started, "finished_at": finished, "wall_seconds": (finished - started).total_seconds(),
        **environment(), **results.spec_row(trial),
    }


class Executor(Protocol):
    """Runs units of work (a trial, or a pack of trials: `run_unit`) and yields their
    records as they finish (in any order). Closing the iterator (Ctrl-C, SIGTERM) stops
    scheduling and cancels what is in flight."""

    def map(self, units: list[list[PlannedTrial]], progress: RunProgress) -> Iterator[TrialRecord]: ...


class RunProgress(Protocol):
    def skipped(self, n: int) -> None: ...
    def trial_started(self, p: PlannedTrial, where: dict[str, Any]) -> None: ...  # attempt, node, pid, devices
    def epoch(self, p: PlannedTrial, done: int, total: int, info: dict[str, Any]) -> None: ...
    def trial_finished(self, p: PlannedTrial, row: dict[str, Any]) -> None: ...


class LocalExecutor:
    """Sequential, in this process: for debugging and for hosts without Ray. The trial
    timeout is checked at epoch boundaries."""

    def __init__(self, trial_timeout: float | None = None):
        self.trial_timeout = trial_timeout

    def map(self, units: list[list[PlannedTrial]], progress: RunProgress) -> Iterator[TrialRecord]:
        for unit in units:
            for p in unit:
                progress.trial_started(p, {"attempt": 1, "pid": os.getpid()})
            for record in run_unit(unit, progress.epoch, self.trial_timeout):
                record.row.update(executor="local", attempt=1, visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
                yield record


@dataclass
class RunSummary:
    planned: int
    skipped: int
    rows: list[dict[str, Any]]

    @property
    def failed(self) -> int:
        return sum(r["status"] != "ok" for r in self.rows)


def pack(todo: list[PlannedTrial], size: int = DEFAULT_PACK_SIZE,
         on_gpu: Callable[[dict[str, Any]], bool | None] = lambda spec: None) -> list[list[PlannedTrial]]:
    """Units of work: trials a backend can pack (its framework-free `Traits.pack_skip`, told
    by `on_gpu(spec)` whether the trial will run on a GPU) go in packs of up to `size` with
    one pack key (`ffbench.packing`); the rest run alone. `size` 1: no packing."""
    def can_pack(spec: dict[str, Any]) -> bool:
        return registry.traits(spec["backend"]).pack_skip(parse_trial(spec), on_gpu(spec)) is None

    return [[todo[i] for i in unit] for unit in units([p.spec for p in todo], can_pack, size)]


def run(planned: list[PlannedTrial], out_dir: Path, executor: Executor, progress: RunProgress, *, force: bool = False,
        pack_size: int = DEFAULT_PACK_SIZE) -> RunSummary:
    """Run what is not done yet, writing each record as it arrives; with `pack_size` > 1,
    trials that can pack are trained in packs of up to that many."""
    done = set() if force else results.completed_ids(out_dir)
    todo = {p.trial_id: p for p in planned if p.trial_id not in done}
    progress.skipped(len(planned) - len(todo))
    rows = []
    on_gpu = getattr(executor, "on_gpu", lambda spec: None)  # None: the worker decides (LocalExecutor)
    records = executor.map(pack(list(todo.values()), pack_size, on_gpu), progress)
    try:
        for record in records:
            results.write_trial(out_dir, record.row, record.curves)
            rows.append(record.row)
            progress.trial_finished(todo[record.row["trial_id"]], record.row)
    finally:
        close = getattr(records, "close", None)
        if close:  # a generator: run its clean-up (cancel in-flight trials) now, not at garbage collection
            close()
    return RunSummary(len(planned), len(planned) - len(todo), rows)
