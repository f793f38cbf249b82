"""The spec's optimisers (`ffbench.reference.optim`) as PyTorch's fused in-place kernels.

Adam is `torch._fused_adam_` (decoupled weight decay: `_fused_adamw_`) and SGD with momentum
`torch._fused_sgd_` (what `torch.optim.Adam(fused=True)` and `SGD(fused=True)` run): one
kernel over every tensor a step, where the same update as foreach ops took eight passes
(784-1000-1000-1000 on a CPU: 12.4 ms a step foreach, 1.7 ms fused). Both kernels' formulas
are the reference's: weight decay added to the gradient (or decoupled), Adam's bias
corrections from the step count (`adam_coefficients`, `after_bias_correction`), SGD's buffer
`momentum * buf + g` from zero. Keras's `before_bias_correction` is the same kernel with
eps / sqrt(1 - beta2^t), a host float: p -= lr / bc1 * m / ((sqrt(v) + eps) / sqrt(bc2)).

The learning rate and the step count are device tensors that the kernels read (`plan_epoch`
fills the rate once an epoch, and `step` again at an update of a new `decay_rate` factor;
`step` the count), so no step reads a value back from the device. A pack's optimiser
(`members` K) updates stacked tensors (K, ...), member by member (each a view), each with its
own learning rate.

`FFBENCH_TORCH_COMPILE=1` compiles the foreach form of the same update (`foreach_update`)
instead, which inductor fuses: torch.compile cannot trace `_fused_adam_` with a tensor
learning rate (torch 2.13: "no fake impl or Meta kernel registered").
"""

from __future__ import annotations

import math

import torch
from ffbench_backends.torch.compile import compiled, enabled

from ffbench.reference.optim import adam_coefficients
from ffbench.spec import OptimizerSpec


class Optimizer:
    """The spec's optimiser over `params`; `plan_epoch(lr, steps)`, then each `step()` applies
    the gradients in `.grad`. In a pack of `members`, lr is one per member."""

    def __init__(self, spec: OptimizerSpec, params: list[torch.Tensor], members: int | None = None):
        self.spec, self.params, self.t, self.members = spec, params, 0, members
        device = params[0].device
        self.m = [torch.zeros_like(p) for p in params]  # SGD: the momentum buffer (left at zero without momentum)
        self.v = [torch.zeros_like(p) for p in params] if spec.name == "adam" else []
        lead = () if members is None else (members,)
        self._update = compiled(foreach_update) if enabled() else None
        if self._update is None:  # the fused kernels read the rate and the step count t on the device
            self.lr, self.count = torch.zeros(lead, device=device), torch.zeros((), device=device)
        else:  # the compiled foreach update reads (step size, denominator scale, decoupled shrink), a row of this epoch's table
            self.coef = torch.zeros((*lead, 3), device=device)
            self._table: torch.Tensor | None = None  # (steps, *coef.shape)
        self._left = 0  # steps planned and not taken
        self._rates: list[float] = []  # the epoch's rates (one per member), before an update's decay factor
        self._factor = 1.0  # the decay factor the device's rate holds

    def plan_epoch(self, lr: float | list[float], steps: int) -> None:
        """The next `steps` steps, at `lr` (a pack: one per member)."""
        lrs = lr if self.members is not None else [lr]
        self._rates, self._factor = list(lrs), self.spec.decay(self.t + 1)
        if self._update is None:
            self._set_rate()
        else:
            rows = [[self._coefficients(self.t + s + 1, r) for r in lrs] for s in range(steps)]
            self._table = torch.tensor(rows, dtype=torch.float32).view(steps, *self.coef.shape).to(self.coef.device)
        self._left = steps

    def _set_rate(self) -> None:
        """The device's rate: the epoch's, times the next update's decay factor (`OptimizerSpec.decay`)."""
        if self.members is None:
            self.lr.fill_(self._rates[0] * self._factor)  # no transfer
        else:
            self.lr.copy_(torch.tensor([r * self._factor for r in self._rates], dtype=torch.float32))

    def _coefficients(self, t: int, lr: float) -> tuple[float, float, float]:
        lr = lr * self.spec.decay(t)
        shrink = lr * self.spec.weight_decay if self.spec.weight_decay_mode == "decoupled" else 0.0
        return (*adam_coefficients(self.spec, t, lr)[:2], shrink) if self.spec.name == "adam" else (lr, 0.0, 0.0)

    def step(self) -> None:
        if self._left <= 0:
            raise RuntimeError("Optimizer.step() beyond the steps of plan_epoch()")  # never a step without its rate
        self.t += 1
        self._left -= 1
        grads = [p.grad for p in self.params]
        if self._update is None and self.spec.decay(self.t) != self._factor:  # a decay step: a new rate from here
            self._factor = self.spec.decay(self.t)
            self._set_rate()
        if self._update is not None:
            self.coef.copy_(self._table[-1 - self._left])  # on the device: no host sync
            self._update(self.spec, self.params, grads, self.m, self.v, self.coef)
        else:
            self.count.fill_(self.t)
            if self.members is None:
                fused_update(self.spec, self.t, self.params, grads, self.m, self.v, self.lr, self.count)
            else:
                for k in range(self.members):
                    fused_update(self.spec, self.t, *([t[k] for t in ts] for ts in (self.params, grads, self.m, self.v)),
                                 self.lr[k], self.count)
        for p in self.params:
            if self.members is None:
                p.grad = None
            else:  # a gradient from a vmapped backward is not stolen but cloned into a new .grad:
                p.grad.zero_()  # keeping it and adding into it is cheaper (CPU 3x1000 BP pack: +15%)

    def warm_up(self) -> None:
        """Compile the update (if compiling) on copies: no state changes."""
        if enabled():
            params = [p.detach().clone().requires_grad_(p.requires_grad) for p in self.params]  # as guarded
            m, v = ([t.clone() for t in ts] for ts in (self.m, self.v))
            self._update(self.spec, params, [torch.zeros_like(p) for p in params], m, v, self.coef.clone())


class LayerOptimizers:
    """One `Optimizer` per layer behind `Optimizer`'s interface (`ff.layer_epochs`: each layer
    keeps its own state and step count across the phases it trains in)."""

    def __init__(self, members: list[Optimizer]):
        self.members = members

    def plan_epoch(self, lr: float | list[float], steps: int) -> None:
        for opt in self.members:
            opt.plan_epoch(lr, steps)

    def step(self) -> None:
        for opt in self.members:
            opt.step()

    def warm_up(self) -> None:
        for opt in self.members:
            opt.warm_up()


@torch.no_grad()
def fused_update(spec: OptimizerSpec, t: int, params, grads, m, v, lr: torch.Tensor, count: torch.Tensor) -> None:
    """In place, step `t` (`count` holds it on the device): the spec's Adam or SGD as one
    fused kernel (it may scale `grads` in place)."""
    if spec.name == "adam":
        eps = spec.eps if spec.eps_mode == "after_bias_correction" else spec.eps / math.sqrt(1.0 - spec.beta2**t)
        kernel = torch._fused_adamw_ if spec.weight_decay_mode == "decoupled" else torch._fused_adam_
        kernel(params, grads, m, v, [], [count] * len(params), lr=lr, beta1=spec.beta1, beta2=spec.beta2,
               weight_decay=spec.weight_decay, eps=eps, amsgrad=False, maximize=False)
    else:
        torch._fused_sgd_(params, grads, m if spec.momentum else [], weight_decay=spec.weight_decay, momentum=spec.momentum,
                          lr=lr, dampening=0.0, nesterov=False, maximize=False, is_first_step=False)


@torch.no_grad()
def foreach_update(spec: OptimizerSpec, params, grads, m, v, coef: torch.Tensor) -> None:
    """In place: Adam, p -= coef[0] * m / (sqrt(v) * coef[1] + eps) (`adam_coefficients`), after
    p *= 1 - coef[2] (decoupled weight decay); SGD with momentum, p -= coef[0] * m. `coef`: (3,),
    or (K, 3) for a pack, updated member by member (one member's tensors stay in cache, and
    foreach keeps its fused path for a scalar)."""
    if coef.dim() == 2:
        for k in range(coef.shape[0]):
            foreach_update(spec, *([t[k] for t in ts] for ts in (params, grads, m, v)), coef[k])
        return
    if spec.weight_decay and spec.weight_decay_mode == "decoupled":
        torch._foreach_mul_(params, 1.0 - coef[2])
    elif spec.weight_decay:
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
