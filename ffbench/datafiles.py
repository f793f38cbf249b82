"""Reading the published dataset containers, framework-free and without unpickling anything.

- IDX (MNIST, Fashion-MNIST), gzipped or raw;
- a Keras-style `.npz` of plain arrays (`allow_pickle=False`);
- CIFAR-10's *binary* distribution (`cifar-10-binary.tar.gz`): records of 1 label byte and
  3,072 pixel bytes (the red, green and blue 32 x 32 planes, row-major), read from the
  tarball's members by name, never extracted to disk.

A damaged container is a `DataError` naming the file, never a traceback.
"""

from __future__ import annotations

import gzip
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ffbench.errors import DataError

# What a damaged container raises: a cut-short or bit-flipped zip, gzip, tar or npy header.
CORRUPT = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error, tarfile.TarError)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or raw) of unsigned bytes."""
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


def read_npz(path: Path, keys, what: str) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in keys}
    except CORRUPT as exc:
        raise DataError(f"{path}: not a readable {what} ({type(exc).__name__}: {exc}); corrupt or cut short?") from None


CIFAR_MEMBERS = {  # split -> the binary distribution's members, in order
    "train": [f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)],
    "test": ["cifar-10-batches-bin/test_batch.bin"],
}
CIFAR_RECORD = 1 + 3 * 32 * 32


def cifar_records(raw: bytes, origin: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, 3, 32, 32), labels (n,)) from the bytes of binary CIFAR-10 records."""
    if len(raw) % CIFAR_RECORD:
        raise DataError(f"{origin}: {len(raw)} bytes is not a whole number of {CIFAR_RECORD}-byte CIFAR-10 records")
    rec = np.frombuffer(raw, np.uint8).reshape(-1, CIFAR_RECORD)
    return rec[:, 1:].reshape(-1, 3, 32, 32), rec[:, 0].copy()


def read_cifar_tar(path: Path) -> dict[str, np.ndarray]:
    """x_train (50000, 3, 32, 32), y_train, x_test, y_test from `cifar-10-binary.tar.gz`."""
    out = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for split, members in CIFAR_MEMBERS.items():
                parts = []
                for name in members:
                    f = tar.extractfile(name)  # KeyError if absent; None if not a regular file
                    if f is None:
                        raise DataError(f"{path}: {name} is not a regular file")
                    parts.append(cifar_records(f.read(), f"{path}:{name}"))
                out["x_" + split] = np.concatenate([p[0] for p in parts])
                out["y_" + split] = np.concatenate([p[1] for p in parts])
    except CORRUPT as exc:
        raise DataError(f"{path}: not a readable CIFAR-10 binary tarball ({type(exc).__name__}: {exc}); "
                        "corrupt or cut short?") from None
    return out
