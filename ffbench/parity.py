"""The primitives of `ffbench check`: a comparison and its tolerance, the synthetic data, and
training one trial through a backend's real trainer or through the reference.

Every quantity is computed by each backend in float32 and by the reference in float64 on the
same spec, initial weights and batch, and compared by
    max_abs = max |backend - reference|,   max_rel = max_abs / max |reference|
(relative to the tensor's scale, so near-zero entries do not blow up). A quantity passes if
max_rel <= its tolerance (TOLERANCES).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ffbench.data import Dataset, Split
from ffbench.geometry import MNIST
from ffbench.reference import ff as RF
from ffbench.reference import negatives as RN
from ffbench.reference import optim, rng
from ffbench.reference import recurrent as RR
from ffbench.reference import train as RT
from ffbench.reference.init import conv_init, ff_init, stack_init
from ffbench.reference.optim import lr_at
from ffbench.spec import FFTrial
from ffbench.variants import NEGATIVES, OBJECTIVES

# quantity kind -> tolerance on max_rel (float32 against a float64 reference). Measured on
# CPU (torch 2.13, jax 0.10): goodness/loss/grad/logits <= 5e-7, params@1 <= 9e-6,
# params@N with SGD <= 3.4e-7, params@N with Adam <= 5.4e-3, grad/fd <= 6.4e-7 (the built-in and
# the example plugin's objectives).
TOLERANCES = {
    "goodness": 1e-5,
    "loss": 1e-5,
    "grad": 1e-5,
    # a backend's autodiff gradient against float64 central differences of the reference's
    # forward objective (`ffbench.gradcheck`)
    "grad/fd": 1e-5,
    # a conv layer's gradient sums products over every position of every image, of both signs;
    # the float32 rounding of the small sum is larger than a dense layer's: the reference itself
    # in float32 is 1.0e-5 from float64 on `check_conv.CHECK_CONV`'s second layer (SymBa per
    # position), the backends <= 2.0e-5.
    "grad/conv": 1e-4,
    # a batch-normalised conv layer (`check_conv.CHECK_CONV_CWC_BN`): batch norm removes a shift common
    # to a channel's map, so where the ReLU passes a whole map the conv bias's gradient is a sum
    # that cancels to ~0, and what is left is float32 rounding; torch's float32 bias gradient of
    # its first layer is 2e-5 (its own float64 as the truth) to 2e-4 (the check's batch) of the
    # largest, NumPy's pairwise float32 sum 3e-6 (that bias only; the layer's other gradients
    # keep grad/conv). N strict SGD steps of those layers: <= 1.5e-5 (every parameter). torch
    # adds such a layer's bias apart from its conv and writes its batch norm in torch ops: on an
    # AVX2 CPU oneDNN's fused bias gradient and the native batch norm's backward left noise that
    # moved 2-epoch params 2.9e-4 and 1.1e-3 from the reference (now <= 5e-6).
    "grad/bn": 1e-3,
    "params@N/bn": 1e-4,
    "logits": 1e-5,
    "params@1": 1e-4,
    # N steps of SGD with momentum and weight decay: exact up to float32 rounding.
    "params@N": 1e-5,
    # N steps of Adam: Adam scales each gradient by 1/sqrt(v), so an entry whose gradient is
    # near zero moves by about lr with the sign of its rounding error; float32 against
    # float64 can flip it. The strict SGD run checks the same plumbing tightly.
    "params@N/adam": 1e-2,
    "predict": 0.0,  # the fraction of test images whose predicted class differs
    "e2e": 1e-3,  # per-epoch mean FF loss of a real training run (smoke config) against the reference
}
# The optimiser of the strict training checks (besides the spec's own).
STRICT_OPT = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3}


@dataclass
class Comparison:
    backend: str
    quantity: str
    kind: str
    max_abs: float
    max_rel: float
    # kind "skipped": why the backend does not compute this (not a failure); kind "refused":
    # why the check could not run it (a failure)
    note: str | None = None

    @property
    def tolerance(self) -> float:
        return TOLERANCES.get(self.kind, 0.0)

    @property
    def passed(self) -> bool:
        return self.kind == "skipped" or (bool(np.isfinite(self.max_rel)) and self.max_rel <= self.tolerance)


def compare(backend: str, quantity: str, kind: str, got, ref) -> Comparison:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return Comparison(backend, quantity, kind, float("inf"), float("inf"))
    diff = float(np.max(np.abs(got - ref))) if got.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    return Comparison(backend, quantity, kind, diff, diff / scale if scale > 0 else diff)


def skipped(backend: str, quantity: str, reason: str) -> Comparison:
    return Comparison(backend, quantity, "skipped", float("nan"), float("nan"), reason)


def refused(backend: str, quantity: str, reason: str) -> Comparison:
    return Comparison(backend, quantity, "refused", float("inf"), float("inf"), reason)


def synthetic_batch(n: int, d: int = 784, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-like inputs: 80% zeros, the rest uniform in (0, 1]; uniform labels."""
    g = np.random.default_rng(seed)
    x = (g.random((n, d)) * (g.random((n, d)) < 0.2)).astype(np.float32)
    return x, g.integers(0, 10, n).astype(np.int64)


def dataset(x, y, classes: list[int] | None = None, image=MNIST, name: str = "mnist") -> Dataset:
    """Training (and test) data; with `classes`, the other classes' images become the pool."""
    if classes is None:
        split = Split(x, y)
        return Dataset(name, "synthetic", image, split, None, split)
    keep = np.isin(y, classes)
    split = Split(x[keep], y[keep])
    return Dataset(name, "synthetic", image, split, None, split, Split(x[~keep], y[~keep]))


def pairs(state: dict, depth: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(state[f"W{i}"], state[f"b{i}"]) for i in range(depth)]


def train(backend, trial, x, y) -> dict:
    """Train with the backend's real trainer (no evaluation) and return its weights."""
    classes = trial.data.classes if isinstance(trial, FFTrial) else None
    tr = backend.trainer(trial, dataset(x, y, classes, trial.data.image, trial.data.name))
    epoch = 0
    for phase in tr.phases():
        tr.begin_phase(phase)
        for e in range(phase.epochs):
            tr.train_epoch(phase, epoch, lr_at(phase.optimizer, e, phase.epochs))
            epoch += 1
    tr.sync()
    return tr.state()


def ref_train(trial: FFTrial, x, y, with_running: bool = False):
    """The same training in the reference (float64): each layer's params, and with
    `with_running` each layer's carried statistics (None where it has none)."""
    data = dataset(x, y, trial.data.classes, trial.data.image, trial.data.name)
    pool = RN.training_images(trial.ff, data)
    x64, y = (data.train.x if pool is None else pool).astype(np.float64), data.train.y
    params = [tuple(a.astype(np.float64) for a in p) for p in ff_init(trial.seed, x.shape[1], trial.hidden, trial.ff)]
    running = [None] * len(params)
    if trial.ff.recurrent is not None:
        opt, draws = optim.init(trial.optimizer, [p for wb in params for p in wb]), RN.Draws(trial, x64, y)
        for e in range(trial.epochs):
            params, opt, _ = RT.ff_recurrent_epoch(params, opt, x64, y, trial, e, lr_at(trial.optimizer, e, trial.epochs), draws)
    elif trial.ff.layer_epochs is not None:
        params, running = RT.ff_windowed_run(params, x64, y, trial)
    elif trial.ff.schedule == "greedy":
        params, running = RT.ff_greedy_run(params, x64, y, trial, with_running=True)
    else:
        opt = trial.layer_optimizer(tuple(range(len(params))))
        state, draws = RF.ff_init_state(params, opt), RN.Draws(trial, x64, y)
        for e in range(trial.epochs):
            state, _ = RT.ff_simultaneous_epoch(state, x64, y, trial, e, lr_at(opt, e, trial.epochs), draws)
        params, running = state.params, state.running_means
    return (params, running) if with_running else params


def compare_trained(out: list[Comparison], backend, name: str, label: str, trial: FFTrial, x, y,
                    kind: str = "params@N") -> None:
    """Train `trial` on the backend and on the reference; compare every layer's W and b (and a
    batch-normalised layer's gamma, beta and running statistics)."""
    got, ref = train(backend, trial, x, y), RF.state_of(*ref_train(trial, x, y, with_running=True))
    for key, r in ref.items():
        out.append(compare(name, f"{label}.{kind.split('/')[0]}.{key}", kind, got.get(key, np.full(0, np.nan)), r))


def compare_predictions(backend, name: str, quantity: str, trial: FFTrial, trained, x_test, y_test,
                        readout: np.ndarray | None = None) -> Comparison:
    """The backend's predictions of `x_test` from the reference-`trained` weights (and
    `readout`, for softmax) against the reference's: the fraction of classes that differ."""
    tr = backend.trainer(trial, dataset(x_test, y_test, None, trial.data.image, trial.data.name))
    running = None
    if isinstance(trained, tuple):  # (params, running): `ref_train(..., with_running=True)`
        trained, running = trained
    state = {k: v.astype(np.float32) for k, v in RF.state_of(trained, running).items()}
    if readout is not None:
        state["readout"] = readout
    tr.load_state(state)
    got = np.asarray(tr.predict(tr.splits["test"][0]))
    x64, w_out = x_test.astype(np.float64), None if readout is None else readout.astype(np.float64)
    ref = (RR.predict(x64, trained, trial.ff, w_out) if trial.ff.recurrent is not None
           else RF.predict(x64, trained, trial.ff, w_out, running=running))
    return Comparison(name, quantity, "predict", float(np.sum(got != ref)), float(np.mean(got != ref)))


def layer_checks(add, probe, label: str, trial: FFTrial, x, y, other_images: bool = False, grad: str = "grad") -> None:
    """Per layer of `trial` at its initial weights, on one batch with wrong-label negatives
    (`other_images`: of the batch's images rolled by one, so that the negatives differ from
    the positives everywhere, not only in the label's pixels): the probe's goodness, loss (and
    peer loss) and gradients against the reference's. A strategy of no negatives (`none`): the
    positives alone, and a `labelled` objective is given their labels."""
    ff = trial.ff
    wrong = rng.wrong_labels(trial.seed, 0, np.arange(len(y)), y)
    x_pos, x_neg = RF.overlay(x, y, ff), RF.overlay(np.roll(x, 1, axis=0) if other_images else x, wrong, ff)
    if not NEGATIVES.get(ff.negatives).makes_negatives:
        x_neg = x_pos[:0]
    params = (stack_init(trial.seed, [x.shape[1], *trial.hidden], ff.init) if ff.conv_layers is None
              else conv_init(trial.seed, ff.conv_layers, ff.init))
    got = probe.ff_layers(params, x_pos, x_neg, ff, **({"labels": y} if OBJECTIVES.get(ff.objective).labelled else {}))
    h_pos, h_neg = x_pos.astype(np.float64), x_neg.astype(np.float64)
    for i, p in enumerate(params):
        w, b, *gamma_beta = (a.astype(np.float64) for a in p)
        st = RF.layer_step(h_pos, h_neg, w, b, ff, None, i, y, tuple(gamma_beta) or None)
        bn = bool(gamma_beta)  # a batch-normalised layer: its bias's gradient cancels (`parity.TOLERANCES`)
        add(f"{label}.layer{i}.g_pos", "goodness", got[i]["g_pos"], st.g_pos)
        add(f"{label}.layer{i}.g_neg", "goodness", got[i]["g_neg"], st.g_neg)
        add(f"{label}.layer{i}.loss", "loss", got[i]["loss"], st.loss)
        if ff.peer_weight:
            add(f"{label}.layer{i}.peer_loss", "loss", got[i]["peer_loss"], st.peer_loss)
        add(f"{label}.layer{i}.dW", grad, got[i]["dW"], st.dw)
        add(f"{label}.layer{i}.db", "grad/bn" if bn else grad, got[i]["db"], st.db)
        for key, g_got, g_ref in zip(("dgamma", "dbeta"), got[i].get("dbn", ()), st.dbn):
            add(f"{label}.layer{i}.{key}", grad, g_got, g_ref)
        if len(st.dbn) != len(got[i].get("dbn", ())):
            add(f"{label}.layer{i}.dbn", grad, np.full(0, np.nan), np.concatenate(st.dbn))  # missing: fails
        h_pos, h_neg = st.h_pos, st.h_neg
