"""The built-in dataset: MNIST, found, verified and (if need be) downloaded by `ffbench.data`."""

from __future__ import annotations

from ffbench import data
from ffbench.variants.datasets import DatasetSource


class MNIST(DatasetSource):
    name = "mnist"
    description = "MNIST digits: 60,000 training and 10,000 test images, 28 x 28 greyscale, checked by SHA-256"
    checksum = data.MNIST_CHECKSUM
    train_size = 60_000
    pixel_mean, pixel_std = data.PIXEL_MEAN, data.PIXEL_STD

    def load(self, path):
        return data.load_mnist(path)
