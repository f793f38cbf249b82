"""Results on disk: one Parquet fragment per finished trial, written atomically.

    DIR/trials/<trial_id>.parquet   one row: status, metrics, environment, the flattened spec
    DIR/curves/<trial_id>.parquet   tidy per-epoch rows: trial_id, epoch, phase, metric, layer, value

`pandas.read_parquet(DIR / "trials")` reads the whole table. Every fragment has the same
Arrow schema (derived from the spec models), so fragments of FF and BP trials, written by
different ffbench runs, always read back as one table. A fragment is written to a hidden
temporary file and renamed into place: a reader never sees half a row, and Arrow's dataset
discovery ignores the hidden files.
"""

from __future__ import annotations

import fcntl
import os
import socket
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ffbench.errors import FFBenchError
from ffbench.spec import MODELS, BPTrial, FFTrial, flatten, full_spec, leaf_fields, unwrap

STATUSES = ("ok", "failed", "diverged", "timeout")


class ResultsBusy(FFBenchError):
    exit_code = 3

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
        return pa.list_(_arrow_type(get_args(annotation)[0]))
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


def spec_row(trial: FFTrial | BPTrial) -> dict[str, Any]:
    spec = full_spec(trial)
    spec.pop("meta")
    row = {f"spec.{k}": str(v) if v is not None and TEXT_COLUMNS.get(f"spec.{k}") else v for k, v in flatten(spec).items()}
    # an unset optional block (e.g. ff.readout_optimizer: None) leaves its columns null
    return {k: v for k, v in row.items() if k in TRIAL_SCHEMA.names or v is not None}


def _write_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
    out_dir.mkdir(parents=True, exist_ok=True)
    f = open(out_dir / ".ffbench.lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise ResultsBusy(f"{out_dir}: another ffbench run is writing here ({holder}); wait for it, or use another --out") from None
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
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return target


def read_trials(out_dir: Path) -> pd.DataFrame:
    """All trial rows in DIR (an empty frame with the full schema if there are none)."""
    folder = Path(out_dir) / "trials"
    if not folder.is_dir() or not any(folder.glob("*.parquet")):
        return TRIAL_SCHEMA.empty_table().to_pandas()
    return pq.read_table(folder, schema=TRIAL_SCHEMA).to_pandas()


def read_curves(out_dir: Path) -> pd.DataFrame:
    folder = Path(out_dir) / "curves"
    if not folder.is_dir() or not any(folder.glob("*.parquet")):
        return CURVE_SCHEMA.empty_table().to_pandas()
    return pq.read_table(folder, schema=CURVE_SCHEMA).to_pandas()


def completed_ids(out_dir: Path) -> set[str]:
    """trial_ids with an `ok` row: what a re-run skips. Failed rows are retried."""
    df = read_trials(out_dir)
    return set(df.loc[df["status"] == "ok", "trial_id"])
