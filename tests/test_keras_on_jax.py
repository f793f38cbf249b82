"""Keras must also run on KERAS_BACKEND=jax (GPU hosts without a TensorFlow GPU build), where
its epoch is one `lax.fori_loop` program and it packs trials. This session's Keras may run
on TensorFlow (where the packing cases skip, saying why), so the Keras cases of the check,
compiled-step and packing tests run again in one process on jax."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_packing import CASES

from ffbench import registry

HERE = Path(__file__).parent
# Two runs, so that pytest-xdist can give them to different workers: the check (its longest
# part), then compiled == eager (2 schedules), the packing cases and the runner's
RUNS = {"check": (["test_check.py"], 1), "steps-and-packs": (["test_keras_compiled.py", "test_packing.py"], 2 + len(CASES) + 1)}


@pytest.mark.slow
@pytest.mark.parametrize("run", list(RUNS))
def test_the_keras_cases_pass_on_keras_backend_jax(run):
    files, expected = RUNS[run]
    for name in ("keras", "jax"):
        ok, reason = registry.status(name)
        if not ok:
            pytest.skip(reason)
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not ray",
                           *[str(HERE / f) for f in files], "-k", "keras"],
                          env=env, capture_output=True, text=True, timeout=900, cwd=HERE.parent)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{expected} passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]
