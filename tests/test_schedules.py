"""Optimiser schedules and per-layer optimisers (SCFF's): decoupled weight decay (AdamW), the
learning rate decayed every P updates, epoch milestones, `ff.layer_optimizers`; the reference
against torch.optim's own AdamW, ExponentialLR and MultiStepLR stepped as the authors' code
steps them."""

from __future__ import annotations

import numpy as np
import pytest

from ffbench import registry
from ffbench.reference import optim
from ffbench.spec import OptimizerSpec, parse_trial

ADAMW = {"name": "adam", "lr": 0.003, "weight_decay": 0.01, "weight_decay_mode": "decoupled", "decay_rate": 0.9,
         "decay_every": 3}


def test_the_update_factor_by_hand():
    spec = OptimizerSpec(**ADAMW)
    assert [spec.decay(k) for k in range(1, 8)] == pytest.approx([1, 1, 0.9, 0.9, 0.9, 0.81, 0.81])
    assert OptimizerSpec().decay(10**6) == 1.0


@pytest.mark.skipif(not registry.status("torch")[0], reason="torch is not installed")
def test_adamw_with_step_decay_is_torchs_as_scff_steps_it():
    """ContrastFF_MNIST.py: AdamW(lr, weight_decay), ExponentialLR(gamma) stepped after the update
    of batch b (b counted from 1) where (b + 1) % period == 0. Float64, 10 updates."""
    import torch

    g = np.random.default_rng(0)
    p0, grads = g.normal(size=(4, 3)), [g.normal(size=(4, 3)) for _ in range(10)]
    w = torch.tensor(p0, requires_grad=True)
    opt = torch.optim.AdamW([w], lr=0.003, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, 0.9)
    spec, state, p = OptimizerSpec(**ADAMW), None, [p0]
    state = optim.init(spec, p)
    for b, gr in enumerate(grads, start=1):
        w.grad = torch.tensor(gr)
        opt.step()
        if (b + 1) % 3 == 0:
            sched.step()
        p, state = optim.update(spec, [gr], state, p, optim.lr_at(spec, 0, 1))
        np.testing.assert_allclose(p[0], w.detach().numpy(), rtol=1e-12, atol=1e-15, err_msg=f"update {b}")


@pytest.mark.skipif(not registry.status("torch")[0], reason="torch is not installed")
def test_milestones_are_multisteplr():
    import torch

    spec = OptimizerSpec(lr=1e-3, milestones=[10, 17, 25, 30, 35, 40, 45], milestone_factor=0.5)  # SCFF's probe
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1e-3)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [10, 17, 25, 30, 35, 40, 45], 0.5)
    for epoch in range(50):
        assert optim.lr_at(spec, epoch, 50) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        sched.step()
    assert optim.lr_at(spec, 49, 50) == pytest.approx(1e-3 / 2**7)


@pytest.mark.parametrize("opt, message", [
    ({"name": "sgd", "weight_decay_mode": "decoupled"}, "decoupled is adam's"),
    ({"decay_rate": 0.9}, "decay_rate and decay_every go together"),
    ({"milestones": [5, 3]}, "milestones must be increasing"),
    ({"milestones": [3], "cooldown_start": 0.5}, "do not combine with cooldown_start"),
    ({"milestone_factor": 0.5}, "milestone_factor applies with milestones only"),
])
def test_optimiser_refusals(opt, message):
    with pytest.raises(ValueError, match=message):
        OptimizerSpec(**opt)


BASE = {"algorithm": "ff", "backend": "torch", "seed": 0, "hidden": [8, 8], "epochs": 3}


def test_each_phase_takes_its_layers_optimiser():
    from ffbench.backend import FFSchedule

    a, b = {**ADAMW, "lr": 0.01}, {**ADAMW, "lr": 0.02}
    t = parse_trial({**BASE, "ff": {"layer_epochs": [[0, 2], [2, 3]], "layer_optimizers": [a, b]}})
    sched = FFSchedule.__new__(FFSchedule)
    sched.trial = t
    assert [(p.name, p.epochs, p.optimizer.lr) for p in sched.phases()] == [("ff.layers0-0", 2, 0.01), ("ff.layers1-1", 1, 0.02)]
    g = parse_trial({**BASE, "ff": {"schedule": "greedy", "layer_optimizers": [a, b]}})
    sched.trial = g
    assert [p.optimizer.lr for p in sched.phases()] == [0.01, 0.02]


@pytest.mark.parametrize("ff, message", [
    ({"layer_optimizers": [ADAMW]}, "expected one per layer \\(2\\); got 1"),
    ({"layer_optimizers": [ADAMW, {**ADAMW, "lr": 0.1}]}, "layers \\[0, 1\\] train together"),
    ({"layer_epochs": [[0, 2], [1, 3]], "layer_optimizers": [ADAMW, {**ADAMW, "lr": 0.1}]}, "layers \\[0, 1\\] train together"),
])
def test_layer_optimiser_refusals(ff, message):
    with pytest.raises(ValueError, match=message):
        parse_trial({**BASE, "ff": ff})
