"""What the jax backend runs and packs, known without importing jax (`ffbench.backend.Traits`)."""

from __future__ import annotations

from ffbench.packing import never_packed
from ffbench.spec import BPTrial, FFTrial


def skip(trial: FFTrial | BPTrial) -> str | None:
    return None  # every knob of the spec


def pack_skip(trial: FFTrial | BPTrial, on_gpu: bool | None) -> str | None:
    return never_packed(trial)  # None for every other trial: the epoch program is pure, and vmaps over stacked states
