"""The PyTorch backend: picks the device, builds trainers, reports versions and memory.

Device: `$FFBENCH_TORCH_DEVICE` if set, else CUDA device 0 when available, else the CPU.
Trial packing (`PackedTorchTrainer`) is on for a GPU; on a CPU only with
`FFBENCH_TORCH_PACK_ON_CPU=1`, as there it measured no faster than training the trials one
by one (0.6x to 1.5x, `benchmarks/RESULTS.md`).
"""

from __future__ import annotations

import os
import resource

import torch
from ffbench_backends.torch import traits

from ffbench.backend import Backend, PackedTrainer, Trainer
from ffbench.data import Dataset
from ffbench.env import cpu_name
from ffbench.spec import BPTrial, FFTrial


class TorchBackend(Backend):
    name = "torch"
    framework = "torch"

    def __init__(self) -> None:
        wanted = os.environ.get("FFBENCH_TORCH_DEVICE")
        self.device = torch.device(wanted or ("cuda" if torch.cuda.is_available() else "cpu"))

    def versions(self) -> dict[str, str]:
        v = {"torch": torch.__version__}
        from ffbench_backends.torch import compile as tcompile
        if tcompile.enabled():  # recorded with every row: a compiled step is a different program
            v["torch.compile"] = tcompile.backend()
        if self.device.type == "cuda":
            v["cuda"] = str(torch.version.cuda)
        return v

    def device_name(self) -> str:
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return f"cpu: {cpu_name()} ({torch.get_num_threads()} threads)"

    def trainer(self, trial: FFTrial | BPTrial, data: Dataset) -> Trainer:
        if trial.algorithm == "ff" and trial.ff.recurrent is not None:
            from ffbench_backends.torch.recurrent import RecurrentFFTrainer
            return RecurrentFFTrainer(trial, data, self.device)
        if trial.algorithm == "ff":
            from ffbench_backends.torch.ff import FFTrainer
            return FFTrainer(trial, data, self.device)
        from ffbench_backends.torch.bp import BPTrainer
        return BPTrainer(trial, data, self.device)

    def pack_skip(self, trial: FFTrial | BPTrial) -> str | None:
        return traits.pack_skip(trial, on_gpu=self.device.type == "cuda")

    def packed_trainer(self, trials: list[FFTrial | BPTrial], data: Dataset) -> PackedTrainer:
        from ffbench_backends.torch.common import PackedTorchTrainer
        first = self.trainer(trials[0], data)
        return PackedTorchTrainer([first] + [type(first)(t, data, self.device, first) for t in trials[1:]])

    def reset_peak_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_memory(self) -> tuple[int | None, str]:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device)), "device"
        # Linux reports ru_maxrss in KiB; it is the process's peak, not this trial's alone.
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process_max_rss"
