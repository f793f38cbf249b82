"""Which trials can be trained together as one program (trial packing).

Trials pack when they differ only in fields that do not change the program's shape: the
seed and the learning rates (`PACK_FREE`), and `meta`. Everything else (widths, batch size,
epochs, negatives, data, optimiser kind and its other constants) must be equal, so one
compiled program with stacked weights trains them all. A backend says per trial whether it
can pack (`Backend.pack_skip`); a trial it cannot pack runs alone.

Packing changes how trials are scheduled, never what they compute: a packed trial keeps
its own trial id and row, and matches its unpacked run within the parity tolerance.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ffbench.spec import BPTrial, FFTrial, canonical_json

# Spec fields a pack's members may differ in (paths into the spec's plain data).
PACK_FREE: tuple[tuple[str, ...], ...] = (("seed",), ("optimizer", "lr"), ("ff", "readout_optimizer", "lr"), ("meta",))
DEFAULT_PACK_SIZE = 8


def never_packed(trial: FFTrial | BPTrial) -> str | None:
    """Why no backend packs `trial`, or None. A grown net (`ff.grow_patience`) decides its
    own depth during training, so its program's shape is not fixed."""
    from ffbench import variants
    if trial.algorithm == "ff" and trial.ff.grow_patience is not None:
        return "ff.grow_patience decides each trial's depth during training"
    if trial.algorithm == "ff" and trial.ff.recurrent is not None:
        return "the recurrent net (ff.recurrent) trains one trial at a time"
    if not variants.packs(trial):
        return f"a plugin variant ({trial.ff.negatives}, {trial.ff.objective}) trains one trial at a time"
    return None


def pack_key(spec: dict[str, Any]) -> str:
    """The spec with the pack-free fields removed: trials with equal keys can pack."""
    out = json.loads(canonical_json(spec))  # a deep copy
    for path in PACK_FREE:
        node = out
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return canonical_json(out)


def units(specs: list[dict[str, Any]], can_pack: Callable[[dict[str, Any]], bool],
          size: int = DEFAULT_PACK_SIZE) -> list[list[int]]:
    """Group trials (by index into `specs`) into units of work: packs of up to `size` trials
    with one pack key, in the order their first member was planned; a trial that cannot
    pack (or `size` 1) is a unit of its own."""
    groups: dict[str, list[int]] = {}
    out: list[list[int]] = []
    for i, spec in enumerate(specs):
        if size <= 1 or not can_pack(spec):
            out.append([i])
            continue
        key = pack_key(spec)
        group = groups.get(key)
        if group is None or len(group) >= size:
            group = groups[key] = []
            out.append(group)
        group.append(i)
    return out
