"""The spec's optimisers as a Keras optimizer (`ffbench.reference.optim`'s formulas exactly).

Keras' own Adam adds eps before the bias correction; this one follows `eps_mode`. Weight
decay is L2 added to the gradient, or decoupled (`weight_decay_mode`, torch's AdamW). Usable by `fit` and by the
custom FF step, on every Keras backend.
"""

from __future__ import annotations

import keras
from keras import ops

from ffbench.spec import OptimizerSpec


class SpecOptimizer(keras.optimizers.Optimizer):
    def __init__(self, spec: OptimizerSpec, name: str = "ffbench_optimizer", **kwargs):
        super().__init__(learning_rate=spec.lr, name=name, **kwargs)
        self.spec = spec

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._m = [self.add_variable_from_reference(v, "m") for v in variables]
        self._v = [self.add_variable_from_reference(v, "v") for v in variables] if self.spec.name == "adam" else []

    def update_step(self, gradient, variable, learning_rate):
        s, i = self.spec, self._get_variable_index(variable)
        lr = ops.cast(learning_rate, variable.dtype)
        t = ops.cast(self.iterations + 1, variable.dtype)
        if s.decay_rate is not None:  # `OptimizerSpec.decay`: the t-th update's factor
            lr = lr * ops.power(ops.cast(s.decay_rate, variable.dtype), ops.floor(t / s.decay_every))
        g = ops.cast(gradient, variable.dtype)
        if s.weight_decay and s.weight_decay_mode == "decoupled":  # torch's AdamW: shrink, then the Adam step
            self.assign(variable, variable * (1.0 - lr * s.weight_decay))
        elif s.weight_decay:
            g = g + s.weight_decay * variable
        m = self._m[i]
        if s.name == "sgd":
            self.assign(m, s.momentum * m + g)
            self.assign_sub(variable, lr * m)
            return
        v = self._v[i]
        self.assign(m, s.beta1 * m + (1 - s.beta1) * g)
        self.assign(v, s.beta2 * v + (1 - s.beta2) * g * g)
        bc1, bc2 = 1 - ops.power(s.beta1, t), 1 - ops.power(s.beta2, t)
        if s.eps_mode == "after_bias_correction":
            self.assign_sub(variable, lr / bc1 * m / (ops.sqrt(v) / ops.sqrt(bc2) + s.eps))
        else:
            self.assign_sub(variable, lr * ops.sqrt(bc2) / bc1 * m / (ops.sqrt(v) + s.eps))

    def set_lr(self, lr: float) -> None:
        self.learning_rate = lr


class LayerOptimizers:
    """One `SpecOptimizer` per layer behind the interface the FF trainer uses (`ff.layer_epochs`:
    each layer keeps its own state and step count across the phases it trains in). `sizes`: how
    many of the phase's variables (and gradients), in order, are each member's layer's."""

    def __init__(self, members: list[SpecOptimizer], sizes: list[int]):
        self.members, self.sizes = members, sizes

    @property
    def built(self) -> bool:
        return all(opt.built for opt in self.members)

    def build(self, variables) -> None:
        for opt, part in zip(self.members, self._split(list(variables))):
            if not opt.built:
                opt.build(part)

    @property
    def variables(self) -> list:
        return [v for opt in self.members for v in opt.variables]

    def apply(self, grads, variables) -> None:
        for opt, g, v in zip(self.members, self._split(list(grads)), self._split(list(variables))):
            opt.apply(g, v)

    def set_lr(self, lr: float) -> None:
        for opt in self.members:
            opt.set_lr(lr)

    def _split(self, items: list) -> list[list]:
        out, at = [], 0
        for n in self.sizes:
            out.append(items[at:at + n])
            at += n
        return out
