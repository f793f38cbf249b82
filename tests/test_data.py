"""The MNIST loader: containers, checksums, downloads (against a local server), splits."""

import gzip
import hashlib
import http.server
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from ffbench import data
from ffbench.errors import ConfigError, DataError
from ffbench.spec import DataSpec


@pytest.fixture(scope="module")
def raw(mnist_dir):
    return data.load_mnist(mnist_dir)


def write_idx(path: Path, a: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in a.shape)
    payload = header + np.ascontiguousarray(a, np.uint8).tobytes()
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wb", compresslevel=1) as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def make_idx_folder(folder: Path, raw, gz: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for key, (stem, _) in data.IDX_FILES.items():
        write_idx(folder / stem, raw[key], gz)
    return folder


def test_shared_npz_is_verified_and_has_the_known_class_counts(raw):
    assert raw["x_train"].shape == (60000, 28, 28) and raw["x_test"].shape == (10000, 28, 28)
    assert np.bincount(raw["y_test"]).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert np.bincount(raw["y_train"])[:3].tolist() == [5923, 6742, 5958]


def test_env_var_and_explicit_file(monkeypatch, mnist_dir):
    monkeypatch.setenv("FFBENCH_DATA_DIR", str(mnist_dir))
    assert data.load_mnist()["y_test"].shape == (10000,)
    assert data.load_mnist(mnist_dir / "mnist.npz")["y_test"].shape == (10000,)


def test_corrupt_data_is_refused(tmp_path, raw):
    bad = dict(raw)
    bad["y_train"] = raw["y_train"].copy()
    bad["y_train"][0] ^= 1
    np.savez(tmp_path / "mnist.npz", **bad)
    with pytest.raises(DataError, match="y_train has sha256"):
        data.load_mnist(tmp_path)


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no mnist.npz or MNIST IDX files"):
        data.load_mnist(tmp_path)


@pytest.fixture(scope="module")
def gz_folder(tmp_path_factory, raw):
    return make_idx_folder(tmp_path_factory.mktemp("www") / "mnist", raw, gz=True)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_give_the_same_arrays(tmp_path, raw, gz, gz_folder):
    folder = gz_folder if gz else make_idx_folder(tmp_path / "idx", raw, gz)
    again = data.load_mnist(folder)
    for k in raw:
        np.testing.assert_array_equal(again[k], raw[k])


@pytest.fixture()
def server(gz_folder):
    """A loopback HTTP server with the four .gz files; returns (base url, md5s of those files)."""
    root = gz_folder
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(gz_folder.parent))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    md5s = {stem: hashlib.md5((root / (stem + ".gz")).read_bytes()).hexdigest() for stem, _ in data.IDX_FILES.values()}
    yield f"http://127.0.0.1:{httpd.server_port}/", md5s
    httpd.shutdown()


def test_download_falls_back_across_mirrors_and_checks_md5(tmp_path, monkeypatch, server):
    url, md5s = server
    # gzip output differs from the published files byte for byte, so use our files' md5s
    monkeypatch.setattr(data, "IDX_FILES", {k: (stem, md5s[stem]) for k, (stem, _) in data.IDX_FILES.items()})
    monkeypatch.setenv("FFBENCH_MNIST_MIRRORS", f"{url}missing/,{url}mnist")
    monkeypatch.delenv("FFBENCH_DATA_DIR", raising=False)
    monkeypatch.setenv("FFBENCH_CACHE_DIR", str(tmp_path / "cache"))
    arrays = data.load_mnist()
    assert arrays["x_train"].shape == (60000, 28, 28)
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == sorted(s + ".gz" for s in md5s)
    assert data.load_mnist()["y_test"].shape == (10000,)  # now from the cache


def test_download_rejects_a_wrong_md5_and_leaves_nothing(tmp_path, monkeypatch, server):
    url, _ = server
    monkeypatch.setattr(data, "MIRRORS", (url + "mnist/",))  # real published md5s: ours differ
    monkeypatch.delenv("FFBENCH_DATA_DIR", raising=False)
    monkeypatch.setenv("FFBENCH_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="md5 mismatch"):
        data.load_mnist()
    assert not list((tmp_path / "cache" / "mnist").glob("*"))


def test_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MIRRORS", ("http://127.0.0.1:9/",))  # discard port: refused
    monkeypatch.delenv("FFBENCH_DATA_DIR", raising=False)
    monkeypatch.setenv("FFBENCH_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="offline\\? put mnist.npz"):
        data.load_mnist()


def test_splits(mnist_dir, raw):
    ds = data.prepare(DataSpec(), mnist_dir)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (50000, 10000, 10000)
    np.testing.assert_array_equal(ds.val.y, raw["y_train"][50000:])
    assert ds.train.x.dtype == np.float32 and ds.train.x.shape == (50000, 784) and ds.train.x.max() == 1.0
    small = data.prepare(DataSpec(train_subset=2000, validation_size=0), mnist_dir)
    assert len(small.train) == 2000 and small.val is None
    np.testing.assert_array_equal(small.train.y, raw["y_train"][:2000])
    std = data.prepare(DataSpec(pixel_scale="standardize"), mnist_dir)
    assert abs(float(std.train.x.mean())) < 0.05 and abs(float(std.train.x.std()) - 1) < 0.05
    with pytest.raises(ConfigError, match="data.train_subset: 55000 exceeds the 50000 training images"):
        data.prepare(DataSpec(train_subset=55000), mnist_dir)  # bad input (exit 2), not a missing dataset


def test_classes_keep_their_images_for_training_and_evaluation_and_pool_the_rest(mnist_dir, raw):
    ds = data.prepare(DataSpec(classes=[4, 0, 1, 2, 3], train_subset=3000), mnist_dir)
    y = raw["y_train"][:3000]
    assert set(ds.train.y) == {0, 1, 2, 3, 4} and set(ds.rest.y) == {5, 6, 7, 8, 9}
    assert len(ds.train) == (y < 5).sum() and len(ds.rest) == (y >= 5).sum()
    np.testing.assert_array_equal(ds.train.x, data.prepare(DataSpec(train_subset=3000), mnist_dir).train.x[y < 5])
    assert len(ds.test) == (raw["y_test"] < 5).sum() and len(ds.val) == (raw["y_train"][50000:] < 5).sum()
    assert data.prepare(DataSpec(), mnist_dir).rest is None


def test_checksum_is_known_without_loading():
    assert data.dataset_checksum("mnist") == data.MNIST_CHECKSUM
    assert len(data.MNIST_CHECKSUM) == 64
