"""The backend registry: entry points load the class they name, and are scanned once."""

import importlib.metadata
from pathlib import Path

import pytest

from ffbench import registry
from ffbench.spec import parse_trial

TESTS = Path(__file__).resolve().parent


@pytest.fixture()
def plugin_on_path(tmp_path, monkeypatch):
    """An installed distribution (a .dist-info on sys.path) whose entry point names a class
    that is not called Backend, in a module whose own `Backend` is something else."""
    (tmp_path / "my_ffbench_plugin.py").write_text(
        "from fake_backend import Backend as _Fake\n\n"
        "class MyBackend(_Fake):\n    pass\n\n"
        "Backend = None  # not the class the entry point names\n")
    info = tmp_path / "my_ffbench_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-ffbench-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ffbench.backends]\nmine = my_ffbench_plugin:MyBackend\n"
                                           "torch = my_ffbench_plugin:MyBackend\n")
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.syspath_prepend(str(tmp_path))
    registry._entry_points.cache_clear()
    registry._loaded.cache_clear()
    yield
    registry._entry_points.cache_clear()
    registry._loaded.cache_clear()


def test_an_entry_point_loads_the_class_it_names(plugin_on_path):
    assert "mine" in registry.names()
    entry = registry.get_entry("mine")
    assert (entry.module, entry.attr, entry.requires) == ("my_ffbench_plugin", "MyBackend", ("my_ffbench_plugin",))
    backend = registry.load("mine")
    assert type(backend).__name__ == "MyBackend"
    # a built-in keeps its name: an entry point cannot take over `torch`
    assert registry.get_entry("torch").module == "ffbench_backends.torch"


def test_entry_points_are_scanned_once_not_on_every_parse(plugin_on_path, monkeypatch):
    calls = []
    real = importlib.metadata.entry_points

    def counting(**kw):
        calls.append(kw)
        return real(**kw)

    monkeypatch.setattr(importlib.metadata, "entry_points", counting)
    registry._entry_points.cache_clear()
    for seed in range(20):
        parse_trial({"algorithm": "ff", "backend": "mine", "seed": seed, "hidden": [4], "epochs": 1})
    assert len(calls) == 1
