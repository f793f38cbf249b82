"""The built-in layer objectives in `keras.ops` (`ffbench.variants.builtin_objectives`: Logistic, SymBa, CwC, SCFF);
their gradients with respect to the activities are the Keras backend's autodiff (`ops.grad_h`)."""

from __future__ import annotations

from keras import ops


class Logistic:
    def goodness(self, h, ff, params):
        g = ops.sum(h * h, axis=1)
        return g / h.shape[1] if ff.goodness == "mean" else g

    def score(self, h, ff, params):
        g = self.goodness(h, ff, params)
        return g if ff.sign == "max_ssq" else -g

    def loss(self, h, n_pos: int, ff, params, fan_in: int):
        s = 1.0 if ff.sign == "max_ssq" else -1.0
        logit = s * (self.goodness(h, ff, params) - ff.threshold_for(fan_in))
        t = ops.concatenate([-ops.ones((n_pos,), h.dtype), ops.ones((h.shape[0] - n_pos,), h.dtype)])
        return ops.mean(ops.softplus(t * logit))


class SymBa:
    """`ffbench.variants.builtin_objectives.SymBa`: softplus(-alpha (g+ - g-)) over the step's pairs."""

    goodness = Logistic.goodness
    score = Logistic.goodness

    def loss(self, h, n_pos: int, ff, params, fan_in: int):
        g = self.goodness(h, ff, params)
        return ops.mean(ops.softplus(-params.alpha * (g[:n_pos] - g[n_pos:])))


class CwC:
    """`ffbench.variants.builtin_objectives.CwC`: cross-entropy of the 10 class groups' mean h^2."""

    def class_scores(self, h, ff, params):
        return ops.mean(ops.reshape(h * h, (h.shape[0], 10, -1)), axis=2)

    def goodness(self, h, ff, params):
        return ops.mean(h * h, axis=1)

    def loss(self, h, n_pos: int, ff, params, fan_in: int, labels=None):
        logp = ops.log_softmax(self.class_scores(h, ff, params), axis=1)
        return -ops.mean(ops.sum(logp * ops.one_hot(labels, 10, dtype=logp.dtype), axis=1))


class SCFF:
    """`ffbench.variants.builtin_objectives.SCFF`: softplus(th+ - g+), softplus(g- - th-), + lamda g+, per layer."""

    goodness = Logistic.goodness
    score = Logistic.goodness

    def loss(self, h, n_pos: int, ff, params, fan_in: int, layer=None):
        g, (pos, neg, lam) = self.goodness(h, ff, params), params.at(0 if layer is None else layer)
        return (ops.mean(ops.softplus(pos - g[:n_pos])) + ops.mean(ops.softplus(g[n_pos:] - neg))
                + lam * ops.mean(g[:n_pos]))
