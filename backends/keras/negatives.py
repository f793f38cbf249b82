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


class SelfContrastive:
    """`reference.negatives.views` and `pair_offsets`; the draw's key is the batch's `mask_key`."""

    def sample_by_position(self, tr, key: int, epoch: int):
        """(the epoch's order, each position's partner in its batch), from one compiled call."""
        return kcompile.function(_pair_partners, tr.steps_per_epoch, tr.batch_size)(
            tr.order_key(epoch), _key(tr, rng.STREAM_PAIRING, key), tr.index)

    def _view(self, tr, b: Batch, x, index, view: int):
        s = tr.variant_params.max_shift
        h = kops.sample_hash(b.mask_key, ops.cast(2 * index + view, "uint32"))
        dy, dx = (kops.below(h, 4 * s) + 1) // 2 - s, (kops.below(kops.lowbias32(h), 4 * s) + 1) // 2 - s
        return kops.shift_images(x, dy, dx, tr.image)

    def positives(self, tr, b: Batch):
        return kops.pair_rows(self._view(tr, b, b.xb, b.idx, 0), self._view(tr, b, b.xb, b.idx, 1))

    def inputs(self, tr, b: Batch):
        images = ops.take(b.images, b.negb, axis=0)
        return kops.pair_rows(self._view(tr, b, b.xb, b.idx, 0), self._view(tr, b, images, b.negb, 1))


def _pair_partners(steps: int, batch_size: int, order_key, pairing_key, index):
    """The epoch's order, and as each position's negative the dataset index of the position k
    after it in its batch (`reference.negatives.pair_offsets`)."""
    order = ops.reshape(ordered(steps * batch_size, order_key, index), (steps, batch_size))
    k = 1 + kops.below(kops.sample_hash(pairing_key, kops._arange_u32(steps)), batch_size - 1)
    at = ops.mod(ops.arange(batch_size)[None, :] + ops.cast(k, "int32")[:, None], batch_size)
    return ops.reshape(order, (-1,)), ops.reshape(ops.take_along_axis(order, at, axis=1), (-1,))
