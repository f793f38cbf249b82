"""Real training on MNIST (slow; CI runs it): the smoke suite learns, and runs are deterministic."""

from pathlib import Path

import pandas as pd
import pytest

from ffbench.cli import main

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
            "--set", "data.validation_size=0", "--set", "epochs=1"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    a = pd.read_parquet(tmp_path / "a" / "trials").set_index("trial_id").sort_index()
    b = pd.read_parquet(tmp_path / "b" / "trials").set_index("trial_id").sort_index()
    pd.testing.assert_series_equal(a["test_error"], b["test_error"])
    pd.testing.assert_series_equal(a["final_losses"], b["final_losses"])
