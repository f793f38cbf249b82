"""MNIST: find it, verify it, split it.

Sources, in order:
1. an explicit path (a file or a folder), else `$FFBENCH_DATA_DIR`: a Keras-style
   `mnist.npz`, or the four IDX files (`.gz` or raw);
2. the cache folder (`$FFBENCH_CACHE_DIR`, else `~/.cache/ffbench`), holding the same;
3. a download of the four IDX `.gz` files from the usual mirrors (or
   `$FFBENCH_MNIST_MIRRORS`) into the cache, each checked against its published MD5.

Whatever the container, the arrays are checked against the SHA-256 of their raw bytes, so
every trial records the same dataset checksum for the same data.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ffbench.errors import ConfigError, DataError
from ffbench.spec import DataSpec

ARRAY_SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
# The dataset checksum recorded with every trial: a hash of the four array hashes.
MNIST_CHECKSUM = hashlib.sha256(json.dumps(ARRAY_SHA256, sort_keys=True).encode()).hexdigest()

IDX_FILES = {  # array -> (file name, md5 of the .gz as published)
    "x_train": ("train-images-idx3-ubyte", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "y_train": ("train-labels-idx1-ubyte", "d53e105ee54ea40749a09fcbcd1e9432"),
    "x_test": ("t10k-images-idx3-ubyte", "9fb629c4189551a2d022fa330f9573f3"),
    "y_test": ("t10k-labels-idx1-ubyte", "ec29112dd5afa0611ce80d1b7f02629c"),
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
PIXEL_MEAN, PIXEL_STD = 0.1307, 0.3081  # MNIST's training pixels, scaled to [0, 1]


def dataset_checksum(name: str) -> str:
    """The checksum trials on `name` record (known without loading the data)."""
    from ffbench.variants import DATASETS, VariantError
    try:
        return DATASETS.get(name).checksum
    except VariantError as exc:
        raise DataError(str(exc)) from None


def cache_dir() -> Path:
    return Path(os.environ.get("FFBENCH_CACHE_DIR") or Path.home() / ".cache" / "ffbench")


# ---------------------------------------------------------------- reading containers

# What a damaged container raises: a cut-short or bit-flipped zip, gzip or npy header.
CORRUPT = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or raw) of unsigned bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except CORRUPT as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc}); corrupt or cut short?") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path}: truncated ({data.size} bytes for shape {shape})")
    return data.reshape(shape)


def _idx_path(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_folder(folder: Path) -> dict[str, np.ndarray] | None:
    if (folder / "mnist.npz").is_file():
        return _read_npz(folder / "mnist.npz")
    paths = {k: _idx_path(folder, stem) for k, (stem, _) in IDX_FILES.items()}
    if all(paths.values()):
        return {k: read_idx(p) for k, p in paths.items()}
    return None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in ARRAY_SHA256}
    except CORRUPT as exc:
        raise DataError(f"{path}: not a readable Keras-style mnist.npz ({type(exc).__name__}: {exc}); "
                        "corrupt or cut short?") from None


def verify(arrays: dict[str, np.ndarray], origin: str) -> dict[str, np.ndarray]:
    for key, expected in ARRAY_SHA256.items():
        got = hashlib.sha256(np.ascontiguousarray(arrays[key]).tobytes()).hexdigest()
        if got != expected:
            raise DataError(f"{origin}: {key} has sha256 {got[:12]}..., expected {expected[:12]}... (corrupt or not MNIST)")
    return arrays


# ---------------------------------------------------------------- downloading

def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def mirrors() -> tuple[str, ...]:
    """`$FFBENCH_MNIST_MIRRORS` (comma-separated base URLs), else the usual public mirrors."""
    env = os.environ.get("FFBENCH_MNIST_MIRRORS")
    return tuple(m.strip().rstrip("/") + "/" for m in env.split(",") if m.strip()) if env else MIRRORS


def download(dest: Path, timeout: float = 30.0) -> None:
    """Fetch the four IDX .gz files into `dest`, checking each MD5; atomic per file."""
    dest.mkdir(parents=True, exist_ok=True)
    for stem, md5 in IDX_FILES.values():
        target = dest / (stem + ".gz")
        if target.is_file() and _md5(target) == md5:
            continue
        errors = []
        for mirror in mirrors():
            tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
            try:
                with urllib.request.urlopen(mirror + stem + ".gz", timeout=timeout) as resp, open(tmp, "wb") as f:
                    f.write(resp.read())
                if _md5(tmp) != md5:
                    errors.append(f"{mirror}: md5 mismatch")
                    continue
                os.replace(tmp, target)
                break
            except OSError as exc:
                errors.append(f"{mirror}: {getattr(exc, 'reason', exc)}")
            finally:
                tmp.unlink(missing_ok=True)
        else:
            raise DataError(f"could not download {stem}.gz from any mirror ({'; '.join(errors)}); "
                            "offline? put mnist.npz or the IDX files in a folder and set FFBENCH_DATA_DIR")


def load_mnist(path: str | Path | None = None, *, allow_download: bool = True) -> dict[str, np.ndarray]:
    """The four verified uint8 arrays: x_train (60000, 28, 28), y_train, x_test, y_test."""
    explicit = path or os.environ.get("FFBENCH_DATA_DIR")
    if explicit:
        p = Path(explicit).expanduser()
        arrays = _read_npz(p) if p.is_file() else (_read_folder(p) if p.is_dir() else None)
        if arrays is None:
            raise DataError(f"{p}: no mnist.npz or MNIST IDX files there")
        return verify(arrays, str(p))
    cache = cache_dir() / "mnist"
    arrays = _read_folder(cache) if cache.is_dir() else None
    if arrays is None:
        if not allow_download:
            raise DataError(f"MNIST not found in {cache}; set FFBENCH_DATA_DIR")
        download(cache)
        arrays = _read_folder(cache)
    return verify(arrays, str(cache))


# ---------------------------------------------------------------- splits

@dataclass(frozen=True)
class Split:
    x: np.ndarray  # (n, 784) float32, scaled
    y: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Dataset:
    name: str
    checksum: str
    train: Split
    val: Split | None
    test: Split
    rest: Split | None = None  # with data.classes: the training images of the other classes


def _scale(x: np.ndarray, how: str, source) -> np.ndarray:
    """x / 255, flattened; standardised with the dataset's own training-pixel mean and std."""
    x = x.reshape(len(x), -1).astype(np.float32) / 255.0
    return (x - source.pixel_mean) / source.pixel_std if how == "standardize" else x


def prepare(spec: DataSpec, path: str | Path | None = None) -> Dataset:
    """The splits a trial trains and evaluates on (cached per process)."""
    return _prepare(spec.model_dump_json(), str(path) if path else os.environ.get("FFBENCH_DATA_DIR"))


@lru_cache(maxsize=4)
def _prepare(spec_json: str, path: str | None) -> Dataset:
    from ffbench.variants import DATASETS
    spec = DataSpec.model_validate_json(spec_json)
    source = DATASETS.get(spec.name)
    raw = source.load(path)
    x, y = _scale(raw["x_train"], spec.pixel_scale, source), raw["y_train"].astype(np.int64)
    n_train = len(y) - spec.validation_size
    train = Split(x[:n_train], y[:n_train])
    if spec.train_subset is not None:
        if spec.train_subset > n_train:
            raise ConfigError(f"{spec.train_subset} exceeds the {n_train} training images", field="data.train_subset")
        train = Split(train.x[: spec.train_subset], train.y[: spec.train_subset])
    val = Split(x[n_train:], y[n_train:]) if spec.validation_size else None
    test = Split(_scale(raw["x_test"], spec.pixel_scale, source), raw["y_test"].astype(np.int64))
    if spec.test_subset is not None:  # a quick pass only: the error of a real run is on all 10,000
        if spec.test_subset > len(test.y):
            raise ConfigError(f"{spec.test_subset} exceeds the {len(test.y)} test images", field="data.test_subset")
        test = Split(test.x[: spec.test_subset], test.y[: spec.test_subset])
    rest = None
    if spec.classes is not None:  # positives and evaluation: these classes; the rest: class_split's negatives
        keep = lambda s: Split(s.x[np.isin(s.y, spec.classes)], s.y[np.isin(s.y, spec.classes)])  # noqa: E731
        rest = Split(train.x[~np.isin(train.y, spec.classes)], train.y[~np.isin(train.y, spec.classes)])
        train, val, test = keep(train), (keep(val) if val else None), keep(test)
    return Dataset(spec.name, source.checksum, train, val, test, rest)
