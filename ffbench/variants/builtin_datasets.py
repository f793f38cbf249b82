"""The built-in datasets: MNIST, Fashion-MNIST and CIFAR-10 as published, and two synthetic
datasets of their geometries for quick passes without the real data."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ffbench import datafiles, datastore, synthetic
from ffbench.geometry import Geometry
from ffbench.variants.datasets import DatasetSource

IDX = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
       "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}


class IDXDataset(datastore.PublishedDataset):
    """The four gzipped IDX files of MNIST's layout."""

    shape = Geometry(1, 28, 28)
    train_size, test_size = 60_000, 10_000

    def read(self, paths):
        return {key: datafiles.read_idx(paths[stem + ".gz"]) for key, stem in IDX.items()}


class MNIST(IDXDataset):
    name = "mnist"
    description = "MNIST digits (LeCun et al.): handwritten 0-9, arrays checked by SHA-256"
    files = {  # as published with the dataset
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    mirrors = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/",
               "http://yann.lecun.com/exdb/mnist/")
    in_root = True
    array_sha256 = {
        "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
        "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
        "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
        "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
    }
    checksum = datastore.arrays_checksum(array_sha256)
    pixel_mean, pixel_std = (0.1307,), (0.3081,)

    def read_other(self, path: Path):
        """A Keras-style mnist.npz, or the four IDX files gzipped or raw (the arrays are pinned)."""
        if path.is_file():
            return datafiles.read_npz(path, IDX, "Keras-style mnist.npz") if path.suffix == ".npz" else None
        if (path / "mnist.npz").is_file():
            return self.read_other(path / "mnist.npz")
        found = {key: next((path / n for n in (stem + ".gz", stem) if (path / n).is_file()), None) for key, stem in IDX.items()}
        return {key: datafiles.read_idx(p) for key, p in found.items()} if all(found.values()) else None


class FashionMNIST(IDXDataset):
    name = "fashion_mnist"
    description = "Fashion-MNIST (Xiao et al. 2017): Zalando article images in MNIST's format, files checked by MD5"
    files = {  # README of zalandoresearch/fashion-mnist
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }
    mirrors = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
               "https://storage.googleapis.com/tensorflow/tf-keras-datasets/")
    checksum = datastore.files_checksum(files)
    class_names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
    pixel_mean, pixel_std = (0.2860,), (0.3530,)


class CIFAR10(datastore.PublishedDataset):
    name = "cifar10"
    description = "CIFAR-10 (Krizhevsky 2009), binary version: 32 x 32 colour images, tarball checked by MD5"
    files = {"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"}  # www.cs.toronto.edu/~kriz/cifar.html
    mirrors = ("https://www.cs.toronto.edu/~kriz/", "https://cave.cs.toronto.edu/kriz/")
    in_root = True
    checksum = datastore.files_checksum(files)
    shape = Geometry(3, 32, 32)
    train_size, test_size = 50_000, 10_000
    class_names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    pixel_mean, pixel_std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

    def read(self, paths):
        return datafiles.read_cifar_tar(paths["cifar-10-binary.tar.gz"])


class Synthetic(DatasetSource):
    """`ffbench.synthetic`'s deterministic images: for CI and timing, never for results."""

    def load(self, path=None):
        return _generated(self.shape, self.train_size, self.test_size)


@lru_cache(maxsize=2)
def _generated(shape, n_train, n_test):
    return synthetic.generate(shape, n_train, n_test)


class SyntheticGray28(Synthetic):
    name = "synthetic_gray28"
    description = "synthetic stand-in of MNIST's and Fashion-MNIST's geometry (ffbench.synthetic): CI and timing only"
    shape = Geometry(1, 28, 28)
    train_size, test_size = 60_000, 10_000
    checksum = synthetic.checksum(shape, train_size, test_size)
    pixel_mean, pixel_std = (0.5665,), (0.2041,)  # measured on its training split


class SyntheticRGB32(Synthetic):
    name = "synthetic_rgb32"
    description = "synthetic stand-in of CIFAR-10's geometry (ffbench.synthetic): CI and timing only"
    shape = Geometry(3, 32, 32)
    train_size, test_size = 50_000, 10_000
    checksum = synthetic.checksum(shape, train_size, test_size)
    pixel_mean, pixel_std = (0.5767, 0.5745, 0.5768), (0.2015, 0.1999, 0.2004)  # measured
