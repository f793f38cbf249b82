import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Every Ray the tests start (embedded, simulated clusters, `ray start --head`) is single-machine:
# node address 127.0.0.1, every port on loopback. Read when Ray is imported.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
from pathlib import Path

import pytest

from ffbench.registry import load_triton_first

load_triton_first()  # before any test loads TensorFlow (see its docstring: a CUDA torch build's triton)

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
    # no test reaches the internet: a dataset not found is "downloaded" from a refused loopback
    # port (the download tests point these at their own loopback server)
    for name in ("MNIST", "FASHION_MNIST", "CIFAR10"):
        monkeypatch.setenv(f"FFBENCH_{name}_MIRRORS", "http://127.0.0.1:9/")


def pytest_collection_modifyitems(config, items):
    import importlib.util
    has_ray = importlib.util.find_spec("ray") is not None
    skip = pytest.mark.skip(reason="Ray is not installed (pip install 'ffbench[ray]')")
    for item in items:
        if "ray" in item.keywords:
            # under pytest-xdist (`make test` runs two workers), one worker runs every Ray test in turn:
            # never two Ray clusters at once on this machine
            item.add_marker(pytest.mark.xdist_group("ray") if has_ray else skip)


@pytest.fixture()
def ray_tmp(monkeypatch):
    """Ray's session files in a short folder of the test's own (Ray's socket paths must stay short)."""
    import shutil
    import tempfile
    folder = Path(tempfile.mkdtemp(prefix="ffray-", dir="/tmp"))
    monkeypatch.setenv("RAY_TMPDIR", str(folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
def fake_backend(monkeypatch):
    """The `fake` backend of tests/fake_backend.py, registered for one test."""
    from ffbench import registry
    from ffbench.registry import BackendEntry

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))  # Ray workers import it too
    monkeypatch.setitem(registry._REGISTRY, "fake", BackendEntry("fake", "fake_backend", ("numpy",), "-", "test double"))
    registry._loaded.cache_clear()
    yield
    registry._loaded.cache_clear()
