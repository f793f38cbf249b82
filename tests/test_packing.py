"""Trial packing: which trials pack, and a packed trial trains exactly as it would alone."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ffbench import loop, registry, runner
from ffbench.packing import pack_key, units
from ffbench.parity import dataset as _dataset
from ffbench.reference.optim import lr_at
from ffbench.spec import parse_trial


def _spec(**kw) -> dict:
    base = {"algorithm": "ff", "backend": "jax", "seed": 0, "hidden": [24, 24], "epochs": 2, "batch_size": 50,
            "data": {"train_subset": 300, "test_subset": 200}, "optimizer": {"name": "sgd", "momentum": 0.9, "lr": 0.05}}
    for k, v in kw.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = {**base[k], **v}
        else:
            base[k] = v
    return parse_trial(base).model_dump(mode="json")


# ---------------------------------------------------------------- grouping
def test_pack_key_ignores_seed_learning_rates_and_meta_only():
    a = _spec(seed=0, meta={"experiment": "a", "tags": ["x"]})
    same = [_spec(seed=7), _spec(optimizer={"lr": 0.5}), _spec(meta={"experiment": "b"}),
            _spec(ff={"prediction": "softmax", "readout_phase": "after", "readout_epochs": 1, "schedule": "greedy",
                      "readout_optimizer": {"name": "sgd", "lr": 0.1}})]
    assert all(pack_key(s) == pack_key(a) for s in same[:3])
    other = [_spec(hidden=[24, 16]), _spec(epochs=3), _spec(batch_size=25), _spec(optimizer={"momentum": 0.5}),
             _spec(optimizer={"weight_decay": 1e-4}), _spec(ff={"negatives": "permuted_label"}), _spec(backend="torch"),
             _spec(data={"train_subset": 400}), _spec(algorithm="bp")]
    assert len({pack_key(s) for s in other} | {pack_key(a)}) == len(other) + 1
    readout = same[3]
    assert pack_key(readout) == pack_key(
        {**readout, "ff": {**readout["ff"], "readout_optimizer": {**readout["ff"]["readout_optimizer"], "lr": 9.0}}})


def test_units_group_by_key_in_plan_order_and_respect_size_and_refusals():
    specs = [_spec(seed=s) for s in range(5)] + [_spec(hidden=[8]), _spec(seed=9, backend="torch"), _spec(seed=5)]
    can = lambda s: s["backend"] == "jax"  # noqa: E731
    assert units(specs, can, size=8) == [[0, 1, 2, 3, 4, 7], [5], [6]]
    assert units(specs, can, size=4) == [[0, 1, 2, 3], [4, 7], [5], [6]]
    assert units(specs, can, size=1) == [[i] for i in range(8)]
    assert units(specs, lambda s: False) == [[i] for i in range(8)]


# ---------------------------------------------------------------- packed == alone
# As in `ffbench check`, the optimisers are SGD: Adam turns float32 noise in a near-zero
# gradient (a dead unit, the zero-initialised read-out) into a step of size lr.
CASES = {
    "simultaneous-peer-cooldown": dict(ff={"peer_weight": 0.03, "negatives": "wrong_label"},
                                       optimizer={"cooldown_start": 0.5, "lr": 0.01}),
    "greedy-hybrid-readout-jitter": dict(ff={"schedule": "greedy", "negatives": "hybrid_image", "hybrid_blur_passes": 1,
                                             "prediction": "softmax", "readout_phase": "after", "readout_epochs": 1,
                                             "readout_optimizer": {"name": "sgd", "momentum": 0.9, "lr": 0.01}},
                                         data={"jitter": 1}),
    "episodes-hard-top2": dict(ff={"schedule": "greedy", "episodes": 2, "negatives": "hard_label_top2",
                                   "negatives_refresh": "episode"}, epochs=1),
    "joint-readout-permuted": dict(ff={"negatives": "permuted_label", "prediction": "softmax",
                                       "readout_optimizer": {"name": "sgd", "lr": 0.05}}),
    "bp-jitter": dict(algorithm="bp", data={"jitter": 1}),
    # a batch-normalised conv BP twin: each member's running statistics carried through the pack
    "bp-conv-bn": dict(algorithm="bp", hidden=None,
                       conv={"channels": [4, 6], "pool": ["max", "none"], "norm": ["batch", "none"]}),
}


def _variants(case: dict) -> list:
    """Two members, differing in seed and in learning rates."""
    out = []
    for seed, scale in ((0, 1.0), (1, 3.0)):
        spec = _spec(**case, seed=seed)
        spec["optimizer"]["lr"] *= scale
        if spec.get("ff", {}).get("readout_optimizer"):
            spec["ff"]["readout_optimizer"]["lr"] *= scale
        out.append(parse_trial(spec))
    return out


def _run_phases(tr, trials) -> None:
    """Train through every phase with each trial's own learning-rate schedule (no evaluation)."""
    members = getattr(tr, "members", None)
    epoch = 0
    for i, phase in enumerate(tr.phases()):
        tr.begin_phase(phase)
        for e in range(phase.epochs):
            if members is None:
                tr.train_epoch(phase, epoch, lr_at(phase.optimizer, e, phase.epochs))
            else:
                tr.train_epoch(phase, epoch, [lr_at(m.phases()[i].optimizer, e, phase.epochs) for m in members])
            epoch += 1
    tr.sync()


@pytest.mark.parametrize("name", ["torch", "jax", "keras"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_packed_trial_matches_its_unpacked_run(case, name):
    ok, reason = registry.status(name)
    if not ok:
        pytest.skip(reason)
    backend = registry.load(name)
    trials = [parse_trial({**t.model_dump(mode="json"), "backend": name}) for t in _variants(CASES[case])]
    if name == "keras" and backend.pack_skip(trials[0]):  # on TensorFlow: run on jax by the next test
        pytest.skip(backend.pack_skip(trials[0]))
    rng = np.random.default_rng(3)
    data = _dataset(rng.random((200, 784), dtype=np.float32), rng.integers(0, 10, 200).astype(np.int64))
    packed = backend.packed_trainer(trials, data)
    _run_phases(packed, trials)
    for trial, member in zip(trials, packed.members):
        alone = backend.trainer(trial, data)
        _run_phases(alone, [trial])
        want, got = alone.state(), member.state()
        assert want.keys() == got.keys()
        for k in want:
            scale = max(1e-3, float(np.abs(want[k]).max()))
            np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-5 * scale, err_msg=f"{case} seed {trial.seed} {k}")
        assert member.error("test") == pytest.approx(alone.error("test"), abs=1 / 200)
    # the members really differ: seeds and learning rates were not collapsed into one
    assert not np.allclose(packed.members[0].state()["W0"], packed.members[1].state()["W0"])


# ---------------------------------------------------------------- the runner
class _Quiet:
    def skipped(self, n): ...
    def trial_started(self, p, where): ...
    def epoch(self, p, done, total, info): ...
    def trial_finished(self, p, row): ...


@pytest.mark.parametrize("name", ["torch", "jax", "keras"])
def test_runner_packs_writes_a_row_per_trial_and_isolates_a_diverged_member(tmp_path, name, monkeypatch):
    ok, reason = registry.status(name)
    if not ok:
        pytest.skip(reason)
    if name == "keras" and registry.load("keras").pack_skip(parse_trial(_spec(backend="keras"))):
        pytest.skip(registry.load("keras").pack_skip(parse_trial(_spec(backend="keras"))))  # on TensorFlow: run on jax above
    if name == "torch" and registry.load("torch").device.type == "cpu":  # torch packs on a CPU only when asked
        assert "FFBENCH_TORCH_PACK_ON_CPU=1" in registry.load("torch").pack_skip(parse_trial(_spec(backend="torch")))
        monkeypatch.setenv("FFBENCH_TORCH_PACK_ON_CPU", "1")
    specs = [_spec(seed=s, epochs=1, backend=name, data={"train_subset": 300, "test_subset": 200, "validation_size": 0})
             for s in (0, 1)]
    specs.append({**specs[0], "optimizer": {**specs[0]["optimizer"], "momentum": 0.5, "lr": 1e30}, "seed": 2})  # another shape
    specs.append({**specs[0], "optimizer": {**specs[0]["optimizer"], "lr": 1e30}, "seed": 3})  # packs with 0 and 1, diverges
    planned = runner.plan(parse_trial(s) for s in specs)
    packed = runner.run(planned, tmp_path / "packed", runner.LocalExecutor(), _Quiet())
    alone = runner.run(planned, tmp_path / "alone", runner.LocalExecutor(), _Quiet(), pack_size=1)
    a = pd.DataFrame(packed.rows).set_index("seed").sort_index()
    b = pd.DataFrame(alone.rows).set_index("seed").sort_index()
    assert list(a["pack_size"]) == [3, 3, 1, 3] and list(b["pack_size"]) == [1, 1, 1, 1]
    pack = json.loads(a.loc[0, "pack_ids"])
    assert sorted(pack) == sorted(a.loc[[0, 1, 3], "trial_id"]) and pd.isna(a.loc[2, "pack_ids"])
    assert list(a["trial_id"]) == list(b["trial_id"])  # packing never changes a trial's identity
    assert list(a["status"]) == ["ok", "ok", "diverged", "diverged"] == list(b["status"])
    assert "epoch 1" in a.loc[3, "error"]
    for seed in (0, 1):
        assert a.loc[seed, "test_error"] == pytest.approx(b.loc[seed, "test_error"], abs=1 / 200)
        assert json.loads(a.loc[seed, "final_losses"])["ff_loss"]["0"] == pytest.approx(
            json.loads(b.loc[seed, "final_losses"])["ff_loss"]["0"], rel=1e-5)
    on_disk = pd.read_parquet(tmp_path / "packed" / "trials")
    assert len(on_disk) == 4 and set(on_disk["pack_size"]) == {1, 3}

    # a pack whose worker never came back: every member's row still names its pack
    lost = [runner.lost_trial(p, "failed", "WorkerCrashedError", pack=pack) for p in planned if p.trial_id in pack]
    assert {r.row["pack_size"] for r in lost} == {3} and {r.row["pack_ids"] for r in lost} == {json.dumps(pack)}


def test_the_driver_packs_from_framework_free_traits_and_the_worker_has_the_last_word(tmp_path, monkeypatch):
    """The driver decides packs without torch: a trial asking for a GPU packs, one on a CPU
    does not, and one whose device the scheduler cannot tell (the local executor) is packed
    provisionally; its worker, which knows the device, then trains the members one by one
    where the backend refuses (torch on a CPU), with the same rows as unpacked."""
    monkeypatch.delenv("FFBENCH_TORCH_PACK_ON_CPU", raising=False)
    specs = [_spec(seed=s, epochs=1, backend="torch", data={"train_subset": 200, "test_subset": 100, "validation_size": 0})
             for s in (0, 1, 2)]
    planned = runner.plan(parse_trial(s) for s in specs)
    assert [len(u) for u in runner.pack(planned, on_gpu=lambda spec: True)] == [3]
    assert [len(u) for u in runner.pack(planned, on_gpu=lambda spec: False)] == [1, 1, 1]
    assert [len(u) for u in runner.pack(planned)] == [3]  # on_gpu None: the worker decides
    if registry.load("torch").device.type != "cpu":
        pytest.skip("the fallback is for a backend that refuses to pack on its device (torch on a CPU)")
    rows = pd.DataFrame(runner.run(planned, tmp_path / "a", runner.LocalExecutor(), _Quiet()).rows).set_index("seed")
    alone = pd.DataFrame(runner.run(planned, tmp_path / "b", runner.LocalExecutor(), _Quiet(), pack_size=1).rows)
    assert list(rows.sort_index()["pack_size"]) == [1, 1, 1] and rows["pack_ids"].isna().all()
    assert list(rows.sort_index()["test_error"]) == list(alone.set_index("seed").sort_index()["test_error"])


def test_a_grown_trial_is_never_packed():
    grow = _spec(ff={"schedule": "greedy", "grow_patience": 1}, data={"validation_size": 100})
    with pytest.raises(ValueError, match="never packed"):
        loop.fit_unit(None, [parse_trial(grow), parse_trial({**grow, "seed": 1})], None)  # refused before anything runs
