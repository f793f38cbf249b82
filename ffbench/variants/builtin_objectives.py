"""The built-in layer objectives: the paper's logistic loss on goodness, SymBa's, CwComp's
channel-wise competitive cross-entropy, and SCFF's two-threshold loss."""

from __future__ import annotations

from typing import Annotated, ClassVar

import numpy as np
from pydantic import Field

from ffbench.spec import NUM_CLASSES
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


class CwC(LayerObjective):
    """CwComp's channel-wise competitive loss (Papachristodoulou et al., AAAI 2024;
    andreaspapac/CwComp, src/Layer_cnn.py, its default `CwC_CE`). A layer's C channels are 10
    class groups of C/10 consecutive channels; group k's goodness is the mean of h^2 over its
    channels and positions, gf (rows, 10) (on a flat C x H x W row: the mean over the k-th of
    10 equal consecutive slices; a dense layer's units group the same way). The loss is the
    cross-entropy of gf as logits against the positives' labels: no negative data
    (`ff.negatives: none`), no label in the input, and prediction is the argmax of the summed
    gf of the prediction layers (CwComp's GF predictor reads the last layer)."""

    name = "cwc"
    description = "CwComp: cross-entropy of the 10 class groups' mean squared activity, no negatives"
    reads: ClassVar[tuple[str, ...]] = ()
    labelled = True
    scores_classes = True
    requires = {"negatives": "none", "goodness_over": "map"}
    check_trial = {"hidden": [40, 30, 30]}  # 10 class groups per layer
    backends = {fw: f"ffbench_backends.{fw}.objectives:CwC" for fw in ("torch", "jax", "keras")}

    def validate(self, trial) -> None:
        super().validate(trial)
        widths = [layer.output.channels for layer in trial.conv_layers()] if trial.conv is not None else trial.hidden
        bad = [w for w in widths if w % NUM_CLASSES]
        if bad:
            unit = "channels" if trial.conv is not None else "units"
            raise ValueError(f"ff.objective: cwc splits each layer's {unit} into {NUM_CLASSES} class groups: "
                             f"{bad} are not multiples of {NUM_CLASSES}")

    def class_scores(self, h, ff, params):
        return (h * h).reshape(len(h), NUM_CLASSES, -1).mean(axis=2)

    def goodness(self, h, ff, params):
        return (h * h).mean(axis=1)  # the mean of the class groups' goodness

    def _check(self, h, n_pos, labels):
        if len(h) != n_pos or labels is None or len(labels) != n_pos:
            raise ValueError(f"cwc learns from the positives' labels alone: got {len(h)} rows, {n_pos} positives, "
                             f"{None if labels is None else len(labels)} labels")

    def loss(self, h, n_pos, ff, params, fan_in, labels=None):
        self._check(h, n_pos, labels)
        gf = self.class_scores(h, ff, params)
        shifted = gf - gf.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(h)), labels].mean())

    def grad_h(self, h, n_pos, ff, params, fan_in, labels=None):
        # d CE / d gf = (softmax(gf) - onehot) / N; gf_k = mean over group k of h^2: d gf_k / d h = 2h / |group|
        self._check(h, n_pos, labels)
        gf = self.class_scores(h, ff, params)
        p = np.exp(gf - gf.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(h)), labels] -= 1.0
        size = h.shape[1] // NUM_CLASSES
        return np.repeat(p / len(h), size, axis=1) * 2.0 * h / size


PerLayer = float | list[float]


class SCFFParams(Strict):
    """Each one value for every layer, or a list of one per layer. Defaults: SCFF's MNIST layer 1
    (its config.json)."""

    pos_threshold: PerLayer = 4.0  # th1: the positives' goodness is pushed above it
    neg_threshold: PerLayer = 6.0  # th2: the negatives' below it
    penalty: PerLayer = 1e-4  # lamda: the weight of the positives' mean goodness

    def at(self, layer: int) -> tuple[float, float, float]:
        """(pos_threshold, neg_threshold, penalty) of layer `layer`."""
        pick = lambda v: v[layer] if isinstance(v, list) else v  # noqa: E731
        return pick(self.pos_threshold), pick(self.neg_threshold), pick(self.penalty)


class SCFF(LayerObjective):
    """Self-Contrastive FF's layer loss (Chen et al. 2024, arXiv:2409.11593; neurophysics-cnrsthales/
    contrastive-forward-forward, ContrastFF_MNIST.py, `loss1` with a = b = 1): with g = reduce(h^2)
    (`ff.goodness`) and layer i's thresholds th+ and th- and penalty lamda,
        loss = mean over positives of softplus(th+ - g) + mean over negatives of softplus(g - th-)
               + lamda * mean over positives of g
    (each mean over its own rows; the code's lamda * ||g||_2 of a single number is g). Separate
    thresholds for the two halves; prediction ranks by goodness (SCFF itself reads its layers
    with a linear probe: ff.prediction: softmax)."""

    name = "scff"
    description = "SCFF: softplus(th+ - g) on positives, softplus(g - th-) on negatives, + lamda g+, per-layer thresholds"
    Params = SCFFParams
    reads: ClassVar[tuple[str, ...]] = ("goodness",)
    per_layer = True
    backends = {fw: f"ffbench_backends.{fw}.objectives:SCFF" for fw in ("torch", "jax", "keras")}

    def validate(self, trial) -> None:
        super().validate(trial)
        depth, p = len(trial.hidden), self.params(trial.ff.objective_params)
        for field in ("pos_threshold", "neg_threshold", "penalty"):
            v = getattr(p, field)
            if isinstance(v, list) and len(v) != depth:
                raise ValueError(f"ff.objective_params.{field}: expected one value for every layer or one per layer "
                                 f"({depth}); got {len(v)}")
        if trial.ff.recurrent is not None:
            raise ValueError("ff.objective: scff has per-layer thresholds, defined for feed-forward nets: "
                             "it does not combine with ff.recurrent")

    def goodness(self, h, ff, params):
        g = (h * h).sum(axis=1)
        return g / h.shape[1] if ff.goodness == "mean" else g

    def score(self, h, ff, params):
        return self.goodness(h, ff, params)

    def _parts(self, h, n_pos, ff, params, layer):
        if not 0 < n_pos < len(h):
            raise ValueError(f"scff needs positives and negatives: got {n_pos} positives, {len(h) - n_pos} negatives")
        return self.goodness(h, ff, params), params.at(0 if layer is None else layer)

    def loss(self, h, n_pos, ff, params, fan_in, layer=None):
        g, (pos, neg, lam) = self._parts(h, n_pos, ff, params, layer)
        gp, gn = g[:n_pos], g[n_pos:]
        return float(_softplus(pos - gp).mean() + _softplus(gn - neg).mean() + lam * gp.mean())

    def grad_h(self, h, n_pos, ff, params, fan_in, layer=None):
        # d/dg: positives (-sigmoid(th+ - g) + lamda) / N+, negatives sigmoid(g - th-) / N-; dg/dh = 2h (/ units)
        g, (pos, neg, lam) = self._parts(h, n_pos, ff, params, layer)
        n_neg = len(h) - n_pos
        dg = np.concatenate([(lam - _sigmoid(pos - g[:n_pos])) / n_pos, _sigmoid(g[n_pos:] - neg) / n_neg])
        return dg[:, None] * 2.0 * h / (h.shape[1] if ff.goodness == "mean" else 1.0)
