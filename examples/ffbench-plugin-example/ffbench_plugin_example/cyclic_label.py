"""`cyclic_label`: the negative of a sample is its image with the label (y + k) mod 10, k drawn
uniformly from 1..max_offset, fresh each time negatives are drawn.

max_offset = 9 is the paper's "a wrong label, uniform over the other nine" (drawn from another
stream than ffbench's `wrong_label`); max_offset = 1 always hands the next class. In between, a
class's negatives come from its neighbours only, so how close negatives are to the positives
becomes one number.

The NumPy `sample` is the definition; each backend class below translates it with the
backend's own ops, importing its framework only when a worker trains with it. The random bits
are a hash of (seed, this plugin's stream, epoch, sample index), so every backend draws the
same negatives for the same seed.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import numpy as np
from pydantic import Field

from ffbench.reference import rng
from ffbench.strict import Strict
from ffbench.variants import Draw, NegativeStrategy

NAME = "cyclic_label"
STREAM = rng.plugin_stream(NAME)


class Params(Strict):
    max_offset: Annotated[int, Field(ge=1, le=9)] = 3  # k is uniform in 1..max_offset


class CyclicLabel(NegativeStrategy):
    name = NAME
    description = "the image with label (y + k) mod 10, k uniform in 1..max_offset (never the true label)"
    Params = Params
    backends: ClassVar[dict[str, str]] = {fw: f"{__name__}:{fw.capitalize()}" for fw in ("torch", "jax", "keras")}

    def sample(self, draw: Draw) -> np.ndarray:
        h = rng.sample_hash(draw.trial.seed, STREAM, draw.key_epoch, draw.index)
        return (draw.y + rng.below(h, draw.params.max_offset) + 1) % 10


# Each backend's translation: `sample(trainer, key_epoch, phase)` -> the (n,) negative labels,
# on the trainer's device (`ffbench.variants.negatives` lists the trainer attributes).

class Torch:
    def sample(self, tr, key: int, phase):
        from ffbench_backends.torch import ops
        h = ops.sample_hash(rng.stream_key(tr.trial.seed, STREAM, key), tr.index)
        return (tr.splits["train"][1] + ops.below(h, tr.variant_params.max_offset) + 1) % 10


class Jax:
    def sample(self, tr, key: int, phase):
        from ffbench_backends.jax import ops
        h = ops.sample_hash(rng.stream_key(tr.trial.seed, STREAM, key), tr.index)
        y = tr.splits["train"][1]
        return (y + ops.below(h, tr.variant_params.max_offset).astype(y.dtype) + 1) % 10


class Keras:
    def sample(self, tr, key: int, phase):
        from ffbench_backends.keras import ops as kops
        from keras import ops
        h = kops.sample_hash(rng.stream_key(tr.trial.seed, STREAM, key), tr.index)
        y = tr.splits["train"][1]
        return ops.mod(y + ops.cast(kops.below(h, tr.variant_params.max_offset), y.dtype) + 1, 10)
