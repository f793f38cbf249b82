"""What the keras backend runs and packs, known without importing keras (`ffbench.backend.Traits`).
Keras runs on $KERAS_BACKEND (tensorflow by default), as the registry reads it."""

from __future__ import annotations

import os

from ffbench.packing import never_packed
from ffbench.spec import BPTrial, FFTrial


def skip(trial: FFTrial | BPTrial) -> str | None:
    if trial.precision == "bf16":
        return "precision: bf16 is not implemented in the keras backend (fp32 and tf32 are; torch and jax have bf16)"
    return None


def pack_skip(trial: FFTrial | BPTrial, on_gpu: bool | None, keras_backend: str | None = None) -> str | None:
    """`keras_backend`: the one Keras runs on (in the worker, `keras.backend.backend()`);
    None: $KERAS_BACKEND."""
    backend = keras_backend or os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend != "jax":
        return (f"keras packs trials on KERAS_BACKEND=jax only (jax.vmap of the compiled step); "
                f"this is KERAS_BACKEND={backend}")
    if os.environ.get("FFBENCH_KERAS_EAGER", "0") not in ("", "0"):
        return "FFBENCH_KERAS_EAGER=1: a pack vmaps the compiled step"
    return never_packed(trial)
