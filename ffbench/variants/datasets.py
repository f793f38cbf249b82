"""Datasets as registered variants (`ffbench list`: "datasets").

A dataset is found and verified on the host (framework-free), so it has no per-backend
implementations: every backend trains on the arrays `load` returns. `checksum` is known
without loading (a trial's id includes it); `load` returns the verified uint8 arrays
x_train, y_train, x_test, y_test, images (n, H, W) for one channel and (n, C, H, W) for more.
Their geometry is `shape` (`ffbench.geometry`); the FF ops are defined for any geometry on
flat rows in (channel, row, column) order. Published datasets (files with MD5s, found in
`$FFBENCH_DATA_DIR` or the cache, else downloaded) derive from
`ffbench.datastore.PublishedDataset`.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from ffbench.geometry import Geometry
from ffbench.variants.registry import Registry, Variant

NUM_CLASSES = 10  # the FF label overlay and prediction rules are written for 10 classes


class DatasetSource(Variant):
    kind: ClassVar[str] = "dataset"
    checksum: ClassVar[str]
    shape: ClassVar[Geometry]
    num_classes: ClassVar[int] = NUM_CLASSES
    class_names: ClassVar[tuple[str, ...]] = tuple(str(c) for c in range(NUM_CLASSES))
    train_size: ClassVar[int]  # images in the official training split
    test_size: ClassVar[int]
    # per channel: the training pixels' mean and std after x / 255 (`data.pixel_scale: standardize`)
    pixel_mean: ClassVar[tuple[float, ...]]
    pixel_std: ClassVar[tuple[float, ...]]

    def skip(self, backend: str) -> str | None:
        return None  # the data reach every backend as NumPy arrays

    def validate(self, spec) -> None:
        if self.num_classes != NUM_CLASSES:
            raise ValueError(f"dataset {self.name!r} has {self.num_classes} classes; ffbench's FF nets are defined "
                             f"for {NUM_CLASSES} so far")
        if spec.validation_size >= self.train_size:
            raise ValueError(f"data.validation_size {spec.validation_size} leaves no training images of the "
                             f"{self.train_size} in {self.name}")

    def load(self, path: str | Path | None) -> dict[str, np.ndarray]:
        """The verified arrays, from `path` (a file or folder) or the dataset's own places."""
        raise NotImplementedError

    def summary(self) -> str:
        """One line for `ffbench list`: geometry, classes and splits."""
        return f"{self.shape.label()}, {self.num_classes} classes, {self.train_size:,} train / {self.test_size:,} test"


DATASETS: Registry[DatasetSource] = Registry("dataset", "ffbench.datasets", DatasetSource, {
    "mnist": "ffbench.variants.builtin_datasets:MNIST",
    "fashion_mnist": "ffbench.variants.builtin_datasets:FashionMNIST",
    "cifar10": "ffbench.variants.builtin_datasets:CIFAR10",
    "synthetic_gray28": "ffbench.variants.builtin_datasets:SyntheticGray28",
    "synthetic_rgb32": "ffbench.variants.builtin_datasets:SyntheticRGB32",
})
