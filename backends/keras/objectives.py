"""The built-in layer objective in `keras.ops` (`ffbench.variants.builtin_objectives.Logistic`);
its gradient with respect to the activities is the Keras backend's autodiff (`ops.grad_h`)."""

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
