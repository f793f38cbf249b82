"""The built-in negative strategies in torch (`ffbench.variants.builtin_negatives`), each a
translation of its reference `sample` (and `inputs`) with the trainer as the context."""

from __future__ import annotations

import torch
from ffbench_backends.torch import ops

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
