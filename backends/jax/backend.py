"""The JAX backend: picks the device, builds trainers, reports versions and memory.

Device: `$FFBENCH_JAX_DEVICE` ("cpu" or "gpu") if set, else JAX's default device.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

import jax
from ffbench_backends.jax import traits

from ffbench.backend import Backend, PackedTrainer, Trainer
from ffbench.data import Dataset
from ffbench.spec import BPTrial, FFTrial


class JaxBackend(Backend):
    name = "jax"
    framework = "jax"

    def __init__(self) -> None:
        wanted = os.environ.get("FFBENCH_JAX_DEVICE")
        self.device = jax.devices(wanted)[0] if wanted else jax.devices()[0]

    def use_compile_cache(self, folder: Path) -> None:
        from ffbench.compile_cache import use_jax
        use_jax(folder)

    def versions(self) -> dict[str, str]:
        import jaxlib
        import optax
        return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "optax": optax.__version__}

    def device_name(self) -> str:
        if self.device.platform == "cpu":
            from ffbench.env import cpu_name
            return f"cpu: {cpu_name()}"
        return getattr(self.device, "device_kind", str(self.device))

    def trainer(self, trial: FFTrial | BPTrial, data: Dataset) -> Trainer:
        if trial.algorithm == "ff":
            from ffbench_backends.jax.ff import FFTrainer
            return FFTrainer(trial, data, self.device)
        from ffbench_backends.jax.bp import BPTrainer
        return BPTrainer(trial, data, self.device)

    def pack_skip(self, trial: FFTrial | BPTrial) -> str | None:
        return traits.pack_skip(trial, on_gpu=self.device.platform == "gpu")

    def packed_trainer(self, trials: list[FFTrial | BPTrial], data: Dataset) -> PackedTrainer:
        from ffbench_backends.jax.common import PackedJaxTrainer

        first = self.trainer(trials[0], data)
        return PackedJaxTrainer([first] + [type(first)(t, data, self.device, first) for t in trials[1:]])

    def _stats(self) -> dict:
        try:
            return self.device.memory_stats() or {}
        except Exception:  # the CPU client has none
            return {}

    def reset_peak_memory(self) -> None:
        pass  # XLA keeps one peak per process and cannot reset it

    def peak_memory(self) -> tuple[int | None, str]:
        peak = self._stats().get("peak_bytes_in_use")
        if peak is not None:
            return int(peak), "device_process_peak"
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process_max_rss"
