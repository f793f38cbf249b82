"""Results on disk: one Parquet fragment per finished trial, written atomically.

    DIR/trials/<trial_id>.parquet   one row: status, metrics, environment, the flattened spec
    DIR/curves/<trial_id>.parquet   tidy per-epoch rows: trial_id, epoch, phase, metric, layer, value

`pandas.read_parquet(DIR / "trials")` reads the whole table. Every fragment has the same
Arrow schema (derived from the spec models), so fragments of FF and BP trials, written by
different ffbench runs, always read back as one table. A fragment is written to a hidden
temporary file and renamed into place: a reader never sees half a row, and Arrow's dataset
discovery ignores the hidden files.

A fragment that does not read back (cut short by a copy or sync that broke off, or not
Parquet at all) is never fatal: `unreadable()` names it, `quarantine()` (which `ffbench run`
calls while it holds DIR) moves it to DIR/quarantine/ (never deleted) so that its trial
runs again, and the readers here leave it out. A write that fails (a full disk, a read-only
folder) stops the run with one line (`ResultsUnwritable`); the temporary file is removed,
so nothing is half-written, and a re-run finishes the rest.
"""

from __future__ import annotations

import fcntl
import os
import socket
import types
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from ffbench.errors import ConfigError, FFBenchError
from ffbench.spec import MODELS, BPTrial, FFTrial, canonical_json, full_spec
from ffbench.spec_paths import flatten, leaf_fields, unwrap

STATUSES = ("ok", "failed", "diverged", "timeout")


class ResultsBusy(FFBenchError):
    exit_code = 3


class ResultsUnwritable(FFBenchError):
    """DIR cannot be written (no space, read-only, no permission)."""

    exit_code = 3


def _unwritable(path: Path, exc: OSError) -> FFBenchError:
    if isinstance(exc, (FileExistsError, NotADirectoryError)):  # a file where a folder goes
        return ConfigError("is a file, or inside one; expected a results folder", file=str(path), field="--out")
    return ResultsUnwritable(f"{path}: cannot write: {exc.strerror or exc}; nothing was half-written, "
                             "re-run the same command to finish the rest")

# Columns every row has besides the flattened spec (`spec.` prefix).
RESULT_FIELDS: list[tuple[str, pa.DataType]] = [
    ("trial_id", pa.string()),
    ("algorithm", pa.string()),
    ("backend", pa.string()),
    ("seed", pa.int64()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("test_error", pa.float64()),
    ("train_error", pa.float64()),
    ("val_error", pa.float64()),
    ("train_seconds", pa.float64()),
    ("eval_seconds", pa.float64()),
    ("setup_seconds", pa.float64()),
    ("compile_seconds", pa.float64()),
    ("wall_seconds", pa.float64()),
    ("samples_per_second", pa.float64()),
    ("kept_layers", pa.int64()),  # ff.grow_patience: the depth the net grew to (null otherwise)
    ("peak_memory_bytes", pa.int64()),
    ("peak_memory_source", pa.string()),
    ("epochs_run", pa.int64()),
    ("steps_run", pa.int64()),
    ("final_losses", pa.string()),  # JSON
    ("suite", pa.string()),
    ("experiment", pa.string()),
    ("tags", pa.list_(pa.string())),
    ("reference_error", pa.float64()),
    ("reference_source", pa.string()),
    ("method", pa.string()),  # meta.method: the row of a methods x datasets table
    ("spec_json", pa.string()),  # the full spec, every default included
    ("spec_hash_input", pa.string()),  # the normal form the trial_id hashes
    ("dataset", pa.string()),
    ("dataset_checksum", pa.string()),
    ("ffbench_version", pa.string()),
    ("git_sha", pa.string()),
    ("git_dirty", pa.bool_()),
    ("python_version", pa.string()),
    ("framework_versions", pa.string()),  # JSON
    ("device_name", pa.string()),
    ("hostname", pa.string()),
    ("executor", pa.string()),  # local or ray
    ("attempt", pa.int64()),  # 1, or more when a crashed worker's trial was retried
    ("node_id", pa.string()),  # the Ray node that ran it
    ("visible_devices", pa.string()),  # CUDA_VISIBLE_DEVICES in the trial's process
    ("gpus_per_trial", pa.float64()),
    ("cpus_per_trial", pa.float64()),
    ("pack_size", pa.int64()),  # trials trained together as one program (1: alone)
    ("pack_ids", pa.string()),  # JSON list of the pack's trial ids (null: alone)
    ("started_at", pa.timestamp("us", tz="UTC")),
    ("finished_at", pa.timestamp("us", tz="UTC")),
]

CURVE_SCHEMA = pa.schema([("trial_id", pa.string()), ("epoch", pa.int64()), ("phase", pa.string()),
                          ("metric", pa.string()), ("layer", pa.int64()), ("value", pa.float64())])


def _arrow_type(annotation: Any) -> pa.DataType:
    annotation = unwrap(annotation)
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):  # e.g. batch_size: int | "full": written as text
        return pa.string()
    if origin is Literal:
        kinds = {type(a) for a in get_args(annotation)}
        return {str: pa.string(), int: pa.int64(), bool: pa.bool_()}[kinds.pop()] if len(kinds) == 1 else pa.string()
    if origin is list:
        item = unwrap(get_args(annotation)[0])
        if isinstance(item, type) and issubclass(item, BaseModel):  # e.g. ff.layer_optimizers: written as canonical JSON
            return pa.string()
        return pa.list_(_arrow_type(item))
    if origin is dict:  # a variant's parameters: written as canonical JSON
        return pa.string()
    return {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_()}[annotation]


def spec_columns() -> dict[str, pa.DataType]:
    """`spec.<dotted field>` -> type, for the union of the FF and BP specs (meta excluded)."""
    cols: dict[str, pa.DataType] = {}
    for model in MODELS.values():
        for k, ann in leaf_fields(model).items():
            if k.startswith("meta."):
                continue
            t = _arrow_type(ann)
            if cols.setdefault(f"spec.{k}", t) != t:
                raise TypeError(f"spec.{k} has two types: {cols[f'spec.{k}']} and {t}")
    return dict(sorted(cols.items()))


TRIAL_SCHEMA = pa.schema(RESULT_FIELDS + list(spec_columns().items()))
TEXT_COLUMNS = {k: t == pa.string() for k, t in spec_columns().items()}
# a variant's parameters and a list of specs (ff.layer_optimizers): one JSON column each, not one per field
PARAMS_FIELDS = (("ff", "negatives_params"), ("ff", "objective_params"), ("ff", "layer_optimizers"))


def spec_row(trial: FFTrial | BPTrial) -> dict[str, Any]:
    spec = full_spec(trial)
    spec.pop("meta")
    for block, field in PARAMS_FIELDS:  # a variant's parameters: one JSON column, not one per parameter
        if isinstance(spec.get(block), dict) and spec[block].get(field) is not None:
            spec[block][field] = canonical_json(spec[block][field])
    row = {f"spec.{k}": str(v) if v is not None and TEXT_COLUMNS.get(f"spec.{k}") else v for k, v in flatten(spec).items()}
    # an unset optional block (e.g. ff.readout_optimizer: None) leaves its columns null
    return {k: v for k, v in row.items() if k in TRIAL_SCHEMA.names or v is not None}


def _write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise _unwritable(path.parent, exc) from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def write_trial(out_dir: Path, row: dict[str, Any], curves: list[dict[str, Any]] | None = None) -> Path:
    """Write one trial's row (and its curves, first) atomically; returns the row's path."""
    unknown = set(row) - set(TRIAL_SCHEMA.names)
    if unknown:
        raise KeyError(f"columns not in the results schema: {sorted(unknown)}")
    if row.get("status") not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, not {row.get('status')!r}")
    trial = row["trial_id"]
    if curves:
        rows = [{"trial_id": trial, **c} for c in curves]
        _write_atomic(pa.Table.from_pylist(rows, schema=CURVE_SCHEMA), out_dir / "curves" / f"{trial}.parquet")
    path = out_dir / "trials" / f"{trial}.parquet"
    _write_atomic(pa.Table.from_pylist([row], schema=TRIAL_SCHEMA), path)
    return path


@contextmanager
def exclusive(out_dir: Path):
    """Hold DIR for one `ffbench run`: a second run on the same DIR is refused, not interleaved.
    The lock is an flock on DIR/.ffbench.lock, released by the kernel if the holder dies."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        f = open(out_dir / ".ffbench.lock", "a+")
    except OSError as exc:
        raise _unwritable(out_dir, exc) from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise ResultsBusy(f"{out_dir}: another ffbench run is writing here ({holder}); "
                          "wait for it, or use another --out") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()}")
    f.flush()
    try:
        yield
    finally:
        f.truncate(0)
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def save_suite(out_dir: Path, suite_file: Path) -> Path:
    """Keep a copy of the suite file a run used: DIR/suites/<stem>.<sha256[:12]>.yaml."""
    import hashlib
    data = Path(suite_file).read_bytes()
    target = Path(out_dir) / "suites" / f"{Path(suite_file).stem}.{hashlib.sha256(data).hexdigest()[:12]}.yaml"
    if not target.exists():
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise _unwritable(target.parent, exc) from None
    return target


@dataclass(frozen=True)
class Unreadable:
    """A fragment that does not read back as ffbench rows."""

    path: Path
    reason: str


def _read_folder(folder: Path, schema: pa.Schema) -> tuple[pa.Table, list[Unreadable]]:
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        return schema.empty_table(), []
    try:  # the common case: one dataset read
        return pq.read_table(folder, schema=schema), []
    except (pa.ArrowException, OSError, ValueError):
        pass
    tables, bad = [], []
    for f in files:  # find the fragments that spoil it
        try:
            tables.append(pq.read_table(f, schema=schema))
        except (pa.ArrowException, OSError, ValueError) as exc:
            reason = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            bad.append(Unreadable(f, f"{type(exc).__name__}: {reason}"))
    return (pa.concat_tables(tables) if tables else schema.empty_table()), bad


def read_trials(out_dir: Path) -> pd.DataFrame:
    """All readable trial rows in DIR (an empty frame with the full schema if there are none);
    `unreadable(DIR)` names the fragments left out."""
    return _read_folder(Path(out_dir) / "trials", TRIAL_SCHEMA)[0].to_pandas()


def read_curves(out_dir: Path) -> pd.DataFrame:
    return _read_folder(Path(out_dir) / "curves", CURVE_SCHEMA)[0].to_pandas()


def read_all(out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, list[Unreadable]]:
    """(readable trial rows, readable curves, the fragments that do not read back), each
    folder read once."""
    trials, bad_trials = _read_folder(Path(out_dir) / "trials", TRIAL_SCHEMA)
    curves, bad_curves = _read_folder(Path(out_dir) / "curves", CURVE_SCHEMA)
    return trials.to_pandas(), curves.to_pandas(), [*bad_trials, *bad_curves]


def unreadable(out_dir: Path) -> list[Unreadable]:
    """The trial and curve fragments of DIR that do not read back."""
    return [*_read_folder(Path(out_dir) / "trials", TRIAL_SCHEMA)[1], *_read_folder(Path(out_dir) / "curves", CURVE_SCHEMA)[1]]


def quarantine(out_dir: Path) -> list[tuple[Unreadable, Path]]:
    """Move every unreadable fragment to DIR/quarantine/<trials|curves>/ (never deleted),
    with the row of a trial whose curves are unreadable, so that the trial runs again
    whole. Returns (fragment, where it went). Call it holding DIR (`exclusive`)."""
    out_dir = Path(out_dir)
    moved = []
    for bad in unreadable(out_dir):
        paths = [bad.path]
        if bad.path.parent.name == "curves" and (out_dir / "trials" / bad.path.name).exists():
            paths.append(out_dir / "trials" / bad.path.name)
        for path in paths:
            dest = out_dir / "quarantine" / path.parent.name / path.name
            n = 1
            while dest.exists():  # an earlier quarantined copy is kept too
                dest, n = out_dir / "quarantine" / path.parent.name / f"{path.stem}.{n}{path.suffix}", n + 1
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, dest)
            except OSError as exc:
                raise _unwritable(dest.parent, exc) from None
            if path == bad.path:
                moved.append((bad, dest))
    return moved


def completed_ids(out_dir: Path) -> set[str]:
    """trial_ids with an `ok` row: what a re-run skips. Failed rows are retried."""
    df = read_trials(out_dir)
    return set(df.loc[df["status"] == "ok", "trial_id"])
