"""Negative data for supervised FF: the label each positive image gets to make its negative.

Every strategy gives, for each minibatch of an epoch, the labels to overlay on that batch's
images (positions follow the epoch's order, `train.batches`). Negatives are drawn with the
hashes of `negatives_epoch`: every epoch, at the first epoch of each episode, or once (epoch 0);
in between, each sample keeps its draw (`Draws`).

- wrong_label: `rng.wrong_labels` of the sample: uniform over its 9 wrong classes.
- permuted_label: the batch's own labels in a random order, `rng.batch_permutations` (the
  popular PyTorch and Keras examples); drawn less often than every epoch, a permutation of the
  whole training set's labels instead (`sample_negatives`). It can give a sample its own label, which makes the
  "negative" a positive: `collision_rate` measures how often (about 1/10 on MNIST).
- hard_label: a wrong label sampled from the model's own distribution over the 9 wrong classes,
  softmax of `ff.label_scores` (Matlab ffcode). u = `rng.uniform24` of the sample's negatives
  hash; the label is the first class whose cumulative probability exceeds u * total.
- hard_label_top2: the best-scoring wrong class, i.e. the model's second choice when it is
  right (the JAX example).
- hybrid_image (unsupervised: no label is embedded anywhere): m * a + (1 - m) * b for the
  image a and a partner b of another class. The partner's class is drawn like a wrong label
  (offset of the sample's hash h in its own stream); the member of that class is `((lowbias32(h) >> 16) * count)
  >> 16` in the class's table (uniform up to count/65536, < 10% on MNIST). The mask: one random
  bit per pixel of the H x W grid (the top bit of hash(key ^ (i * H*W + pixel))), the same in every
  channel, blurred `hybrid_blur_passes` times with [1/4, 1/2, 1/4] along rows then columns (border
  pixels repeated), then m = [blurred > 0.5].
  Up to 6 passes every value is a dyadic fraction exact in float32, so every backend makes the
  same masks bit for bit.

- class_split (unsupervised; rmwkwok's TensorFlow "five digits as positive" setup): the
  positives are the training images of `data.classes`, the negatives the training images of
  the other classes (the pool). With n positives and a pool of r images, sample i's negative
  is pool image P[i mod r], P a permutation of the pool (`split_negatives`): every pool image
  is used about once per draw. Evaluation is on the test images of `data.classes` only. Here
  `x` is the training images followed by the pool, and a negative is an index into it (>= n).

- self_contrastive (unsupervised; SCFF, Chen et al. 2024): the inputs are pairs [a | b] of two
  views of images, each view shifted by up to +-s pixels (`view_shifts`) and standardised on its
  own; the positive of position j of a minibatch is [view 0 of its image | view 1 of its image],
  its negative [view 0 of its image | view 1 of the image at position (j + k) mod B], one offset
  k per minibatch (`pair_offsets`). A dense layer reads a pair with shared weights
  (`ff.pair_sum`); outside training the net reads [x | x] of the standardised image.

The hard strategies score the whole training set with the weights at the start of each epoch
(`negatives_refresh: epoch`) or of each episode (`episode`, the JAX example's cadence): 10
forward passes per training image, timed apart as `negatives_seconds`. Layers scored: `score_layers`.
"""

from __future__ import annotations

import numpy as np

from ffbench.geometry import Geometry
from ffbench.reference import augment, recurrent, rng
from ffbench.reference.ff import label_scores, normalize, overlay
from ffbench.spec import NUM_CLASSES, FFSpec
from ffbench.variants.negatives import Draw, strategy


def negatives_epoch(trial, epoch: int) -> int:
    """The epoch whose hashes (and, for the hard strategies, weights) make this epoch's negatives:
    itself (`negatives_refresh: epoch`), the first epoch of its episode (`episode`; an episode is
    `epochs` x depth epochs of the greedy schedule), or 0 (`once`)."""
    ff = trial.ff
    if ff.negatives_refresh == "epoch":
        return epoch
    if ff.negatives_refresh == "once":
        return 0
    per_episode = trial.epochs * (len(trial.hidden) if ff.schedule == "greedy" else 1)
    return epoch - epoch % per_episode


def score_layers(ff: FFSpec, upto: int) -> list[int]:
    """The layers whose goodness scores the labels for hard negatives, when layers 0..upto are
    trained or being trained (the deepest of the phase's layers and of those trained before):
    the prediction layers among them, else layer `upto`."""
    return [i for i in ff.prediction_layers if i <= upto] or [upto]


def sample_wrong(scores: np.ndarray, labels: np.ndarray, u: np.ndarray) -> np.ndarray:
    """hard_label: for each row, a class != label drawn with probability softmax(scores) over
    the wrong classes, by inverse CDF at u in [0, 1)."""
    s = np.asarray(scores, np.float64)
    mask = np.arange(NUM_CLASSES)[None, :] == np.asarray(labels)[:, None]
    p = np.where(mask, 0.0, np.exp(s - np.where(mask, -np.inf, s).max(axis=1, keepdims=True)))
    c = np.cumsum(p, axis=1)
    pick = np.minimum((c <= (u * c[:, -1])[:, None]).sum(axis=1), NUM_CLASSES - 1)
    return np.where(pick == labels, best_wrong(s, labels), pick)  # only where u * total rounds up to total


def best_wrong(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """hard_label_top2: the highest-scoring class other than the label (the lowest index on ties)."""
    s = np.where(np.arange(NUM_CLASSES)[None, :] == np.asarray(labels)[:, None], -np.inf, np.asarray(scores, np.float64))
    return s.argmax(axis=1)


def class_table(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(members, start, count): dataset indices sorted by class (stable), and each class's
    first position and size in that list."""
    members = np.argsort(y, kind="stable")
    count = np.bincount(y, minlength=NUM_CLASSES)
    return members, np.concatenate([[0], np.cumsum(count)[:-1]]), count


def hybrid_partners(seed: int, epoch: int, index: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The dataset index of each sample's partner image, always of another class."""
    members, start, count = class_table(y)
    h = rng.lowbias32(np.uint32(rng.stream_key(seed, rng.STREAM_HYBRID, epoch)) ^ np.asarray(index).astype(np.uint32))
    other = (y[index] + rng.wrong_label_offset(h)) % NUM_CLASSES
    pos = ((rng.lowbias32(h) >> np.uint32(16)).astype(np.int64) * count[other]) >> 16
    return members[start[other] + pos]


def blur(m: np.ndarray, passes: int) -> np.ndarray:
    """(n, H, W): `passes` times [1/4, 1/2, 1/4] along rows, then along columns; the border pixel is repeated outside."""
    for _ in range(passes):
        p = np.pad(m, ((0, 0), (0, 0), (1, 1)), mode="edge")
        m = 0.25 * p[:, :, :-2] + 0.5 * p[:, :, 1:-1] + 0.25 * p[:, :, 2:]
        p = np.pad(m, ((0, 0), (1, 1), (0, 0)), mode="edge")
        m = 0.25 * p[:, :-2, :] + 0.5 * p[:, 1:-1, :] + 0.25 * p[:, 2:, :]
    return m


def split_negatives(seed: int, epoch: int, n: int, n_rest: int) -> np.ndarray:
    """class_split: for each of the n positives, the index (into positives + pool) of its negative."""
    key = np.uint32(rng.stream_key(seed, rng.STREAM_SPLIT, epoch))
    perm = np.argsort(rng.lowbias32(np.arange(n_rest, dtype=np.uint32) ^ key), kind="stable")
    return n + perm[np.arange(n) % n_rest]


def hybrid_masks(seed: int, epoch: int, index: np.ndarray, passes: int, image: Geometry) -> np.ndarray:
    """(n, C*H*W) masks in {0, 1} for samples `index`: one H x W mask per sample, the same in
    every channel."""
    key = np.uint32(rng.stream_key(seed, rng.STREAM_MASK, epoch))
    hw = image.pixels
    pixel = np.asarray(index, np.uint32)[:, None] * np.uint32(hw) + np.arange(hw, dtype=np.uint32)[None, :]
    bits = (rng.lowbias32(pixel ^ key) >> np.uint32(31)).astype(np.float64)
    m = (blur(bits.reshape(-1, image.height, image.width), passes) > 0.5).astype(np.float64).reshape(-1, hw)
    return np.tile(m, (1, image.channels))


# self_contrastive: each view is standardised on its own with this eps (SCFF's stdnorm, pre_std)
VIEW_EPS = 1e-10


def view_shifts(key: int, index: np.ndarray, view: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    """self_contrastive: (dy, dx) of view `view` (0 or 1) of samples `index`, keyed by the draw's
    `key` (`rng.STREAM_MASK`'s of the epoch). Each is round(U(-s, s)), torchvision's RandomAffine
    translation of SCFF's views (-s and s half as likely as each shift between), exactly: with t
    uniform in 0..4s-1 from the sample's hash (dy) or its rehash (dx), ceil(t / 2) - s."""
    h = rng.lowbias32(np.uint32(key) ^ (2 * np.asarray(index, np.int64) + view).astype(np.uint32))
    n = 4 * s
    return (rng.below(h, n) + 1) // 2 - s, (rng.below(rng.lowbias32(h), n) + 1) // 2 - s


def views(key: int, x: np.ndarray, index: np.ndarray, view: int, s: int, image: Geometry) -> np.ndarray:
    """View `view` of images x (dataset indices `index`): shifted (`view_shifts`, zeros shifted in),
    then standardised on its own (`ff.normalize` std, eps `VIEW_EPS`)."""
    return normalize(augment.shift_images(x, *view_shifts(key, index, view, s), image), "std", VIEW_EPS)


def pair_offsets(seed: int, key_epoch: int, steps: int, batch_size: int) -> np.ndarray:
    """self_contrastive: each of the epoch's `steps` minibatches' offset k, uniform in 1..B-1:
    position j's negative pairs its first view with the second view of position (j + k) mod B
    (SCFF's randperm(B - 1) + 1, one draw per batch)."""
    h = rng.lowbias32(np.uint32(rng.stream_key(seed, rng.STREAM_PAIRING, key_epoch)) ^ np.arange(steps, dtype=np.uint32))
    return 1 + rng.below(h, batch_size - 1)


def negative_inputs(trial, x: np.ndarray, xb: np.ndarray, idx: np.ndarray, neg: np.ndarray, epoch: int) -> np.ndarray:
    """The negative inputs of one batch (images `xb` = the training images of `idx`): the images
    with labels `neg` overlaid (a supervised strategy), or the strategy's own (`NegativeStrategy.inputs`)."""
    strat = strategy(trial.ff)
    if strat.supervised:
        return overlay(xb, neg, trial.ff)
    return strat.inputs(trial, x, xb, idx, neg, epoch)


def positive_inputs(trial, x: np.ndarray, xb: np.ndarray, idx: np.ndarray, y: np.ndarray, epoch: int) -> np.ndarray:
    """The positive inputs of one batch (images `xb` of dataset indices `idx`, labels `y`): the
    images with their labels overlaid, or (a strategy that pairs its inputs: `self_contrastive`)
    the strategy's own (`NegativeStrategy.positive_inputs`)."""
    strat = strategy(trial.ff)
    return strat.positive_inputs(trial, x, xb, idx, epoch) if strat.pairs else overlay(xb, y, trial.ff)


def batch_inputs(trial, x: np.ndarray, xb: np.ndarray, idx: np.ndarray, y: np.ndarray, neg: np.ndarray,
                 epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """(positive inputs, negative inputs) of one batch: `positive_inputs`, `negative_inputs`."""
    return positive_inputs(trial, x, xb, idx, y, epoch), negative_inputs(trial, x, xb, idx, neg, epoch)


def sample_negatives(trial, x: np.ndarray, y: np.ndarray, key_epoch: int, params, upto: int) -> np.ndarray:
    """Each training sample's negative drawn with the hashes of `key_epoch` (and, for a scored
    strategy, weights `params`, layers 0..upto): a label, or an index into `x`."""
    ff = trial.ff
    scorer = recurrent.label_scores if ff.recurrent is not None else label_scores
    scores = lambda: scorer(x, params, ff, score_layers(ff, upto))  # noqa: E731
    strat = strategy(ff)
    return strat.sample(Draw(trial, x, y, key_epoch, strat.params(ff.negatives_params), scores))


class Draws:
    """The negatives of one run: drawn again only when `negatives_epoch` changes, so the scored
    strategies are scored with the weights of that moment and reused until the next refresh."""

    def __init__(self, trial, x: np.ndarray, y: np.ndarray):
        self.trial, self.x, self.y = trial, x, y
        self.key: int | None = None
        self.per_sample: np.ndarray | None = None

    def epoch(self, epoch: int, batches: list[np.ndarray], params, upto: int) -> list[np.ndarray]:
        """The negatives (labels, or indices into x) of each batch of `epoch`."""
        trial, y = self.trial, self.y
        key, strat = negatives_epoch(trial, epoch), strategy(trial.ff)
        if strat.by_position(trial):
            return strat.sample_by_position(trial, y, key, batches)
        if key != self.key:
            self.key, self.per_sample = key, sample_negatives(trial, self.x, y, key, params, upto)
        return [self.per_sample[idx] for idx in batches]


def epoch_labels(trial, x: np.ndarray, y: np.ndarray, epoch: int, batches: list[np.ndarray], params,
                 upto: int) -> list[np.ndarray]:
    """The negatives of each batch of `epoch`, drawn afresh (for one epoch taken alone)."""
    return Draws(trial, x, y).epoch(epoch, batches, params, upto)


def training_images(ff: FFSpec, data) -> np.ndarray | None:
    """The images negatives are taken from when they are not the training split itself (the
    strategy's `pool`); None otherwise, so a backend keeps one copy of its data."""
    return strategy(ff).pool(data)


def check_data(ff: FFSpec, y: np.ndarray) -> None:
    strategy(ff).check_data(y)


def collision_rate(negatives: list[np.ndarray], batches: list[np.ndarray], y: np.ndarray) -> float:
    """The fraction of negatives that carry the sample's true label (0 except for permuted_label)."""
    return float(np.mean([np.mean(n == y[idx]) for n, idx in zip(negatives, batches)]))
