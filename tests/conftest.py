import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if "FFBENCH_DATA_DIR" not in os.environ and (SHARED_DATA / "mnist.npz").is_file():
    os.environ["FFBENCH_DATA_DIR"] = str(SHARED_DATA)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    path = Path(os.environ.get("FFBENCH_DATA_DIR", SHARED_DATA))
    if not (path / "mnist.npz").is_file():
        pytest.fail(f"MNIST not found at {path}: set FFBENCH_DATA_DIR (CI points it at ../shared/data)")
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("FFBENCH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
