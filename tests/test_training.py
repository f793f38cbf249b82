"""Real training on MNIST (slow; CI runs it): the smoke suite learns, and runs are deterministic."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ffbench.cli import main
from ffbench.data import prepare
from ffbench.spec import DataSpec

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_smoke_suite_learns_well_below_chance(tmp_path):
    out = tmp_path / "smoke"
    assert main(["run", str(ROOT / "suites" / "smoke.yaml"), "--out", str(out), "--quiet", "--executor", "local"]) == 0
    df = pd.read_parquet(out / "trials")
    assert set(df["status"]) == {"ok"}
    for algorithm, group in df.groupby("algorithm"):
        assert (group["test_error"] < 0.35).all(), (algorithm, group["test_error"].tolist())  # chance is 0.9
    assert (df["val_error"] < 0.4).all() and df["train_error"].notna().all()
    curves = pd.read_parquet(out / "curves")
    ff_loss = curves[curves.metric == "ff_loss"]
    assert set(ff_loss["layer"]) == {0, 1}
    greedy = curves[curves.trial_id.isin(df.loc[df.experiment == "ff-greedy", "trial_id"])]
    assert set(greedy["phase"]) == {"ff.layer0", "ff.layer1"}


def test_same_seed_same_result(tmp_path):
    args = ["run", str(ROOT / "suites" / "smoke.yaml"), "--quiet", "--executor", "local", "--set", "data.train_subset=600",
            "--set", "data.validation_size=0", "--set", "epochs=1", "--set", "seed=0"]  # one seed: every trial kind, once
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    a = pd.read_parquet(tmp_path / "a" / "trials").set_index("trial_id").sort_index()
    b = pd.read_parquet(tmp_path / "b" / "trials").set_index("trial_id").sort_index()
    pd.testing.assert_series_equal(a["test_error"], b["test_error"])
    pd.testing.assert_series_equal(a["final_losses"], b["final_losses"])


QUICK = ["--set", "epochs=1", "--set", "data.train_subset=2000", "--set", "seed=0", "--set", "data.validation_size=0",
         "--set", "data.test_subset=500"]
QUICK_KEEP_EPOCHS = QUICK[2:]


# implementations: keras-io is 250 episodes x 2 layers of one-epoch phases even at epochs=1, so
# the full-batch rows run on 100 images, the rest on 1,200 (enough for the five-digits rows'
# batch of 512); all evaluate only at the end; greedy-grow decides its depth on a validation split
KEEP_VAL = ["--set", "data.validation_size=500"]
# mnist_paper: its 4x2000 nets' training-error pass dominates; the recurrent rows' 8 iterations
# (and its hard-label negatives scored by them) on fewer images
EXTRA = {"mnist_paper": [["--skip", "recurrent", "--set", "data.train_subset=600", "--set", "data.test_subset=200"],
                         ["--only", "recurrent", "--set", "data.train_subset=200", "--set", "data.test_subset=100"]],
         # CI has no Fashion-MNIST: the same rows on the synthetic data of its geometry
         "fashion_mnist": [["--set", "data.name=synthetic_gray28", "--set", "data.train_subset=1000"]],
         # CI has no CIFAR-10: Table 1 on the synthetic data of its geometry, on jax alone, one step of 20
         # images (its 3072-unit nets of 10 iterations dominate the pass: 165 s on 100 images, 93 s on 20;
         # every backend's recurrent net is held to the reference by check)
         "cifar10_paper": [["--set", "data.name=synthetic_rgb32", "--set", "data.train_subset=20", "--set", "batch_size=20",
                            "--set", "data.test_subset=10", "--set", "eval_batch_size=10", "--set", "backend=jax",
                            "--set", "eval_every=0"]],
         # variants: every row on the synthetic data of its geometry, on torch alone, one step of 32
         # images per epoch (on all three backends with 64 images it took 1187 s: the CwComp net's 61,440-wide
         # CIFAR-10 layers and the compiled backends' conv programs; `ffbench check` holds jax and
         # keras to the reference on conv nets)
         # Every row keeps its epochs (one step each): CwComp's per-layer windows span its 5 and 20.
         "variants": [(QUICK_KEEP_EPOCHS, [*geometry, "--set", "data.train_subset=32", "--set", "batch_size=32", "--set",
                                           "data.test_subset=20", "--set", "eval_batch_size=20", "--set", "eval_every=0",
                                           "--set", "backend=torch"])
                      for geometry in (["--only", "gray28", "--set", "data.name=synthetic_gray28"],
                                       ["--only", "rgb32", "--set", "data.name=synthetic_rgb32"])],
         "implementations": [
    ["--only", "full-batch", "--set", "data.train_subset=100", "--set", "eval_every=0", *KEEP_VAL],
    ["--skip", "full-batch", "--set", "data.train_subset=1200", "--set", "eval_every=0", *KEEP_VAL]]}


@pytest.mark.parametrize("suite", ["quickstart", "negatives", "mnist_paper", "implementations", "fashion_mnist",
                                   "cifar10_paper", "variants"])
def test_every_shipped_suite_runs_end_to_end_in_a_quick_pass(suite, tmp_path):
    """Every row of every shipped suite (overridden to one epoch on 2,000 images, one seed) trains
    to an ok row on each backend it names; the overrides make their own trial_ids."""
    from ffbench.runner import plan
    from ffbench.suites import load_suite, select
    out, trials = tmp_path / suite, []
    for extra in EXTRA.get(suite, [[]]):  # one run, or several into the same folder
        base, extra = extra if isinstance(extra, tuple) else (QUICK, extra)
        quick = base + extra
        assert main(["run", str(ROOT / "suites" / f"{suite}.yaml"), "--out", str(out), "--quiet", "--executor", "local",
                     *quick]) == 0
        sets = [quick[i + 1] for i, a in enumerate(quick) if a == "--set"]
        only, skip = ([quick[i + 1] for i, a in enumerate(quick) if a == flag] for flag in ("--only", "--skip"))
        trials += select(load_suite(ROOT / "suites" / f"{suite}.yaml", sets)[1], only, skip)
    df = pd.read_parquet(out / "trials")
    _, real = load_suite(ROOT / "suites" / f"{suite}.yaml")
    assert len(df) == len(plan(trials)) and set(df["status"]) == {"ok"}
    assert not set(df["trial_id"]) & {p.trial_id for p in plan(real)}
    assert set(df["experiment"]) == {p.spec["meta"]["experiment"] for p in plan(trials)}
    assert df["test_error"].between(0, 1).all() and (df["train_seconds"] > 0).all()
    if suite == "fashion_mnist":  # the synthetic stand-in ran, recorded by name and checksum
        from ffbench.variants.builtin_datasets import SyntheticGray28
        assert set(df["dataset"]) == {"synthetic_gray28"} and set(df["dataset_checksum"]) == {SyntheticGray28.checksum}
    if suite == "cifar10_paper":  # Table 1's ten rows on the colour stand-in, FF recurrent with 11x11 fields
        from ffbench.variants.builtin_datasets import SyntheticRGB32
        assert set(df["dataset"]) == {"synthetic_rgb32"} and set(df["dataset_checksum"]) == {SyntheticRGB32.checksum}
        assert len(df) == 10 and (df.loc[df.algorithm == "ff", "spec.ff.recurrent.iterations"] == 10).all()
    if suite == "variants":  # conv nets and their BP twins, on both geometries; the report's methods table
        from ffbench.report import tables
        assert set(df["dataset"]) == {"synthetic_gray28", "synthetic_rgb32"}
        conv = df[df["spec.conv.channels"].notna()]
        assert len(conv) and {tuple(c) for c in conv["spec.conv.channels"]} == {(20, 80, 240, 480)}
        assert set(conv["algorithm"]) == {"ff", "bp"}
        methods = tables.methods_table(df)
        assert set(methods["method"]) == {"BP", "FF (Hinton 2022)", "SymBa", "CwComp", "SCFF"}
        assert set(methods["architecture"]) == {"conv 20-80-240-480", "conv 20-80g10-240-480g10 bn", "2000x2000x2000",
                                                "2000x2000"}
        cwcomp_net = methods[methods["architecture"] == "conv 20-80g10-240-480g10 bn"]
        assert set(cwcomp_net["method"]) == {"BP", "CwComp"}  # CwComp against BP of its own net, a row each
        assert {"synthetic_gray28", "synthetic_rgb32 ref"} <= set(methods.columns)
    if suite == "implementations":  # the greedy full-batch episodes ran as specified
        keras_io = df[df.experiment == "keras-io"]
        assert (keras_io["spec.batch_size"] == "full").all() and (keras_io["steps_run"] == 250 * 2).all()
        curves = pd.read_parquet(out / "curves")
        phases = set(curves.loc[curves.trial_id.isin(keras_io.trial_id), "phase"])
        assert phases == {f"ff.episode{k}.layer{i}" for k in range(250) for i in range(2)}
        assert (df.loc[df.experiment == "jax-example", "steps_run"] == 5 * 3 * (1200 // 128)).all()
        assert (df.loc[df.experiment == "pytorch-script", "steps_run"] == 2).all()  # one full-batch step per layer
        grow = df[df.experiment == "greedy-grow"]  # one step per layer grown; kept the best depth, at most one short
        assert grow["kept_layers"].between(1, 6).all() and (grow["steps_run"] - grow["kept_layers"]).isin([0, 1]).all()
        grow = df[df.experiment == "greedy-grow-unsupervised"]  # each depth: one layer step, then 200 read-out steps
        assert grow["kept_layers"].between(1, 6).all() and (grow["steps_run"] // 201 - grow["kept_layers"]).isin([0, 1]).all()
        assert (grow["steps_run"] % 201 == 0).all()
        five = df[df.experiment == "five-digits-100"]  # trained on the 0-4 images of the 1,200 only
        assert (five["steps_run"] == (np.isin(prepare(DataSpec(train_subset=1200)).train.y, range(5)).sum() // 128)).all()
