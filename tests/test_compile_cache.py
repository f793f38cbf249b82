"""The runner keeps JAX's compiled programs on disk: another seed of a configuration compiles nothing new."""

from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("jax")

from ffbench import compile_cache  # noqa: E402
from ffbench.cli import main  # noqa: E402

SUITE = """
name: cached
defaults: {backend: jax, hidden: [16, 16], epochs: 2, batch_size: 50, eval_every: 1,
           data: {train_subset: 200, validation_size: 100, test_subset: 100}}
experiments:
  - {name: ff, algorithm: ff}
  - {name: bp, algorithm: bp}
"""


def entries(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*-cache")} if folder.is_dir() else set()


def test_another_seed_loads_every_program_from_the_cache(tmp_path):
    import jax

    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    base = ["run", str(suite), "--out", str(tmp_path / "out"), "--quiet", "--executor", "local", "--no-pack"]
    assert main([*base, "--set", "seed=0"]) == 0
    folder = Path(jax.config.jax_compilation_cache_dir)
    assert folder == compile_cache.directory() / "jax"  # conftest: this session's FFBENCH_CACHE_DIR
    first = entries(folder)
    assert first  # the epoch, evaluation and negatives programs of both trials
    assert main([*base, "--set", "seed=1"]) == 0
    assert entries(folder) == first  # the same programs: every one loaded, none compiled anew
    df = pd.read_parquet(tmp_path / "out" / "trials")
    assert len(df) == 4 and set(df["status"]) == {"ok"}


def test_the_cache_can_be_turned_off(monkeypatch, tmp_path):
    monkeypatch.setenv("FFBENCH_CACHE_DIR", str(tmp_path))
    assert compile_cache.directory() == tmp_path / "compiled"
    monkeypatch.setenv("FFBENCH_COMPILE_CACHE", "0")
    assert compile_cache.directory() is None


def test_an_unwritable_folder_leaves_the_cache_off(tmp_path):
    import jax

    blocker = tmp_path / "file"
    blocker.write_text("")
    before = jax.config.jax_compilation_cache_dir  # JAX's cache may be set up in this process already
    jax.config.update("jax_compilation_cache_dir", None)
    try:
        assert compile_cache.use_jax(blocker) is None and jax.config.jax_compilation_cache_dir is None
        assert compile_cache.use_jax(tmp_path) == str(tmp_path / "jax") and (tmp_path / "jax").is_dir()
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
