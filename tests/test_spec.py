"""The spec: validation, defaults (pinned) and the trial_id content hash."""

import hashlib

import pytest
from pydantic import ValidationError

from ffbench.spec import (
    SPEC_VERSION,
    BPTrial,
    ConvSpec,
    FFSpec,
    FFTrial,
    OptimizerSpec,
    RecurrentSpec,
    normal_form,
    parse_trial,
    trial_id,
)
from ffbench.spec_conv import LAYER_DEFAULTS

BASE = {"algorithm": "ff", "backend": "torch", "seed": 0, "hidden": [100, 100], "epochs": 2}

# Changing any of these changes the meaning of existing trial_ids: bump SPEC_VERSION and update.
PINNED_DEFAULTS = {
    "FFSpec": {"label_channels": "first", "label_on": 1.0, "label_on_mode": "constant", "label_neutral": 0.1, "norm": "rms",
               "norm_eps": 1e-8,
               "relu_grad": "standard", "activation": "relu", "goodness": "mean", "threshold": 1.0,
               "threshold_scale": "constant", "sign": "max_ssq",
               "peer_weight": 0.0, "peer_momentum": 0.9, "schedule": "simultaneous", "episodes": 1,
               "layer_epochs": None, "layer_optimizers": None, "grow_patience": None,
               "negatives": "wrong_label", "negatives_params": None,
               "objective": "logistic", "objective_params": None, "hybrid_blur_passes": 6, "negatives_refresh": "epoch",
               "prediction": "goodness", "prediction_layers": None, "readout_optimizer": None, "readout_phase": "joint",
               "readout_epochs": None, "init": "uniform_fan_in", "receptive_field": None, "recurrent": None,
               "goodness_over": "map"},
    "ConvSpec": {"kernel": 3, "stride": 1, "padding": 1, "groups": 1, "pool": "none", "pool_size": 2},
    # the paper's recurrent net (sec. 3.4): 8 iterations, damping 0.3, goodness over iterations 3-5
    "RecurrentSpec": {"iterations": 8, "damping": 0.3, "score_from": 3, "score_to": 5, "loss_from": 1, "loss_to": None,
                      "init": "bottom_up"},
    "OptimizerSpec": {"name": "adam", "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                      "eps_mode": "after_bias_correction", "momentum": 0.0, "weight_decay": 0.0,
                      "weight_decay_mode": "l2", "cooldown_start": None, "milestones": None, "milestone_factor": 0.1,
                      "decay_rate": None, "decay_every": None},
    "trial": {"conv": None, "batch_size": 100, "precision": "fp32", "eval_every": 1, "eval_batch_size": 1000,
              "data": {"name": "mnist", "validation_size": 10000, "train_subset": None, "test_subset": None,
                       "pixel_scale": "unit", "jitter": 0, "classes": None}},
}


def test_defaults_are_pinned():
    assert SPEC_VERSION == 1
    assert FFSpec().model_dump() == PINNED_DEFAULTS["FFSpec"]
    assert RecurrentSpec().model_dump() == PINNED_DEFAULTS["RecurrentSpec"]
    assert {**LAYER_DEFAULTS, "pool_size": ConvSpec.model_fields["pool_size"].default} == PINNED_DEFAULTS["ConvSpec"]
    assert OptimizerSpec().model_dump() == PINNED_DEFAULTS["OptimizerSpec"]
    t = parse_trial(BASE).model_dump()
    assert {k: t[k] for k in PINNED_DEFAULTS["trial"]} == PINNED_DEFAULTS["trial"]


def test_trial_id_is_stable():
    # A golden value: if this changes, every stored result would be orphaned.
    payload = ('{"dataset":"abc","spec":{"algorithm":"ff","backend":"torch","epochs":2,"ff":{"prediction_layers":[0,1]},'
               '"hidden":[100,100],"seed":0},"spec_version":1}')
    expected = hashlib.sha256(payload.encode()).hexdigest()[:16]
    assert trial_id(parse_trial(BASE), "abc") == expected == "cf7961a1a65dc16f"


def test_trial_id_ignores_meta_and_explicit_defaults():
    a = parse_trial(BASE)
    b = parse_trial({**BASE, "batch_size": 100, "ff": {"threshold": 1.0}, "meta": {"experiment": "x", "tags": ["t"]}})
    assert trial_id(a, "d") == trial_id(b, "d")


@pytest.mark.parametrize("change", [{"seed": 1}, {"hidden": [100]}, {"ff": {"threshold": 2.0}}, {"backend": "torch", "epochs": 3},
                                    {"optimizer": {"lr": 0.01}}, {"data": {"train_subset": 10}}])
def test_trial_id_changes_with_content(change):
    assert trial_id(parse_trial(BASE), "d") != trial_id(parse_trial({**BASE, **change}), "d")
    assert trial_id(parse_trial(BASE), "d") != trial_id(parse_trial(BASE), "other-dataset")


def test_normal_form_drops_defaults_and_meta():
    nf = normal_form(parse_trial({**BASE, "meta": {"tags": ["x"]}}))
    assert nf == {"algorithm": "ff", "backend": "torch", "seed": 0, "hidden": [100, 100], "epochs": 2,
                  "ff": {"prediction_layers": [0, 1]}}


def test_round_trip_through_a_dump():
    t = parse_trial({**BASE, "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
                     "ff": {"prediction": "softmax", "readout_phase": "after", "readout_epochs": 2}})
    again = parse_trial(t.model_dump(mode="json"))
    assert again == t and trial_id(again, "d") == trial_id(t, "d")


def test_prediction_layers_are_resolved_explicitly():
    assert parse_trial(BASE).ff.prediction_layers == [0, 1]
    soft = parse_trial({**BASE, "hidden": [5, 5, 5], "ff": {"prediction": "softmax"}})
    assert soft.ff.prediction_layers == [1, 2]
    assert parse_trial({**BASE, "hidden": [5], "ff": {"prediction": "softmax"}}).ff.prediction_layers == [0]


@pytest.mark.parametrize("bad,needle", [
    ({"ff": {"prediction_layers": [2]}}, "out of range"),
    ({"ff": {"prediction_layers": []}}, "at least one layer"),
    ({"optimizer": {"name": "sgd", "beta1": 0.5}}, "beta1 applies to adam only"),
    ({"optimizer": {"name": "adam", "momentum": 0.9}}, "momentum applies to sgd only"),
    ({"ff": {"schedule": "greedy", "prediction": "softmax"}}, "readout_phase: after"),
    ({"ff": {"readout_epochs": 3}}, "softmax only"),
    ({"ff": {"prediction": "softmax", "readout_phase": "after"}}, "readout_epochs is required"),
    ({"backend": "tourch"}, "unknown backend 'tourch'"),
    ({"ff": {"negatives": "random"}}, "wrong_label"),
    ({"epochs": 0}, "greater than 0"),
    ({"epochs": "10"}, "valid integer"),
    ({"ff": {"threshold": "2"}}, "valid number"),
    ({"ff": {"treshold": 2.0}}, "Extra inputs"),
    ({"seed": True}, "valid integer"),
    ({"ff": {"episodes": 2}}, "needs ff.schedule: greedy"),
    ({"ff": {"schedule": "greedy", "episodes": 2}, "optimizer": {"cooldown_start": 0.5}}, "cooldown_start is per phase"),
    ({"batch_size": "all"}, "full"),
    ({"hidden": [784, 1568], "ff": {"receptive_field": 4}}, "must be odd"),
    ({"hidden": [784, 1000], "ff": {"receptive_field": 5}}, r"multiple of 784\); got \[1000\]"),
    ({"ff": {"negatives": "hard_label", "negatives_refresh": "once"}}, "epoch or episode"),
])
def test_invalid_specs_are_rejected(bad, needle):
    with pytest.raises(ValidationError, match=needle):
        parse_trial({**BASE, **bad})


def test_bp_has_no_ff_block():
    assert isinstance(parse_trial({**BASE, "algorithm": "bp"}), BPTrial)
    with pytest.raises(ValidationError):
        parse_trial({**BASE, "algorithm": "bp", "ff": {}})
    assert isinstance(parse_trial(BASE), FFTrial)
