"""The spec's optimisers (`ffbench.reference.optim`) as in-place foreach updates.

The step size and bias corrections are host floats computed by the reference's
`adam_coefficients`, so no step reads a value back from the device.
"""

from __future__ import annotations

import torch

from ffbench.reference.optim import adam_coefficients
from ffbench.spec import OptimizerSpec


class Optimizer:
    def __init__(self, spec: OptimizerSpec, params: list[torch.Tensor]):
        self.spec, self.params, self.t = spec, params, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params] if spec.name == "adam" else []

    @torch.no_grad()
    def step(self, lr: float) -> None:
        spec, params = self.spec, self.params
        self.t += 1
        grads = [p.grad for p in params]
        if spec.weight_decay:
            grads = torch._foreach_add(grads, params, alpha=spec.weight_decay)
        if spec.name == "adam":
            torch._foreach_lerp_(self.m, grads, 1 - spec.beta1)  # m = b1 m + (1-b1) g
            torch._foreach_mul_(self.v, spec.beta2)
            torch._foreach_addcmul_(self.v, grads, grads, value=1 - spec.beta2)
            step, scale, eps = adam_coefficients(spec, self.t, lr)
            denom = torch._foreach_sqrt(self.v)
            torch._foreach_mul_(denom, scale)
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, self.m, denom, value=-step)
        else:
            torch._foreach_mul_(self.m, spec.momentum)
            torch._foreach_add_(self.m, grads)
            torch._foreach_add_(params, self.m, alpha=-lr)
        for p in params:
            p.grad = None
