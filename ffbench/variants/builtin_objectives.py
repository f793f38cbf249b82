"""The built-in layer objectives: the paper's logistic loss on goodness, and SymBa's."""

from __future__ import annotations

from typing import Annotated, ClassVar

import numpy as np
from pydantic import Field

from ffbench.strict import Strict
from ffbench.variants.objectives import LayerObjective


def _softplus(x):
    return np.logaddexp(0.0, x)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class Logistic(LayerObjective):
    """g = reduce(h^2) (`ff.goodness`: sum or mean over units); logit = s (g - threshold), s = +1
    for max_ssq, -1 for min_ssq; loss = mean over the 2N rows of softplus(-logit) for the
    positives and softplus(logit) for the negatives."""

    name = "logistic"
    description = "the paper's: sigmoid(s * (goodness - threshold)) is the probability of positive (log loss)"
    reads: ClassVar[tuple[str, ...]] = ("goodness", "threshold", "threshold_scale", "sign")
    backends = {fw: f"ffbench_backends.{fw}.objectives:Logistic" for fw in ("torch", "jax", "keras")}
    packs = True

    def goodness(self, h, ff, params):
        g = (h * h).sum(axis=1)
        return g / h.shape[1] if ff.goodness == "mean" else g

    def score(self, h, ff, params):
        g = self.goodness(h, ff, params)
        return g if ff.sign == "max_ssq" else -g

    def _logits(self, h, n_pos, ff, fan_in):
        s = 1.0 if ff.sign == "max_ssq" else -1.0
        t = np.concatenate([-np.ones(n_pos), np.ones(len(h) - n_pos)]).astype(h.dtype)  # loss_i = softplus(t_i logit_i)
        return s, t, s * (self.goodness(h, ff, None) - ff.threshold_for(fan_in))

    def loss(self, h, n_pos, ff, params, fan_in):
        _, t, logit = self._logits(h, n_pos, ff, fan_in)
        return float(_softplus(t * logit).mean())

    def grad_h(self, h, n_pos, ff, params, fan_in):
        s, t, logit = self._logits(h, n_pos, ff, fan_in)
        dlogit = t * _sigmoid(t * logit) / len(h)
        return (s * dlogit)[:, None] * 2.0 * h / (h.shape[1] if ff.goodness == "mean" else 1.0)


class SymBaParams(Strict):
    alpha: Annotated[float, Field(gt=0)] = 4.0  # the scale of the separation (4 in SymBa's sources)


class SymBa(LayerObjective):
    """SymBa (Lee & Song 2023, arXiv:2303.08418): the step's i-th positive and i-th negative
    are a pair; with g = reduce(h^2) (`ff.goodness`) and the separation d_i = g+_i - g-_i,
    loss = mean over the N pairs of softplus(-alpha d_i). No threshold: the gradient pushes
    both members of a pair apart with equal weight. Prediction ranks labels by goodness."""

    name = "symba"
    description = "SymBa: softplus(-alpha (g+ - g-)) over each (positive, negative) pair, no threshold"
    Params = SymBaParams
    reads: ClassVar[tuple[str, ...]] = ("goodness",)
    backends = {fw: f"ffbench_backends.{fw}.objectives:SymBa" for fw in ("torch", "jax", "keras")}

    def goodness(self, h, ff, params):
        g = (h * h).sum(axis=1)
        return g / h.shape[1] if ff.goodness == "mean" else g

    def score(self, h, ff, params):
        return self.goodness(h, ff, params)

    def _separation(self, h, n_pos, ff):
        if len(h) != 2 * n_pos:
            raise ValueError(f"symba pairs each positive with one negative: got {n_pos} positives, {len(h) - n_pos} negatives")
        g = self.goodness(h, ff, None)
        return g[:n_pos] - g[n_pos:]

    def loss(self, h, n_pos, ff, params, fan_in):
        return float(_softplus(-params.alpha * self._separation(h, n_pos, ff)).mean())

    def grad_h(self, h, n_pos, ff, params, fan_in):
        # d loss / d d_i = -alpha sigmoid(-alpha d_i) / N; d_i gains g+_i and loses g-_i; dg/dh = 2h (/ units)
        dd = -params.alpha * _sigmoid(-params.alpha * self._separation(h, n_pos, ff)) / n_pos
        dg = np.concatenate([dd, -dd])
        return dg[:, None] * 2.0 * h / (h.shape[1] if ff.goodness == "mean" else 1.0)
