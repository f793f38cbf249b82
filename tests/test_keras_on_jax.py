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
FILES = ["test_check.py", "test_keras_compiled.py", "test_packing.py"]
EXPECTED = 1 + 2 + len(CASES) + 1  # the check; compiled == eager (2 schedules); the packing cases and the runner's


@pytest.mark.slow
def test_the_keras_cases_pass_on_keras_backend_jax():
    for name in ("keras", "jax"):
        ok, reason = registry.status(name)
        if not ok:
            pytest.skip(reason)
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not ray",
                           *[str(HERE / f) for f in FILES], "-k", "keras"],
                          env=env, capture_output=True, text=True, timeout=900, cwd=HERE.parent)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{EXPECTED} passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]
