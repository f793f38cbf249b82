"""The built-in negative strategies in JAX (`ffbench.variants.builtin_negatives`), each a
translation of its reference `sample` (and `inputs`, traced inside the epoch's scan) with the
trainer as the context. A draw is one jitted call."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from ffbench_backends.jax import ops

from ffbench.reference import rng
from ffbench.variants.negatives import Batch


def _key(tr, stream: int, key_epoch: int) -> jax.Array:
    return jnp.uint32(rng.stream_key(tr.trial.seed, stream, key_epoch))


class WrongLabel:
    def sample(self, tr, key: int, phase) -> jax.Array:
        return _wrong(_key(tr, rng.STREAM_NEGATIVES, key), tr.index, tr.splits["train"][1])


class PermutedLabel:
    def sample(self, tr, key: int, phase) -> jax.Array:
        return _permuted(tr.n, _key(tr, rng.STREAM_PERMUTE, key), tr.splits["train"][1])

    def sample_by_position(self, tr, key: int, order: jax.Array) -> jax.Array:
        return _permuted_by_position(tr.steps_per_epoch, tr.batch_size, _key(tr, rng.STREAM_PERMUTE, key),
                                     tr.splits["train"][1], order)


class HardLabel:
    def sample(self, tr, key: int, phase) -> jax.Array:
        return _sample_wrong(_key(tr, rng.STREAM_NEGATIVES, key), tr.index, tr.splits["train"][1], tr.hard_scores(phase))


class HardLabelTop2:
    def sample(self, tr, key: int, phase) -> jax.Array:
        return _best_wrong(tr.splits["train"][1], tr.hard_scores(phase))


class HybridImage:
    def sample(self, tr, key: int, phase) -> jax.Array:
        return _partners(_key(tr, rng.STREAM_HYBRID, key), tr.index, tr.splits["train"][1])

    def inputs(self, tr, b: Batch) -> jax.Array:
        m = ops.hybrid_masks(b.mask_key, b.idx, tr.ff.hybrid_blur_passes, tr.image)
        return m * b.xb + (1.0 - m) * ops.batch_images(b.images, b.negb, b.jitter_key, tr.trial.data.jitter, tr.image)


class ClassSplit:
    def sample(self, tr, key: int, phase) -> jax.Array:
        return _split(tr.n, len(tr.images) - tr.n, _key(tr, rng.STREAM_SPLIT, key))

    def inputs(self, tr, b: Batch) -> jax.Array:
        return b.images[b.negb]


@jax.jit
def _partners(key, index, y):
    return ops.hybrid_partners(key, index, y, ops.class_table(y))


@partial(jax.jit, static_argnums=(0, 1))
def _split(n, n_rest, key):
    return n + ops.batch_permutations(key, 1, n_rest)[0][jnp.arange(n) % n_rest]


@jax.jit
def _wrong(key, index, y):
    return ops.wrong_labels(key, index, y)


@partial(jax.jit, static_argnums=0)
def _permuted(n, key, y):
    return y[ops.batch_permutations(key, 1, n)[0]]


@partial(jax.jit, static_argnums=(0, 1))
def _permuted_by_position(steps, batch_size, key, y, order):
    perm = ops.batch_permutations(key, steps, batch_size)
    return jnp.take_along_axis(y[order].reshape(steps, batch_size), perm, axis=1).reshape(-1)


@jax.jit
def _sample_wrong(key, index, y, scores):
    return ops.sample_wrong(scores, y, ops.uniform24(ops.negatives_hash(key, index)))


@jax.jit
def _best_wrong(y, scores):
    return ops.best_wrong(scores, y)


class NoNegatives:
    def sample(self, tr, key: int, phase):
        return tr.splits["train"][1]  # unused: nothing is drawn

    def inputs(self, tr, b: Batch):
        return b.xb[:0]


class SelfContrastive:
    """`reference.negatives.views` and `pair_offsets`; the draw's key is the batch's `mask_key`."""

    def sample_by_position(self, tr, key: int, order: jax.Array) -> jax.Array:
        return _pair_partners(tr.steps_per_epoch, tr.batch_size, _key(tr, rng.STREAM_PAIRING, key), order)

    def _view(self, tr, b: Batch, x: jax.Array, index: jax.Array, view: int) -> jax.Array:
        s = tr.variant_params.max_shift
        h = ops.sample_hash(b.mask_key, 2 * index + view)
        dy, dx = (ops.below(h, 4 * s) + 1) // 2 - s, (ops.below(ops.lowbias32(h), 4 * s) + 1) // 2 - s
        return ops.shift_images(x, dy, dx, tr.image)

    def positives(self, tr, b: Batch) -> jax.Array:
        return ops.pair_rows(self._view(tr, b, b.xb, b.idx, 0), self._view(tr, b, b.xb, b.idx, 1))

    def inputs(self, tr, b: Batch) -> jax.Array:
        return ops.pair_rows(self._view(tr, b, b.xb, b.idx, 0), self._view(tr, b, b.images[b.negb], b.negb, 1))


@partial(jax.jit, static_argnums=(0, 1))
def _pair_partners(steps, batch_size, key, order):
    k = 1 + ops.below(ops.sample_hash(key, jnp.arange(steps, dtype=jnp.uint32)), batch_size - 1)
    at = (jnp.arange(batch_size)[None, :] + k[:, None]) % batch_size
    return jnp.take_along_axis(order.reshape(steps, batch_size), at, axis=1).reshape(-1)
