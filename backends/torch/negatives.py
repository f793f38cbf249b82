"""The built-in negative strategies in torch (`ffbench.variants.builtin_negatives`), each a
translation of its reference `sample` (and `inputs`) with the trainer as the context."""

from __future__ import annotations

import torch
from ffbench_backends.torch import ops

from ffbench.reference.rng import STREAM_PAIRING, stream_key
from ffbench.variants.negatives import Batch


class WrongLabel:
    def sample(self, tr, key: int, phase) -> torch.Tensor:
        return ops.wrong_labels(tr.trial.seed, key, tr.index, tr.splits["train"][1])


class PermutedLabel:
    def sample(self, tr, key: int, phase) -> torch.Tensor:
        return tr.splits["train"][1][ops.batch_permutations(tr.trial.seed, key, 1, tr.n, tr.device)[0]]

    def sample_by_position(self, tr, key: int, order: torch.Tensor) -> torch.Tensor:
        perm = ops.batch_permutations(tr.trial.seed, key, tr.steps_per_epoch, tr.batch_size, tr.device)
        return torch.gather(tr.splits["train"][1][order].view(perm.shape), 1, perm).reshape(-1)


class HardLabel:
    def sample(self, tr, key: int, phase) -> torch.Tensor:
        u = ops.uniform24(ops.negatives_hash(tr.trial.seed, key, tr.index))
        return ops.sample_wrong(tr.hard_scores(phase), tr.splits["train"][1], u)


class HardLabelTop2:
    def sample(self, tr, key: int, phase) -> torch.Tensor:
        return ops.best_wrong(tr.hard_scores(phase), tr.splits["train"][1])


class HybridImage:
    def sample(self, tr, key: int, phase) -> torch.Tensor:
        y = tr.splits["train"][1]
        return ops.hybrid_partners(tr.trial.seed, key, tr.index, y, ops.class_table(y))

    def inputs(self, tr, b: Batch) -> torch.Tensor:
        m = ops.hybrid_masks(b.mask_key, b.idx, tr.ff.hybrid_blur_passes, tr.image)
        return m * b.xb + (1.0 - m) * ops.batch_images(b.images, b.negb, b.jitter_key, tr.trial.data.jitter, tr.image)


class ClassSplit:
    def sample(self, tr, key: int, phase) -> torch.Tensor:
        return ops.split_negatives(tr.trial.seed, key, tr.n, len(tr.images) - tr.n, tr.device)

    def inputs(self, tr, b: Batch) -> torch.Tensor:
        return b.images[b.negb]


class NoNegatives:
    def sample(self, tr, key: int, phase):
        return tr.splits["train"][1]  # unused: nothing is drawn

    def inputs(self, tr, b: Batch):
        return b.xb[:0]


class SelfContrastive:
    """`reference.negatives.views` and `pair_offsets`; the draw's key is the batch's `mask_key`."""

    def sample_by_position(self, tr, key: int, order: torch.Tensor) -> torch.Tensor:
        steps, b = tr.steps_per_epoch, tr.batch_size
        k = 1 + ops.below(ops.sample_hash(stream_key(tr.trial.seed, STREAM_PAIRING, key),
                                          torch.arange(steps, device=order.device)), b - 1)
        at = (torch.arange(b, device=order.device)[None, :] + k[:, None]) % b
        return torch.gather(order.view(steps, b), 1, at).reshape(-1)

    def _view(self, tr, b: Batch, x: torch.Tensor, index: torch.Tensor, view: int) -> torch.Tensor:
        s = tr.variant_params.max_shift
        h = ops.sample_hash(b.mask_key, 2 * index + view)
        dy, dx = (ops.below(h, 4 * s) + 1) // 2 - s, (ops.below(ops.lowbias32(h), 4 * s) + 1) // 2 - s
        return ops.shift_images(x, dy, dx, tr.image)

    def positives(self, tr, b: Batch) -> torch.Tensor:
        return ops.pair_rows(self._view(tr, b, b.xb, b.idx, 0), self._view(tr, b, b.xb, b.idx, 1))

    def inputs(self, tr, b: Batch) -> torch.Tensor:
        return ops.pair_rows(self._view(tr, b, b.xb, b.idx, 0), self._view(tr, b, b.images[b.negb], b.negb, 1))
