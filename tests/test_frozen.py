"""Frozen layers computed once per greedy phase (`ffbench.frozen`): the plan, its memory, and
that every backend trains to the same numbers with the cache as without it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ffbench import frozen, registry
from ffbench.backend import Phase
from ffbench.data import prepare
from ffbench.loop import fit
from ffbench.spec import parse_trial

MiB = 2**20


def _trial(**ff):
    return parse_trial(dict(algorithm="ff", backend="torch", seed=0, hidden=[32, 24], epochs=2, batch_size=50,
                            data={"train_subset": 300, "validation_size": 0, "test_subset": 100},
                            optimizer={"name": "adam", "lr": 0.01},
                            ff={"schedule": "greedy", "episodes": 2, "negatives_refresh": "episode", **ff}))


def _plan(trial, layers=(1,), n=300, width=32, by_position=False, budget=MiB):
    return frozen.plan(trial, Phase("ff.layer", 2, trial.optimizer, layers), n, width, by_position, budget)


def test_the_plan_keeps_both_halves_and_counts_their_bytes():
    p = _plan(_trial())
    assert (p.below, p.positives, p.negatives, p.bytes, p.why_not) == (1, True, True, 2 * 300 * 32 * 4, None)


@pytest.mark.parametrize("ff,data,by_position,why", [
    ({"negatives_refresh": "epoch"}, {}, False, "negatives are redrawn every epoch"),
    ({}, {}, True, "negatives are drawn per position"),
    ({"negatives": "hybrid_image", "prediction": "softmax", "readout_phase": "after", "readout_epochs": 1}, {}, False,
     "negatives are the strategy's own images"),
])
def test_negatives_that_change_every_epoch_or_step_are_recomputed(ff, data, by_position, why):
    p = _plan(_trial(**ff), by_position=by_position)
    assert (p.positives, p.negatives, p.bytes, p.why_not) == (True, False, 300 * 32 * 4, why)


def test_over_the_budget_the_negatives_go_first_then_the_positives():
    rows = 300 * 32 * 4
    p = _plan(_trial(), budget=2 * rows - 1)
    assert (p.positives, p.negatives, p.bytes) == (True, False, rows) and "over the budget" in p.why_not
    p = _plan(_trial(), budget=rows - 1)
    assert (p.positives, p.negatives, p.bytes, p.any) == (False, False, 0, False) and "FFBENCH_FROZEN_CACHE_MB" in p.why_not


def test_layer_0_caches_its_normalised_image_and_no_plan_where_the_input_is_not_fixed():
    p = _plan(_trial(), layers=(0,), width=784, budget=16 * MiB)  # the first layer's input: the overlaid images
    assert (p.below, p.width, p.bytes) == (0, 784, 2 * 300 * 784 * 4)
    recurrent = _trial(schedule="simultaneous", episodes=1, negatives_refresh="epoch", peer_weight=0.0, recurrent={})
    assert _plan(recurrent, layers=(0, 1)) is None and _plan(recurrent, layers=(1,)) is None
    simultaneous = _trial(schedule="simultaneous", episodes=1, negatives_refresh="epoch")
    assert _plan(simultaneous, layers=(0, 1)) is None
    one = frozen.plan(_trial(), Phase("ff.layer1", 1, _trial().optimizer, (1,)), 300, 32, False, MiB, steps=1)
    assert not one.any and one.why_not == "a phase of one step has nothing to reuse"
    jittered = _trial().model_copy(update={"data": _trial().data.model_copy(update={"jitter": 1})})
    assert not _plan(jittered).any and _plan(jittered).why_not == "jittered positives change every epoch"


def test_the_budget_is_the_variable_or_a_quarter_of_what_is_free(monkeypatch):
    monkeypatch.delenv(frozen.BUDGET_ENV, raising=False)
    assert frozen.budget_bytes(4000) == 1000
    monkeypatch.setenv(frozen.BUDGET_ENV, "1.5")
    assert frozen.budget_bytes(4000) == int(1.5 * MiB)
    monkeypatch.setenv(frozen.BUDGET_ENV, "lots")
    with pytest.raises(ValueError, match="FFBENCH_FROZEN_CACHE_MB='lots': expected a number of MiB"):
        frozen.budget_bytes(4000)


def _fit(backend, monkeypatch, budget_mb, **ff):
    monkeypatch.setenv(frozen.BUDGET_ENV, budget_mb)
    trial = _trial(**ff).model_copy(update={"backend": backend})
    curves: list = []
    out = fit(registry.load(backend), trial, prepare(trial.data), curves=curves)
    c = pd.DataFrame(curves)
    return out, c[c.metric == "frozen_cache_bytes"].groupby("phase")["value"].first().to_dict()


@pytest.mark.parametrize("backend", ["torch", "jax", "keras"])
@pytest.mark.parametrize("ff,cached", [({}, 2), ({"negatives_refresh": "epoch"}, 1)])
def test_each_backend_trains_to_the_same_numbers_with_the_frozen_layers_cached(backend, ff, cached, monkeypatch):
    """Two episodes of two greedy layers: cached (both halves; or the positives alone, the
    negatives redrawn every epoch and run through the frozen layers at every step, the path
    the strategy's own negative images take too) and recomputed end at the same losses and
    errors; each phase records the bytes it held (300 images x 784 pixels, or x 32 units)."""
    if not registry.status(backend)[0]:
        pytest.skip(f"{backend} is not installed")
    (kept, held), (plain, none) = (_fit(backend, monkeypatch, mb, **ff) for mb in ("64", "0"))
    assert none == {}
    assert held == {f"ff.episode{k}.layer{i}": cached * 300 * w * 4 for k in range(2) for i, w in ((0, 784), (1, 32))}
    for name in ("ff_loss", "readout_loss"):
        if name in plain.final_losses:
            assert kept.final_losses[name] == pytest.approx(plain.final_losses[name], rel=1e-5)
    assert kept.test_error == plain.test_error and kept.train_error == plain.train_error


@pytest.mark.skipif(not registry.status("torch")[0], reason="torch is not installed")
def test_a_cached_torch_step_runs_only_the_trained_layer(monkeypatch):
    """With the cache a step of layer 1 runs one layer forward, not two; the cached rows are
    layer 1's normalised input: the frozen layer's outputs on the positives (each image with
    its own label), then on the negatives; a full batch reads them all, in their order."""
    import torch
    from ffbench_backends.torch import ff as tff
    from ffbench_backends.torch import ops

    from ffbench.reference import negatives as RN

    monkeypatch.setenv(frozen.BUDGET_ENV, "64")
    trial = _trial()
    data = prepare(trial.data)
    tr = registry.load("torch").trainer(trial, data)
    phases = tr.phases()
    for phase in phases[:2]:
        tr.begin_phase(phase)
        tr.train_epoch(phase, 0, 0.01)
    calls = []
    real = ops.layer_forward
    monkeypatch.setattr(tff.ops, "layer_forward", lambda *a, **k: calls.append(k.get("normalized")) or real(*a, **k))
    tr.train_epoch(phases[1], 1, 0.01)
    assert calls == [True] * tr.steps_per_epoch  # one layer per step, on the cached input: the frozen one not run again
    x, y = tr.splits["train"]
    neg = RN.sample_negatives(trial, data.train.x, data.train.y, 0, None, 0)  # episode 0's draw (refresh: episode)
    for half, labels in enumerate((y, torch.as_tensor(neg))):
        expect = tff.frozen_input(tr.params[:1], tr.running[:1], ops.overlay(x, labels, tr.ff), tr.ff, "fp32")
        np.testing.assert_allclose(tr._rows[half * 300:(half + 1) * 300].numpy(), expect.numpy(), rtol=1e-6, atol=1e-6)
    assert frozen.row_index(torch.arange(300), 300, True, torch.cat) is None  # a full batch: all rows, as they are
    assert frozen.row_index(torch.tensor([4, 1]), 300, True, torch.cat).tolist() == [4, 1, 304, 301]
    assert frozen.row_index(torch.tensor([4, 1]), 300, False, torch.cat).tolist() == [4, 1]
