"""Negative-data strategies as registered variants (`ffbench list`: "negative-data strategies").

A strategy says, for each training sample, what its negative is (`sample`): a label to overlay
on the sample's own image (a supervised strategy), or an index of another image (an
unsupervised one, whose negative *inputs* it also builds: `inputs`). The NumPy methods here
are the reference; each backend's implementation (`backends`, imported in the worker) has
the same two methods in its framework, with its trainer as the context:

    sample(trainer, key_epoch, phase) -> (n,) device array   each sample's negative
    inputs(trainer, batch) -> (B, D) device array            unsupervised only
    positives(trainer, batch) -> (B, 2D) device array        `pairs` only: the positive pairs
    eval_inputs(ff, x) -> (N, 2D) device array               `pairs` only: what the net reads outside training

A draw is keyed by `key_epoch` (`reference.negatives.negatives_epoch`). A strategy of your own
takes its random bits from `rng.plugin_stream(name)`, so it never shares a stream with
another. The trainer attributes a backend implementation may read: `trial`, `n`, `index`
(arange(n) on the device), `splits["train"]` (images, labels), `images` (the images
negatives come from: `pool`, else the training images), `device`, `variant_params` (this
strategy's typed parameters) and `hard_scores(phase)` (the (n, 10) label scores of the
training set at the current weights, for a `scored` strategy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np

from ffbench.variants.registry import Registry, Variant


class Batch(NamedTuple):
    """What `inputs` gets for one minibatch, in the backend's arrays: every image negatives may
    be taken from (`images`), the batch's images `xb` and labels `yb`, their dataset indices
    `idx`, each one's negative `negb` (from `sample`), and the epoch's keys for the mask and
    jitter streams (`rng.STREAM_MASK` of the negatives' epoch, `rng.STREAM_JITTER`)."""

    images: Any
    xb: Any
    yb: Any
    idx: Any
    negb: Any
    mask_key: Any
    jitter_key: Any


@dataclass
class Draw:
    """The reference's context for `sample`: the trial, every image negatives come from (`x`),
    the training labels, the epoch whose hashes key the draw, and (for `scored` strategies)
    `scores`: the (n, 10) signed label scores at the weights of that moment."""

    trial: Any
    x: np.ndarray
    y: np.ndarray
    key_epoch: int
    params: Any  # the variant's typed parameters
    scores: Any = None  # () -> (n, 10), for scored strategies

    @property
    def index(self) -> np.ndarray:
        return np.arange(len(self.y))


class NegativeStrategy(Variant):
    kind: ClassVar[str] = "negative strategy"
    # True: `sample` gives labels, overlaid on the sample's own image (the label is embedded in
    # every input). False: unsupervised; `inputs` builds the negative images, no label is
    # embedded anywhere, and the trial needs `ff.prediction: softmax`.
    supervised: ClassVar[bool] = True
    # True: `sample` reads the model's own label scores (`ff.negatives_refresh` cannot be once).
    scored: ClassVar[bool] = False
    # True: the trial records `negative_collision_rate`, the fraction of negatives carrying the
    # sample's true label (a strategy that can hand a sample its own label).
    reports_collisions: ClassVar[bool] = False
    # True: the negatives are the training images outside `data.classes` (`pool`), so the
    # trial must set data.classes; no other strategy may.
    needs_rest: ClassVar[bool] = False
    # False: no negative data at all (`none`: for objectives that learn from the labels, `cwc`);
    # `inputs` gives zero rows, and each step is its positives alone.
    makes_negatives: ClassVar[bool] = True
    # The layer objective `ffbench check` trains this strategy with (None: the check's own).
    check_objective: ClassVar[str | None] = None
    # True: the strategy builds the positives too, and every input is a pair [a | b] of two
    # D-wide rows (`positive_inputs`, `inputs`, and `eval_inputs` outside training), which the
    # first layer reads with shared weights (`reference.ff.pair_sum`; `self_contrastive`).
    pairs: ClassVar[bool] = False

    def validate(self, trial) -> None:
        """Refuse a trial this strategy cannot define (raise ValueError with a one-line reason)."""

    def check_data(self, y: np.ndarray) -> None:
        """Refuse training labels this strategy cannot draw from (raise ValueError)."""

    def pool(self, data) -> np.ndarray | None:
        """The images negatives are taken from when they are not the training split itself, or None."""
        return None

    def by_position(self, trial) -> bool:
        """True where the negatives belong to positions of the epoch's order rather than to
        samples (then `sample_by_position` draws them, every epoch)."""
        return False

    # ---------------------------------------------------------------- the NumPy reference
    def sample(self, draw: Draw) -> np.ndarray:
        """Each training sample's negative: a label (supervised), or an index into `draw.x`."""
        raise NotImplementedError

    def sample_by_position(self, trial, y: np.ndarray, key_epoch: int, batches: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def inputs(self, trial, x: np.ndarray, xb: np.ndarray, idx: np.ndarray, neg: np.ndarray, epoch: int) -> np.ndarray:
        """Unsupervised strategies: the negative inputs of one batch."""
        raise NotImplementedError

    def positive_inputs(self, trial, x: np.ndarray, xb: np.ndarray, idx: np.ndarray, epoch: int) -> np.ndarray:
        """`pairs` strategies: the positive inputs of one batch."""
        raise NotImplementedError

    def eval_inputs(self, ff, x: np.ndarray) -> np.ndarray:
        """`pairs` strategies: what the net reads of images x outside training (`reference.ff.eval_rows`)."""
        raise NotImplementedError


NEGATIVES: Registry[NegativeStrategy] = Registry("negative strategy", "ffbench.negatives", NegativeStrategy, {
    name: f"ffbench.variants.builtin_negatives:{cls}" for name, cls in (
        ("wrong_label", "WrongLabel"), ("permuted_label", "PermutedLabel"), ("hard_label", "HardLabel"),
        ("hard_label_top2", "HardLabelTop2"), ("hybrid_image", "HybridImage"), ("class_split", "ClassSplit"),
        ("none", "NoNegatives"), ("self_contrastive", "SelfContrastive"))})


def strategy(ff) -> NegativeStrategy:
    """The negative strategy of an FF spec."""
    return NEGATIVES.get(ff.negatives)
