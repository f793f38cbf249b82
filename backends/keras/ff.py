"""Forward-Forward training in Keras 3: a custom FF step written in `keras.ops` (the layer's
analytic gradient, the objective's by autodiff: `ops.layer_step`), so the same code runs on
every Keras backend.

Data, order and negatives are backend tensors computed with the shared hash; an epoch
makes no host sync. The whole epoch, every step (every layer, the optimiser, the read-out)
and its batch gathers (`epoch_body`), is one compiled program per phase (`compile.Step`:
a `jax.jit` loop on JAX, an XLA `tf.function` loop on TensorFlow).
"""

from __future__ import annotations

import keras
import numpy as np
from ffbench_backends.keras import compile as kcompile
from ffbench_backends.keras import ops as kops
from ffbench_backends.keras.common import EpochPlan, KerasTrainer, ordered
from ffbench_backends.keras.optim import LayerOptimizers, SpecOptimizer
from keras import ops

from ffbench import frozen
from ffbench.backend import FFSchedule, Phase
from ffbench.data import Dataset
from ffbench.reference import rng
from ffbench.reference.ff import STATE_KEYS, frozen_bn, initial_running
from ffbench.reference.init import ff_init
from ffbench.reference.negatives import negatives_epoch, score_layers, training_images
from ffbench.reference.optim import lr_at
from ffbench.spec import NUM_CLASSES, FFTrial
from ffbench.variants import Batch
from ffbench.variants.objectives import label_args, scores_classes


class FFTrainer(FFSchedule, KerasTrainer):
    def __init__(self, trial: FFTrial, data: Dataset, share: FFTrainer | None = None):
        super().__init__(trial, data, share)
        self.init_schedule("keras", data)
        if share is not None:  # a pack's members share the data on the device
            self.images = share.images
        else:
            pool = training_images(self.ff, data)  # class_split: the training images + the pool
            self.images = self.splits["train"][0] if pool is None else ops.convert_to_tensor(pool)
        self.params = self.variables(ff_init(trial.seed, data.train.x.shape[1], trial.hidden, self.ff), "ff")
        self.running = [keras.Variable(r, name=f"running{i}", trainable=False)
                        for i, r in enumerate(initial_running(self.ff, trial.hidden))]
        self.readout = None
        if self.ff.prediction == "softmax":
            feats = sum(trial.hidden[i] for i in self.ff.prediction_layers)
            self.readout = keras.Variable(np.zeros((feats, NUM_CLASSES), np.float32), name="readout_kernel")
        self._layer_opts: dict[tuple[int, ...], SpecOptimizer] = {}  # a layer's optimiser, kept across episodes
        self._steps: dict[tuple, object] = {}  # compiled step programs, by (layers, read-out only)

    def begin_phase(self, phase: Phase) -> None:
        self.precompile(phase, self.setup_phase(phase, alone=True))

    def setup_phase(self, phase: Phase, alone: bool = False) -> kcompile.Step:
        """The phase's optimisers and step program (not compiled yet): reused across phases
        of the same layers, fresh with a fresh read-out optimiser. `alone`: not in a pack (only
        then are the frozen layers' outputs kept, `ffbench.frozen`)."""
        self.enter_phase(phase)
        self._rows = None  # the phase's cached, normalised input of its first layer (`ffbench.frozen`)
        if alone and phase.layers:
            self.plan_frozen(phase)
        if self.per_layer_optimizers and phase.layers:  # each layer's own, across phases (`ff.layer_epochs`)
            for i in phase.layers:
                if (i,) not in self._layer_opts:
                    self._layer_opts[(i,)] = SpecOptimizer(phase.optimizer)
            self.opt = LayerOptimizers([self._layer_opts[(i,)] for i in phase.layers],
                                       [len(self.params[i]) for i in phase.layers])
        else:
            self.opt = self._layer_opts[phase.layers] if phase.layers in self._layer_opts else SpecOptimizer(phase.optimizer)
            if phase.layers:
                self._layer_opts[phase.layers] = self.opt
        self.readout_opt = SpecOptimizer(self.ff.readout_optimizer) if self.joint_readout and self.ff.readout_optimizer else None
        if phase.name == "readout":  # each read-out phase starts from zero
            self.readout.assign(np.zeros(self.readout.shape, np.float32))
        trains = [self.readout] if phase.name == "readout" else [v for i in phase.layers for v in self.params[i]]
        if self.joint_readout and self.readout_opt is None:
            trains.append(self.readout)
        kcompile.build_optimizer(self.opt, trains)
        if self.readout_opt is not None:
            kcompile.build_optimizer(self.readout_opt, [self.readout])
        key = (phase.layers, phase.name == "readout", self.readout_layers, self.kept())
        if key not in self._steps or self.readout_opt is not None:  # a fresh read-out optimiser: a fresh program
            fn = self._readout_core if phase.name == "readout" else self._ff_core
            state = [v for kb in self.params for v in kb] + self.running + ([self.readout] if self.readout is not None else [])
            state += list(self.opt.variables) + (list(self.readout_opt.variables) if self.readout_opt is not None else [])
            self._steps[key] = kcompile.Step(fn, state)
        self._step = self._steps[key]
        return self._step

    def start_epoch(self, phase: Phase, lr: float) -> None:
        """The epoch's learning rates, into the optimisers' variables."""
        self.opt.set_lr(lr)
        if self.readout_opt is not None:
            self.readout_opt.set_lr(lr_at(self.readout_opt.spec, self.phase_epoch, phase.epochs))

    def kept(self) -> str | None:
        """What the phase caches of its first layer's input: "both" halves, the "positives", or None."""
        plan = self.frozen
        return None if plan is None or not plan.positives else "both" if plan.negatives else "positives"

    def frozen_rows(self, labels):
        """(n, width): the normalised input of the phase's first layer on the training images
        with `labels` overlaid (None: the images as they are), per chunk of `eval_batch_size`."""
        x, step, below = self.splits["train"][0], self.trial.eval_batch_size, self.frozen.below

        def rows(xb, lb):
            h = xb if lb is None else kops.overlay(xb, lb, self.ff)
            for i, q in enumerate(self.params[:below]):
                h = kops.layer_forward(h, q[0], q[1], self.ff, layer=i, bn=frozen_bn(q, self.running[i]))
            return kops.normalize(h, self.ff.norm, self.ff.norm_eps)
        fn = self.reader(("frozen", below), rows)
        return ops.concatenate([fn(x[i:i + step], None if labels is None else labels[i:i + step])
                                for i in range(0, self.n, step)], axis=0)

    def epoch_plan(self, phase: Phase, epoch: int) -> EpochPlan:
        if self.kept() and self._rows is None:  # the positives' rows, once per phase (timed as training)
            self._rows = self.frozen_rows(self.splits["train"][1] if self.ff.embeds_labels else None)
        order, negatives = (self.epoch_order(epoch), None) if phase.name == "readout" else self._negatives(phase, epoch)
        return EpochPlan(order, negatives, rng.stream_key(self.trial.seed, rng.STREAM_MASK, negatives_epoch(self.trial, epoch)),
                         rng.stream_key(self.trial.seed, rng.STREAM_JITTER, epoch))

    def zero_plan(self, phase: Phase) -> EpochPlan:
        return EpochPlan.zeros(self.steps_per_epoch * self.batch_size, negatives=phase.name != "readout")

    def epoch_sums(self, plan: EpochPlan) -> dict:
        return {"stats": ops.zeros((*plan.members, 2 * len(self.params) + 1)),
                "collisions": ops.zeros(plan.members, dtype="int32")}

    def epoch_body(self, phase: Phase, plan: EpochPlan):
        ff, members, rows = self.ff, plan.members, self.batch_size * plan.width

        def body(s, sums, d, apply):
            idx, xb, yb = self.batch_at(s, d, rows)
            if phase.name == "readout":
                return {**sums, "stats": sums["stats"] + apply(xb, yb)}
            negb, collisions = ops.slice(d["negatives"], (s * rows,), (rows,)), sums["collisions"]
            if self.reports_collisions:
                collisions = collisions + ops.sum(ops.reshape(ops.cast(negb == yb, "int32"), (*members, self.batch_size)),
                                                  axis=-1)
            if ff.recurrent is not None:  # the label clamped at the top: the images and both labels
                return {"stats": sums["stats"] + apply(xb, negb, xb, yb), "collisions": collisions}
            kept = self.kept()
            if kept is not None:  # the cached rows of the first layer's input (`ffbench.frozen`)
                at = frozen.row_index(idx, self.n, kept == "both", ops.concatenate)
                cached = d["cached"] if at is None else ops.take(d["cached"], at, axis=0)
            if kept == "both":
                return {"stats": sums["stats"] + apply(cached, None, xb, yb), "collisions": collisions}
            if ff.embeds_labels:
                h_neg = kops.overlay(xb, negb, ff)
            else:  # the strategy's own negative images (and a pairing strategy's positives)
                batch = Batch(d["images"], xb, yb, idx, negb, d["mask_key"], d["jitter_key"])
                h_neg = self.strategy.inputs(self, batch)
                if ff.pairs:
                    xb = self.strategy.positives(self, batch)
            h_pos = cached if kept else kops.overlay(xb, yb, ff)
            return {"stats": sums["stats"] + apply(h_pos, h_neg, xb, yb), "collisions": collisions}
        return body

    def epoch_inputs(self, plan: EpochPlan) -> dict:
        out = {**super().epoch_inputs(plan), "images": self.images}
        if self.kept():  # compiling ahead (a zero plan, nothing cached yet): zeros of the rows' shape
            out["cached"] = self._rows if self._rows is not None else ops.zeros(
                ((1 + self.frozen.negatives) * self.n, self.frozen.width))
        return out

    def all_variables(self) -> list[keras.Variable]:
        return [v for kb in self.params for v in kb] + self.running + ([self.readout] if self.readout is not None else [])

    def _negatives(self, phase: Phase, epoch: int):
        """The epoch's order and the negative of each of its positions
        (`reference.negatives.Draws`): one compiled call (and, for a fresh draw of the
        samples' negatives, another)."""
        if self.by_position:
            self.negatives_seconds = None
            return self.strategy.sample_by_position(self, negatives_epoch(self.trial, epoch), epoch)
        drawn = self.sample_negatives(phase, epoch)
        redrawn = self.frozen_negatives_due()
        if redrawn is not None:  # the negatives' rows, at each draw
            self._rows = ops.concatenate([self._rows[: self.n], self.frozen_rows(redrawn)], axis=0)
        return kcompile.function(ordered, self.steps_per_epoch * self.batch_size)(self.order_key(epoch), self.index, drawn)

    def wait(self, value) -> None:
        ops.convert_to_numpy(value[:1])

    def hard_scores(self, phase: Phase):
        """(n, 10) label scores of the training set at the current weights, over the layers
        `reference.negatives.score_layers` names (a scored strategy's input)."""
        x, layers, step = self.splits["train"][0], score_layers(self.ff, self.score_upto(phase)), self.trial.eval_batch_size
        score = self.reader(("scores", tuple(layers)), lambda xb: self.label_scores(xb, layers))
        return ops.concatenate([score(x[i:i + step]) for i in range(0, self.n, step)], axis=0)

    def _ff_core(self, h_pos, h_neg, xb, yb):
        """One FF step of the phase's layers on overlaid batches (the negatives: overlaid
        images, or the negative images themselves). Returns this step's losses as one
        vector: FF loss per layer, peer loss per layer, read-out loss."""
        ff, layers, depth = self.ff, self.phase.layers, len(self.params)
        zero = ops.zeros(())
        ff_loss, peer_loss = [zero] * depth, [zero] * depth
        readout_grad = self._readout_grad(xb, yb) if self.joint_readout else None  # at the pre-update weights
        grads, variables = [], []
        kept = self.kept()  # h_pos: the cached, normalised input of the first layer (both halves: h_neg is None)
        for i in range(max(layers) + 1):
            p = self.params[i]
            if i not in layers:  # frozen (greedy)
                bn = frozen_bn(p, self.running[i])
                h_pos = h_pos if kept else kops.layer_forward(h_pos, p[0], p[1], ff, layer=i, bn=bn)
                h_neg = h_neg if kept == "both" else kops.layer_forward(h_neg, p[0], p[1], ff, layer=i, bn=bn)
                continue
            x_pos, xn = h_pos, None  # xn: the cached input, normalised (both halves: x_pos is not read)
            if kept and i == min(layers):
                x_pos, xn = (None, h_pos) if kept == "both" else (
                    h_pos, ops.concatenate([h_pos, kops.normalize(h_neg, ff.norm, ff.norm_eps)], axis=0))
            ff_loss[i], peer, _, h, layer_grads, running = kops.layer_step(x_pos, h_neg, p, ff, self.running[i],
                                                                             self.objective_fn, xn, i, **label_args(ff, yb))
            if ff.peer_weight > 0 or len(p) > 2:
                self.running[i].assign(running)
                peer_loss[i] = peer
            grads += layer_grads
            variables += list(p)
            h_pos, h_neg = h[: xb.shape[0]], h[xb.shape[0]:]
        readout_loss = self.apply_step(grads, variables, readout_grad)
        return ops.stack(ff_loss + peer_loss + [readout_loss])

    def apply_step(self, grads: list, variables: list, readout_grad):
        """One optimiser step of the layers' `grads` and, with a joint read-out, the read-out's
        (its own optimiser, or the layers'); returns the read-out's loss (0 without one)."""
        if readout_grad is None:
            self.opt.apply(grads, variables)
            return ops.zeros(())
        if self.readout_opt is not None:
            self.readout_opt.apply([readout_grad[1]], [self.readout])
        else:
            grads, variables = grads + [readout_grad[1]], variables + [self.readout]
        self.opt.apply(grads, variables)
        return readout_grad[0]

    def _readout_core(self, xb, yb):
        loss, grad = self._readout_grad(xb, yb)
        self.opt.apply([grad], [self.readout])
        return ops.concatenate([ops.zeros((2 * len(self.params),)), ops.reshape(loss, (1,))])

    def features(self, xb):
        """`reference.ff.readout_features` of `readout_layers` (zeros for the other prediction layers)."""
        ff, active, feats = self.ff, self.readout_layers, {}
        h = kops.eval_rows(xb, ff)
        for i, q in enumerate(self.params[: max(active) + 1]):
            h = kops.layer_forward(h, q[0], q[1], ff, layer=i, bn=frozen_bn(q, self.running[i]))
            if i in active:
                feats[i] = kops.normalize(h, ff.norm, ff.norm_eps)
        return ops.concatenate([feats[i] if i in feats else ops.zeros((ops.shape(xb)[0], self.trial.hidden[i]))
                                for i in ff.prediction_layers], axis=1)

    def _readout_grad(self, xb, yb):
        feats = self.features(xb)
        loss, dlogits = kops.softmax_xent(ops.matmul(feats, self.readout), yb)
        return loss, ops.matmul(ops.transpose(feats), dlogits)

    def epoch_losses(self, device_losses) -> dict[str, float | dict[int, float]]:
        steps, depth = self.steps_per_epoch, len(self.params)
        stats = np.asarray(ops.convert_to_numpy(device_losses["stats"]), np.float64) / steps
        collisions = (float(ops.convert_to_numpy(device_losses["collisions"])) / (steps * self.batch_size)
                      if self.reports_collisions else None)  # read back only where it is recorded
        return self.epoch_record(stats[:depth], stats[depth:2 * depth], stats[-1], collisions)

    def state(self) -> dict:
        out, host = {}, lambda t: np.array(ops.convert_to_numpy(t))  # noqa: E731
        for i, p in enumerate(self.params):
            out[f"W{i}"] = kops.from_kernel(host(p[0]))
            out.update({f"{k}{i}": host(t) for k, t in zip(STATE_KEYS[1:], p[1:])})
            if len(p) > 2:
                out[f"bn{i}"] = host(self.running[i])
        if self.readout is not None:
            out["readout"] = np.asarray(ops.convert_to_numpy(self.readout)).T.copy()
        return out

    def load_state(self, state: dict) -> None:
        for i, p in enumerate(self.params):
            p[0].assign(kops.to_kernel(state[f"W{i}"]))
            for k, t in zip(STATE_KEYS[1:], p[1:]):
                t.assign(state[f"{k}{i}"])
            if len(p) > 2:
                self.running[i].assign(state[f"bn{i}"])
        if self.readout is not None:
            self.readout.assign(state["readout"].T)
        self.trained, self.readout_trained = set(range(len(self.params))), True

    def label_scores(self, xb, layers: list[int]):
        """(B, 10) summed objective scores over `layers` with each label overlaid (`reference.ff.label_scores`)."""
        ff, (obj, p) = self.ff, self.objective_fn
        if scores_classes(ff):  # one label-free pass (`reference.ff.label_scores`)
            h, score = xb, 0.0
            for i, q in enumerate(self.params[: max(layers) + 1]):
                h = kops.layer_forward(h, q[0], q[1], ff, layer=i, bn=frozen_bn(q, self.running[i]))
                if i in layers:
                    score = score + obj.class_scores(h, ff, p)
            return score
        first = self.params[0]
        h = ops.reshape(kops.first_layer_all_labels(xb, first[0], first[1], ff, frozen_bn(first, self.running[0])),
                        (NUM_CLASSES * xb.shape[0], -1))
        score = kops.image_scores(obj.score(kops.objective_rows(h, ff, 0), ff, p), ff, 0) if 0 in layers else 0.0
        for i, q in enumerate(self.params[1: max(layers) + 1], start=1):
            h = kops.layer_forward(h, q[0], q[1], ff, layer=i, bn=frozen_bn(q, self.running[i]))
            if i in layers:
                score = score + kops.image_scores(obj.score(kops.objective_rows(h, ff, i), ff, p), ff, i)
        return ops.transpose(ops.reshape(score, (NUM_CLASSES, xb.shape[0])))

    def predict_key(self) -> tuple:
        return (self.readout_layers if self.readout is not None else None,
                tuple(i for i in self.ff.prediction_layers if i in self.trained))

    def predict(self, xb):
        if self.readout is not None:
            return ops.argmax(ops.matmul(self.features(xb), self.readout), axis=1)
        return ops.cast(ops.argmax(self.label_scores(xb, [i for i in self.ff.prediction_layers if i in self.trained]), axis=1),
                        "int32")
