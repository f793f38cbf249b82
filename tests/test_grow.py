"""`ff.grow_patience`: a greedy net grows layer by layer while its validation error falls."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from ffbench import registry
from ffbench.backend import FFSchedule
from ffbench.data import prepare
from ffbench.loop import fit
from ffbench.reference import ff as RF
from ffbench.spec import parse_trial

GROW = {"algorithm": "ff", "backend": "torch", "seed": 0, "hidden": [40] * 4, "epochs": 2, "batch_size": 50,
        "data": {"train_subset": 600, "validation_size": 500, "test_subset": 300},
        "ff": {"schedule": "greedy", "grow_patience": 1}}


@pytest.mark.parametrize("ff, data, message", [
    ({"schedule": "simultaneous"}, {}, "greedy"),
    ({"episodes": 2}, {}, "one episode"),
    ({"prediction_layers": [1, 2, 3]}, {}, "must include 0"),
    ({"prediction": "softmax", "readout_phase": "after", "readout_epochs": 1}, {}, "must include 0"),  # default: all but 0
    ({}, {"validation_size": 0}, "validation"),
])
def test_grow_needs_greedy_layer_0_and_a_validation_split(ff, data, message):
    with pytest.raises(ValidationError, match=message):
        parse_trial({**GROW, "ff": {**GROW["ff"], **ff}, "data": {**GROW["data"], **data}})


class _Net(FFSchedule):
    """A schedule whose "weights" are the number of layers trained when they were saved."""

    def __init__(self, depth: int, patience: int):
        self.trial = parse_trial({**GROW, "hidden": [40] * depth, "ff": {**GROW["ff"], "grow_patience": patience}})
        self.trained, self.weights = set(), 0

    def state(self):
        return {"layers_trained": len(self.trained)}

    def load_state(self, state):
        self.weights, self.trained = state["layers_trained"], set(range(len(self.trial.hidden)))


def _grow(net: _Net, errors: list[float]) -> int:
    """Feed the validation error after each layer; return how many layers were trained."""
    for i, err in enumerate(errors):
        net.trained.add(i)
        if not net.keep_growing(err):
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
    assert net.weights == len(kept)  # the weights saved at the best depth are restored

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


# ---------------------------------------------------------------- the unsupervised (softmax) variant

UNSUP = {**GROW, "hidden": [40] * 3, "ff": {"schedule": "greedy", "grow_patience": 1, "negatives": "hybrid_image",
                                          "prediction": "softmax", "readout_phase": "after", "readout_epochs": 2,
                                          "prediction_layers": [0, 1, 2]}}


def test_a_grown_softmax_net_trains_a_read_out_after_every_layer():
    net = _Net(3, 1)
    assert [p.name for p in net.phases()] == ["ff.layer0", "ff.layer1", "ff.layer2"]  # goodness: no read-out
    net.trial = parse_trial(UNSUP)
    assert [p.name for p in net.phases()] == ["ff.layer0", "readout", "ff.layer1", "readout", "ff.layer2", "readout"]
    assert [net.grow_point(p) for p in net.phases()] == [False, True] * 3
    net.trained = {0, 1}
    assert net.readout_layers == (0, 1)  # the read-out of a 2-layer net reads its 2 layers


def test_the_read_out_of_a_grown_net_reads_zeros_for_the_layers_not_grown():
    rng = np.random.default_rng(0)
    hs = [rng.normal(size=(4, w)) for w in (3, 5, 2)]
    ff = parse_trial(UNSUP).ff
    full, part = RF.readout_features(hs, ff), RF.readout_features(hs, ff, [0])
    np.testing.assert_array_equal(part[:, :3], full[:, :3])
    assert part.shape == full.shape and not part[:, 3:].any()


def _fit(backend: str, spec: dict):
    trial = parse_trial({**spec, "backend": backend})
    curves: list = []
    out = fit(registry.load(backend), trial, prepare(trial.data), curves=curves)
    return out, pd.DataFrame(curves)


@pytest.mark.skipif(not registry.status("torch")[0], reason="torch is not installed")
def test_a_grown_softmax_net_equals_the_smaller_nets_it_passes_through():
    """Depth 1 of the grown net is exactly a 1-layer net with its own read-out: same read-out
    losses and validation error; the net kept predicts with the best depth's read-out."""
    out, c = _fit("torch", UNSUP)
    errors = c[c.metric == "grow_val_error"]["value"].tolist()
    one, c1 = _fit("torch", {**UNSUP, "hidden": [40], "ff": {**UNSUP["ff"], "grow_patience": None, "prediction_layers": [0]}})
    first_readout = c[(c.phase == "readout") & (c.metric == "readout_loss")]["value"].tolist()[:2]
    assert first_readout == c1[(c1.phase == "readout") & (c1.metric == "readout_loss")]["value"].tolist()
    assert errors[0] == one.val_error
    assert out.kept_layers == errors.index(min(errors)) + 1
    assert out.val_error == pytest.approx(min(errors))
    assert out.epochs_run == len(errors) * (2 + 2)  # each depth: its layer's epochs, then its read-out's


@pytest.mark.parametrize("backend", ["jax", "keras"])
def test_a_grown_softmax_net_grows_the_same_in_every_backend(backend):
    if not registry.status(backend)[0]:
        pytest.skip(f"{backend} is not installed")
    ref, c_ref = _fit("torch", UNSUP)
    out, c = _fit(backend, UNSUP)
    assert out.kept_layers == ref.kept_layers
    got, want = (x[x.metric == "grow_val_error"]["value"].to_numpy() for x in (c, c_ref))
    np.testing.assert_allclose(got, want, atol=2 / 500)  # at most a near-tie prediction flips
    np.testing.assert_allclose(c[c.metric == "readout_loss"]["value"], c_ref[c_ref.metric == "readout_loss"]["value"], rtol=1e-4)
