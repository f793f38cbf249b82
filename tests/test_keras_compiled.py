"""The Keras FF step runs as one compiled program (XLA on TensorFlow, jax.jit on JAX), with
the same numbers as the eager step."""

from __future__ import annotations

import numpy as np
import pytest

from ffbench import registry
from ffbench.parity import dataset as _dataset
from ffbench.reference.optim import lr_at
from ffbench.spec import parse_trial

pytestmark = pytest.mark.skipif(not registry.status("keras")[0], reason="keras is not installed")

SPEC = {"algorithm": "ff", "backend": "keras", "seed": 0, "hidden": [24, 24], "epochs": 2, "batch_size": 50,
        "optimizer": {"name": "sgd", "momentum": 0.9, "lr": 0.05},
        "ff": {"prediction": "softmax", "peer_weight": 0.03, "readout_optimizer": {"name": "sgd", "lr": 0.1}}}


def _train(spec: dict):
    rng = np.random.default_rng(2)
    data = _dataset(rng.random((200, 784), dtype=np.float32), rng.integers(0, 10, 200).astype(np.int64))
    tr = registry.load("keras").trainer(parse_trial(spec), data)
    epoch, steps = 0, []
    for phase in tr.phases():
        tr.begin_phase(phase)
        steps.append(tr._step)
        for e in range(phase.epochs):
            losses = tr.epoch_losses(tr.train_epoch(phase, epoch, lr_at(phase.optimizer, e, phase.epochs)))
            epoch += 1
    return tr.state(), losses, steps


@pytest.mark.parametrize("schedule", ["simultaneous", "greedy"])
def test_compiled_step_matches_the_eager_step(schedule, monkeypatch):
    import keras
    spec = {**SPEC, "ff": {**SPEC["ff"], "schedule": schedule}}
    if schedule == "greedy":  # a greedy read-out trains after the layers, with its own phase
        spec["ff"] = {**spec["ff"], "readout_phase": "after", "readout_epochs": 1}
    state, losses, steps = _train(spec)
    assert all(s.backend == keras.backend.backend() for s in steps)  # really compiled
    monkeypatch.setenv("FFBENCH_KERAS_EAGER", "1")
    eager_state, eager_losses, eager_steps = _train(spec)
    assert all(s.backend is None for s in eager_steps)
    for k in state:
        scale = max(1e-3, float(np.abs(eager_state[k]).max()))
        np.testing.assert_allclose(state[k], eager_state[k], rtol=0, atol=1e-5 * scale, err_msg=k)
    assert losses.keys() == eager_losses.keys()
    assert np.allclose(losses.get("readout_loss", 0), eager_losses.get("readout_loss", 0), rtol=1e-5)
