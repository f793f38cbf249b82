"""`ff.grow_patience`: a greedy net grows layer by layer while its validation error falls."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from ffbench import registry
from ffbench.backend import FFSchedule, Phase
from ffbench.data import prepare
from ffbench.loop import fit
from ffbench.spec import OptimizerSpec, parse_trial

GROW = {"algorithm": "ff", "backend": "torch", "seed": 0, "hidden": [40] * 4, "epochs": 2, "batch_size": 50,
        "data": {"train_subset": 600, "validation_size": 500, "test_subset": 300},
        "ff": {"schedule": "greedy", "grow_patience": 1}}


@pytest.mark.parametrize("ff, data, message", [
    ({"schedule": "simultaneous"}, {}, "greedy"),
    ({"episodes": 2}, {}, "one episode"),
    ({"prediction": "softmax", "readout_phase": "after", "readout_epochs": 1}, {}, "goodness"),
    ({}, {"validation_size": 0}, "validation"),
])
def test_grow_needs_greedy_goodness_and_a_validation_split(ff, data, message):
    with pytest.raises(ValidationError, match=message):
        parse_trial({**GROW, "ff": {**GROW["ff"], **ff}, "data": {**GROW["data"], **data}})


class _Net(FFSchedule):
    def __init__(self, depth: int, patience: int):
        self.trial = parse_trial({**GROW, "hidden": [40] * depth, "ff": {**GROW["ff"], "grow_patience": patience}})
        self.trained = set()


def _grow(net: _Net, errors: list[float]) -> int:
    """Feed the validation error after each layer; return how many layers were trained."""
    for i, err in enumerate(errors):
        net.trained.add(i)
        if not net.keep_growing(Phase(f"ff.layer{i}", 1, OptimizerSpec(), (i,)), err):
            return i + 1
    return len(errors)


@pytest.mark.parametrize("depth, patience, errors, trained, kept", [
    (6, 1, [0.30, 0.20, 0.25, 0.10], 3, {0, 1}),            # the third layer did not help: stop, drop it
    (6, 2, [0.30, 0.20, 0.25, 0.26, 0.10], 4, {0, 1}),      # two layers in a row without a lower error
    (6, 2, [0.30, 0.20, 0.25, 0.15, 0.16, 0.17], 6, {0, 1, 2, 3}),  # the last layer ends it: keep the best
    (3, 5, [0.30, 0.20, 0.25], 3, {0, 1}),                  # the largest net reached before the patience ran out
    (3, 1, [0.30, 0.30, 0.30], 2, {0}),                     # equal is not lower: the first best depth wins
])
def test_keep_growing_stops_after_patience_and_keeps_the_best_depth(depth, patience, errors, trained, kept):
    net = _Net(depth, patience)
    assert _grow(net, errors) == trained
    assert net.trained == kept


@pytest.mark.skipif(not registry.status("torch")[0], reason="torch is not installed")
def test_a_grown_trial_records_its_depth_and_predicts_with_the_layers_kept():
    trial = parse_trial(GROW)
    curves: list = []
    out = fit(registry.load("torch"), trial, prepare(trial.data), curves=curves)
    c = pd.DataFrame(curves)
    errors = c[c.metric == "grow_val_error"]["value"].tolist()
    layers_run = len(errors)
    assert out.epochs_run == layers_run * trial.epochs  # the layers after the stop never trained
    assert out.kept_layers == errors.index(min(errors)) + 1
    assert layers_run == 4 or layers_run == out.kept_layers + 1  # patience 1: one layer past the best
    # the final validation error is that of the net kept, i.e. the best one measured while growing
    assert out.val_error == pytest.approx(min(errors))
