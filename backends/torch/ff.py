"""Forward-Forward training in PyTorch: a translation of `ffbench.reference.ff`.

Each layer's loss is computed on the detached output of the layer below, so one backward
pass of the summed losses gives every layer exactly its own gradient (the simultaneous
schedule). Data, labels and negatives stay on the device; an epoch makes no host sync.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from ffbench_backends.torch import ops
from ffbench_backends.torch.common import EpochPlan, TorchTrainer, backward, to_numpy
from ffbench_backends.torch.compile import compiled, warm_up
from ffbench_backends.torch.compile import enabled as compiling
from ffbench_backends.torch.optim import LayerOptimizers, Optimizer

from ffbench import frozen
from ffbench.backend import FFSchedule, Phase, bound_objective
from ffbench.data import Dataset
from ffbench.reference.ff import STATE_KEYS, frozen_bn, initial_running
from ffbench.reference.init import ff_init
from ffbench.reference.negatives import negatives_epoch, score_layers, training_images
from ffbench.reference.optim import lr_at
from ffbench.reference.rng import STREAM_JITTER, STREAM_MASK, stream_key
from ffbench.spec import NUM_CLASSES, FFSpec, FFTrial
from ffbench.variants import OBJECTIVES, Batch
from ffbench.variants.objectives import objective_args, scores_classes


def ff_objective(params, running, pos, neg, ff: FFSpec, layers, precision: str = "fp32", objective=None, rows=None,
                 labels=None):
    """The FF objective of one step for `layers` (a contiguous range), on overlaid batches.
    `labels`: the positives' classes, given to a `labelled` objective (None: not one).

    Returns (total, FF loss per layer, peer loss per layer, new carried statistics: running
    means, or a batch-normalised layer's running statistics); layers below `layers` are run
    frozen (greedy), each trained layer sees the detached output below it.
    `rows`: the step's rows of the phase's cached, normalised input of its first layer
    (`ffbench.frozen`): of both halves (then `pos`, `neg` are not read) or of the positives.
    """
    both = rows is not None and neg is None
    n = pos.shape[0] if rows is None else rows.shape[0] // 2 if both else rows.shape[0]
    running, first = list(running), min(layers)
    obj, p = objective or bound_objective(ff, "torch")
    ff_losses, peer_losses = {}, {}
    if rows is None:  # the frozen layers, over both halves at once
        h = frozen_forward(params[:first], running[:first], torch.cat([pos, neg]), ff, precision)
    elif both:
        h = rows
    else:
        h = torch.cat([rows, frozen_input(params[:first], running[:first], neg, ff, precision)])
    total = h.new_zeros(())
    for i in range(first, max(layers) + 1):
        width = h.shape[1]
        seen, h, running[i] = ops.trained_layer(h.detach(), params[i], running[i], ff, precision,
                                                normalized=rows is not None and i == first, layer=i)
        ff_losses[i] = obj.loss(ops.objective_rows(seen, ff, i), n * ff.positions(i), ff, p, width,
                                **objective_args(ff, labels, i))
        total = total + ff_losses[i]
        if ff.peer_weight > 0:
            peer_losses[i], running[i] = ops.peer_loss(seen[:n], running[i], ff)
            total = total + ff.peer_weight * peer_losses[i]
    return total, ff_losses, peer_losses, running


def frozen_forward(params, running, h: torch.Tensor, ff: FFSpec, precision: str) -> torch.Tensor:
    """`h` through the frozen layers `params` (no gradient; batch norm on the `running` statistics)."""
    with torch.no_grad():
        for i, p in enumerate(params):
            h = ops.layer_forward(h, p[0], p[1], ff, precision, layer=i, bn=frozen_bn(p, running[i]))
    return h


def frozen_input(params, running, h: torch.Tensor, ff: FFSpec, precision: str) -> torch.Tensor:
    """The normalised input of the layer above the frozen layers `params` (`ffbench.frozen`)."""
    with torch.no_grad():
        return ops.normalize(frozen_forward(params, running, h, ff, precision), ff.norm, ff.norm_eps)


def features(params, running, xb, ff: FFSpec, active, widths, precision: str = "fp32") -> torch.Tensor:
    """`reference.ff.readout_features`: the normalised activities of the prediction layers on
    the neutral-label pass, zeros for those not in `active` (`FFSchedule.readout_layers`)."""
    h, feats = ops.eval_rows(xb, ff), {}
    with torch.no_grad():
        for i, p in enumerate(params[: max(active) + 1]):
            h = ops.layer_forward(h, p[0], p[1], ff, precision, layer=i, bn=frozen_bn(p, running[i]))
            if i in active:
                feats[i] = ops.normalize(h, ff.norm, ff.norm_eps)
    return torch.cat([feats[i] if i in feats else h.new_zeros(xb.shape[0], widths[i]) for i in ff.prediction_layers], dim=1)


def readout_objective(params, running, readout, xb, yb, *, ff: FFSpec, active, widths, precision: str):
    """(the read-out's cross-entropy,): its gradient reaches the read-out only."""
    feats = features(params, running, xb, ff, active, widths, precision)
    return (F.cross_entropy(ops.linear(feats, readout, None, precision), yb),)


def step_objective(params, running, readout, xb, yb, negb, rows=None, *, ff: FFSpec, layers, joint: bool, active, widths,
                   precision: str, objective, labelled: bool = False):
    """One FF step's total loss and (FF losses, peer losses, read-out loss, new running means).
    `negb`: the negatives' labels, or (unsupervised) the negative images. `rows`: the step's
    rows of the phase's cached layer input, where it keeps one (`ff_objective`). With
    `joint`, the read-out's loss is part of the total. `objective`: (the layer objective's
    torch implementation, its parameters)."""
    both = rows is not None and rows.shape[0] == 2 * yb.shape[0]  # then `xb` is read by a joint read-out only
    pos = None if rows is not None else ops.overlay(xb, yb, ff)
    neg = None if both else (ops.overlay(xb, negb, ff) if ff.embeds_labels else negb)
    before = running  # a joint read-out reads the pre-update statistics, as the pre-update layers
    total, ff_losses, peer_losses, running = ff_objective(params, running, pos, neg, ff, layers, precision, objective, rows,
                                                          yb if labelled else None)
    readout_loss = total.new_zeros(())
    if joint:
        readout_loss = readout_objective(params, before, readout, xb, yb, ff=ff, active=active, widths=widths,
                                         precision=precision)[0]
        total = total + readout_loss
    return total, ff_losses, peer_losses, readout_loss, running


class FFTrainer(FFSchedule, TorchTrainer):
    STACKED = ("params", "readout")  # a pack stacks these, and trains them in place
    CARRIED = ("running",)  # a pack stacks these; every step replaces them

    def __init__(self, trial: FFTrial, data: Dataset, device: torch.device, share: FFTrainer | None = None):
        super().__init__(trial, data, device, share)
        self.init_schedule("torch", data)
        if share is not None:
            self.index, self.images = share.index, share.images
        else:
            self.index = torch.arange(self.n, device=device)
            pool = training_images(self.ff, data)  # class_split: the training images + the pool
            self.images = self.splits["train"][0] if pool is None else torch.as_tensor(pool, device=device)
        self.params = self.leaves(ff_init(trial.seed, data.train.x.shape[1], trial.hidden, self.ff))
        self.running = [torch.as_tensor(r, device=device) for r in initial_running(self.ff, trial.hidden)]
        self.readout = None
        if self.ff.prediction == "softmax":
            feats = sum(trial.hidden[i] for i in self.ff.prediction_layers)
            self.readout = torch.zeros((NUM_CLASSES, feats), device=device, requires_grad=True)
        self.layer_opts: dict[tuple[int, ...], Optimizer] = {}  # a layer's optimiser, kept across episodes

    # ------------------------------------------------------------------ phases
    def begin_phase(self, phase: Phase) -> None:
        objective = self.setup_phase(phase)
        self.make_optimizers(phase, self)
        self._rows = None  # the phase's cached, normalised input of its first layer (`ffbench.frozen`)
        if phase.layers:
            self.plan_frozen(phase)
        self._objective = self.compile_step(phase, self, objective)

    @torch.no_grad()
    def frozen_rows(self, labels: torch.Tensor | None, out: torch.Tensor) -> torch.Tensor:
        """Into `out` (n rows): the normalised input of the phase's first layer on the training
        images with `labels` overlaid (None: the images as they are), in chunks of `eval_batch_size`."""
        x, step, below = self.splits["train"][0], self.trial.eval_batch_size, self.frozen.below
        for i in range(0, self.n, step):
            h = x[i:i + step] if labels is None else ops.overlay(x[i:i + step], labels[i:i + step], self.ff)
            out[i:i + step] = frozen_input(self.params[:below], self.running[:below], h, self.ff, self.trial.precision)
        return out

    def cached_rows(self) -> torch.Tensor | None:
        """The phase's cached rows, filled where due (timed as training): the positives' n rows
        once per phase, then (where kept) the negatives' n rows at each draw."""
        plan = self.frozen
        if plan is None or not plan.positives:
            return None
        if self._rows is None:
            self._rows = torch.empty(((1 + plan.negatives) * self.n, self.frozen.width), device=self.device)
            self.frozen_rows(self.splits["train"][1] if self.ff.embeds_labels else None, self._rows[:self.n])
        redrawn = self.frozen_negatives_due()
        if redrawn is not None:
            self.frozen_rows(redrawn, self._rows[self.n:])
        return self._rows

    def setup_phase(self, phase: Phase):
        """Enter the phase (each member of a pack) and return its step objective, not compiled
        yet; a read-out phase starts from a zero read-out."""
        self.enter_phase(phase)
        if phase.name == "readout":
            with torch.no_grad():
                self.readout.zero_()
        return self.objective(phase)

    def make_optimizers(self, phase: Phase, holder, members: int | None = None) -> None:
        """`holder.opt` (and a joint read-out's own `holder.readout_opt`) over the tensors the
        phase trains, `holder`'s: this trainer's own, or a pack's stacked ones."""
        params = [p for i in phase.layers for p in holder.params[i]]
        holder.readout_opt = None
        if phase.name == "readout":
            params = [holder.readout]
        elif self.separate_readout:
            holder.readout_opt = Optimizer(self.ff.readout_optimizer, [holder.readout], members)
        elif self.joint_readout:
            params.append(holder.readout)
        if self.per_layer_optimizers and phase.layers:  # each layer's own, across phases (`ff.layer_epochs`)
            for i in phase.layers:
                if (i,) not in holder.layer_opts:
                    holder.layer_opts[(i,)] = Optimizer(phase.optimizer, list(holder.params[i]), members)
            holder.opt = LayerOptimizers([holder.layer_opts[(i,)] for i in phase.layers])
            return
        holder.opt = holder.layer_opts.get(phase.layers) or Optimizer(phase.optimizer, params, members)
        if phase.layers:
            holder.layer_opts[phase.layers] = holder.opt

    def objective(self, phase: Phase):
        """The phase's step objective, a pure function of tensors."""
        shared = {"ff": self.ff, "active": self.readout_layers, "widths": self.trial.hidden, "precision": self.trial.precision}
        if phase.name == "readout":
            return partial(readout_objective, **shared)
        return partial(step_objective, layers=phase.layers, joint=self.joint_readout, objective=self.objective_fn,
                       labelled=OBJECTIVES.get(self.ff.objective).labelled, **shared)

    def compile_step(self, phase: Phase, holder, objective, lead: tuple[int, ...] = ()):
        """`objective` compiled (`FFBENCH_TORCH_COMPILE=1`) and warmed up on a throw-away batch
        of shape (*lead, batch, 784) with `holder`'s tensors; as it is, when not compiling."""
        objective = compiled(objective)
        if not compiling():
            return objective
        xb, yb = self.example_batch(lead)
        trained = [p for wb in holder.params for p in wb] + ([holder.readout] if holder.readout is not None else [])
        if phase.name == "readout":
            warm_up(objective, (holder.params, holder.running, holder.readout, xb, yb), trained)
        else:
            negb = yb.clone()  # not the same tensor: torch.compile guards aliasing
            if not self.ff.embeds_labels:  # the strategy's own negative images (none, pairs...), as `run_epoch` makes them
                key = torch.zeros(lead, dtype=torch.int64, device=self.device) if lead else 0
                batch = Batch(self.images, xb, yb, torch.zeros_like(yb), negb, key, key)
                negb = self.strategy.inputs(self, batch)
                if self.ff.pairs:
                    xb = self.strategy.positives(self, batch)
            rows = []  # the phase's cached layer input, where it keeps one
            if holder is self and self.frozen is not None and self.frozen.positives:
                rows = [xb.new_zeros((1 + self.frozen.negatives) * xb.shape[0], self.frozen.width)]
            warm_up(objective, (holder.params, holder.running, holder.readout, xb, yb, negb, *rows), trained)
        for opt in (holder.opt, holder.readout_opt):
            if opt is not None:
                opt.warm_up()
        return objective

    # ------------------------------------------------------------------ training
    def train_epoch(self, phase: Phase, epoch: int, lr: float):
        plan = self.epoch_plan(phase, epoch)
        sums = self.run_epoch(phase, plan, self, self._objective, lr, self.cached_rows())
        self.end_epoch(phase)
        return sums

    def epoch_plan(self, phase: Phase, epoch: int) -> EpochPlan:
        order = ops.epoch_order(self.trial.seed, epoch, self.n, self.device)[: self.steps_per_epoch * self.batch_size]
        seed, key_epoch = self.trial.seed, negatives_epoch(self.trial, epoch)
        readout_lr = lr_at(self.ff.readout_optimizer, self.phase_epoch, phase.epochs) if self.separate_readout else 0.0
        return EpochPlan(order, None if phase.name == "readout" else self._negatives(phase, epoch, order),
                         stream_key(seed, STREAM_MASK, key_epoch), stream_key(seed, STREAM_JITTER, epoch), readout_lr)

    def run_epoch(self, phase: Phase, plan: EpochPlan, holder, objective, lr: float | list[float],
                  cached: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The epoch's steps on `holder`'s tensors (this trainer's, or a pack's: then `plan`, the
        objective and the sums have a leading member axis); the mean losses, on the device.
        `cached`: the phase's cached layer input (`cached_rows`), where it keeps one."""
        x, y = self.splits["train"]
        lead, b, jitter, depth = plan.order.shape[:-1], self.batch_size, self.trial.data.jitter, len(holder.params)
        sums = {"ff_loss": torch.zeros(*lead, depth, device=self.device),
                "peer_loss": torch.zeros(*lead, depth, device=self.device),
                "readout_loss": torch.zeros(*lead, 1, device=self.device),
                "collisions": torch.zeros(*lead, 1, device=self.device)}
        # the images are not read where the cache holds both halves and no read-out trains with the layers
        skip_images = cached is not None and cached.shape[0] == 2 * self.n and not self.joint_readout
        holder.opt.plan_epoch(lr, self.steps_per_epoch)
        if holder.readout_opt is not None:
            holder.readout_opt.plan_epoch(plan.readout_lr, self.steps_per_epoch)
        for s in range(self.steps_per_epoch):
            at = slice(s * b, (s + 1) * b)
            idx = plan.order[..., at]
            yb = y[idx]
            xb = None if skip_images else ops.batch_images(x, idx, plan.jitter_key, jitter, self.image)
            if phase.name == "readout":
                loss = objective(holder.params, holder.running, holder.readout, xb, yb)[0]
                sums["readout_loss"][..., 0] += loss.detach()
            else:
                negb = plan.negatives[..., at]
                if self.reports_collisions:
                    sums["collisions"][..., 0] += (negb == yb).sum(dim=-1)
                if not self.ff.embeds_labels:  # the negative images themselves
                    batch = Batch(self.images, xb, yb, idx, negb, plan.mask_key, plan.jitter_key)
                    negb = self.strategy.inputs(self, batch)
                    if self.ff.pairs:  # the positives too: the strategy's pairs
                        xb = self.strategy.positives(self, batch)
                at = None if cached is None else frozen.row_index(idx, self.n, cached.shape[0] == 2 * self.n, torch.cat)
                rows = [] if cached is None else [cached if at is None else cached[at]]
                loss, ff_losses, peer_losses, readout_loss, holder.running = objective(
                    holder.params, holder.running, holder.readout, xb, yb, negb, *rows)
                for i in phase.layers:
                    sums["ff_loss"][..., i] += ff_losses[i].detach()
                    if self.ff.peer_weight > 0:
                        sums["peer_loss"][..., i] += peer_losses[i].detach()
                sums["readout_loss"][..., 0] += readout_loss.detach()
            backward(loss)
            holder.opt.step()
            if holder.readout_opt is not None:
                holder.readout_opt.step()
        return {k: v / self.steps_per_epoch for k, v in sums.items()}

    @torch.no_grad()
    def _negatives(self, phase: Phase, epoch: int, order: torch.Tensor) -> torch.Tensor:
        """The negative of each position of the epoch's order (`reference.negatives.Draws`)."""
        if self.by_position:
            self.negatives_seconds = None
            return self.strategy.sample_by_position(self, negatives_epoch(self.trial, epoch), order)
        return self.sample_negatives(phase, epoch)[order]

    def wait(self, value) -> None:
        self.sync()

    def hard_scores(self, phase: Phase) -> torch.Tensor:
        """(n, 10) label scores of the training set at the current weights, over the layers
        `reference.negatives.score_layers` names (a scored strategy's input)."""
        layers, step, x = score_layers(self.ff, self.score_upto(phase)), self.trial.eval_batch_size, self.splits["train"][0]
        return torch.cat([self.label_scores(x[i:i + step], layers) for i in range(0, self.n, step)])

    def epoch_losses(self, device_losses) -> dict[str, float | dict[int, float]]:
        depth = len(self.params)
        flat = torch.cat([device_losses[k] for k in ("ff_loss", "peer_loss", "readout_loss", "collisions")]).tolist()
        # collisions per step / rows per step
        return self.epoch_record(flat[:depth], flat[depth:2 * depth], flat[-2], flat[-1] / self.batch_size)

    def state(self) -> dict:
        out = {}
        for i, p in enumerate(self.params):
            out.update({f"{k}{i}": to_numpy(t) for k, t in zip(STATE_KEYS, p)})
            if len(p) > 2:
                out[f"bn{i}"] = to_numpy(self.running[i])
        if self.readout is not None:
            out["readout"] = to_numpy(self.readout)
        return out

    def load_state(self, state: dict) -> None:
        with torch.no_grad():
            for i, p in enumerate(self.params):
                for k, t in zip(STATE_KEYS, p):
                    t.copy_(torch.as_tensor(state[f"{k}{i}"]))
                if len(p) > 2:
                    self.running[i] = torch.as_tensor(state[f"bn{i}"], device=self.device)
            if self.readout is not None:
                self.readout.copy_(torch.as_tensor(state["readout"]))
        self.trained, self.readout_trained = set(range(len(self.params))), True

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def label_scores(self, xb: torch.Tensor, layers: list[int]) -> torch.Tensor:
        """(B, 10) summed objective scores over `layers` with each label overlaid (`reference.ff.label_scores`)."""
        ff, (obj, p) = self.ff, self.objective_fn
        if scores_classes(ff):  # one label-free pass (`reference.ff.label_scores`)
            h, score = xb, 0.0
            for i, q in enumerate(self.params[: max(layers) + 1]):
                h = ops.layer_forward(h, q[0], q[1], ff, self.trial.precision, layer=i, bn=frozen_bn(q, self.running[i]))
                if i in layers:
                    score = score + obj.class_scores(h, ff, p)
            return score
        first = self.params[0]
        h = ops.first_layer_all_labels(xb, first[0], first[1], ff, self.trial.precision,
                                       frozen_bn(first, self.running[0])).reshape(NUM_CLASSES * xb.shape[0], -1)
        score = ops.image_scores(obj.score(ops.objective_rows(h, ff, 0), ff, p), ff, 0) if 0 in layers else 0.0
        for i, q in enumerate(self.params[1: max(layers) + 1], start=1):
            h = ops.layer_forward(h, q[0], q[1], ff, self.trial.precision, layer=i, bn=frozen_bn(q, self.running[i]))
            if i in layers:
                score = score + ops.image_scores(obj.score(ops.objective_rows(h, ff, i), ff, p), ff, i)
        return score.view(NUM_CLASSES, xb.shape[0]).T

    @torch.no_grad()
    def predict(self, xb: torch.Tensor) -> torch.Tensor:
        if self.readout is not None:
            feats = features(self.params, self.running, xb, self.ff, self.readout_layers, self.trial.hidden,
                             self.trial.precision)
            return ops.linear(feats, self.readout, None, self.trial.precision).argmax(dim=1)
        return self.label_scores(xb, [i for i in self.ff.prediction_layers if i in self.trained]).argmax(dim=1)
