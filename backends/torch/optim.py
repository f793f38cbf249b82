"""The spec's optimisers (`ffbench.reference.optim`) as in-place foreach updates.

The step size and bias corrections are host floats computed by the reference's
`adam_coefficients` and written into a device tensor, so no step reads a value back from
the device, and a compiled update (`compile.compiled`) takes them without recompiling.
"""

from __future__ import annotations

import torch
from ffbench_backends.torch.compile import compiled, enabled

from ffbench.reference.optim import adam_coefficients
from ffbench.spec import OptimizerSpec


class Optimizer:
    """The spec's optimiser over `params`; `step(lr)` applies the gradients in `.grad`."""

    def __init__(self, spec: OptimizerSpec, params: list[torch.Tensor]):
        self.spec, self.params, self.t = spec, params, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params] if spec.name == "adam" else []
        self.coef = torch.zeros(2, device=params[0].device)  # this step's (step size, denominator scale)
        self._update = compiled(update)

    def step(self, lr: float) -> None:
        self.t += 1
        if self.spec.name == "adam":
            step, scale, _ = adam_coefficients(self.spec, self.t, lr)
            self.coef[0].fill_(step)  # no host sync: a device write
            self.coef[1].fill_(scale)
        else:
            self.coef[0].fill_(lr)
        self._update(self.spec, self.params, [p.grad for p in self.params], self.m, self.v, self.coef)
        for p in self.params:
            p.grad = None

    def warm_up(self) -> None:
        """Compile the update (if compiling) on copies: no state changes."""
        if enabled():
            params = [p.detach().clone().requires_grad_(p.requires_grad) for p in self.params]  # as guarded
            m, v = ([t.clone() for t in ts] for ts in (self.m, self.v))
            self._update(self.spec, params, [torch.zeros_like(p) for p in params], m, v, self.coef.clone())


@torch.no_grad()
def update(spec: OptimizerSpec, params, grads, m, v, coef: torch.Tensor) -> None:
    """In place: Adam, p -= coef[0] * m / (sqrt(v) * coef[1] + eps) (`adam_coefficients`);
    SGD with momentum, p -= coef[0] * m."""
    if spec.weight_decay:
        grads = torch._foreach_add(grads, params, alpha=spec.weight_decay)
    if spec.name == "adam":
        torch._foreach_lerp_(m, grads, 1 - spec.beta1)  # m = b1 m + (1-b1) g
        torch._foreach_mul_(v, spec.beta2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - spec.beta2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_mul_(denom, coef[1])
        torch._foreach_add_(denom, spec.eps)
        delta = torch._foreach_div(m, denom)
    else:
        torch._foreach_mul_(m, spec.momentum)
        torch._foreach_add_(m, grads)
        delta = list(m)
    delta = torch._foreach_mul(delta, coef[0])
    torch._foreach_sub_(params, delta)
