"""Per-layer epoch windows (`ff.layer_epochs`, CwComp's ILT): the stretches and phases by hand,
the refusals, and the reference's meaning (a layer moves only in its window, with its own
optimiser step count), and a backend's trainer against it."""

from __future__ import annotations

import numpy as np
import pytest

from ffbench import layer_windows, registry
from ffbench.parity import compare_trained, dataset, ref_train, synthetic_batch
from ffbench.reference import train as RT
from ffbench.reference.init import ff_init
from ffbench.spec import parse_trial

NET = {"channels": [10, 20], "groups": [1, 10], "pool": ["none", "max"], "norm": "batch", "bn_eps": 1e-4}


def _trial(windows, epochs=3, **kw):
    return parse_trial({"algorithm": "ff", "backend": "torch", "seed": 0, "epochs": epochs, "batch_size": 16,
                        "optimizer": kw.pop("optimizer", {"name": "adam", "lr": 0.01}), "conv": kw.pop("conv", NET),
                        "ff": {"objective": "cwc", "negatives": "none", "norm": "none", "layer_epochs": windows, **kw}})


def test_stretches_by_hand():
    # CwComp's CIFAR-10 "Fast" ILT: layers join and leave; each stretch one contiguous range
    assert layer_windows.stretches([[0, 11], [2, 18], [4, 26], [6, 32]], 32) == [
        (0, 2, (0,)), (2, 4, (0, 1)), (4, 6, (0, 1, 2)), (6, 11, (0, 1, 2, 3)), (11, 18, (1, 2, 3)), (18, 26, (2, 3)),
        (26, 32, (3,))]
    assert layer_windows.stretches([[0, 2], [0, 3], [0, 4], [0, 5]], 5) == [  # its MNIST "Acc"
        (0, 2, (0, 1, 2, 3)), (2, 3, (1, 2, 3)), (3, 4, (2, 3)), (4, 5, (3,))]
    t = _trial([[0, 2], [1, 3]])
    tr = registry.load("torch").trainer(t, dataset(*synthetic_batch(32)))
    assert [(p.name, p.epochs, p.layers) for p in tr.phases()] == [
        ("ff.layers0-0", 1, (0,)), ("ff.layers0-1", 1, (0, 1)), ("ff.layers1-1", 1, (1,))]


@pytest.mark.parametrize("windows, kw, message", [
    ([[0, 1], [2, 3]], {}, "no layer trains in epoch 1"),
    ([[0, 3]], {}, "one \\[start, end\\) window per layer \\(2\\); got 1"),
    ([[0, 4], [0, 3]], {}, "0 <= start < end <= epochs \\(3\\)"),
    ([[2, 2], [0, 3]], {}, "0 <= start < end <= epochs"),
    ([[0, 3], [0, 3]], {"schedule": "greedy"}, "does not combine with ff.schedule"),
])
def test_refusals(windows, kw, message):
    with pytest.raises(ValueError, match=message):
        _trial(windows, **kw)
    with pytest.raises(ValueError, match="not a contiguous range"):
        _trial([[0, 3], [1, 2], [0, 3]], conv={**NET, "channels": [10, 20, 20], "groups": 1, "pool": "none"})


def test_a_layer_moves_only_in_its_window_with_its_own_step_count():
    x, y = synthetic_batch(48, seed=0)
    t = _trial([[0, 1], [1, 3]])  # layer 0: epoch 0; layer 1: epochs 1 and 2
    init = [tuple(a.astype(np.float64) for a in p) for p in ff_init(0, 784, t.hidden, t.ff)]
    params, running = RT.ff_windowed_run(init, x.astype(np.float64), y, t)
    one = _trial([[0, 1], [0, 1]], epochs=1)  # both layers for epoch 0 alone: layer 0 identical
    first, _ = RT.ff_windowed_run(init, x.astype(np.float64), y, one)
    for a, b in zip(params[0], first[0]):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(params[1][0], first[1][0]) and running[1].shape == (2, 20)
    # layer 1's Adam starts at step 1 in epoch 1: its first update is lr * sign(g) (bias-corrected),
    # whatever layer 0 did before; a shared step count (t = 4) would make it smaller
    t1 = _trial([[0, 1], [1, 2]], epochs=2, optimizer={"name": "adam", "lr": 0.01})
    small, _ = RT.ff_windowed_run(init, x[:16].astype(np.float64), y[:16], t1)  # one step per epoch
    moved = np.abs(small[1][0] - init[1][0])
    assert np.isclose(moved.max(), 0.01, rtol=1e-4) and np.median(moved) > 0.009


def test_no_windows_keep_the_ids():
    base = parse_trial({"algorithm": "ff", "backend": "torch", "seed": 0, "epochs": 3, "hidden": [20, 20]})
    assert base.ff.layer_epochs is None and "layer_epochs" not in base.model_dump(exclude_defaults=True)["ff"]


@pytest.mark.skipif(not registry.status("torch")[0], reason="torch is not installed")
def test_torch_trains_windows_as_the_reference():
    x, y = synthetic_batch(48, seed=0)
    for windows in ([[0, 2], [1, 3]], [[0, 2], [0, 3]]):
        t = _trial(windows, optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.9})
        out = []
        compare_trained(out, registry.load("torch"), "torch", "windows", t, x, y, "params@N/bn")
        assert out and all(c.passed for c in out), [c for c in out if not c.passed]
        assert {c.quantity.split(".")[-1] for c in out} == {"W0", "b0", "gamma0", "beta0", "bn0", "W1", "b1", "gamma1",
                                                             "beta1", "bn1"}
    trained = ref_train(t, x, y)
    assert len(trained) == 2 and len(trained[1]) == 4
