"""What the torch backend runs and packs, known without importing torch (`ffbench.backend.Traits`)."""

from __future__ import annotations

import os

from ffbench.packing import never_packed
from ffbench.spec import BPTrial, FFTrial


def skip(trial: FFTrial | BPTrial) -> str | None:
    return None  # every knob of the spec


def pack_skip(trial: FFTrial | BPTrial, on_gpu: bool | None) -> str | None:
    reason = never_packed(trial)
    if reason:
        return reason
    if on_gpu is False and os.environ.get("FFBENCH_TORCH_PACK_ON_CPU", "0") in ("", "0"):
        return ("on a CPU, a torch pack runs no faster than its trials one by one (measured: benchmarks/RESULTS.md); "
                "FFBENCH_TORCH_PACK_ON_CPU=1 packs anyway")
    return None  # every other trial: the step objective is a pure function, vmapped over stacked tensors
