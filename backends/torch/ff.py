"""Forward-Forward training in PyTorch: a translation of `ffbench.reference.ff`.

Each layer's loss is computed on the detached output of the layer below, so one backward
pass of the summed losses gives every layer exactly its own gradient (the simultaneous
schedule). Data, labels and negatives stay on the device; an epoch makes no host sync.
"""

from __future__ import annotations

import time
from functools import partial

import torch
import torch.nn.functional as F
from ffbench_backends.torch import ops
from ffbench_backends.torch.common import TorchTrainer, to_numpy
from ffbench_backends.torch.compile import compiled, warm_up
from ffbench_backends.torch.compile import enabled as compiling
from ffbench_backends.torch.optim import Optimizer

from ffbench.backend import FFSchedule, Phase
from ffbench.data import Dataset
from ffbench.reference.ff import PEER_INIT
from ffbench.reference.negatives import by_position, check_data, negatives_epoch, score_layers, training_images
from ffbench.reference.optim import lr_at
from ffbench.spec import NUM_CLASSES, FFSpec, FFTrial


def ff_objective(params, running, pos, neg, ff: FFSpec, layers, precision: str = "fp32"):
    """The FF objective of one step for `layers` (a contiguous range), on overlaid batches.

    Returns (total, FF loss per layer, peer loss per layer, new running means); layers below
    `layers` are run frozen (greedy), each trained layer sees the detached output below it.
    """
    n, running = pos.shape[0], list(running)
    ff_losses, peer_losses = {}, {}
    h = torch.cat([pos, neg])
    first = min(layers)
    with torch.no_grad():
        for w, b in params[:first]:
            h = ops.layer_forward(h, w, b, ff, precision)
    total = h.new_zeros(())
    for i in range(first, max(layers) + 1):
        h = ops.layer_forward(h.detach(), *params[i], ff, precision)
        ff_losses[i] = ops.ff_loss(ops.goodness(h, ff.goodness), n, ff, params[i][0].shape[1])
        total = total + ff_losses[i]
        if ff.peer_weight > 0:
            peer_losses[i], running[i] = ops.peer_loss(h[:n], running[i], ff)
            total = total + ff.peer_weight * peer_losses[i]
    return total, ff_losses, peer_losses, running


def features(params, xb, ff: FFSpec, active, widths, precision: str = "fp32") -> torch.Tensor:
    """`reference.ff.readout_features`: the normalised activities of the prediction layers on
    the neutral-label pass, zeros for those not in `active` (`FFSchedule.readout_layers`)."""
    h, feats = ops.overlay(xb, None, ff), {}
    with torch.no_grad():
        for i, (w, b) in enumerate(params[: max(active) + 1]):
            h = ops.layer_forward(h, w, b, ff, precision)
            if i in active:
                feats[i] = ops.normalize(h, ff.norm, ff.norm_eps)
    return torch.cat([feats[i] if i in feats else h.new_zeros(xb.shape[0], widths[i]) for i in ff.prediction_layers], dim=1)


def readout_objective(params, readout, xb, yb, *, ff: FFSpec, active, widths, precision: str):
    """(the read-out's cross-entropy,): its gradient reaches the read-out only."""
    return (F.cross_entropy(ops.linear(features(params, xb, ff, active, widths, precision), readout, None, precision), yb),)


def step_objective(params, running, readout, xb, yb, negb, *, ff: FFSpec, layers, joint: bool, active, widths, precision: str):
    """One FF step's total loss and (FF losses, peer losses, read-out loss, new running means).
    `negb`: the negatives' labels, or (unsupervised) the negative images. With `joint`, the
    read-out's loss is part of the total."""
    pos, neg = ops.overlay(xb, yb, ff), (ops.overlay(xb, negb, ff) if ff.embeds_labels else negb)
    total, ff_losses, peer_losses, running = ff_objective(params, running, pos, neg, ff, layers, precision)
    readout_loss = total.new_zeros(())
    if joint:
        readout_loss = readout_objective(params, readout, xb, yb, ff=ff, active=active, widths=widths, precision=precision)[0]
        total = total + readout_loss
    return total, ff_losses, peer_losses, readout_loss, running


class FFTrainer(FFSchedule, TorchTrainer):
    def __init__(self, trial: FFTrial, data: Dataset, device: torch.device):
        super().__init__(trial, data, device)
        self.ff = trial.ff
        check_data(self.ff, data.train.y)
        self.index = torch.arange(self.n, device=device)
        pool = training_images(self.ff, data)  # class_split: the training images + the pool
        self.images = self.splits["train"][0] if pool is None else torch.as_tensor(pool, device=device)
        self.params = self.init_params([data.train.x.shape[1], *trial.hidden], self.ff.init)
        self.running = [torch.full((h,), PEER_INIT, device=device) for h in trial.hidden]
        self.readout = None
        if self.ff.prediction == "softmax":
            feats = sum(trial.hidden[i] for i in self.ff.prediction_layers)
            self.readout = torch.zeros((NUM_CLASSES, feats), device=device, requires_grad=True)
        self.trained: set[int] = set()  # layers trained so far (for evaluation during greedy)
        self.readout_trained = False
        self.negatives_seconds: float | None = None  # scoring the data for hard negatives, this epoch
        self._drawn: tuple[int, torch.Tensor] | None = None  # (negatives_epoch, each sample's negative)
        self._layer_opts: dict[tuple[int, ...], Optimizer] = {}  # a layer's optimiser, kept across episodes

    # ------------------------------------------------------------------ phases
    def begin_phase(self, phase: Phase) -> None:
        self.phase, self.phase_epoch = phase, 0
        params = [p for i in phase.layers for p in self.params[i]]
        self.joint_readout = self.readout is not None and self.ff.readout_phase == "joint" and bool(phase.layers)
        self.readout_opt = None
        if phase.name == "readout":
            params = [self.readout]
            with torch.no_grad():
                self.readout.zero_()
        elif self.joint_readout and self.ff.readout_optimizer is None:
            params.append(self.readout)
        elif self.joint_readout:  # a joint read-out with its own optimiser and state
            self.readout_opt = Optimizer(self.ff.readout_optimizer, [self.readout])
        self.opt = self._layer_opts.get(phase.layers) or Optimizer(phase.optimizer, params)
        if phase.layers:
            self._layer_opts[phase.layers] = self.opt
        self._compile_step(phase)

    def _compile_step(self, phase: Phase) -> None:
        """The phase's step objective (compiled with `FFBENCH_TORCH_COMPILE=1`, then warmed up)."""
        shared = {"ff": self.ff, "active": self.readout_layers, "widths": self.trial.hidden, "precision": self.trial.precision}
        if phase.name == "readout":
            self._objective = compiled(partial(readout_objective, **shared))
        else:
            self._objective = compiled(partial(step_objective, layers=phase.layers, joint=self.joint_readout, **shared))
        if not compiling():
            return
        b, x = self.batch_size, self.splits["train"][0]
        xb, yb = x.new_zeros((b, x.shape[1])), torch.zeros(b, dtype=torch.int64, device=self.device)
        trained = [p for wb in self.params for p in wb] + ([self.readout] if self.readout is not None else [])
        if phase.name == "readout":
            warm_up(self._objective, (self.params, self.readout, xb, yb), trained)
        else:
            negb = yb.clone() if self.ff.embeds_labels else xb.clone()  # not the same tensor: torch.compile guards aliasing
            warm_up(self._objective, (self.params, self.running, self.readout, xb, yb, negb), trained)
        self.opt.warm_up()
        if self.readout_opt is not None:
            self.readout_opt.warm_up()

    # ------------------------------------------------------------------ training
    def train_epoch(self, phase: Phase, epoch: int, lr: float):
        x, y = self.splits["train"]
        order = ops.epoch_order(self.trial.seed, epoch, self.n, self.device)[: self.steps_per_epoch * self.batch_size]
        depth = len(self.params)
        sums = {"ff_loss": torch.zeros(depth, device=self.device), "peer_loss": torch.zeros(depth, device=self.device),
                "readout_loss": torch.zeros(1, device=self.device), "collisions": torch.zeros(1, device=self.device)}
        neg = None if phase.name == "readout" else self._negatives(phase, epoch, order)
        key_epoch = negatives_epoch(self.trial, epoch)
        if self.readout_opt is not None:
            readout_lr = lr_at(self.readout_opt.spec, self.phase_epoch, phase.epochs)
        self.phase_epoch += 1
        for s in range(self.steps_per_epoch):
            idx = order[s * self.batch_size:(s + 1) * self.batch_size]
            xb, yb = self.batch_images(x, idx, epoch), y[idx]
            if phase.name == "readout":
                loss = self._objective(self.params, self.readout, xb, yb)[0]
                sums["readout_loss"] += loss.detach()
            else:
                negb = neg[s * self.batch_size:(s + 1) * self.batch_size]
                if self.ff.negatives == "permuted_label":
                    sums["collisions"] += (negb == yb).sum()
                if self.ff.negatives == "hybrid_image":
                    m = ops.hybrid_masks(self.trial.seed, key_epoch, idx, self.ff.hybrid_blur_passes)
                    negb = m * xb + (1.0 - m) * self.batch_images(x, negb, epoch)  # the negative images themselves
                elif self.ff.negatives == "class_split":
                    negb = self.images[negb]
                loss, ff_losses, peer_losses, readout_loss, self.running = self._objective(
                    self.params, self.running, self.readout, xb, yb, negb)
                for i in phase.layers:
                    sums["ff_loss"][i] += ff_losses[i].detach()
                    if self.ff.peer_weight > 0:
                        sums["peer_loss"][i] += peer_losses[i].detach()
                sums["readout_loss"] += readout_loss.detach()
            loss.backward()
            self.opt.step(lr)
            if self.readout_opt is not None:
                self.readout_opt.step(readout_lr)
        self.trained.update(phase.layers)
        self.readout_trained |= phase.name == "readout" or self.joint_readout
        return {k: v / self.steps_per_epoch for k, v in sums.items()}

    @torch.no_grad()
    def _negatives(self, phase: Phase, epoch: int, order: torch.Tensor) -> torch.Tensor:
        """The negative of each position of the epoch's order (`reference.negatives.Draws`)."""
        ff, y, seed = self.ff, self.splits["train"][1], self.trial.seed
        key = negatives_epoch(self.trial, epoch)
        self.negatives_seconds = None
        if by_position(ff):
            perm = ops.batch_permutations(seed, key, self.steps_per_epoch, self.batch_size, self.device)
            return torch.gather(y[order].view(perm.shape), 1, perm).reshape(-1)
        if self._drawn is None or self._drawn[0] != key:
            self._drawn = (key, self._sample_negatives(phase, key))
        return self._drawn[1][order]

    def _sample_negatives(self, phase: Phase, key: int) -> torch.Tensor:
        """Each training sample's negative label or partner (`reference.negatives.sample_negatives`)."""
        ff, (x, y), seed = self.ff, self.splits["train"], self.trial.seed
        if ff.negatives == "class_split":
            return ops.split_negatives(seed, key, self.n, len(self.images) - self.n, self.device)
        if ff.negatives == "hybrid_image":
            return ops.hybrid_partners(seed, key, self.index, y, ops.class_table(y))
        if ff.negatives == "wrong_label":
            return ops.wrong_labels(seed, key, self.index, y)
        if ff.negatives == "permuted_label":
            return y[ops.batch_permutations(seed, key, 1, self.n, self.device)[0]]
        t0 = time.perf_counter()
        layers, step = score_layers(ff, self.score_upto(phase)), self.trial.eval_batch_size
        scores = torch.cat([self.label_scores(x[i:i + step], layers) for i in range(0, self.n, step)])
        if ff.negatives == "hard_label":
            wrong = ops.sample_wrong(scores, y, ops.uniform24(ops.negatives_hash(seed, key, self.index)))
        else:
            wrong = ops.best_wrong(scores, y)
        self.sync()
        self.negatives_seconds = time.perf_counter() - t0
        return wrong

    def epoch_losses(self, device_losses) -> dict[str, float | dict[int, float]]:
        phase, depth = self.phase, len(self.params)
        flat = torch.cat([device_losses[k] for k in ("ff_loss", "peer_loss", "readout_loss", "collisions")]).tolist()
        out: dict[str, float | dict[int, float]] = {}
        if phase.layers and self.ff.negatives == "permuted_label":
            out["negative_collision_rate"] = flat[-1] / self.batch_size  # collisions per step / rows per step
        if phase.layers and self.negatives_seconds is not None:
            out["negatives_seconds"] = self.negatives_seconds
        flat = flat[:-1]
        if phase.layers:
            out["ff_loss"] = {i: flat[i] for i in phase.layers}
            if self.ff.peer_weight > 0:
                out["peer_loss"] = {i: flat[depth + i] for i in phase.layers}
        if phase.name == "readout" or self.joint_readout:
            out["readout_loss"] = flat[-1]
        return out

    def state(self) -> dict:
        out = {}
        for i, (w, b) in enumerate(self.params):
            out[f"W{i}"], out[f"b{i}"] = to_numpy(w), to_numpy(b)
        if self.readout is not None:
            out["readout"] = to_numpy(self.readout)
        return out

    def load_state(self, state: dict) -> None:
        with torch.no_grad():
            for i, (w, b) in enumerate(self.params):
                w.copy_(torch.as_tensor(state[f"W{i}"])), b.copy_(torch.as_tensor(state[f"b{i}"]))
            if self.readout is not None:
                self.readout.copy_(torch.as_tensor(state["readout"]))
        self.trained, self.readout_trained = set(range(len(self.params))), True

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def label_scores(self, xb: torch.Tensor, layers: list[int]) -> torch.Tensor:
        """(B, 10) summed goodness over `layers` with each label overlaid, signed (`reference.ff.label_scores`)."""
        ff = self.ff
        h, score = ops.overlay_all_labels(xb, ff), 0.0
        for i, (w, b) in enumerate(self.params[: max(layers) + 1]):
            h = ops.layer_forward(h, w, b, ff, self.trial.precision)
            if i in layers:
                score = score + ops.goodness(h, ff.goodness)
        score = score.view(NUM_CLASSES, xb.shape[0]).T
        return score if ff.sign == "max_ssq" else -score

    @torch.no_grad()
    def predict(self, xb: torch.Tensor) -> torch.Tensor:
        if self.readout is not None:
            feats = features(self.params, xb, self.ff, self.readout_layers, self.trial.hidden, self.trial.precision)
            return ops.linear(feats, self.readout, None, self.trial.precision).argmax(dim=1)
        return self.label_scores(xb, [i for i in self.ff.prediction_layers if i in self.trained]).argmax(dim=1)
