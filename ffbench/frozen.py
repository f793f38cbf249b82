"""A greedy phase's fixed layer input, computed once: whether a phase may, and what it costs.

In a greedy phase that trains layer k, layers 0..k-1 are frozen, so the normalised input of
layer k on a training image's positive (the image with its own label, through the frozen
layers) is fixed for the whole phase, and on its negative it changes only when the
negatives are redrawn (`ff.negatives_refresh`). A backend that follows this plan computes
those rows for the whole training set once (the positives at the phase's first epoch, the
negatives at each draw) and gathers each step's rows from them, instead of running the
frozen layers, the overlay and the normalisation again at every step. A full batch (the
whole training set in the epoch's order) reads the rows as they are: every loss is a mean
over the batch's (positive, negative) pairs, which the order does not change. The
numbers are those of recomputing: the same ops on the same rows, summed in another order.

It does not apply, and the step computes its input as before, in a phase of one step
(nothing to reuse), where the positives change from epoch to epoch (jittered images, the
views of `self_contrastive`'s pairs), in
the recurrent net and the simultaneous schedule (no layer's input is fixed), and (torch,
keras) in packs, whose members run one program on the lead member's inputs. The negatives
alone are computed at every step where they are drawn per position of each epoch's order,
are the strategy's own images (unsupervised negatives: fresh masks at every step), or are
redrawn every epoch (no saving). Where the
rows would exceed the budget (`FFBENCH_FROZEN_CACHE_MB`, else a quarter of the memory
available when the phase starts), the negatives' half is dropped first, then the
positives'; the reason is kept.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ffbench.backend import Phase
    from ffbench.spec import FFTrial

BUDGET_ENV = "FFBENCH_FROZEN_CACHE_MB"


@dataclass(frozen=True)
class FrozenPlan:
    below: int  # the phase's first trained layer: its input is the output of layers 0..below-1
    width: int  # that input's width
    positives: bool  # the positives' rows are computed once for the phase
    negatives: bool  # the negatives' rows once per draw of the negatives
    bytes: int  # what the cached rows hold
    why_not: str | None = None  # why a part is recomputed at every step, where one is

    @property
    def any(self) -> bool:
        return self.positives or self.negatives


def host_available_bytes() -> int:
    """The memory the OS reports available now (physical pages free for use)."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):  # not on this OS: no cache
        return 0


def budget_bytes(available: int) -> int:
    """`FFBENCH_FROZEN_CACHE_MB` if set, else a quarter of `available` (the device's free memory)."""
    value = os.environ.get(BUDGET_ENV)
    if value is not None and value.strip():
        try:
            return int(float(value) * 2**20)
        except ValueError:
            raise ValueError(f"{BUDGET_ENV}={value!r}: expected a number of MiB") from None
    return available // 4


def plan(trial: FFTrial, phase: Phase, n: int, width: int, by_position: bool, budget: int,
         itemsize: int = 4, steps: int = 2) -> FrozenPlan | None:
    """The plan of `phase` (`steps` steps in all) for `n` training images whose first trained
    layer reads `width` units; None where its input is not fixed (not a greedy phase's)."""
    ff = trial.ff
    if not phase.layers or ff.schedule != "greedy" or ff.recurrent is not None:
        return None
    below, rows = min(phase.layers), n * width * itemsize
    if steps < 2:
        return FrozenPlan(below, width, False, False, 0, "a phase of one step has nothing to reuse")
    if trial.data.jitter or ff.pairs:
        what = "the strategy's pairs" if ff.pairs else "jittered positives"
        return FrozenPlan(below, width, False, False, 0, f"{what} change every epoch")
    why = None
    negatives = ff.embeds_labels and not by_position and ff.negatives_refresh != "epoch"
    if not negatives:
        why = ("negatives are redrawn every epoch" if ff.negatives_refresh == "epoch" and ff.embeds_labels
               else "negatives are drawn per position" if ff.embeds_labels else "negatives are the strategy's own images")
    if negatives and 2 * rows > budget:
        negatives, why = False, f"positives and negatives need {2 * rows / 2**20:.0f} MiB, over the budget"
    if rows > budget:
        return FrozenPlan(below, width, False, False, 0, f"{rows / 2**20:.0f} MiB of positives over the "
                                                         f"{budget / 2**20:.0f} MiB budget ({BUDGET_ENV})")
    return FrozenPlan(below, width, True, negatives, rows * (1 + negatives), why)


def row_index(idx, n: int, both: bool, concatenate):
    """Which cached rows a step reads (the cache: the positives' n rows, then, with `both`,
    the negatives' n): None for a full batch (all of them, as they are: the same pairs in the
    natural order), else the batch's positives' rows, then (`both`) its negatives' (+ n).
    `concatenate`: the framework's."""
    if idx.shape[-1] == n:
        return None
    return concatenate([idx, idx + n]) if both else idx
