"""examples/ffbench-plugin-example, installed like a user installs it (pip, into a folder of
this test's own on PYTHONPATH): listed, parity-checked on every backend, run end to end over
Ray, and its bad parameter reported in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ffbench import registry

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ffbench-plugin-example"
FRAMEWORKS = ("torch", "jax", "tensorflow", "keras")
VARIANTS = ("cyclic_label", "margin_logistic")


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    """The environment of a process that has the example plugin installed (pip install of the
    example's own pyproject.toml, entry points and all, into a fresh target folder)."""
    site, source = tmp_path_factory.mktemp("plugin-site"), tmp_path_factory.mktemp("plugin-src") / "example"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--target", str(site), str(source)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert any(site.glob("ffbench_plugin_example-*.dist-info/entry_points.txt"))
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


def ffbench(env, *args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ffbench", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


def test_not_installed_means_unknown_with_the_choices(tmp_path):
    """Without the plugin the names are unknown: one line naming what is registered."""
    suite = tmp_path / "s.yaml"
    suite.write_text((EXAMPLE / "suite.yaml").read_text())
    r = ffbench({**os.environ}, "run", str(suite), "--dry-run")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "unknown negative strategy 'cyclic_label'; expected one of:" in r.stderr


def test_listed_with_its_backends_and_parameters(plugin_env):
    r = ffbench(plugin_env, "list")
    assert r.returncode == 0, r.stderr
    for name, params in (("cyclic_label", "max_offset=3"), ("margin_logistic", "margin=0.5")):
        line = next(row for row in r.stdout.splitlines() if f" {name} " in row)
        assert "jax, keras, torch" in line and params in line and "plugin" in line, line


def test_its_own_tests_pass(plugin_env):
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", os.devnull,
                        str(EXAMPLE / "tests")],
                       capture_output=True, text=True, env=plugin_env, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "5 passed" in r.stdout


@pytest.mark.slow
def test_check_passes_on_every_backend_gradients_included(plugin_env):
    r = ffbench(plugin_env, "check", *[a for v in VARIANTS for a in ("--variant", v)])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    backends = registry.installed()
    assert f"all {34 * len(backends)} comparisons PASS" in r.stdout, r.stdout[-3000:]
    for quantity in ("ff.negatives[cyclic_label].params@N.W*", "ff.objective[margin_logistic].layer*.fd.dW",
                     "ff.objective[margin_logistic].params@N.W*", "ff.objective[margin_logistic].predict.goodness"):
        row = next(line for line in r.stdout.splitlines() if quantity in line)
        assert row.count("PASS") == len(backends), row


@pytest.mark.slow
@pytest.mark.ray
def test_its_suite_runs_end_to_end_over_ray_and_the_driver_imports_no_framework(plugin_env, tmp_path, ray_tmp):
    out = tmp_path / "out"
    script = (f"import sys\nfrom ffbench.cli import main\ncode = main(sys.argv[1:])\n"
              f"print('FRAMEWORKS', sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))\nsys.exit(code)\n")
    r = subprocess.run([sys.executable, "-c", script, "run", str(EXAMPLE / "suite.yaml"), "--out", str(out), "--quiet",
                        "--executor", "ray", "--set", "data.train_subset=1000"],
                       capture_output=True, text=True, env={**plugin_env, "RAY_TMPDIR": str(ray_tmp)}, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "FRAMEWORKS []" in r.stdout, r.stdout
    df = pd.read_parquet(out / "trials")
    backends = registry.installed()
    assert len(df) == 3 * len(backends) and set(df["status"]) == {"ok"}, df[["experiment", "status", "error"]]
    by = df.set_index(["experiment", "backend"])
    assert set(df.loc[df["experiment"] == "ff-cyclic-label", "spec.ff.negatives"]) == {"cyclic_label"}
    assert set(df.loc[df["experiment"] == "ff-margin-logistic", "spec.ff.objective"]) == {"margin_logistic"}
    for experiment in ("ff-cyclic-label", "ff-margin-logistic"):
        errors = [by.loc[(experiment, b), "test_error"] for b in backends]
        # the same seed draws the same data order and negatives in every backend: float32
        # rounding may move a handful of the 10,000 test predictions, no more
        assert max(errors) - min(errors) <= 0.003, (experiment, errors)
        assert max(errors) < 0.6, (experiment, errors)  # it learned (chance is 0.9)
    # a variant's parameters are one canonical JSON column; defaults are dropped (the normal form)
    assert df["spec.ff.negatives_params"].isna().all() and df["spec.ff.objective_params"].isna().all()


def test_a_bad_parameter_is_one_line_and_writes_nothing(plugin_env, tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text((EXAMPLE / "suite.yaml").read_text().replace("max_offset: 3", "max_offset: 12"))
    r = ffbench(plugin_env, "run", str(suite), "--out", str(tmp_path / "out"))
    assert r.returncode == 2
    assert r.stderr.strip() == (f"ffbench: error: {suite}:18: experiments[1].ff.negatives_params: negative strategy "
                                "'cyclic_label': max_offset: Input should be less than or equal to 9; got 12")
    assert not (tmp_path / "out").exists()
