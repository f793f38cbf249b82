"""The built-in negative-data strategies: each is its description, its rules and its NumPy
reference (the math: `ffbench.reference.negatives`), and where each backend's translation lives."""

from __future__ import annotations

from typing import Annotated, ClassVar

import numpy as np
from pydantic import Field

from ffbench.reference import augment, rng
from ffbench.reference import negatives as RN
from ffbench.strict import Strict
from ffbench.variants.negatives import Draw, NegativeStrategy


def _backends(cls: str) -> dict[str, str]:
    return {fw: f"ffbench_backends.{fw}.negatives:{cls}" for fw in ("torch", "jax", "keras")}


class BuiltIn(NegativeStrategy):
    packs: ClassVar[bool] = True


class WrongLabel(BuiltIn):
    name = "wrong_label"
    description = "the image with a wrong label, uniform over the 9 wrong classes (never the true one)"
    backends = _backends("WrongLabel")

    def sample(self, draw: Draw) -> np.ndarray:
        return rng.wrong_labels(draw.trial.seed, draw.key_epoch, draw.index, draw.y)


class PermutedLabel(BuiltIn):
    name = "permuted_label"
    description = "the image with a label of the batch, randomly permuted (PyTorch/Keras examples; can be the true one)"
    reports_collisions = True
    backends = _backends("PermutedLabel")

    def by_position(self, trial) -> bool:
        """Refreshed every epoch it permutes the labels within each minibatch (a permutation of
        the batch's positions); drawn less often, one permutation of the whole training set's
        labels, kept by the samples (the popular PyTorch script's randperm)."""
        return trial.ff.negatives_refresh == "epoch"

    def sample(self, draw: Draw) -> np.ndarray:
        return draw.y[rng.batch_permutations(draw.trial.seed, draw.key_epoch, 1, len(draw.y))[0]]

    def sample_by_position(self, trial, y, key_epoch, batches):
        perms = rng.batch_permutations(trial.seed, key_epoch, len(batches), len(batches[0]))
        return [y[idx][perm] for idx, perm in zip(batches, perms)]


class Hard(BuiltIn):
    scored = True

    def validate(self, trial) -> None:
        if trial.ff.negatives_refresh == "once":
            raise ValueError(f"ff.negatives: {self.name} scores the data with the current weights; "
                             "it needs ff.negatives_refresh: epoch or episode")


class HardLabel(Hard):
    name = "hard_label"
    description = "the image with a wrong label sampled from the model's own softmax over goodness (Matlab ffcode)"
    backends = _backends("HardLabel")

    def sample(self, draw: Draw) -> np.ndarray:
        u = rng.uniform24(rng.negatives_hash(draw.trial.seed, draw.key_epoch, draw.index))
        return RN.sample_wrong(draw.scores(), draw.y, u)


class HardLabelTop2(Hard):
    name = "hard_label_top2"
    description = "the image with the model's best-scoring wrong label (the JAX example's hard negatives)"
    backends = _backends("HardLabelTop2")

    def sample(self, draw: Draw) -> np.ndarray:
        return RN.best_wrong(draw.scores(), draw.y)


class HybridImage(BuiltIn):
    name = "hybrid_image"
    description = "unsupervised: the image mixed with one of another class through a blurred random mask (paper)"
    supervised = False
    backends = _backends("HybridImage")

    def check_data(self, y: np.ndarray) -> None:
        missing = sorted(set(range(10)) - set(np.unique(y).tolist()))
        if missing:
            raise ValueError(f"hybrid_image needs every class in the training data; classes {missing} are missing")

    def sample(self, draw: Draw) -> np.ndarray:
        return RN.hybrid_partners(draw.trial.seed, draw.key_epoch, draw.index, draw.y)

    def inputs(self, trial, x, xb, idx, neg, epoch):
        m = RN.hybrid_masks(trial.seed, RN.negatives_epoch(trial, epoch), idx, trial.ff.hybrid_blur_passes,
                           trial.data.image)
        return m * xb + (1.0 - m) * augment.batch_images(trial, x, neg, epoch)


class ClassSplit(BuiltIn):
    name = "class_split"
    description = ("unsupervised: an image of a class outside data.classes, whose images are the positives "
                   "(five-digits TF setup)")
    supervised = False
    needs_rest = True
    backends = _backends("ClassSplit")

    def validate(self, trial) -> None:
        if trial.data.jitter:
            raise ValueError("data.jitter is not defined for class_split's negative pool")

    def pool(self, data) -> np.ndarray:
        if data.rest is None or not len(data.rest):
            raise ValueError("class_split needs training images outside data.classes for its negatives; there are none")
        return np.concatenate([data.train.x, data.rest.x])

    def sample(self, draw: Draw) -> np.ndarray:
        return RN.split_negatives(draw.trial.seed, draw.key_epoch, len(draw.y), len(draw.x) - len(draw.y))

    def inputs(self, trial, x, xb, idx, neg, epoch):
        return x[neg]


class NoNegatives(BuiltIn):
    name = "none"
    description = "no negative data: the objective learns from the positives' labels (cwc); no label in the input"
    supervised = False
    makes_negatives = False
    check_objective = "cwc"
    backends = _backends("NoNegatives")

    def validate(self, trial) -> None:
        from ffbench.variants.objectives import objective
        if not objective(trial.ff).labelled:
            raise ValueError(f"ff.negatives: none leaves ff.objective: {trial.ff.objective} nothing to contrast: "
                             "it needs an objective that learns from the labels (cwc)")

    def sample(self, draw: Draw) -> np.ndarray:
        return np.asarray(draw.y, np.int64)  # unused: nothing is drawn

    def inputs(self, trial, x, xb, idx, neg, epoch):
        return xb[:0]


class SelfContrastiveParams(Strict):
    max_shift: Annotated[int, Field(ge=0, le=4)] = 2  # each view's shift, round(U(-s, s)) pixels (SCFF: 2/28 of 28)


class SelfContrastive(BuiltIn):
    """Self-Contrastive FF's pairs (Chen et al. 2024, arXiv:2409.11593; neurophysics-cnrsthales/
    contrastive-forward-forward, ContrastFF_MNIST.py: `get_pos_neg_batch_imgcats` with p = 1, two
    RandomAffine(translate=2/28) views, `pre_std`): the positive of a sample is the pair of two
    shifted, standardised views of its image, its negative pairs its first view with the second
    view of another image of the minibatch (`reference.negatives.views`, `pair_offsets`). The
    first layer reads a pair with shared weights; the net is read by a linear probe."""

    name = "self_contrastive"
    description = "unsupervised (SCFF): pairs [view | view] of one image against [view | view of another image]"
    supervised = False
    pairs = True
    Params = SelfContrastiveParams
    check_objective = "scff"
    backends = _backends("SelfContrastive")

    def validate(self, trial) -> None:
        ff = trial.ff
        needs = {"data.jitter": (trial.data.jitter, 0), "ff.negatives_refresh": (ff.negatives_refresh, "epoch"),
                 "conv": (trial.conv, None), "ff.recurrent": (ff.recurrent, None)}
        if ff.prediction == "softmax":  # a read-out trained with the layers would read the training pairs
            needs["ff.readout_phase"] = (ff.readout_phase, "after")
        for field, (value, plain) in needs.items():
            if value != plain:
                raise ValueError(f"ff.negatives: self_contrastive draws new views and pairs every epoch and is defined on "
                                 f"dense nets read after training: {field} must be {plain}")
        if trial.batch_size != "full" and trial.batch_size < 2:
            raise ValueError("ff.negatives: self_contrastive pairs images within a minibatch: batch_size must be at least 2")

    def by_position(self, trial) -> bool:
        return True

    def sample_by_position(self, trial, y, key_epoch, batches):
        k = RN.pair_offsets(trial.seed, key_epoch, len(batches), len(batches[0]))
        return [idx[(np.arange(len(idx)) + k_s) % len(idx)] for idx, k_s in zip(batches, k)]

    def _key(self, trial, epoch: int) -> int:
        return rng.stream_key(trial.seed, rng.STREAM_MASK, RN.negatives_epoch(trial, epoch))

    def _view(self, trial, x, index, view: int, epoch: int):
        s = self.params(trial.ff.negatives_params).max_shift
        return RN.views(self._key(trial, epoch), x, index, view, s, trial.data.image)

    def positive_inputs(self, trial, x, xb, idx, epoch):
        return np.concatenate([self._view(trial, xb, idx, 0, epoch), self._view(trial, xb, idx, 1, epoch)], axis=1)

    def inputs(self, trial, x, xb, idx, neg, epoch):
        return np.concatenate([self._view(trial, xb, idx, 0, epoch), self._view(trial, x[neg], neg, 1, epoch)], axis=1)

    def eval_inputs(self, ff, x):
        v = RN.normalize(x, "std", RN.VIEW_EPS)
        return np.concatenate([v, v], axis=1)
