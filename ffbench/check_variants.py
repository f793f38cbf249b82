"""`ffbench check`, per registered variant: every negative strategy and every layer objective,
built-in or plugin, on one backend against the reference.

- A negative strategy: the parameters after 2 epochs of strict SGD through the backend's real
  trainer (the scored strategies score the data with the trained weights in the second).
- A layer objective: per layer, at the initial weights, goodness, loss and the backend's
  autodiff gradients against the reference; the same gradients against float64 central
  differences of the reference's forward objective (`reference.ff.layer_objective`, the
  definition: no hand-derived gradient is trusted); 2 epochs of strict SGD; and prediction by
  its score.

A variant runs with its `check_params` (default: its defaults). One the backend does not
implement is reported as skipped, with the reason; one that refuses the check's trial fails.
"""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np

from ffbench import variants
from ffbench.parity import (
    STRICT_OPT,
    Comparison,
    compare,
    compare_predictions,
    compare_trained,
    ref_train,
    refused,
    skipped,
    synthetic_batch,
)
from ffbench.reference import ff as RF
from ffbench.reference import rng
from ffbench.reference.finite_diff import central_difference, probe_entries
from ffbench.reference.init import stack_init
from ffbench.spec import FFSpec, FFTrial, OptimizerSpec, parse_trial
from ffbench.variants import NEGATIVES, OBJECTIVES
from ffbench.variants.objectives import OBJECTIVE_FIELDS

# At most this many entries of a weight matrix are differenced (`finite_diff.probe_entries`).
FD_ENTRIES = 1024


def _ready(name: str, quantity: str, trial: FFTrial, variant) -> Comparison | None:
    """None if `trial` can run on this backend; else why not (a skip, or a refusal)."""
    reason = variants.skip(trial)
    if reason:
        return skipped(name, quantity, reason)
    try:
        variant.validate(trial)
    except ValueError as exc:
        return refused(name, quantity, f"refused the check's trial: {exc}")
    return None


def negatives(backend, name: str, trial: FFTrial, xs, ys, only: set[str] | None) -> list[Comparison]:
    out: list[Comparison] = []
    for strategy_name in NEGATIVES:
        if only is not None and strategy_name not in only:
            continue
        strategy = NEGATIVES.get(strategy_name)
        base = trial if strategy.check_objective is None else objective_trial(trial, OBJECTIVES.get(strategy.check_objective))
        t = base.model_copy(update={
            "ff": base.ff.model_copy(update={"negatives": strategy_name, "negatives_refresh": "epoch",
                                              "schedule": "simultaneous",
                                              "negatives_params": strategy.parse_params(strategy.check_params)}),
            "data": trial.data.model_copy(update={"classes": [0, 1, 2, 3, 4] if strategy.needs_rest else None}),
            "epochs": 2, "optimizer": OptimizerSpec(**STRICT_OPT)})
        label = f"ff.negatives[{strategy_name}]"
        not_ready = _ready(name, label, t, strategy)
        if not_ready:
            out.append(not_ready)
            continue
        compare_trained(out, backend, name, label, t, xs, ys)
    return out


def objective_trial(trial: FFTrial, objective) -> FFTrial:
    """The check's trial with `objective`: the objective fields it does not read at their
    defaults, its `check_params`, and the standard ReLU gradient (the true derivative, which
    finite differences measure)."""
    spec = trial.model_dump(mode="json", exclude={"meta"})
    ff = {k: v for k, v in spec["ff"].items() if k in objective.reads or k not in OBJECTIVE_FIELDS}
    spec["ff"] = ff | {"objective": objective.name, "objective_params": objective.check_params,
                       "relu_grad": "standard"} | objective.requires
    return parse_trial(spec | objective.check_trial)


@lru_cache(maxsize=8)
def _reference_layers(key: str, n_fd: int):
    """Per layer of the trial (`key`: the JSON of its ff, seed, hidden and batch size): its
    reference step at the initial weights, and the central differences of its forward
    objective at `probe_entries` of W and at every b (float64). Independent of the backend,
    so computed once per trial."""
    t = json.loads(key)
    ff, bsz, seed = FFSpec.model_validate(t["ff"]), t["batch_size"], t["seed"]
    x, y = synthetic_batch(bsz, seed=seed)
    x_pos = RF.overlay(x, y, ff)
    # the wrong-label overlay, or (a strategy of no negative data: `none`) no rows at all
    x_neg = (RF.overlay(x, rng.wrong_labels(seed, 0, np.arange(bsz), y), ff) if NEGATIVES.get(ff.negatives).makes_negatives
             else x_pos[:0])
    params = stack_init(seed, [x.shape[1], *t["hidden"]], ff.init)
    hp, hn, layers = x_pos.astype(np.float64), x_neg.astype(np.float64), []
    for w, b in params:
        st, *fd = _layer_fd(hp, hn, w.astype(np.float64), b.astype(np.float64), ff, n_fd, seed, y)
        layers.append((st, *fd))
        hp, hn = st.h_pos, st.h_neg
    return (x_pos, x_neg, y, params), layers


def _layer_fd(hp, hn, w, b, ff, n_fd: int, seed: int, y):
    """(reference step, the W entries differenced, d/dW there, d/db) of one layer (`y`: the
    positives' labels, which a `labelled` objective reads)."""
    st = RF.layer_step(hp, hn, w, b, ff, labels=y)
    at = probe_entries(st.dw, n_fd, seed=seed)
    fd_w = central_difference(lambda v: RF.layer_objective(hp, hn, v, b, ff, labels=y), w, at)
    fd_b = central_difference(lambda v: RF.layer_objective(hp, hn, w, v, ff, labels=y), b)
    return st, np.arange(w.size) if at is None else at, fd_w.reshape(-1), fd_b


def objectives(backend, name: str, trial: FFTrial, xs, ys, only: set[str] | None) -> list[Comparison]:
    out: list[Comparison] = []
    probe = backend.probe()
    for objective_name in OBJECTIVES:
        if only is not None and objective_name not in only:
            continue
        objective, label = OBJECTIVES.get(objective_name), f"ff.objective[{objective_name}]"
        try:
            t = objective_trial(trial, objective).model_copy(update={"backend": name})
        except ValueError as exc:
            out.append(refused(name, label, f"cannot build the check's trial: {exc}"))
            continue
        not_ready = _ready(name, label, t, objective)
        if not_ready:
            out.append(not_ready)
            continue
        key = json.dumps(t.model_dump(mode="json", include={"ff", "seed", "hidden", "batch_size"}), sort_keys=True)
        (x_pos, x_neg, y, params), ref = _reference_layers(key, FD_ENTRIES)
        got = probe.ff_layers(params, x_pos, x_neg, t.ff, **({"labels": y} if objective.labelled else {}))
        for i, (g, (st, at, fd_w, fd_b)) in enumerate(zip(got, ref)):
            for q, kind, value, want in (
                    ("g_pos", "goodness", g["g_pos"], st.g_pos), ("g_neg", "goodness", g["g_neg"], st.g_neg),
                    ("loss", "loss", g["loss"], st.loss), ("dW", "grad", g["dW"], st.dw), ("db", "grad", g["db"], st.db),
                    ("fd.dW", "grad/fd", np.asarray(g["dW"]).reshape(-1)[at], fd_w), ("fd.db", "grad/fd", g["db"], fd_b)):
                out.append(compare(name, f"{label}.layer{i}.{q}", kind, value, want))
        if objective_name != trial.ff.objective:  # the spec's own objective trains in every other section
            strict = t.model_copy(update={"epochs": 2, "optimizer": OptimizerSpec(**STRICT_OPT),
                                          "ff": t.ff.model_copy(update={"schedule": "simultaneous"})})
            compare_trained(out, backend, name, label, strict, xs, ys)
        out.append(_prediction(backend, name, label, t, xs, ys))
    return out


def _prediction(backend, name: str, label: str, trial: FFTrial, xs, ys) -> Comparison:
    """Predictions by the objective's score (`ff.prediction: goodness`) from weights trained
    one epoch by the reference: the fraction of 200 test images whose class differs."""
    x_test, y_test = synthetic_batch(200, seed=trial.seed + 2)
    t = trial.model_copy(update={"epochs": 1, "ff": trial.ff.model_copy(update={"prediction": "goodness",
                                                                                  "prediction_layers": None})})
    t = parse_trial(t.model_dump(mode="json"))
    return compare_predictions(backend, name, f"{label}.predict.goodness", t, ref_train(t, xs, ys), x_test, y_test)
