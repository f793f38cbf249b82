"""The built-in negative strategies in Keras (`ffbench.variants.builtin_negatives`), each a
translation of its reference `sample` (and `inputs`, inside the compiled epoch) with the
trainer as the context. A draw is one compiled call (`kcompile.function`)."""

from __future__ import annotations

from ffbench_backends.keras import compile as kcompile
from ffbench_backends.keras import ops as kops
from ffbench_backends.keras.common import ordered
from keras import ops

from ffbench.reference import rng
from ffbench.variants.negatives import Batch


def _key(tr, stream: int, key_epoch: int):
    return kops.key_tensor(rng.stream_key(tr.trial.seed, stream, key_epoch))


class WrongLabel:
    def sample(self, tr, key: int, phase):
        return kcompile.function(kops.wrong_labels)(_key(tr, rng.STREAM_NEGATIVES, key), tr.index, tr.splits["train"][1])


class PermutedLabel:
    def sample(self, tr, key: int, phase):
        return kcompile.function(_permuted, tr.n)(_key(tr, rng.STREAM_PERMUTE, key), tr.splits["train"][1])

    def sample_by_position(self, tr, key: int, epoch: int):
        """(the epoch's order, each position's negative), from one compiled call."""
        return kcompile.function(_by_position, tr.steps_per_epoch, tr.batch_size)(
            tr.order_key(epoch), _key(tr, rng.STREAM_PERMUTE, key), tr.index, tr.splits["train"][1])


class HardLabel:
    def sample(self, tr, key: int, phase):
        h = kops.negatives_hash(rng.stream_key(tr.trial.seed, rng.STREAM_NEGATIVES, key), tr.index)
        return kops.sample_wrong(tr.hard_scores(phase), tr.splits["train"][1], kops.uniform24(h))


class HardLabelTop2:
    def sample(self, tr, key: int, phase):
        return kops.best_wrong(tr.hard_scores(phase), tr.splits["train"][1])


class HybridImage:
    """One instance per trainer (`Variant.implementation`): it keeps the labels' class table."""

    table = None

    def sample(self, tr, key: int, phase):
        y = tr.splits["train"][1]
        if self.table is None:
            self.table = kops.class_table(y)
        return kcompile.function(kops.hybrid_partners)(_key(tr, rng.STREAM_HYBRID, key), tr.index, y, self.table)

    def inputs(self, tr, b: Batch):
        m = kops.hybrid_masks(b.mask_key, b.idx, tr.ff.hybrid_blur_passes, tr.image)
        return m * b.xb + (1.0 - m) * kops.batch_images(b.images, b.negb, b.jitter_key, tr.trial.data.jitter, tr.image)


class ClassSplit:
    def sample(self, tr, key: int, phase):
        return kcompile.function(_class_split, tr.n, tr.images.shape[0] - tr.n)(_key(tr, rng.STREAM_SPLIT, key))

    def inputs(self, tr, b: Batch):
        return ops.take(b.images, b.negb, axis=0)


def _by_position(steps: int, batch_size: int, order_key, permute_key, index, y):
    """The epoch's order, and as each position's negative the label of another position of
    its batch (`reference.negatives.Draws`, by position)."""
    order = ordered(steps * batch_size, order_key, index)
    y_ordered = ops.reshape(ops.take(y, order, axis=0), (steps, batch_size))
    perm = kops.batch_permutations(permute_key, steps, batch_size)
    return order, ops.reshape(ops.take_along_axis(y_ordered, perm, axis=1), (-1,))


def _class_split(n: int, n_rest: int, key):
    """Each of the n training samples' partner among the n_rest pool images (indices n...)."""
    perm = kops.batch_permutations(key, 1, n_rest)[0]
    return n + ops.take(perm, ops.mod(ops.arange(n), n_rest), axis=0)


def _permuted(n: int, key, y):
    return ops.take(y, kops.batch_permutations(key, 1, n)[0], axis=0)


class NoNegatives:
    def sample(self, tr, key: int, phase):
        return tr.splits["train"][1]  # unused: nothing is drawn

    def inputs(self, tr, b: Batch):
        return b.xb[:0]
