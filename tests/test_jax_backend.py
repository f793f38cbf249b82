"""JAX specifics: each phase's epoch is compiled ahead of time (its cost reported apart)."""

import pytest

jax = pytest.importorskip("jax")

from ffbench import registry  # noqa: E402
from ffbench.loop import fit  # noqa: E402
from ffbench.parity import dataset as _dataset  # noqa: E402
from ffbench.parity import synthetic_batch  # noqa: E402
from ffbench.spec import parse_trial  # noqa: E402


@pytest.mark.parametrize("spec", [
    {"algorithm": "ff", "ff": {"schedule": "greedy", "prediction": "softmax", "readout_phase": "after", "readout_epochs": 1}},
    {"algorithm": "bp"},
])
def test_epochs_are_compiled_ahead_of_time(spec):
    x, y = synthetic_batch(40)
    trial = parse_trial({"backend": "jax", "seed": 0, "hidden": [8, 8], "epochs": 2, "batch_size": 10, **spec})
    backend = registry.load("jax")
    tr = backend.trainer(trial, _dataset(x, y))
    phase = tr.phases()[0]
    tr.begin_phase(phase)
    assert isinstance(tr._epoch, jax.stages.Compiled)  # train_epoch runs a compiled program, no tracing
    outcome = fit(backend, trial, _dataset(x, y))
    assert outcome.compile_seconds > 0 and outcome.epochs_run == (5 if trial.algorithm == "ff" else 2)
