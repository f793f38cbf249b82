"""A trial's data: the registered dataset's verified arrays, split and scaled.

Finding, verifying and downloading the published files is `ffbench.datastore`'s job; the
containers are read by `ffbench.datafiles`. Images become flat float32 rows in (channel,
row, column) order (`ffbench.geometry`), scaled to [0, 1] or standardised per channel with
the dataset's own training-pixel statistics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ffbench.datastore import cache_dir
from ffbench.errors import ConfigError, DataError
from ffbench.geometry import Geometry
from ffbench.spec import DataSpec

__all__ = ["Dataset", "Split", "cache_dir", "dataset_checksum", "load", "prepare"]


def dataset_checksum(name: str) -> str:
    """The checksum trials on `name` record (known without loading the data)."""
    return _source(name).checksum


def _source(name: str):
    from ffbench.variants import DATASETS, VariantError
    try:
        return DATASETS.get(name)
    except VariantError as exc:
        raise DataError(str(exc)) from None


def load(name: str, path: str | Path | None = None) -> dict[str, np.ndarray]:
    """The verified uint8 arrays of dataset `name`: x_train, y_train, x_test, y_test."""
    return _source(name).load(path)


@dataclass(frozen=True)
class Split:
    x: np.ndarray  # (n, C*H*W) float32, scaled
    y: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Dataset:
    name: str
    checksum: str
    shape: Geometry
    train: Split
    val: Split | None
    test: Split
    rest: Split | None = None  # with data.classes: the training images of the other classes


def _scale(x: np.ndarray, how: str, source) -> np.ndarray:
    """x / 255 as flat rows; standardised per channel with the dataset's training-pixel mean and std."""
    x = x.reshape(len(x), -1).astype(np.float32) / np.float32(255.0)
    if how != "standardize":
        return x
    per = source.shape.pixels
    mean = np.repeat(np.asarray(source.pixel_mean, np.float32), per)
    std = np.repeat(np.asarray(source.pixel_std, np.float32), per)
    return (x - mean) / std


def prepare(spec: DataSpec, path: str | Path | None = None) -> Dataset:
    """The splits a trial trains and evaluates on (cached per process)."""
    # the places searched are part of the key: a test (or a user) may point FFBENCH_DATA_DIR elsewhere
    return _prepare(spec.model_dump_json(), str(path) if path else None, os.environ.get("FFBENCH_DATA_DIR"))


def _split(x: np.ndarray, y: np.ndarray, how: str, source) -> Split:
    return Split(_scale(x, how, source), y.astype(np.int64))


@lru_cache(maxsize=4)
def _prepare(spec_json: str, path: str | None, data_dir: str | None) -> Dataset:
    spec = DataSpec.model_validate_json(spec_json)
    source = _source(spec.name)
    raw = source.load(path)
    x, y = raw["x_train"], raw["y_train"]
    n_train = len(y) - spec.validation_size
    if spec.train_subset is not None and spec.train_subset > n_train:
        raise ConfigError(f"{spec.train_subset} exceeds the {n_train} training images", field="data.train_subset")
    keep = n_train if spec.train_subset is None else spec.train_subset
    train = _split(x[:keep], y[:keep], spec.pixel_scale, source)  # only the rows a trial uses are scaled
    val = _split(x[n_train:], y[n_train:], spec.pixel_scale, source) if spec.validation_size else None
    xt, yt = raw["x_test"], raw["y_test"]
    if spec.test_subset is not None:  # a quick pass only: the error of a real run is on the whole test split
        if spec.test_subset > len(yt):
            raise ConfigError(f"{spec.test_subset} exceeds the {len(yt)} test images", field="data.test_subset")
        xt, yt = xt[: spec.test_subset], yt[: spec.test_subset]
    test = _split(xt, yt, spec.pixel_scale, source)
    rest = None
    if spec.classes is not None:  # positives and evaluation: these classes; the rest: class_split's negatives
        keep_classes = lambda s: Split(s.x[np.isin(s.y, spec.classes)], s.y[np.isin(s.y, spec.classes)])  # noqa: E731
        rest = Split(train.x[~np.isin(train.y, spec.classes)], train.y[~np.isin(train.y, spec.classes)])
        train, val, test = keep_classes(train), (keep_classes(val) if val else None), keep_classes(test)
    return Dataset(spec.name, source.checksum, source.shape, train, val, test, rest)
