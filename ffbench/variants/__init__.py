"""Registered variants: what a researcher varies, each axis a lazy registry of plugins.

- `NEGATIVES`: negative-data strategies (`ffbench.variants.negatives`);
- `OBJECTIVES`: layer objectives (`ffbench.variants.objectives`);
- `DATASETS`: datasets (`ffbench.variants.datasets`).

Each is filled by the built-ins and by an entry-point group of the same name
(`ffbench.negatives`, ...); a variant is one object with its name, description, typed
parameters, NumPy reference and per-backend implementations. Importing this package imports
no variant module and no framework. See examples/ffbench-plugin-example/ for a plugin.
"""

from __future__ import annotations

from ffbench.variants.datasets import DATASETS, DatasetSource
from ffbench.variants.negatives import NEGATIVES, Batch, Draw, NegativeStrategy
from ffbench.variants.objectives import OBJECTIVES, LayerObjective
from ffbench.variants.registry import Registry, Variant, VariantError

REGISTRIES = {"negatives": NEGATIVES, "objectives": OBJECTIVES, "datasets": DATASETS}

__all__ = ["DATASETS", "NEGATIVES", "OBJECTIVES", "REGISTRIES", "Batch", "DatasetSource", "Draw", "LayerObjective",
           "NegativeStrategy", "Registry", "Variant", "VariantError", "skip"]


def skip(trial) -> str | None:
    """Why `trial.backend` cannot run one of the trial's variants, or None (framework-free).

    Only the built-in backends are held to a variant's `backends`: a third-party backend may
    implement variants its own way (or, like tests/fake_backend.py, not train FF at all), so
    its trials are left to it; one that asks `Variant.implementation` for a missing one fails
    that trial with the reason."""
    from ffbench import registry
    used = [DATASETS.get(trial.data.name)]
    if trial.algorithm == "ff":
        used += [NEGATIVES.get(trial.ff.negatives), OBJECTIVES.get(trial.ff.objective)]
    for variant in used:
        if trial.backend not in registry.BUILTIN_NAMES and trial.backend not in variant.backends:
            continue
        reason = variant.skip(trial.backend)
        if reason:
            return reason
    return None


def packs(trial) -> bool:
    """Whether every variant of `trial` vectorises over a pack's member axis."""
    return trial.algorithm != "ff" or (NEGATIVES.get(trial.ff.negatives).packs and OBJECTIVES.get(trial.ff.objective).packs)
