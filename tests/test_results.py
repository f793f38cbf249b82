"""Parquet results: schema, atomic fragments, round trip, resume bookkeeping."""

import errno
import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from ffbench import results
from ffbench.spec import parse_trial


def row(trial_id, status="ok", **kw):
    t = parse_trial({"algorithm": kw.pop("algorithm", "ff"), "backend": "torch", "seed": 3, "hidden": [5, 6], "epochs": 2})
    base = {"trial_id": trial_id, "algorithm": t.algorithm, "backend": "torch", "seed": 3, "status": status,
            "test_error": 0.1, "train_seconds": 1.5, "peak_memory_bytes": 2**40, "tags": ["a"],
            "spec_json": json.dumps(t.model_dump(mode="json")), **results.spec_row(t)}
    return {**base, **kw}


def test_round_trip_ff_and_bp_rows_read_as_one_table(tmp_path):
    results.write_trial(tmp_path, row("a1"), [{"epoch": 0, "phase": "ff", "metric": "ff_loss", "layer": 1, "value": 0.5}])
    results.write_trial(tmp_path, row("b2", algorithm="bp", status="failed", error="RuntimeError: x", test_error=None))
    df = pd.read_parquet(tmp_path / "trials")  # the documented way to read results
    assert len(df) == 2 and set(df.columns) == set(results.TRIAL_SCHEMA.names)
    a = df.set_index("trial_id").loc["a1"]
    assert a["test_error"] == 0.1 and a["peak_memory_bytes"] == 2**40 and list(a["spec.hidden"]) == [5, 6]
    assert a["spec.ff.threshold"] == 1.0 and a["spec.optimizer.lr"] == 1e-3
    b = df.set_index("trial_id").loc["b2"]
    assert b["status"] == "failed" and np.isnan(b["test_error"]) and pd.isna(b["spec.ff.threshold"])
    curves = results.read_curves(tmp_path)
    assert curves.to_dict("records") == [{"trial_id": "a1", "epoch": 0, "phase": "ff", "metric": "ff_loss", "layer": 1,
                                          "value": 0.5}]


def test_every_fragment_has_the_full_schema(tmp_path):
    path = results.write_trial(tmp_path, row("c3", algorithm="bp"))
    assert pq.read_schema(path).remove_metadata() == results.TRIAL_SCHEMA


def test_writes_are_atomic_and_leave_no_temporaries(tmp_path, monkeypatch):
    results.write_trial(tmp_path, row("d4"))
    def fail(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(results.pq, "write_table", fail)
    with pytest.raises(results.ResultsUnwritable, match="No space left on device"):
        results.write_trial(tmp_path, row("e5"))
    assert sorted(p.name for p in (tmp_path / "trials").iterdir()) == ["d4.parquet"]


def test_bad_rows_are_refused(tmp_path):
    with pytest.raises(KeyError, match="not in the results schema"):
        results.write_trial(tmp_path, row("f6", surprise=1))
    with pytest.raises(ValueError, match="status must be one of"):
        results.write_trial(tmp_path, row("f6", status="weird"))
    assert not (tmp_path / "trials").exists()


def test_completed_ids_counts_only_ok_rows(tmp_path):
    assert results.completed_ids(tmp_path) == set()
    assert results.read_trials(tmp_path).empty
    results.write_trial(tmp_path, row("ok1"))
    results.write_trial(tmp_path, row("bad", status="failed"))
    results.write_trial(tmp_path, row("nan", status="diverged"))
    assert results.completed_ids(tmp_path) == {"ok1"}


def test_schema_covers_every_spec_field():
    cols = results.spec_columns()
    for name in ("spec.ff.threshold", "spec.ff.readout_optimizer.lr", "spec.bp.init", "spec.data.train_subset", "spec.hidden"):
        assert name in cols
    assert not any(c.startswith("spec.meta") for c in cols)
