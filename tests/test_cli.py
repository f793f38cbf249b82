"""The `ffbench` command end to end (in-process): exit codes, rows, resume, bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ffbench import registry
from ffbench.cli import main
from ffbench.registry import BackendEntry
from ffbench.variants import NEGATIVES

ROOT = Path(__file__).resolve().parents[1]


def suite(tmp_path, body: str) -> Path:
    p = tmp_path / "suite.yaml"
    p.write_text(body)
    return p


FAKE = """
name: fakes
defaults: {backend: fake, hidden: [4], epochs: 3, data: {train_subset: 100, validation_size: 0}}
experiments:
  - {name: e, algorithm: ff, seed: [0, 1, 2]}
"""


@pytest.mark.parametrize("executor", ["local", pytest.param("ray", marks=pytest.mark.ray)])
def test_failures_are_rows_and_the_suite_goes_on(tmp_path, fake_backend, capsys, executor, ray_tmp):
    out = tmp_path / "out"
    assert main(["run", str(suite(tmp_path, FAKE)), "--out", str(out), "--quiet", "--executor", executor]) == 1
    df = pd.read_parquet(out / "trials").set_index("seed")
    assert df.loc[0, "status"] == "ok" and df.loc[0, "test_error"] == pytest.approx(0.5 / 3)
    assert df.loc[0, "device_name"] == "fake device" and json.loads(df.loc[0, "framework_versions"]) == {"fake": "1.0"}
    assert df.loc[0, "epochs_run"] == 3 and df.loc[0, "train_seconds"] >= 0 and df.loc[0, "peak_memory_bytes"] == 123
    assert df.loc[1, "status"] == "failed" and "RuntimeError: boom in epoch 0" in df.loc[1, "error"]
    assert df.loc[2, "status"] == "diverged" and "non-finite loss at fake epoch 1" in df.loc[2, "error"]
    assert (df["dataset_checksum"].str.len() == 64).all() and (df["ffbench_version"] == "0.1.0").all()
    curves = pd.read_parquet(out / "curves")
    assert sorted(curves.loc[curves.metric == "fake_loss", "value"]) == pytest.approx([1 / 3, 0.5, 1.0])

    # Re-running skips the ok trial and retries the failed ones, without duplicating rows.
    capsys.readouterr()
    assert main(["run", str(suite(tmp_path, FAKE)), "--out", str(out), "--executor", executor]) == 1
    captured = capsys.readouterr()
    assert "skipping 1 trial(s) already done" in captured.err
    # stderr is not a terminal here: progress comes as lines (a live display would show nothing until the end)
    lines = captured.err.splitlines()
    assert sum(line.split()[0] == "started" and " e fake 4 seed " in line for line in lines) == 2
    assert [line.split("[")[-1] for line in lines if line.rstrip().endswith("done]")] == ["1/2 done]", "2/2 done]"]
    assert "3 planned, 1 already done, 2 run, 2 not ok" in captured.out
    df2 = pd.read_parquet(out / "trials")
    assert len(df2) == 3 and df2.set_index("seed").loc[0, "started_at"] == df.loc[0, "started_at"]
    assert df2.set_index("seed").loc[1, "started_at"] > df.loc[1, "started_at"]


def test_progress_in_a_log_is_lines_with_the_evaluated_epochs(tmp_path, fake_backend, capsys):
    # stderr is not a terminal under pytest: each evaluated epoch is a line, the others are not
    body = FAKE.replace("seed: [0, 1, 2]", "seed: 0, eval_every: 2")
    assert main(["run", str(suite(tmp_path, body)), "--out", str(tmp_path / "out"), "--executor", "local"]) == 0
    epochs = [line for line in capsys.readouterr().err.splitlines() if line.split()[:1] == ["epoch"]]
    assert [line.split(" e fake 4 seed 0 ")[1] for line in epochs] == ["2/3 [fake] test 25.00%", "3/3 [fake] test 16.67%"]


def test_dry_run_json_lists_flat_trials(tmp_path, capsys):
    assert main(["run", str(ROOT / "suites" / "mnist_paper.yaml"), "--dry-run", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) >= 9
    for r in rows:
        assert {"trial_id", "algorithm", "backend", "hidden", "epochs", "negatives", "seed", "reference_error"} <= set(r)
        assert isinstance(r["hidden"], list) and len(r["trial_id"]) == 16
    assert {r["reference_error"] for r in rows if r["experiment"] == "ff-supervised"} == {0.0136}
    assert {r["negatives"] for r in rows if r["algorithm"] == "ff"} == {"wrong_label", "hybrid_image", "hard_label"}


def test_set_gives_new_trial_ids(tmp_path, capsys):
    main(["run", str(ROOT / "suites" / "smoke.yaml"), "--dry-run", "--json"])
    base = {r["trial_id"] for r in json.loads(capsys.readouterr().out)}
    main(["run", str(ROOT / "suites" / "smoke.yaml"), "--dry-run", "--json", "--set", "epochs=5"])
    over = json.loads(capsys.readouterr().out)
    assert not base & {r["trial_id"] for r in over} and {r["epochs"] for r in over} == {5}


@pytest.mark.parametrize("body,needle", [
    ("defaults: {backend: torch, hidden: [10], epochs: 1, seed: 0}\nexperiments:\n  - {algorithm: ff, ff: {treshold: 1}}\n",
     "suite.yaml:3: experiments[0].ff.treshold: unknown field (did you mean 'threshold'?)"),
    ("defaults: {backend: tourch, hidden: [10], epochs: 1, seed: 0}\nexperiments:\n  - {algorithm: ff}\n",
     "suite.yaml:1: defaults.backend: unknown backend 'tourch'; expected one of: "),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, body, needle):
    out = tmp_path / "out"
    assert main(["run", str(suite(tmp_path, body)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_missing_file_and_bad_arguments(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["run"])
    assert e.value.code == 2
    assert main(["run", str(ROOT / "suites" / "smoke.yaml"), "--json"]) == 2


def test_missing_backend_fails_up_front(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, "ghost", BackendEntry("ghost", "ghost_mod", ("no_such_framework_xyz",),
                                                                 "pip install ghost", "missing"))
    body = "defaults: {backend: ghost, hidden: [10], epochs: 1, seed: 0}\nexperiments:\n  - {algorithm: ff}\n"
    out = tmp_path / "out"
    assert main(["run", str(suite(tmp_path, body)), "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert "backend 'ghost' is not installed: module 'no_such_framework_xyz' is not installed (pip install ghost)" in err
    assert not out.exists()


def test_list_shows_backends_strategies_and_suites(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setitem(registry._REGISTRY, "ghost", BackendEntry("ghost", "ghost_mod", ("no_such_framework_xyz",),
                                                                 "pip install ghost", "missing"))
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "installed" in out and all(n in out for n in NEGATIVES) and "suites/smoke.yaml" in out
    assert "not installed: module 'no_such_framework_xyz'" in out


def test_import_ffbench_imports_no_framework():
    code = "import sys, ffbench, ffbench.cli, ffbench.spec, ffbench.registry, ffbench.runner, ffbench.suites; " \
           "print([m for m in ('torch', 'jax', 'tensorflow', 'keras', 'ray') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_python_m_ffbench_is_the_command(tmp_path):
    out = subprocess.run([sys.executable, "-m", "ffbench", "run", "suites/smoke.yaml", "--dry-run", "--json"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert {t["experiment"] for t in json.loads(out.stdout)} == {"ff", "ff-softmax-peer", "ff-greedy", "bp"}
    bad = subprocess.run([sys.executable, "-m", "ffbench", "run", str(tmp_path / "none.yaml")], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


FRAMEWORKS = ("torch", "jax", "jaxlib", "tensorflow", "keras", "optax", "triton")


@pytest.mark.ray
def test_embedded_ray_runs_the_smoke_suite_on_every_installed_backend_and_the_driver_imports_no_framework(tmp_path, ray_tmp):
    """The driver plans, checks, packs and writes rows without a framework: on a GPU host a
    framework in the driver would take GPU memory before any trial starts."""
    out = tmp_path / "out"
    script = (f"import sys\nfrom ffbench.cli import main\ncode = main(sys.argv[1:])\n"
              f"print('FRAMEWORKS', sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))\nsys.exit(code)\n")
    r = subprocess.run([sys.executable, "-c", script, "run", str(ROOT / "suites" / "smoke.yaml"), "--out", str(out), "--quiet",
                        "--executor", "ray", "--set", "epochs=1", "--set", "data.train_subset=400",
                        "--set", "data.validation_size=0"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "FRAMEWORKS []" in r.stdout, r.stdout
    df = pd.read_parquet(out / "trials")
    assert set(df["status"]) == {"ok"} and set(df["algorithm"]) == {"ff", "bp"}
    assert set(df["backend"]) == set(registry.installed()) >= {"torch"}
    assert (df["train_seconds"] > 0).all() and (df["samples_per_second"] > 0).all()
    assert df["git_sha"].str.fullmatch("[0-9a-f]{40}").all()  # the tests run in a checkout
    assert set(pd.read_parquet(out / "curves")["trial_id"]) == set(df["trial_id"])
    assert set(df["executor"]) == {"ray"} and set(df["attempt"]) == {1} and df["node_id"].notna().all()
    assert set(df["gpus_per_trial"]) == {0.0} and set(df["cpus_per_trial"]) == {1.0}
    assert list(ray_tmp.iterdir()), "Ray kept its session files in RAY_TMPDIR"


def test_missing_data_fails_up_front(tmp_path, capsys, monkeypatch):
    import ffbench.data
    ffbench.data._prepare.cache_clear()
    monkeypatch.setenv("FFBENCH_DATA_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    assert main(["run", str(ROOT / "suites" / "smoke.yaml"), "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert "mnist: could not download train-images-idx3-ubyte.gz (http://127.0.0.1:9/" in err and "offline?" in err
    assert err.count("\n") == 1
    assert not out.exists()
    ffbench.data._prepare.cache_clear()


def test_a_missing_framework_shows_as_not_installed(monkeypatch, capsys):
    monkeypatch.setitem(registry._REGISTRY, "ghost", BackendEntry("ghost", "ghost_mod", ("numpy", "no_such_framework_xyz"),
                                                                 "pip install ghost", "missing"))
    assert registry.status("ghost") == (False, "module 'no_such_framework_xyz' is not installed (pip install ghost)")
    assert "ghost" not in registry.installed()
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert registry.status("keras") == (False, "KERAS_BACKEND=torch is not supported; ffbench runs Keras on tensorflow or jax")


def test_triton_is_loaded_before_a_backend_that_loads_tensorflow(tmp_path, monkeypatch):
    # CUDA builds of torch ship triton, which segfaults if loaded after TensorFlow (both link
    # LLVM); the registry loads it before a TensorFlow backend. Fakes for all three modules here.
    fakes = ("triton", "tensorflow", "tf_backend_xyz", "plain_backend_xyz")
    real = {mod: sys.modules.pop(mod, None) for mod in fakes}
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "triton.py").write_text("")
    (tmp_path / "tensorflow.py").write_text("")
    (tmp_path / "tf_backend_xyz.py").write_text("import sys\nTRITON_FIRST = 'triton' in sys.modules\n"
                                                "import tensorflow\nBackend = object\n")
    (tmp_path / "plain_backend_xyz.py").write_text("Backend = object\n")
    monkeypatch.setitem(registry._REGISTRY, "plain", BackendEntry("plain", "plain_backend_xyz", ("numpy",), "-", "-"))
    monkeypatch.setitem(registry._REGISTRY, "tfb", BackendEntry("tfb", "tf_backend_xyz", ("numpy", "$KERAS_BACKEND"), "-", "-"))
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    registry._loaded.cache_clear()
    try:
        registry.load("plain")
        assert "triton" not in sys.modules  # no TensorFlow, no reason to load it
        registry.load("tfb")
        assert sys.modules["tf_backend_xyz"].TRITON_FIRST
    finally:  # the real modules (or none) back: later tests must not import these fakes
        for mod in fakes:
            sys.modules.pop(mod, None)
            if real[mod] is not None:
                sys.modules[mod] = real[mod]
        registry._loaded.cache_clear()


def test_a_second_run_on_the_same_folder_is_refused(tmp_path, fake_backend, capsys):
    from ffbench import results
    out = tmp_path / "out"
    with results.exclusive(out):
        assert main(["run", str(suite(tmp_path, FAKE)), "--out", str(out), "--quiet", "--executor", "local"]) == 3
        err = capsys.readouterr().err
        assert "another ffbench run is writing here (pid" in err and err.count("\n") == 1
        assert not (out / "trials").exists()
    # free again: runs (seed 1 fails)
    assert main(["run", str(suite(tmp_path, FAKE)), "--out", str(out), "--quiet", "--executor", "local"]) == 1
    assert len(list((out / "suites").glob("suite.*.yaml"))) == 1


def test_the_local_executor_stops_a_trial_at_its_timeout_keeping_its_curves(tmp_path, fake_backend):
    body = FAKE.replace("seed: [0, 1, 2]", "seed: 100").replace("hidden: [4], epochs: 3", "hidden: [5], epochs: 20")
    out = tmp_path / "out"
    assert main(["run", str(suite(tmp_path, body)), "--out", str(out), "--quiet", "--executor", "local",
                 "--trial-timeout", "1.2"]) == 1
    row = pd.read_parquet(out / "trials").iloc[0]
    assert row["status"] == "timeout" and "ran past the 1.2s trial timeout" in row["error"]
    assert 1 <= row["epochs_run"] <= 3  # 0.5 s per epoch
    curves = pd.read_parquet(out / "curves")
    assert sorted(curves.loc[curves.metric == "fake_loss", "epoch"]) == list(range(row["epochs_run"]))
    assert row["executor"] == "local" and row["attempt"] == 1


def test_an_edited_suite_extends_the_results(tmp_path, fake_backend, capsys):
    out = tmp_path / "out"
    first = FAKE.replace("seed: [0, 1, 2]", "seed: [0]")
    assert main(["run", str(suite(tmp_path, first)), "--out", str(out), "--quiet", "--executor", "local"]) == 0
    before = pd.read_parquet(out / "trials")
    edited = first.replace("seed: [0]", "seed: [0, 100]")
    capsys.readouterr()
    assert main(["run", str(suite(tmp_path, edited)), "--out", str(out), "--executor", "local"]) == 0
    assert "skipping 1 trial(s) already done" in capsys.readouterr().err
    after = pd.read_parquet(out / "trials").set_index("seed")
    assert len(after) == 2 and after.loc[0, "started_at"] == before.loc[0, "started_at"]  # reused, not re-run
    assert after.loc[100, "status"] == "ok"
    assert len(list((out / "suites").glob("suite.*.yaml"))) == 2  # both versions of the suite file kept


def test_a_failed_row_keeps_the_first_line_of_a_multi_line_error():
    from ffbench.runner import _failure
    try:
        raise TypeError("tensor is out of scope\n\n<tf.Tensor 'Const:0'> was defined here:\n  File ...")
    except TypeError as exc:
        row = _failure(exc)
    assert row["status"] == "failed" and "\n" not in row["error"]
    assert row["error"].startswith("TypeError: tensor is out of scope at test_cli.py:")
