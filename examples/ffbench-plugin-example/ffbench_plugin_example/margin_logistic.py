"""`margin_logistic`: the paper's logistic loss on goodness with a margin and a temperature.

    g = reduce(h^2)                         (ff.goodness: sum or mean over the layer's units)
    loss = mean over the step's 2N rows of
           softplus((threshold + margin - g) / T)   for a positive
           softplus((g - threshold + margin) / T)   for a negative

margin = 0 and T = 1 is ffbench's built-in `logistic` with ff.sign: max_ssq. A margin asks
positives to clear the threshold by `margin` and negatives to stay `margin` below it. It reads
ff.goodness, ff.threshold and ff.threshold_scale; a trial that sets ff.sign is refused.

Only the forward math is written, once per framework: each framework's autodiff gives the
gradients, and `ffbench check` holds them to central differences of `loss` below.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import numpy as np
from pydantic import Field

from ffbench.strict import Strict
from ffbench.variants import LayerObjective


class Params(Strict):
    margin: Annotated[float, Field(ge=0)] = 0.5
    temperature: Annotated[float, Field(gt=0)] = 1.0


def _goodness(xp, h, ff):
    g = xp.sum(h * h, axis=1)
    return g / h.shape[1] if ff.goodness == "mean" else g


def _signs(xp, n_pos: int, rows: int, dtype):
    """-1 for the positives (the first n_pos rows), +1 for the negatives."""
    return xp.concatenate([-xp.ones((n_pos,), dtype=dtype), xp.ones((rows - n_pos,), dtype=dtype)])


def _loss(xp, softplus, h, n_pos, ff, p, fan_in):
    """The loss in any array namespace `xp` with sum, concatenate, ones, mean (NumPy,
    jax.numpy, keras.ops; torch has its own below)."""
    t = _signs(xp, n_pos, h.shape[0], h.dtype)
    return xp.mean(softplus((t * (_goodness(xp, h, ff) - ff.threshold_for(fan_in)) + p.margin) / p.temperature))


class MarginLogistic(LayerObjective):
    name = "margin_logistic"
    description = "logistic loss on goodness with a margin around the threshold and a temperature"
    Params = Params
    reads: ClassVar[tuple[str, ...]] = ("goodness", "threshold", "threshold_scale")
    backends: ClassVar[dict[str, str]] = {fw: f"{__name__}:{fw.capitalize()}" for fw in ("torch", "jax", "keras")}

    def goodness(self, h, ff, params):
        return _goodness(np, h, ff)

    def score(self, h, ff, params):
        return _goodness(np, h, ff)

    def loss(self, h, n_pos, ff, params, fan_in):
        return float(_loss(np, lambda x: np.logaddexp(0.0, x), h, n_pos, ff, params, fan_in))


# Each backend's translation: the same three methods in its framework (no gradients).

class Torch:
    def goodness(self, h, ff, params):
        g = (h * h).sum(dim=1)
        return g / h.shape[1] if ff.goodness == "mean" else g

    score = goodness

    def loss(self, h, n_pos, ff, params, fan_in):
        import torch
        import torch.nn.functional as F
        t = torch.ones(h.shape[0], dtype=h.dtype, device=h.device)
        t[:n_pos] = -1.0
        return F.softplus((t * (self.goodness(h, ff, params) - ff.threshold_for(fan_in)) + params.margin)
                          / params.temperature).mean()


class Jax:
    def goodness(self, h, ff, params):
        import jax.numpy as jnp
        return _goodness(jnp, h, ff)

    score = goodness

    def loss(self, h, n_pos, ff, params, fan_in):
        import jax
        import jax.numpy as jnp
        return _loss(jnp, jax.nn.softplus, h, n_pos, ff, params, fan_in)


class Keras:
    def goodness(self, h, ff, params):
        from keras import ops
        return _goodness(ops, h, ff)

    score = goodness

    def loss(self, h, n_pos, ff, params, fan_in):
        from keras import ops
        return _loss(ops, ops.softplus, h, n_pos, ff, params, fan_in)
