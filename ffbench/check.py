"""`ffbench check`: do the backends compute what the NumPy reference defines?

Every quantity is computed by each backend in float32 and by the reference in float64 on the
same spec, initial weights and batch, and compared by
    max_abs = max |backend - reference|,   max_rel = max_abs / max |reference|
(relative to the tensor's scale, so near-zero entries do not blow up). A quantity passes if
max_rel <= its tolerance (TOLERANCES). Training quantities run the backends' real trainers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ffbench import check_conv, check_variants, registry
from ffbench.parity import (
    STRICT_OPT,
    TOLERANCES,
    Comparison,
    compare,
    compare_predictions,
    compare_trained,
    layer_checks,
    pairs,
    ref_train,
    synthetic_batch,
    train,
)
from ffbench.reference import bp as RB
from ffbench.reference import ff as RF
from ffbench.reference import negatives as RN
from ffbench.reference import optim
from ffbench.reference import train as RT
from ffbench.reference.init import stack_init
from ffbench.reference.optim import lr_at
from ffbench.spec import FFTrial, OptimizerSpec, parse_trial

__all__ = ["TOLERANCES", "Comparison", "agreement", "check_backend", "compare", "e2e_spec", "synthetic_batch"]

DEFAULT_SPEC: dict[str, Any] = {
    "algorithm": "ff", "backend": "torch", "seed": 0, "hidden": [48, 32, 32], "epochs": 1, "batch_size": 16,
    "optimizer": {"name": "adam", "lr": 0.01}, "ff": {"peer_weight": 0.03},
}
N_STEPS = 5
# The check's sections, in the order it runs them (`ffbench check --section`)
SECTIONS = ("layers", "schedules", "variants", "jitter", "episodes", "local", "rgb", "recurrent", "conv", "scff", "bp",
            "bp.local", "predict")


def check_backend(name: str, spec: dict[str, Any] | None = None, n_steps: int = N_STEPS,
                  variants: set[str] | None = None, sections: set[str] | None = None) -> list[Comparison]:
    """Every comparison of backend `name` on the FF trial `spec` (default DEFAULT_SPEC), or only
    those of `sections` (of SECTIONS); with `variants` (registered names), only those variants'
    sections (`check_variants`)."""
    backend = registry.load(name)
    probe = backend.probe()
    trial = parse_trial({**(spec or DEFAULT_SPEC), "backend": name})
    if not isinstance(trial, FFTrial):
        raise ValueError("ffbench check takes an FF trial spec (its BP baseline is derived from it)")
    ff, bsz, depth = trial.ff, trial.batch_size, len(trial.hidden)
    xs, ys = synthetic_batch(bsz * n_steps, seed=trial.seed + 1)
    if variants is not None:
        return (check_variants.negatives(backend, name, trial, xs, ys, variants)
                + check_variants.objectives(backend, name, trial, xs, ys, variants))
    want = set(SECTIONS) if sections is None else set(sections)
    if want - set(SECTIONS):
        raise ValueError(f"unknown check sections {sorted(want - set(SECTIONS))}; expected some of {', '.join(SECTIONS)}")
    out: list[Comparison] = []
    add = lambda q, k, got, ref: out.append(compare(name, q, k, got, ref))  # noqa: E731
    x, y = synthetic_batch(bsz, seed=trial.seed)  # one batch (the probes' and the BP twin's gradients)
    strict = OptimizerSpec(**STRICT_OPT)
    optimizers = {trial.optimizer.name: trial.optimizer, "sgd-strict": strict}  # the spec's, and strict SGD
    jittered = trial.data.model_copy(update={"jitter": 2})

    # 1. per-layer goodness, loss and gradients at the initial weights
    if "layers" in want:
        layer_checks(add, probe, "ff", trial, x, y)

    # 2. parameters after 1 and N steps, both schedules, through the real trainers, with the
    #    spec's optimiser and with a strict SGD one
    if "schedules" in want:
        for label, opt in optimizers.items():
            n_kind = "params@N/adam" if opt.name == "adam" else "params@N"
            for schedule in ("simultaneous", "greedy"):
                for steps, kind in ((1, "params@1"), (n_steps, n_kind)):
                    t = trial.model_copy(update={"ff": ff.model_copy(update={"schedule": schedule}), "epochs": 1,
                                                 "optimizer": opt})
                    compare_trained(out, backend, name, f"ff.{schedule}[{label}]", t, xs[: bsz * steps], ys[: bsz * steps], kind)

    # 3. every registered negative strategy and layer objective, built-in or plugin
    if "variants" in want:
        out += check_variants.negatives(backend, name, trial, xs, ys, None)
        out += check_variants.objectives(backend, name, trial, xs, ys, None)

    # 3b. +-2 px jitter of the training images (data.jitter), in FF and BP, after 2 epochs of strict SGD
    if "jitter" in want:
        t = trial.model_copy(update={"data": jittered, "epochs": 2, "optimizer": strict,
                                     "ff": ff.model_copy(update={"schedule": "simultaneous"})})
        compare_trained(out, backend, name, "ff.jitter", t, xs, ys)

    # 3c. greedy episodes (the JAX and keras.io examples): 2 episodes of 2 epochs per layer,
    #     negatives drawn per episode, each layer's optimiser state carried between episodes, and
    #     the JAX example's threshold = input width
    if "episodes" in want:
        for strategy in ("permuted_label", "hard_label_top2"):
            t = trial.model_copy(update={"epochs": 2, "optimizer": strict, "ff": ff.model_copy(update={
                "schedule": "greedy", "episodes": 2, "negatives": strategy, "negatives_refresh": "episode",
                "threshold_scale": "input_width", "threshold": 0.02})})
            compare_trained(out, backend, name, f"ff.episodes[{strategy}]", t, xs, ys)

    # 3d. local receptive fields (ff.receptive_field): a 784 -> 784 -> 1568 stack of 28x28 maps
    #     with 5x5 windows, 2 epochs of strict SGD (masked weights get no gradient, only the decay)
    if "local" in want:
        t = trial.model_copy(update={"hidden": [784, 1568], "epochs": 2, "optimizer": strict,
                                     "ff": ff.model_copy(update={"schedule": "simultaneous", "receptive_field": 5,
                                                                 "prediction_layers": [0, 1]})})
        compare_trained(out, backend, name, "ff.local", t, xs, ys)

    # 3e. a colour geometry (CIFAR-10's 3 x 32 x 32, on synthetic rows): the label in every
    #     channel, +-2 px jitter moving the three channels alike, and 5x5 local receptive fields
    #     over the 32x32 grid (3072 -> 1024 -> 2048); then hybrid-image negatives, one mask for
    #     all three channels. 2 epochs of strict SGD each.
    if "rgb" in want:
        xc, yc = synthetic_batch(bsz * n_steps, d=3072, seed=trial.seed + 2)
        base = {**trial.model_dump(mode="json", exclude={"meta"}), "epochs": 2, "optimizer": STRICT_OPT,
                "data": {"name": "synthetic_rgb32", "jitter": 2}}
        colour = {"schedule": "simultaneous", "label_channels": "all", "peer_weight": ff.peer_weight}
        t = parse_trial({**base, "hidden": [1024, 2048], "ff": {**colour, "receptive_field": 5}})
        compare_trained(out, backend, name, "ff.rgb.local", t, xc, yc)
        out.append(compare_predictions(backend, name, "ff.rgb.local.predict", t, ref_train(t, xc, yc), xc, yc))
        t = parse_trial({**base, "ff": {**colour, "negatives": "hybrid_image", "prediction": "softmax"}})
        compare_trained(out, backend, name, "ff.rgb.hybrid_image", t, xc, yc)

    # 3f. the recurrent net (ff.recurrent, the paper's sec. 3.4): 4 iterations with the losses
    #     of iterations 2-4, wrong-label and hard-label negatives (scored by the recurrent net),
    #     strict SGD and the spec's optimiser; then 5x5 bottom-up and top-down receptive fields
    #     on 28x28 maps with min-ssq, damping 0.5 and a zero start, its goodness predictions, and
    #     the one-pass softmax read-out's predictions
    if "recurrent" in want:
        short = {"iterations": 4, "score_from": 2, "score_to": 3, "loss_from": 2}
        for strategy in ("wrong_label", "hard_label"):
            for label, opt in optimizers.items():
                t = parse_trial({**trial.model_dump(mode="json", exclude={"meta"}), "hidden": [48, 32], "epochs": 2,
                                 "optimizer": opt.model_dump(mode="json"),
                                 "ff": {"recurrent": short, "negatives": strategy}})
                compare_trained(out, backend, name, f"ff.recurrent[{strategy}, {label}]", t, xs, ys,
                                "params@N/adam" if opt.name == "adam" else "params@N")
        local = {"recurrent": {"iterations": 3, "score_from": 1, "score_to": 3, "damping": 0.5, "init": "zeros"},
                 "receptive_field": 5, "sign": "min_ssq"}
        base = {**trial.model_dump(mode="json", exclude={"meta"}), "hidden": [784, 1568], "optimizer": STRICT_OPT}
        t = parse_trial({**base, "ff": local})
        compare_trained(out, backend, name, "ff.recurrent.local", t, xs, ys)
        out.append(compare_predictions(backend, name, "ff.recurrent.local.predict", t, ref_train(t, xs, ys), xs, ys))
        t = parse_trial({**base, "ff": {**local, "prediction": "softmax", "recurrent": short}})
        readout = np.random.default_rng(trial.seed).normal(size=(10, 1568)).astype(np.float32)
        out.append(compare_predictions(backend, name, "ff.recurrent.softmax.predict", t, ref_train(t, xs, ys), xs, ys, readout))

    # 3g. conv nets
    if "conv" in want:
        out += check_conv.conv_checks(backend, probe, name, trial, xs, ys, optimizers)

    # 3h. SCFF's recipe (self-contrastive pairs read with shared weights, standardised layer
    #     inputs, triangle activities, per-layer thresholds): layer 0 then layer 1 (per-layer
    #     windows, as its greedy runs) with each layer's own AdamW and per-update decay, and both
    #     at once with strict SGD stepped down at an epoch milestone and decayed per update; 2
    #     epochs; the read-out's predictions from both layers' activities on the pairs [x | x]
    if "scff" in want:
        scff = {**trial.model_dump(mode="json", exclude={"meta"}), "hidden": [32, 24], "epochs": 2, "ff": SCFF}
        windows = {"layer_epochs": [[0, 1], [1, 2]], "layer_optimizers": SCFF_ADAMW}
        for label, ff_kw, opt in (("windows.adamw", windows, STRICT_OPT), ("simultaneous.sgd", {}, {**STRICT_OPT, **SCHEDULES})):
            t = parse_trial({**scff, "optimizer": opt, "ff": {**SCFF, **ff_kw}})
            compare_trained(out, backend, name, f"ff.scff[{label}]", t, xs, ys)
        readout = np.random.default_rng(trial.seed).normal(size=(10, 56)).astype(np.float32)
        out.append(compare_predictions(backend, name, "ff.scff.predict.softmax", t, ref_train(t, xs, ys), xs, ys, readout))

    # 4. the BP baseline of the same widths: forward, loss, gradients, and N steps of training
    if "bp" in want:
        bp_params = stack_init(trial.seed, [x.shape[1], *trial.hidden, 10], "uniform_fan_in")
        bp64 = [(w.astype(np.float64), b.astype(np.float64)) for w, b in bp_params]
        got_bp = probe.bp_grads(bp_params, x, y)
        ref_loss, ref_grads, _ = RB.loss_and_grads(x.astype(np.float64), y, bp64)
        add("bp.logits", "logits", got_bp["logits"], RB.forward(x.astype(np.float64), bp64)[0])
        add("bp.loss", "loss", got_bp["loss"], ref_loss)
        for i, ((gw, gb), (rw, rb)) in enumerate(zip(got_bp["grads"], ref_grads)):
            add(f"bp.dW{i}", "grad", gw, rw)
            add(f"bp.db{i}", "grad", gb, rb)
        for label, opt in optimizers.items():
            bp_trial = parse_trial({k: v for k, v in trial.model_dump(mode="json").items() if k not in ("ff", "algorithm")}
                                   | {"algorithm": "bp", "optimizer": opt.model_dump(mode="json")})
            got_bp_state = pairs(train(backend, bp_trial, xs, ys), depth + 1)
            st = optim.init(opt, [p for wb in bp64 for p in wb])
            ref_bp, st, _, _ = RT.bp_epoch(bp64, st, xs.astype(np.float64), ys, bp_trial, 0, opt.lr)
            if opt.name == "sgd":  # and once more with jittered images
                jt = bp_trial.model_copy(update={"data": jittered})
                st = optim.init(opt, [p for wb in bp64 for p in wb])
                ref_j, *_ = RT.bp_epoch(bp64, st, xs.astype(np.float64), ys, jt, 0, opt.lr)
                for i, ((gw, gb), (rw, rb)) in enumerate(zip(pairs(train(backend, jt, xs, ys), depth + 1), ref_j)):
                    add(f"bp.jitter.params@N.W{i}", "params@N", gw, rw)
                    add(f"bp.jitter.params@N.b{i}", "params@N", gb, rb)
            for i, ((gw, gb), (rw, rb)) in enumerate(zip(got_bp_state, ref_bp)):
                kind = "params@N/adam" if opt.name == "adam" else "params@N"
                add(f"bp[{label}].params@N.W{i}", kind, gw, rw)
                add(f"bp[{label}].params@N.b{i}", kind, gb, rb)

    # 4b. the locally connected BP twin (bp.receptive_field, Table 1's baseline): 784 -> 784 -> 1568
    #     with 5x5 windows over the 28x28 grid and a dense output, and the same on CIFAR-10's
    #     3 x 32 x 32 geometry (3072 -> 1024); 1 epoch of strict SGD
    if "bp.local" in want:
        for label, rows, widths, data_name in (("bp.local", xs, [784, 1568], "mnist"),
                                               ("bp.rgb.local", synthetic_batch(len(ys), d=3072, seed=trial.seed + 3)[0],
                                                [1024], "synthetic_rgb32")):
            lt = parse_trial({"algorithm": "bp", "backend": name, "seed": trial.seed, "hidden": widths, "epochs": 1,
                              "batch_size": bsz, "optimizer": STRICT_OPT, "data": {"name": data_name},
                              "bp": {"receptive_field": 5}})
            init = [(w.astype(np.float64), b.astype(np.float64))
                    for w, b in stack_init(lt.seed, [rows.shape[1], *widths, 10], lt.bp.init)]
            ref, *_ = RT.bp_epoch(init, optim.init(lt.optimizer, [p for wb in init for p in wb]), rows.astype(np.float64),
                                    ys, lt, 0, lt.optimizer.lr)
            for i, ((gw, gb), (rw, rb)) in enumerate(zip(pairs(train(backend, lt, rows, ys), len(widths) + 1), ref)):
                add(f"{label}.params@N.W{i}", "params@N", gw, rw)
                add(f"{label}.params@N.b{i}", "params@N", gb, rb)

    # 5. predictions by each mode, from the same (trained) weights
    if "predict" in want:
        x_test, y_test = synthetic_batch(200, seed=trial.seed + 2)
        trained = ref_train(trial.model_copy(update={"epochs": 1}), xs, ys)
        readout = np.random.default_rng(trial.seed).normal(
            size=(10, sum(trial.hidden[i] for i in range(1, depth)))).astype(np.float32)
        for mode in ("goodness", "softmax"):
            t = parse_trial({**trial.model_dump(mode="json"), "ff": {**ff.model_dump(mode="json"), "prediction": mode,
                                                                     "prediction_layers": None}})
            out.append(compare_predictions(backend, name, f"predict.{mode}", t, trained, x_test, y_test,
                                           readout if mode == "softmax" else None))
    return out


# SCFF's MNIST recipe in small (neurophysics-cnrsthales/contrastive-forward-forward: its config.json's thresholds)
SCFF = {"negatives": "self_contrastive", "norm": "std", "norm_eps": 1e-10, "activation": "triangle", "objective": "scff",
        "objective_params": {"pos_threshold": [4, 1], "neg_threshold": [6, 1], "penalty": [1e-4, 0]},
        "prediction": "softmax", "prediction_layers": [0, 1], "readout_phase": "after", "readout_epochs": 1}
# ... with its per-layer AdamW (decoupled weight decay) and lr decay every P updates; eps 1, so
# that Adam does not blow float32 noise in near-zero gradients up to lr-sized steps and the check
# can hold it to params@N
SCFF_ADAMW = [{"name": "adam", "eps": 1.0, "lr": lr, "weight_decay": 0.01, "weight_decay_mode": "decoupled",
               "decay_rate": rate, "decay_every": every} for lr, rate, every in ((0.03, 0.9, 3), (0.02, 0.6, 2))]
# an epoch milestone and a per-update decay on top of any optimiser
SCHEDULES = {"milestones": [1], "milestone_factor": 0.5, "decay_rate": 0.5, "decay_every": 3}


# ---------------------------------------------------------------- end-to-end agreement

def e2e_spec() -> dict[str, Any]:
    """The smoke suite's first FF experiment (2,000 MNIST images, 2 layers of 100, 2 epochs)."""
    from pathlib import Path

    from ffbench.suites import load_suite
    _, trials = load_suite(Path(__file__).resolve().parent.parent / "suites" / "smoke.yaml")
    trial = next(t for t in trials if t.algorithm == "ff")
    return {k: v for k, v in trial.model_dump(mode="json").items() if k != "meta"}


def agreement(backends: list[str], trial_spec: dict[str, Any]) -> tuple[list[Comparison], dict[str, float]]:
    """Train the same FF trial on every backend and on the reference; compare the per-epoch,
    per-layer loss curves (tolerance "e2e") and report the final test errors side by side."""
    from ffbench.data import prepare
    from ffbench.loop import fit

    trial = parse_trial({**trial_spec, "backend": backends[0]})
    data = prepare(trial.data)
    x64, y = data.train.x.astype(np.float64), data.train.y
    params = [(w.astype(np.float64), b.astype(np.float64)) for w, b in
              stack_init(trial.seed, [x64.shape[1], *trial.hidden], trial.ff.init)]
    state, ref_curve, draws = RF.ff_init_state(params, trial.optimizer), [], RN.Draws(trial, x64, y)
    for e in range(trial.epochs):
        state, losses = RT.ff_simultaneous_epoch(state, x64, y, trial, e, lr_at(trial.optimizer, e, trial.epochs), draws)
        ref_curve.append(losses)
    errors = {"reference": float(np.mean(RF.predict(data.test.x.astype(np.float64), state.params, trial.ff) != data.test.y))}
    out = []
    for name in backends:
        t = parse_trial({**trial_spec, "backend": name})
        outcome = fit(registry.load(name), t, data)
        curve = np.array([[row["value"] for row in outcome.curves if row["epoch"] == e and row["metric"] == "ff_loss"]
                          for e in range(t.epochs)])
        c = compare(name, f"e2e.ff_loss[{t.epochs} epochs x {len(t.hidden)} layers]", "e2e", curve, np.array(ref_curve))
        out.append(c)
        errors[name] = outcome.test_error
    return out, errors
