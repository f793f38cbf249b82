"""`ffbench check`'s conv sections: conv nets of every conv choice, CwComp's layers (grouped
channels, its loss, batch norm, per-layer epoch windows) and the BP twins, each backend against
`ffbench.reference` (`ffbench.check` runs them; the comparisons as in `ffbench.parity`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ffbench.parity import (
    Comparison,
    compare,
    compare_predictions,
    compare_trained,
    dataset,
    layer_checks,
    ref_train,
    synthetic_batch,
    train,
)
from ffbench.reference import bp as RB
from ffbench.reference import ff as RF
from ffbench.reference import optim
from ffbench.reference import train as RT
from ffbench.reference.init import bp_init
from ffbench.spec import FFTrial, parse_trial
from ffbench.variants import OBJECTIVES

# A conv net of every conv choice: stride 2, groups, max and average pools (`spec_conv`).
CHECK_CONV = {"channels": [4, 6], "pool": ["max", "avg"], "stride": [1, 2], "groups": [1, 2]}
# CwComp's layer choices in small: 10 class groups of channels (grouped channels on layer 2, as
# its CFSE blocks), no normalisation of the layer inputs, no negatives.
CHECK_CONV_CWC = {"channels": [10, 20], "pool": ["none", "max"], "groups": [1, 10]}
CWC = {"objective": "cwc", "negatives": "none", "norm": "none"}
# ... and with its batch normalisation after each layer's pooling (eps 1e-4, as CwComp's).
CHECK_CONV_CWC_BN = {**CHECK_CONV_CWC, "norm": "batch", "bn_eps": 1e-4}
# One SGD step this long makes the step (W_0 - W_1) / lr the gradient, nearly free of W_0's rounding.
GRAD_LR = 100.0


def conv_checks(backend, probe, name: str, trial: FFTrial, xs, ys, optimizers) -> list[Comparison]:
    """Conv nets (`conv`: CHECK_CONV) on synthetic 28 x 28 images, for goodness over the map
    (logistic, wrong-label negatives), per position (logistic) and SymBa per position with
    hybrid-image negatives: per-layer goodness, loss and gradients at the initial weights;
    2 epochs through the real trainers (strict SGD; the map: both schedules, with each optimiser); goodness
    and softmax predictions. Then the BP twin's gradients (one long SGD step) and N steps.

    SymBa's gradient sums +-d over (positive, negative) pairs: where the two share a position's
    activities (a wrong label changes 10 pixels of the top row) those terms cancel exactly, and
    float32 leaves rounding as large as the small sum. Its checks use negatives that differ
    everywhere: other images (probe), hybrid images (trainers)."""
    out: list[Comparison] = []
    add = lambda q, k, got, ref: out.append(compare(name, q, k, got, ref))  # noqa: E731
    bsz, strict = trial.batch_size, {"sgd-strict": optimizers["sgd-strict"]}
    base = {"algorithm": "ff", "backend": name, "seed": trial.seed, "epochs": 2, "batch_size": bsz, "conv": CHECK_CONV}
    cases = (("map", {"goodness_over": "map"}, optimizers, ("simultaneous", "greedy"), CHECK_CONV),
             ("position", {"goodness_over": "position"}, strict, ("simultaneous",), CHECK_CONV),
             ("position.symba", {"goodness_over": "position", "objective": "symba", "negatives": "hybrid_image",
                                 "prediction": "softmax"}, strict, ("simultaneous",), CHECK_CONV),
             ("map.cwc", CWC, optimizers, ("simultaneous", "greedy"), CHECK_CONV_CWC),
             # SGD only: batch norm after a ReLU that passes a channel's whole map removes the conv
             # bias's effect, whose gradient is then rounding alone, and Adam turns that into lr-sized steps
             ("map.cwc.bn", CWC, strict, ("simultaneous", "greedy"), CHECK_CONV_CWC_BN))
    x_test, y_test = synthetic_batch(100, seed=trial.seed + 2)
    for case, spec, opts, schedules, conv in cases:
        label, net = f"ff.conv[{case}]", {**base, "conv": conv}
        t = parse_trial({**net, "ff": spec})
        bn = t.conv.norm is not None  # batch norm's looser float32 tolerance of N steps (`parity.TOLERANCES`)
        layer_checks(add, probe, label, t, xs[:bsz], ys[:bsz], other_images=True, grad="grad/conv")
        for opt_label, opt in opts.items():
            for schedule in schedules:
                ts = parse_trial({**net, "optimizer": opt.model_dump(mode="json"), "ff": {**spec, "schedule": schedule}})
                compare_trained(out, backend, name, f"{label}.{schedule}[{opt_label}]", ts, xs, ys,
                                "params@N/adam" if opt.name == "adam" else "params@N/bn" if bn else "params@N")
        trained = ref_train(t, xs, ys, with_running=True)
        if t.ff.embeds_labels or OBJECTIVES.get(t.ff.objective).scores_classes:
            out.append(compare_predictions(backend, name, f"{label}.predict.goodness", t, trained, x_test, y_test))
        ts = parse_trial({**net, "ff": {**spec, "prediction": "softmax"}})
        readout = np.random.default_rng(trial.seed).normal(size=(10, ts.hidden[1])).astype(np.float32)
        out.append(compare_predictions(backend, name, f"{label}.predict.softmax", ts, trained, x_test, y_test, readout))
    # per-layer epoch windows (ff.layer_epochs, CwComp's ILT): layer 1 starts an epoch after layer
    # 0 and trains on alone after it stops, each with its own optimiser state and step count
    for case, conv, opts in (("map.cwc.windows", CHECK_CONV_CWC, optimizers), ("map.cwc.bn.windows", CHECK_CONV_CWC_BN, strict)):
        for opt_label, opt in opts.items():
            ts = parse_trial({**base, "epochs": 3, "conv": conv, "optimizer": opt.model_dump(mode="json"),
                              "ff": {**CWC, "layer_epochs": [[0, 2], [1, 3]]}})
            kind = "params@N/adam" if opt.name == "adam" else "params@N/bn" if conv is CHECK_CONV_CWC_BN else "params@N"
            compare_trained(out, backend, name, f"ff.conv[{case}][{opt_label}]", ts, xs, ys, kind)
    # the BP twins: the plain conv net (every optimiser) and CwComp's batch-normalised one (strict
    # SGD, as its FF case): gradients (one long SGD step), then N steps (params and running statistics)
    for label, conv, opts in (("bp.conv", CHECK_CONV, optimizers), ("bp.conv.bn", CHECK_CONV_CWC_BN, strict)):
        out += bp_conv_checks(backend, name, {**base, "algorithm": "bp", "epochs": 1, "conv": conv}, label, opts, xs, ys)
    return out


def bp_conv_checks(backend, name: str, spec: dict[str, Any], label: str, optimizers, xs, ys) -> list[Comparison]:
    """A conv BP twin (`spec`) against `reference.bp`: every parameter's gradient from one long SGD
    step on the first batch, every parameter (and batch norm's running statistics) after an
    epoch with each optimiser, and the predictions of the trained net (running statistics)."""
    out: list[Comparison] = []
    bsz = spec["batch_size"]
    one = parse_trial({**spec, "optimizer": {"name": "sgd", "lr": GRAD_LR}})
    init = [tuple(a.astype(np.float64) for a in p) for p in bp_init(one, xs.shape[1], 10)]
    bn = one.conv.norm is not None
    _, ref_grads, _ = RB.loss_and_grads(xs[:bsz].astype(np.float64), ys[:bsz], init, conv=one.conv_layers())
    got = train(backend, one, xs[:bsz], ys[:bsz])
    for i, (p0, gs) in enumerate(zip(init, ref_grads)):
        for key, a0, g in zip(RF.STATE_KEYS, p0, gs):
            kind = "grad/bn" if bn and key == "b" and i < len(init) - 1 else "grad/conv"  # the conv bias before a norm
            out.append(compare(name, f"{label}.d{key}{i}", kind, (a0 - got.get(f"{key}{i}", np.nan)) / GRAD_LR, g))
    trained = None
    for opt_label, opt in optimizers.items():
        t = parse_trial({**spec, "optimizer": opt.model_dump(mode="json")})
        st = optim.init(opt, [p for ps in init for p in ps])
        ref, _, _, running = RT.bp_epoch(init, st, xs.astype(np.float64), ys, t, 0, opt.lr)
        kind = "params@N/adam" if opt.name == "adam" else "params@N/bn" if bn else "params@N"
        got = train(backend, t, xs, ys)
        for key, r in RF.state_of(ref, running).items():
            out.append(compare(name, f"{label}[{opt_label}].params@N.{key}", kind, got.get(key, np.full(0, np.nan)), r))
        trained = (t, ref, running)
    t, ref, running = trained
    x_test, y_test = synthetic_batch(100, seed=t.seed + 2)
    tr = backend.trainer(t, dataset(x_test, y_test, None, t.data.image, t.data.name))
    tr.load_state({k: v.astype(np.float32) for k, v in RF.state_of(ref, running).items()})
    got = np.asarray(tr.predict(tr.splits["test"][0]))
    want = RB.predict(x_test.astype(np.float64), ref, conv=t.conv_layers(), running=running)
    out.append(Comparison(name, f"{label}.predict", "predict", float(np.sum(got != want)), float(np.mean(got != want))))
    return out
