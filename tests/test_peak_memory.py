"""Peak memory on a GPU is the device's, in Keras as in the other backends (GPUs faked: this
machine has none); on a CPU, the process's max RSS."""

import pytest

keras = pytest.importorskip("keras")

from ffbench import registry  # noqa: E402


class FakeGpu:
    platform = "gpu"

    def memory_stats(self):
        return {"bytes_in_use": 1 << 20, "peak_bytes_in_use": 5 << 20}


def test_keras_on_jax_reports_xlas_device_peak(monkeypatch):
    jax = pytest.importorskip("jax")
    backend = registry.load("keras")
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    monkeypatch.setattr(jax, "devices", lambda *a: [FakeGpu()])
    assert backend.peak_memory() == (5 << 20, "device_process_peak")


def test_keras_on_tensorflow_reports_the_gpus_peak_since_its_reset(monkeypatch):
    tf = pytest.importorskip("tensorflow")
    backend = registry.load("keras")
    reset = []
    monkeypatch.setattr(keras.backend, "backend", lambda: "tensorflow")
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["gpu"] if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "reset_memory_stats", reset.append)
    monkeypatch.setattr(tf.config.experimental, "get_memory_info", lambda device: {"current": 1, "peak": 7 << 20})
    backend.reset_peak_memory()
    assert reset == ["GPU:0"] and backend.peak_memory() == (7 << 20, "device")


def test_keras_on_a_cpu_reports_the_process_max_rss():
    backend = registry.load("keras")
    if backend._tf_gpu() is not None:
        pytest.skip("TensorFlow has a GPU here")
    peak, source = backend.peak_memory()
    assert source == "process_max_rss" and peak > 10 << 20
