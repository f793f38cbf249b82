"""Datasets as registered variants (`ffbench list`: "datasets").

A dataset is found and verified on the host (framework-free), so it has no per-backend
implementations: every backend trains on the arrays `load` returns. `checksum` is known
without loading (a trial's id includes it); `load` returns the verified uint8 arrays
x_train (n, H, W), y_train (n,), x_test, y_test. Their geometry is `shape` (channels, height,
width). The FF nets (label overlay, jitter, hybrid masks, local receptive fields) are defined
on 28 x 28 greyscale with 10 classes so far, so a dataset of another geometry is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from ffbench.variants.registry import Registry, Variant

GEOMETRY = (1, 28, 28)


class DatasetSource(Variant):
    kind: ClassVar[str] = "dataset"
    checksum: ClassVar[str]
    shape: ClassVar[tuple[int, int, int]] = GEOMETRY
    num_classes: ClassVar[int] = 10
    class_names: ClassVar[tuple[str, ...]] = tuple(str(c) for c in range(10))
    train_size: ClassVar[int]  # images in the official training split
    # the training pixels' mean and std after x / 255 (`data.pixel_scale: standardize`)
    pixel_mean: ClassVar[float]
    pixel_std: ClassVar[float]

    def skip(self, backend: str) -> str | None:
        return None  # the data reach every backend as NumPy arrays

    def validate(self, spec) -> None:
        if self.shape != GEOMETRY or self.num_classes != 10:
            raise ValueError(f"dataset {self.name!r} is {self.shape} with {self.num_classes} classes; ffbench's FF nets "
                             f"are defined on {GEOMETRY} images with 10 classes so far")
        if spec.validation_size >= self.train_size:
            raise ValueError(f"data.validation_size {spec.validation_size} leaves no training images of the "
                             f"{self.train_size} in {self.name}")

    def load(self, path: str | Path | None) -> dict[str, np.ndarray]:
        """The verified arrays, from `path` (a file or folder) or the dataset's own places."""
        raise NotImplementedError


DATASETS: Registry[DatasetSource] = Registry("dataset", "ffbench.datasets", DatasetSource, {
    "mnist": "ffbench.variants.builtin_datasets:MNIST"})
