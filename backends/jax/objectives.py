"""The built-in layer objectives in JAX (`ffbench.variants.builtin_objectives`: Logistic, SymBa, CwC, SCFF); their
gradients are `jax.grad`'s."""

from __future__ import annotations

import jax
import jax.numpy as jnp


class Logistic:
    def goodness(self, h: jax.Array, ff, params) -> jax.Array:
        g = (h * h).sum(axis=1)
        return g / h.shape[1] if ff.goodness == "mean" else g

    def score(self, h: jax.Array, ff, params) -> jax.Array:
        g = self.goodness(h, ff, params)
        return g if ff.sign == "max_ssq" else -g

    def loss(self, h: jax.Array, n_pos: int, ff, params, fan_in: int) -> jax.Array:
        g, s = self.goodness(h, ff, params), 1.0 if ff.sign == "max_ssq" else -1.0
        t = jnp.concatenate([-jnp.ones(n_pos, g.dtype), jnp.ones(g.shape[0] - n_pos, g.dtype)])
        return jax.nn.softplus(t * s * (g - ff.threshold_for(fan_in))).mean()


class SymBa:
    """`ffbench.variants.builtin_objectives.SymBa`: softplus(-alpha (g+ - g-)) over the step's pairs."""

    goodness = Logistic.goodness
    score = Logistic.goodness

    def loss(self, h: jax.Array, n_pos: int, ff, params, fan_in: int) -> jax.Array:
        g = self.goodness(h, ff, params)
        return jax.nn.softplus(-params.alpha * (g[:n_pos] - g[n_pos:])).mean()


class CwC:
    """`ffbench.variants.builtin_objectives.CwC`: cross-entropy of the 10 class groups' mean h^2."""

    def class_scores(self, h: jax.Array, ff, params) -> jax.Array:
        return (h * h).reshape(h.shape[0], 10, -1).mean(axis=2)

    def goodness(self, h: jax.Array, ff, params) -> jax.Array:
        return (h * h).mean(axis=1)

    def loss(self, h: jax.Array, n_pos: int, ff, params, fan_in: int, labels=None) -> jax.Array:
        logp = jax.nn.log_softmax(self.class_scores(h, ff, params), axis=1)
        return -jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=1).mean()


class SCFF:
    """`ffbench.variants.builtin_objectives.SCFF`: softplus(th+ - g+), softplus(g- - th-), + lamda g+, per layer."""

    goodness = Logistic.goodness
    score = Logistic.goodness

    def loss(self, h: jax.Array, n_pos: int, ff, params, fan_in: int, layer=None) -> jax.Array:
        g, (pos, neg, lam) = self.goodness(h, ff, params), params.at(0 if layer is None else layer)
        return jax.nn.softplus(pos - g[:n_pos]).mean() + jax.nn.softplus(g[n_pos:] - neg).mean() + lam * g[:n_pos].mean()
