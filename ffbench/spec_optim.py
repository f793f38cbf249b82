"""An optimiser of the trial spec (`optimizer`, `ff.readout_optimizer`, `ff.layer_optimizers`):
its formula and learning-rate schedule as fields (`ffbench.reference.optim` defines each one)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ffbench.strict import MAX_EPOCHS, Fraction, PositiveFloat, PositiveInt, Strict


class OptimizerSpec(Strict):
    """An optimiser, with its exact formula (see `ffbench.reference.optim`).

    adam: m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
          `eps_mode: after_bias_correction` (torch, optax):  p -= lr * m_hat / (sqrt(v_hat) + eps)
          `eps_mode: before_bias_correction` (Keras):        p -= lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)
    sgd:  buf = momentum * buf + g;  p -= lr * buf   (torch convention, no dampening)
    Both: `weight_decay` is L2 added to the gradient before the moments (g += wd * p); adam with
    `weight_decay_mode: decoupled` (torch's AdamW) instead shrinks p first, p *= 1 - lr * wd.
    `cooldown_start` c: the learning rate is constant for the first floor(c*E) epochs of a
    phase of E epochs, then falls linearly: lr * (E - e) / (E - floor(c*E)) at epoch e.
    `milestones` [m1, m2, ...]: times `milestone_factor` from each epoch m_i of the phase on
    (torch's MultiStepLR). `decay_rate` r with `decay_every` P: the k-th update of this
    optimiser (k = 1, 2, ...) uses lr * r^floor(k / P) (torch's ExponentialLR stepped every P
    updates, after the update that completes P - 1 of them: SCFF's schedule).
    """

    name: Literal["adam", "sgd"] = "adam"
    lr: PositiveFloat = 1e-3
    beta1: Fraction = 0.9
    beta2: Fraction = 0.999
    eps: PositiveFloat = 1e-8
    eps_mode: Literal["after_bias_correction", "before_bias_correction"] = "after_bias_correction"
    momentum: Fraction = 0.0
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    weight_decay_mode: Literal["l2", "decoupled"] = "l2"
    cooldown_start: Annotated[float, Field(gt=0, lt=1)] | None = None
    milestones: list[Annotated[int, Field(gt=0, le=MAX_EPOCHS)]] | None = None
    milestone_factor: Annotated[float, Field(gt=0, le=1)] = 0.1
    decay_rate: Annotated[float, Field(gt=0, le=1)] | None = None
    decay_every: PositiveInt | None = None

    @model_validator(mode="after")
    def _only_relevant_fields(self) -> OptimizerSpec:
        # Compared with the defaults (not "was it written"), so a dumped spec re-validates.
        defaults = {k: f.default for k, f in type(self).model_fields.items()}
        adam_only = [k for k in ("beta1", "beta2", "eps", "eps_mode") if getattr(self, k) != defaults[k]]
        if self.name == "sgd" and adam_only:
            raise ValueError(f"{', '.join(adam_only)} applies to adam only, not sgd")
        if self.name == "adam" and self.momentum != defaults["momentum"]:
            raise ValueError("momentum applies to sgd only; adam uses beta1")
        if self.weight_decay_mode == "decoupled" and self.name != "adam":
            raise ValueError("weight_decay_mode: decoupled is adam's (torch's AdamW); sgd adds the decay to the gradient")
        if (self.decay_rate is None) != (self.decay_every is None):
            raise ValueError("decay_rate and decay_every go together (lr * decay_rate^floor(k / decay_every) at update k)")
        if self.milestones is not None and (self.milestones != sorted(set(self.milestones)) or self.cooldown_start):
            raise ValueError("milestones must be increasing epochs, and do not combine with cooldown_start")
        if self.milestone_factor != defaults["milestone_factor"] and self.milestones is None:
            raise ValueError("milestone_factor applies with milestones only")
        return self

    def decay(self, k: int) -> float:
        """The factor of update k (1, 2, ...): decay_rate^floor(k / decay_every), else 1."""
        return 1.0 if self.decay_rate is None else self.decay_rate ** (k // self.decay_every)
