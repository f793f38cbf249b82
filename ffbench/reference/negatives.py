"""Negative data for supervised FF: the label each positive image gets to make its negative.

Every strategy gives, for each minibatch of an epoch, the labels to overlay on that batch's
images (positions follow the epoch's order, `train.batches`). With `negatives_refresh: once`
the hashes of epoch 0 are reused every epoch.

- wrong_label: `rng.wrong_labels` of the sample: uniform over its 9 wrong classes.
- permuted_label: the batch's own labels in a random order, `rng.batch_permutations` (the
  popular PyTorch and Keras examples). It can give a sample its own label, which makes the
  "negative" a positive: `collision_rate` measures how often (about 1/10 on MNIST).
- hard_label: a wrong label sampled from the model's own distribution over the 9 wrong classes,
  softmax of `ff.label_scores` (Matlab ffcode). u = `rng.uniform24` of the sample's negatives
  hash; the label is the first class whose cumulative probability exceeds u * total.
- hard_label_top2: the best-scoring wrong class, i.e. the model's second choice when it is
  right (the JAX example).

The hard strategies score the whole training set with the weights at the start of each epoch
(one episode per epoch): 10 forward passes per training image, timed apart as
`negatives_seconds`. Layers scored: `score_layers`.
"""

from __future__ import annotations

import numpy as np

from ffbench.reference import rng
from ffbench.reference.ff import label_scores
from ffbench.spec import NUM_CLASSES, FFSpec

HARD = ("hard_label", "hard_label_top2")


def score_layers(ff: FFSpec, upto: int) -> list[int]:
    """The layers whose goodness scores the labels for hard negatives, when layers 0..upto are
    trained or being trained: the prediction layers among them, else layer `upto`."""
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


def epoch_labels(trial, x: np.ndarray, y: np.ndarray, epoch: int, batches: list[np.ndarray], params, upto: int) -> list[np.ndarray]:
    """The negative labels of each batch of `epoch` (a list aligned with `batches`)."""
    ff = trial.ff
    key_epoch = epoch if ff.negatives_refresh == "epoch" else 0
    index = np.arange(len(y))
    if ff.negatives == "wrong_label":
        wrong = rng.wrong_labels(trial.seed, key_epoch, index, y)
    elif ff.negatives == "permuted_label":
        perms = rng.batch_permutations(trial.seed, key_epoch, len(batches), trial.batch_size)
        return [y[idx][perm] for idx, perm in zip(batches, perms)]
    else:
        scores = label_scores(x, params, ff, score_layers(ff, upto))
        if ff.negatives == "hard_label":
            wrong = sample_wrong(scores, y, rng.uniform24(rng.negatives_hash(trial.seed, key_epoch, index)))
        else:
            wrong = best_wrong(scores, y)
    return [wrong[idx] for idx in batches]


def collision_rate(negatives: list[np.ndarray], batches: list[np.ndarray], y: np.ndarray) -> float:
    """The fraction of negatives that carry the sample's true label (0 except for permuted_label)."""
    return float(np.mean([np.mean(n == y[idx]) for n, idx in zip(negatives, batches)]))
