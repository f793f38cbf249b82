"""The Keras 3 backend. `KERAS_BACKEND` (tensorflow by default, or jax) picks the framework
underneath; every number ffbench computes goes through `keras.ops`.

Trial packing (`PackedKerasTrainer`) needs KERAS_BACKEND=jax: it vmaps the members'
stateless compiled steps. TensorFlow has no vmap over a step that updates variables."""

from __future__ import annotations

import resource
from pathlib import Path

import keras
from ffbench_backends.keras import traits

from ffbench.backend import Backend, PackedTrainer, Trainer
from ffbench.data import Dataset
from ffbench.spec import BPTrial, FFTrial


class KerasBackend(Backend):
    name = "keras"
    framework = "keras"

    def versions(self) -> dict[str, str]:
        backend = keras.backend.backend()
        versions = {"keras": keras.__version__, "keras_backend": backend}
        if backend == "tensorflow":
            import tensorflow as tf
            versions["tensorflow"] = tf.__version__
        elif backend == "jax":
            import jax
            versions["jax"] = jax.__version__
        return versions

    def use_compile_cache(self, folder: Path) -> None:
        if keras.backend.backend() == "jax":  # TensorFlow's XLA cache is not used (`ffbench.compile_cache`)
            from ffbench.compile_cache import use_jax
            use_jax(folder)

    def device_name(self) -> str:
        backend = keras.backend.backend()
        if backend == "jax":
            import jax
            d = jax.devices()[0]
            if d.platform != "cpu":
                return f"{getattr(d, 'device_kind', d)} (keras/jax)"
        elif backend == "tensorflow":
            import tensorflow as tf
            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                return f"{tf.config.experimental.get_device_details(gpus[0]).get('device_name', 'GPU')} (keras/tensorflow)"
        from ffbench.env import cpu_name
        return f"cpu: {cpu_name()} (keras/{backend})"

    def skip(self, trial: FFTrial | BPTrial) -> str | None:
        return super().skip(trial) or traits.skip(trial)

    def trainer(self, trial: FFTrial | BPTrial, data: Dataset) -> Trainer:
        if trial.algorithm == "ff" and trial.ff.recurrent is not None:
            from ffbench_backends.keras.recurrent import RecurrentFFTrainer
            return RecurrentFFTrainer(trial, data)
        if trial.algorithm == "ff":
            from ffbench_backends.keras.ff import FFTrainer
            return FFTrainer(trial, data)
        from ffbench_backends.keras.bp import BPTrainer
        return BPTrainer(trial, data)

    def pack_skip(self, trial: FFTrial | BPTrial) -> str | None:
        return traits.pack_skip(trial, on_gpu=None, keras_backend=keras.backend.backend())  # the framework Keras runs on

    def packed_trainer(self, trials: list[FFTrial | BPTrial], data: Dataset) -> PackedTrainer:
        from ffbench_backends.keras.common import PackedKerasTrainer
        first = self.trainer(trials[0], data)
        return PackedKerasTrainer([first] + [type(first)(t, data, first) for t in trials[1:]])

    @staticmethod
    def _tf_gpu() -> str | None:
        """TensorFlow's first GPU ("GPU:0"), if the Keras backend is TensorFlow and it has one."""
        if keras.backend.backend() != "tensorflow":
            return None
        import tensorflow as tf
        return "GPU:0" if tf.config.list_physical_devices("GPU") else None

    def reset_peak_memory(self) -> None:
        if (gpu := self._tf_gpu()) is not None:
            import tensorflow as tf
            tf.config.experimental.reset_memory_stats(gpu)

    def peak_memory(self) -> tuple[int | None, str]:
        """On a GPU the device's peak, as the other backends report it: TensorFlow's since
        `reset_peak_memory` ("device"), XLA's for the whole process on jax
        ("device_process_peak": it cannot be reset); else the process's max RSS."""
        if (gpu := self._tf_gpu()) is not None:
            import tensorflow as tf
            return int(tf.config.experimental.get_memory_info(gpu)["peak"]), "device"
        if keras.backend.backend() == "jax":
            import jax
            device = jax.devices()[0]
            peak = (device.memory_stats() or {}).get("peak_bytes_in_use") if device.platform != "cpu" else None
            if peak is not None:
                return int(peak), "device_process_peak"
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process_max_rss"
