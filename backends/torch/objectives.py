"""The built-in layer objectives in torch (`ffbench.variants.builtin_objectives`: Logistic, SymBa, CwC, SCFF);
their gradients are autograd's."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class Logistic:
    def goodness(self, h: torch.Tensor, ff, params) -> torch.Tensor:
        g = (h * h).sum(dim=1)
        return g / h.shape[1] if ff.goodness == "mean" else g

    def score(self, h: torch.Tensor, ff, params) -> torch.Tensor:
        g = self.goodness(h, ff, params)
        return g if ff.sign == "max_ssq" else -g

    def loss(self, h: torch.Tensor, n_pos: int, ff, params, fan_in: int) -> torch.Tensor:
        s = 1.0 if ff.sign == "max_ssq" else -1.0
        logit = s * (self.goodness(h, ff, params) - ff.threshold_for(fan_in))
        t = torch.ones_like(logit)
        t[:n_pos] = -1.0
        return F.softplus(t * logit).mean()


class SymBa:
    """`ffbench.variants.builtin_objectives.SymBa`: softplus(-alpha (g+ - g-)) over the step's pairs."""

    goodness = Logistic.goodness
    score = Logistic.goodness

    def loss(self, h: torch.Tensor, n_pos: int, ff, params, fan_in: int) -> torch.Tensor:
        g = self.goodness(h, ff, params)
        return F.softplus(-params.alpha * (g[:n_pos] - g[n_pos:])).mean()


class CwC:
    """`ffbench.variants.builtin_objectives.CwC`: cross-entropy of the 10 class groups' mean h^2."""

    def class_scores(self, h: torch.Tensor, ff, params) -> torch.Tensor:
        return (h * h).reshape(h.shape[0], 10, -1).mean(dim=2)

    def goodness(self, h: torch.Tensor, ff, params) -> torch.Tensor:
        return (h * h).mean(dim=1)

    def loss(self, h: torch.Tensor, n_pos: int, ff, params, fan_in: int, labels=None) -> torch.Tensor:
        return F.cross_entropy(self.class_scores(h, ff, params), labels)


class SCFF:
    """`ffbench.variants.builtin_objectives.SCFF`: softplus(th+ - g+), softplus(g- - th-), + lamda g+, per layer."""

    goodness = Logistic.goodness
    score = Logistic.goodness

    def loss(self, h: torch.Tensor, n_pos: int, ff, params, fan_in: int, layer=None) -> torch.Tensor:
        g, (pos, neg, lam) = self.goodness(h, ff, params), params.at(0 if layer is None else layer)
        return F.softplus(pos - g[:n_pos]).mean() + F.softplus(g[n_pos:] - neg).mean() + lam * g[:n_pos].mean()
