"""Forward-Forward training in Keras 3: a custom FF step written in `keras.ops` with the
reference's analytic gradients, so the same code runs on every Keras backend.

Data, order and negatives are backend tensors computed with the shared hash; the step
makes no host sync.
"""

from __future__ import annotations

import numpy as np
from ffbench_backends.keras import ops as kops
from ffbench_backends.keras.common import KerasTrainer
from ffbench_backends.keras.optim import SpecOptimizer
from keras import ops

from ffbench.backend import FFSchedule, Phase
from ffbench.data import Dataset
from ffbench.reference.ff import PEER_INIT
from ffbench.reference.init import stack_init
from ffbench.reference.optim import lr_at
from ffbench.reference.rng import STREAM_NEGATIVES, STREAM_ORDER, stream_key
from ffbench.spec import NUM_CLASSES, FFTrial


class FFTrainer(FFSchedule, KerasTrainer):
    def __init__(self, trial: FFTrial, data: Dataset):
        super().__init__(trial, data)
        self.ff = trial.ff
        self.params = self.variables(stack_init(trial.seed, [data.train.x.shape[1], *trial.hidden], self.ff.init), "ff")
        self.running = [ops.full((h,), PEER_INIT, dtype="float32") for h in trial.hidden]
        self.readout = None
        if self.ff.prediction == "softmax":
            import keras
            feats = sum(trial.hidden[i] for i in self.ff.prediction_layers)
            self.readout = keras.Variable(np.zeros((feats, NUM_CLASSES), np.float32), name="readout_kernel")
        self.trained: set[int] = set()
        self.readout_trained = False

    def begin_phase(self, phase: Phase) -> None:
        self.phase, self.phase_epoch = phase, 0
        self.joint_readout = self.readout is not None and self.ff.readout_phase == "joint" and bool(phase.layers)
        self.opt = SpecOptimizer(phase.optimizer)
        self.readout_opt = SpecOptimizer(self.ff.readout_optimizer) if self.joint_readout and self.ff.readout_optimizer else None

    def train_epoch(self, phase: Phase, epoch: int, lr: float):
        x, y = self.splits["train"]
        order = kops.epoch_order(stream_key(self.trial.seed, STREAM_ORDER, epoch), self.index)
        neg_epoch = epoch if self.ff.negatives_refresh == "epoch" else 0
        wrong = kops.wrong_labels(stream_key(self.trial.seed, STREAM_NEGATIVES, neg_epoch), self.index, y)
        self.opt.set_lr(lr)
        if self.readout_opt is not None:
            self.readout_opt.set_lr(lr_at(self.readout_opt.spec, self.phase_epoch, phase.epochs))
        self.phase_epoch += 1
        depth = len(self.params)
        sums = {"ff_loss": [ops.zeros(())] * depth, "peer_loss": [ops.zeros(())] * depth, "readout_loss": ops.zeros(())}
        for s in range(self.steps_per_epoch):
            idx = order[s * self.batch_size:(s + 1) * self.batch_size]
            xb, yb = ops.take(x, idx, axis=0), ops.take(y, idx, axis=0)
            if phase.name == "readout":
                loss, grad = self._readout_grad(xb, yb)
                self.opt.apply([grad], [self.readout])
                sums["readout_loss"] = sums["readout_loss"] + loss
            else:
                self._ff_step(xb, yb, ops.take(wrong, idx, axis=0), phase, sums)
        self.trained.update(phase.layers)
        self.readout_trained |= phase.name == "readout" or self.joint_readout
        return sums

    def _ff_step(self, xb, yb, wrong_b, phase: Phase, sums) -> None:
        ff = self.ff
        h_pos, h_neg = kops.overlay(xb, yb, ff), kops.overlay(xb, wrong_b, ff)
        readout_grad = self._readout_grad(xb, yb) if self.joint_readout else None  # at the pre-update weights
        grads, variables = [], []
        for i in range(max(phase.layers) + 1):
            kernel, bias = self.params[i]
            if i not in phase.layers:  # frozen (greedy)
                h_pos, h_neg = kops.layer_forward(h_pos, kernel, bias, ff), kops.layer_forward(h_neg, kernel, bias, ff)
                continue
            loss, peer, _, h, dk, db, running = kops.layer_step(h_pos, h_neg, kernel, bias, ff, self.running[i])
            if ff.peer_weight > 0:
                self.running[i] = running
                sums["peer_loss"][i] = sums["peer_loss"][i] + peer
            sums["ff_loss"][i] = sums["ff_loss"][i] + loss
            grads += [dk, db]
            variables += [kernel, bias]
            h_pos, h_neg = h[: xb.shape[0]], h[xb.shape[0]:]
        if readout_grad is not None:
            sums["readout_loss"] = sums["readout_loss"] + readout_grad[0]
            if self.readout_opt is not None:
                self.readout_opt.apply([readout_grad[1]], [self.readout])
            else:
                grads.append(readout_grad[1])
                variables.append(self.readout)
        self.opt.apply(grads, variables)

    def features(self, xb):
        ff, feats = self.ff, []
        h = kops.overlay(xb, None, ff)
        for i, (kernel, bias) in enumerate(self.params[: max(ff.prediction_layers) + 1]):
            h = kops.layer_forward(h, kernel, bias, ff)
            if i in ff.prediction_layers:
                feats.append(kops.normalize(h, ff.norm, ff.norm_eps))
        return ops.concatenate(feats, axis=1)

    def _readout_grad(self, xb, yb):
        feats = self.features(xb)
        loss, dlogits = kops.softmax_xent(ops.matmul(feats, self.readout), yb)
        return loss, ops.matmul(ops.transpose(feats), dlogits)

    def epoch_losses(self, device_losses) -> dict[str, float | dict[int, float]]:
        steps = self.steps_per_epoch
        out: dict[str, float | dict[int, float]] = {}
        if self.phase.layers:
            out["ff_loss"] = {i: float(ops.convert_to_numpy(device_losses["ff_loss"][i])) / steps for i in self.phase.layers}
            if self.ff.peer_weight > 0:
                out["peer_loss"] = {i: float(ops.convert_to_numpy(device_losses["peer_loss"][i])) / steps for i in self.phase.layers}
        if self.phase.name == "readout" or self.joint_readout:
            out["readout_loss"] = float(ops.convert_to_numpy(device_losses["readout_loss"])) / steps
        return out

    def state(self) -> dict:
        out = {}
        for i, (k, b) in enumerate(self.params):
            out[f"W{i}"], out[f"b{i}"] = np.asarray(ops.convert_to_numpy(k)).T.copy(), np.asarray(ops.convert_to_numpy(b))
        if self.readout is not None:
            out["readout"] = np.asarray(ops.convert_to_numpy(self.readout)).T.copy()
        return out

    def load_state(self, state: dict) -> None:
        for i, (k, b) in enumerate(self.params):
            k.assign(state[f"W{i}"].T), b.assign(state[f"b{i}"])
        if self.readout is not None:
            self.readout.assign(state["readout"].T)
        self.trained, self.readout_trained = set(range(len(self.params))), True

    def predict(self, xb):
        ff = self.ff
        if self.readout is not None:
            return ops.argmax(ops.matmul(self.features(xb), self.readout), axis=1)
        layers = [i for i in ff.prediction_layers if i in self.trained]
        h, score = kops.overlay_all_labels(xb, ff), 0.0
        for i, (kernel, bias) in enumerate(self.params[: max(layers) + 1]):
            h = kops.layer_forward(h, kernel, bias, ff)
            if i in layers:
                score = score + kops.goodness(h, ff.goodness)
        score = ops.reshape(score, (NUM_CLASSES, xb.shape[0]))
        return ops.cast(ops.argmax(score, axis=0) if ff.sign == "max_ssq" else ops.argmin(score, axis=0), "int32")
