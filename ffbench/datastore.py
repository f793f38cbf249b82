"""Where a published dataset's files are found, how they are verified, and the download.

For dataset NAME, in order:
1. an explicit path (`DatasetSource.load(path)`), and nothing else;
2. `$FFBENCH_DATA_DIR/NAME/`, then `$FFBENCH_DATA_DIR` itself (a folder, or a file such as
   `mnist.npz`) for a dataset whose file names
   cannot be mistaken for another's (`in_root`: MNIST's `mnist.npz` or IDX files, CIFAR-10's
   tarball; Fashion-MNIST's IDX files share MNIST's names, so it lives in its own folder);
3. the cache, `$FFBENCH_CACHE_DIR/NAME/` (default `~/.cache/ffbench/NAME/`);
4. a download of the published files into that cache folder (`ffbench.download`), from
   `$FFBENCH_<NAME>_MIRRORS` (comma-separated base URLs) or the official places.

Every published file is checked against its published MD5 whenever it is read, and the
arrays against their SHA-256 where the project pins them (MNIST), so a trial's
`dataset_checksum` always names the data it trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import ClassVar

import numpy as np

from ffbench.download import DiskFull, Progress, fetch, md5_of
from ffbench.errors import DataError
from ffbench.variants.datasets import DatasetSource


def cache_dir() -> Path:
    return Path(os.environ.get("FFBENCH_CACHE_DIR") or Path.home() / ".cache" / "ffbench")


def files_checksum(files: dict[str, str]) -> str:
    """The dataset checksum of a dataset known by its published files' MD5s."""
    return hashlib.sha256(json.dumps({"files": files}, sort_keys=True).encode()).hexdigest()


def arrays_checksum(array_sha256: dict[str, str]) -> str:
    """The dataset checksum of a dataset whose arrays' SHA-256s are pinned: a hash of those hashes."""
    return hashlib.sha256(json.dumps(array_sha256, sort_keys=True).encode()).hexdigest()


class PublishedDataset(DatasetSource):
    """A dataset distributed as files with published MD5s (`files`, at `mirrors`)."""

    files: ClassVar[dict[str, str]]  # file name -> MD5 as published
    mirrors: ClassVar[tuple[str, ...]]  # base URLs, each ending in "/"
    in_root: ClassVar[bool] = False  # may sit in $FFBENCH_DATA_DIR itself (its file names are its own)
    array_sha256: ClassVar[dict[str, str] | None] = None  # pinned array hashes, where known

    def read(self, paths: dict[str, Path]) -> dict[str, np.ndarray]:
        """The arrays, from the published files (already checked against their MD5s)."""
        raise NotImplementedError

    def read_other(self, path: Path) -> dict[str, np.ndarray] | None:
        """Arrays from another container at `path` (a file or folder), or None. Only for a
        dataset whose arrays are pinned (`array_sha256`), which then verify them."""
        return None

    def load(self, path: str | Path | None = None, progress: Progress | None = None) -> dict[str, np.ndarray]:
        return load(self, path, progress)

    def mirror_list(self) -> tuple[str, ...]:
        env = os.environ.get(f"FFBENCH_{self.name.upper()}_MIRRORS")
        return tuple(m.strip().rstrip("/") + "/" for m in env.split(",") if m.strip()) if env else self.mirrors


def _read(src: PublishedDataset, place: Path) -> dict[str, np.ndarray] | None:
    """The verified arrays at `place`, None if the dataset is not there; DataError if it is, but damaged."""
    arrays = src.read_other(place) if src.array_sha256 else None
    single = place.is_file() and list(src.files) == [place.name]  # the path of a one-file dataset's file
    if arrays is None and (place.is_dir() or single):
        paths = {place.name: place} if single else {name: place / name for name in src.files}
        if not all(p.is_file() for p in paths.values()):
            return None
        for name, p in paths.items():
            got = md5_of(p)
            if got != src.files[name]:
                raise DataError(f"{p}: md5 {got[:12]}..., expected {src.files[name][:12]}... (corrupt, cut short or "
                                f"not {src.name}'s published file; delete it to download it again)")
        arrays = src.read(paths)
    return None if arrays is None else verify(src, arrays, str(place))


def verify(src: DatasetSource, arrays: dict[str, np.ndarray], origin: str) -> dict[str, np.ndarray]:
    """The arrays' shapes, labels and (where pinned) SHA-256s, or a DataError naming `origin`."""
    geometry = tuple(src.shape) if src.shape.channels > 1 else tuple(src.shape[1:])
    for split, n in (("train", src.train_size), ("test", src.test_size)):
        x, y = arrays["x_" + split], arrays["y_" + split]
        if x.shape != (n, *geometry) or y.shape != (n,) or x.dtype != np.uint8:
            raise DataError(f"{origin}: x_{split} is {x.dtype}{list(x.shape)} with {y.shape[0]} labels, expected "
                            f"uint8{[n, *geometry]} ({src.name})")
        if y.size and int(y.max()) >= src.num_classes:
            raise DataError(f"{origin}: y_{split} has label {int(y.max())}; {src.name} has {src.num_classes} classes")
    for key, expected in (src.array_sha256 or {}).items():
        got = hashlib.sha256(np.ascontiguousarray(arrays[key]).tobytes()).hexdigest()
        if got != expected:
            raise DataError(f"{origin}: {key} has sha256 {got[:12]}..., expected {expected[:12]}... "
                            f"(corrupt or not {src.name})")
    return arrays


def places(src: PublishedDataset) -> list[Path]:
    """Where `src` is looked for when no path is given, in order (the cache last)."""
    out = []
    env = os.environ.get("FFBENCH_DATA_DIR")
    if env:
        root = Path(env).expanduser()
        if root.is_file():  # one file: the data of a one-container dataset (mnist.npz, CIFAR-10's tarball)
            out.append(root)
        elif root.is_dir():
            out += [root / src.name] + ([root] if src.in_root else [])
        else:
            raise DataError(f"FFBENCH_DATA_DIR={env}: no such file or folder")
    return out + [cache_dir() / src.name]


def download(src: PublishedDataset, dest: Path, progress: Progress | None = None) -> None:
    """Fetch every published file of `src` that `dest` lacks or holds damaged."""
    for name, md5 in src.files.items():
        target = dest / name
        if target.is_file() and md5_of(target) == md5:
            continue
        try:
            fetch(name, [m + name for m in src.mirror_list()], target, md5, progress=progress)
        except DiskFull:
            raise
        except DataError as exc:
            where = f"$FFBENCH_DATA_DIR{' or' if src.in_root else ''} its {src.name}/ folder"
            raise DataError(f"{src.name}: {exc}; offline? put the files in {where} (see README: Data)") from None


def load(src: PublishedDataset, path: str | Path | None = None, progress: Progress | None = None) -> dict[str, np.ndarray]:
    """The verified arrays of `src`: from `path` only, else the first place that has them, else downloaded."""
    if path:
        p = Path(path).expanduser()
        arrays = _read(src, p) if p.exists() else None
        if arrays is None:
            raise DataError(f"{p}: no {src.name} files there (expected {', '.join(src.files)})")
        return arrays
    where = places(src)
    for place in where:
        arrays = _read(src, place)
        if arrays is not None:
            return arrays
    download(src, where[-1], progress)
    return _read(src, where[-1])
