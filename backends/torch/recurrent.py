"""The recurrent FF net in PyTorch: a translation of `ffbench.reference.recurrent`.

Layer i's weight is [U | V] (bottom-up | top-down), its input the normalised states below and
above at the previous iteration, detached: each iteration's layer losses give each layer only
its own gradient, through (1 - d) relu(z). The trainer is the feed-forward one with the step,
the label scores and the read-out's features replaced.
"""

from __future__ import annotations

import functools
from functools import partial

import torch
import torch.nn.functional as F
from ffbench_backends.torch import ops
from ffbench_backends.torch.ff import FFTrainer

from ffbench.backend import Phase
from ffbench.reference.recurrent import label_columns
from ffbench.spec import NUM_CLASSES, FFSpec


@functools.lru_cache(maxsize=16)
def _mask(n_out: int, n_in: int, top: int, k: int, image, device: torch.device) -> torch.Tensor:
    local = ops.local_mask(n_out, n_in - top, k, image, device)
    return torch.cat([local, local.new_ones((n_out, top))], dim=1)


def weights(w: torch.Tensor, top: int, ff: FFSpec) -> torch.Tensor:
    return w if ff.receptive_field is None else w * _mask(*w.shape, top, ff.receptive_field, ff.image, w.device)


def start(x: torch.Tensor, params, ff: FFSpec, precision: str) -> list[torch.Tensor]:
    """h^0 (`reference.recurrent.start`)."""
    if ff.recurrent.init == "zeros":
        return [x.new_zeros((x.shape[0], w.shape[0])) for w, _ in params]
    hs, below = [], x
    for i, (w, b) in enumerate(params):
        u = F.pad(ops.normalize(below, ff.norm, ff.norm_eps), (0, w.shape[1] - below.shape[1]))
        below = torch.relu(ops.linear(u, weights(w, label_columns(i, len(params)), ff), b, precision))
        hs.append(below)
    return hs


def iterate(x: torch.Tensor, y1: torch.Tensor, params, ff: FFSpec, hs: list[torch.Tensor], precision: str):
    """h^t of every layer from h^{t-1} = hs (inputs detached)."""
    d, depth = ff.recurrent.damping, len(params)
    hs = [h.detach() for h in hs]
    below, above = [x, *hs[:-1]], [*hs[1:], y1]
    out = []
    for i, ((w, b), lo, hi, h) in enumerate(zip(params, below, above, hs)):
        u = torch.cat([ops.normalize(lo, ff.norm, ff.norm_eps), ops.normalize(hi, ff.norm, ff.norm_eps)], dim=1)
        z = ops.linear(u, weights(w, label_columns(i, depth), ff), b, precision)
        out.append(d * h + (1 - d) * ops.relu(z, ff.relu_grad))
    return out


def run(x: torch.Tensor, labels: torch.Tensor, params, ff: FFSpec, precision: str) -> list[list[torch.Tensor]]:
    """h^t for t = 0..T with `labels` clamped (no gradient)."""
    with torch.no_grad():
        y1, hs = F.one_hot(labels, NUM_CLASSES).to(x.dtype), start(x, params, ff, precision)
        out = [hs]
        for _ in range(ff.recurrent.iterations):
            hs = iterate(x, y1, params, ff, hs, precision)
            out.append(hs)
    return out


def features(params, xb: torch.Tensor, ff: FFSpec, precision: str) -> torch.Tensor:
    """`reference.recurrent.readout_features`: normalised h^0 of the prediction layers."""
    with torch.no_grad():
        hs = start(xb, params, ff, precision)
    return torch.cat([ops.normalize(hs[i], ff.norm, ff.norm_eps) for i in ff.prediction_layers], dim=1)


def readout_objective(params, readout, xb, yb, *, ff: FFSpec, precision: str):
    return (F.cross_entropy(ops.linear(features(params, xb, ff, precision), readout, None, precision), yb),)


def step_objective(params, running, readout, xb, yb, negb, *, ff: FFSpec, joint: bool, precision: str, objective):
    """`reference.recurrent.step` as a loss for autograd: the mean over the loss iterations of
    the summed layer losses; (total, FF losses, {}, read-out loss, running)."""
    (obj, p), rec, n = objective, ff.recurrent, xb.shape[0]
    x2, y1 = torch.cat([xb, xb]), F.one_hot(torch.cat([yb, negb]), NUM_CLASSES).to(xb.dtype)
    first, last = rec.loss_from, rec.last_loss_iteration
    k = last - first + 1
    with torch.no_grad():
        hs = start(x2, params, ff, precision)
    total, ff_losses = xb.new_zeros(()), {i: xb.new_zeros(()) for i in range(len(params))}
    for t in range(1, last + 1):
        with torch.set_grad_enabled(t >= first):
            hs = iterate(x2, y1, params, ff, hs, precision)
        if t >= first:
            for i, h in enumerate(hs):
                loss = obj.loss(h, n, ff, p, params[i][0].shape[1]) / k
                ff_losses[i], total = ff_losses[i] + loss, total + loss
    readout_loss = total.new_zeros(())
    if joint:
        readout_loss = readout_objective(params, readout, xb, yb, ff=ff, precision=precision)[0]
        total = total + readout_loss
    return total, ff_losses, {}, readout_loss, running


class RecurrentFFTrainer(FFTrainer):
    def objective(self, phase: Phase):
        shared = {"ff": self.ff, "precision": self.trial.precision}
        if phase.name == "readout":
            return partial(readout_objective, **shared)
        return partial(step_objective, joint=self.joint_readout, objective=self.objective_fn, **shared)

    @torch.no_grad()
    def label_scores(self, xb: torch.Tensor, layers: list[int]) -> torch.Tensor:
        """(B, 10) (`reference.recurrent.label_scores`)."""
        ff, (obj, p), n, rec = self.ff, self.objective_fn, xb.shape[0], self.ff.recurrent
        labels = torch.arange(NUM_CLASSES, device=xb.device).repeat_interleave(n)
        states = run(xb.repeat(NUM_CLASSES, 1), labels, self.params, ff, self.trial.precision)
        score = sum(obj.score(states[t][i], ff, p) for t in range(rec.score_from, rec.score_to + 1) for i in layers)
        return score.view(NUM_CLASSES, n).T

    @torch.no_grad()
    def predict(self, xb: torch.Tensor) -> torch.Tensor:
        if self.readout is not None:
            feats = features(self.params, xb, self.ff, self.trial.precision)
            return ops.linear(feats, self.readout, None, self.trial.precision).argmax(dim=1)
        return self.label_scores(xb, self.ff.prediction_layers).argmax(dim=1)
