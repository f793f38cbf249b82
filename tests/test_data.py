"""The datasets: containers, checksums, the download path against a loopback HTTP server
(corrupt, truncated and unreachable sources, a full disk), splits and scaling."""

import gzip
import hashlib
import http.server
import io
import os
import subprocess
import sys
import tarfile
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from ffbench import data, datafiles, datastore
from ffbench.errors import ConfigError, DataError
from ffbench.spec import DataSpec
from ffbench.variants.builtin_datasets import CIFAR10, IDX, MNIST, FashionMNIST


@pytest.fixture(scope="module")
def raw(mnist_dir):
    return data.load("mnist", mnist_dir)


def idx_bytes(a: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in a.shape)
    return header + np.ascontiguousarray(a, np.uint8).tobytes()


def write_idx_folder(folder: Path, arrays, gz: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in IDX.items():
        payload = idx_bytes(arrays[key])
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(payload, compresslevel=1, mtime=0))
        else:
            (folder / stem).write_bytes(payload)
    return folder


def cifar_tarball(path: Path, arrays) -> Path:
    """A small `cifar-10-binary.tar.gz` in the official layout: 5 training batches and a test batch."""
    def records(x, y):
        return b"".join(bytes([int(label)]) + img.tobytes() for img, label in zip(x, y))
    xt, yt = np.array_split(arrays["x_train"], 5), np.array_split(arrays["y_train"], 5)
    members = {f"cifar-10-batches-bin/data_batch_{i + 1}.bin": records(xt[i], yt[i]) for i in range(5)}
    members["cifar-10-batches-bin/test_batch.bin"] = records(arrays["x_test"], arrays["y_test"])
    members["cifar-10-batches-bin/batches.meta.txt"] = "\n".join(CIFAR10.class_names).encode()
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def small_arrays(shape, n_train, n_test, seed):
    g = np.random.default_rng(seed)
    return {"x_train": g.integers(0, 256, (n_train, *shape), dtype=np.uint8),
            "y_train": g.integers(0, 10, n_train).astype(np.uint8),
            "x_test": g.integers(0, 256, (n_test, *shape), dtype=np.uint8), "y_test": g.integers(0, 10, n_test).astype(np.uint8)}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- MNIST, as shipped in ../shared

def test_shared_npz_is_verified_and_has_the_known_class_counts(raw):
    assert raw["x_train"].shape == (60000, 28, 28) and raw["x_test"].shape == (10000, 28, 28)
    assert np.bincount(raw["y_test"]).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert np.bincount(raw["y_train"])[:3].tolist() == [5923, 6742, 5958]


def test_env_var_and_explicit_file(monkeypatch, mnist_dir):
    monkeypatch.setenv("FFBENCH_DATA_DIR", str(mnist_dir))
    assert data.load("mnist")["y_test"].shape == (10000,)
    assert data.load("mnist", mnist_dir / "mnist.npz")["y_test"].shape == (10000,)
    monkeypatch.setenv("FFBENCH_DATA_DIR", str(mnist_dir / "nowhere"))
    with pytest.raises(DataError, match="FFBENCH_DATA_DIR=.*nowhere: no such file or folder"):
        data.load("mnist")


def test_corrupt_data_is_refused(tmp_path, raw):
    bad = dict(raw)
    bad["y_train"] = raw["y_train"].copy()
    bad["y_train"][0] ^= 1
    np.savez(tmp_path / "mnist.npz", **bad)
    with pytest.raises(DataError, match="y_train has sha256"):
        data.load("mnist", tmp_path)


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no mnist files there"):
        data.load("mnist", tmp_path)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_give_the_same_arrays(tmp_path, raw, gz):
    again = data.load("mnist", write_idx_folder(tmp_path / "idx", raw, gz))
    for k in raw:
        np.testing.assert_array_equal(again[k], raw[k])


def test_checksums_are_known_without_loading():
    assert data.dataset_checksum("mnist") == MNIST.checksum == datastore.arrays_checksum(MNIST.array_sha256)
    assert MNIST.checksum == "a4e6a397d0e69f9d4936a256c003e77967ff9e65bad11284ffd7564542a7cb15"  # every MNIST trial id's
    sums = {data.dataset_checksum(n) for n in ("mnist", "fashion_mnist", "cifar10", "synthetic_gray28", "synthetic_rgb32")}
    assert len(sums) == 5 and all(len(s) == 64 for s in sums)


# ---------------------------------------------------------------- the download path, over a loopback server

class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves `directory`; under /truncated/ it promises each file's full length but sends half of it."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        if not self.path.startswith("/truncated/"):
            return super().do_GET()
        body = (Path(self.directory) / "good" / self.path.removeprefix("/truncated/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.close_connection = True


@pytest.fixture(scope="module")
def www(tmp_path_factory):
    """good/: small Fashion-MNIST IDX files, a small CIFAR-10 tarball and MNIST's IDX files;
    corrupt/: the same files with one byte flipped. Returns (root, the arrays served)."""
    root = tmp_path_factory.mktemp("www")
    fashion = small_arrays((28, 28), 30, 10, seed=1)
    cifar = small_arrays((3, 32, 32), 20, 6, seed=2)
    write_idx_folder(root / "good", fashion, gz=True)
    cifar_tarball(root / "good" / "cifar-10-binary.tar.gz", cifar)
    (root / "corrupt").mkdir()
    for f in (root / "good").iterdir():
        b = bytearray(f.read_bytes())
        b[len(b) // 2] ^= 0xFF
        (root / "corrupt" / f.name).write_bytes(bytes(b))
    return root, {"fashion_mnist": fashion, "cifar10": cifar}


@pytest.fixture()
def server(www):
    root, _ = www
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def small(monkeypatch, www, tmp_path):
    """Fashion-MNIST and CIFAR-10 made to expect the served files (their MD5s and split sizes),
    an empty cache, and no FFBENCH_DATA_DIR."""
    root, arrays = www
    for cls, name in ((FashionMNIST, "fashion_mnist"), (CIFAR10, "cifar10")):
        monkeypatch.setattr(cls, "files", {f: md5(root / "good" / f) for f in cls.files})
        monkeypatch.setattr(cls, "train_size", len(arrays[name]["y_train"]))
        monkeypatch.setattr(cls, "test_size", len(arrays[name]["y_test"]))
    monkeypatch.delenv("FFBENCH_DATA_DIR", raising=False)
    monkeypatch.setenv("FFBENCH_CACHE_DIR", str(tmp_path / "cache"))
    return arrays


@pytest.mark.parametrize("name", ["fashion_mnist", "cifar10"])
def test_download_skips_corrupt_truncated_and_missing_sources_then_verifies(name, server, small, monkeypatch, tmp_path):
    mirrors = f"{server}missing/,{server}corrupt/,{server}truncated/,{server}good/"
    monkeypatch.setenv(f"FFBENCH_{name.upper()}_MIRRORS", mirrors)
    seen = []
    arrays = data.load(name) if name != "cifar10" else CIFAR10().load(progress=lambda f, n, total: seen.append((f, n, total)))
    for key, want in small[name].items():
        np.testing.assert_array_equal(arrays[key], want)
    cache = tmp_path / "cache" / name
    assert sorted(p.name for p in cache.iterdir()) == sorted(FashionMNIST.files if name == "fashion_mnist" else CIFAR10.files)
    if name == "cifar10":  # the progress callback saw the good copy's bytes, and the cut-short ones
        assert seen[-1][0] == "cifar-10-binary.tar.gz" and seen[-1][2] == (cache / "cifar-10-binary.tar.gz").stat().st_size
    monkeypatch.setenv(f"FFBENCH_{name.upper()}_MIRRORS", "http://127.0.0.1:9/")  # now from the cache, offline
    assert data.load(name)["y_test"].shape == small[name]["y_test"].shape


def test_every_bad_source_is_named_in_one_line_and_nothing_is_left(server, small, monkeypatch, tmp_path):
    monkeypatch.setenv("FFBENCH_CIFAR10_MIRRORS", f"{server}corrupt/,{server}truncated/,http://127.0.0.1:9/,{server}missing/")
    with pytest.raises(DataError) as err:
        data.load("cifar10")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("cifar10: could not download cifar-10-binary.tar.gz")
    assert "corrupt/cifar-10-binary.tar.gz: md5" in msg and "(corrupt or not the published file)" in msg
    assert "truncated/cifar-10-binary.tar.gz: truncated" in msg
    assert "127.0.0.1:9/cifar-10-binary.tar.gz: [Errno 111] Connection refused" in msg
    assert "missing/cifar-10-binary.tar.gz: HTTP 404 File not found" in msg and "offline?" in msg
    cache = tmp_path / "cache" / "cifar10"
    assert not list(cache.iterdir())  # no .part file, no half-written target


def test_a_damaged_file_in_the_data_folder_is_refused_by_its_md5(www, small, monkeypatch, tmp_path):
    root, _ = www
    folder = tmp_path / "data" / "fashion_mnist"
    folder.mkdir(parents=True)
    for f in FashionMNIST.files:
        (folder / f).write_bytes((root / ("corrupt" if f.startswith("t10k-images") else "good") / f).read_bytes())
    monkeypatch.setenv("FFBENCH_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: md5 .* not fashion_mnist's published file"):
        data.load("fashion_mnist")
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes((root / "good" / "t10k-images-idx3-ubyte.gz").read_bytes())
    assert data.load("fashion_mnist")["x_test"].shape == (10, 28, 28)  # $FFBENCH_DATA_DIR/fashion_mnist/, no download


def test_fashion_mnist_is_not_read_from_mnists_files_in_the_data_folder(www, small, monkeypatch, tmp_path, raw):
    write_idx_folder(tmp_path / "data", raw, gz=True)  # MNIST's IDX files at the top: the same names
    monkeypatch.setenv("FFBENCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FFBENCH_FASHION_MNIST_MIRRORS", "http://127.0.0.1:9/")
    assert data.load("mnist")["x_train"].shape == (60000, 28, 28)
    with pytest.raises(DataError, match="fashion_mnist: could not download"):
        data.load("fashion_mnist")


def test_a_cifar_tarball_given_by_path_and_a_wrong_record_size(www, small, tmp_path):
    root, arrays = www
    got = data.load("cifar10", root / "good" / "cifar-10-binary.tar.gz")
    np.testing.assert_array_equal(got["x_train"][7], arrays["cifar10"]["x_train"][7])  # (3, 32, 32): R, G, B planes
    with pytest.raises(DataError, match="not a whole number of 3073-byte CIFAR-10 records"):
        datafiles.cifar_records(b"x" * 3074, "test")


def test_mnist_download_checks_the_published_md5(server, monkeypatch, tmp_path):
    monkeypatch.setenv("FFBENCH_MNIST_MIRRORS", server + "good/")  # Fashion's small files: not MNIST's md5s
    monkeypatch.delenv("FFBENCH_DATA_DIR", raising=False)
    monkeypatch.setenv("FFBENCH_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="mnist: could not download train-images-idx3-ubyte.gz .*md5 mismatch|md5 "):
        data.load("mnist")
    assert not list((tmp_path / "cache" / "mnist").iterdir())


FULL_DISK = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
from ffbench.cli import main
sys.exit(main(["download", "cifar10"]))
"""


def test_a_full_disk_is_one_line_and_exit_3_with_nothing_left(server, www, tmp_path):
    """`ffbench download` in a process that may not write files over 20 kB (as a full disk would refuse)."""
    root, _ = www
    assert (root / "good" / "cifar-10-binary.tar.gz").stat().st_size > 20000
    env = {k: v for k, v in os.environ.items() if k != "FFBENCH_DATA_DIR"}
    env.update(FFBENCH_CACHE_DIR=str(tmp_path / "cache"), FFBENCH_CIFAR10_MIRRORS=server + "good/")
    proc = subprocess.run([sys.executable, "-c", FULL_DISK], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ffbench: error: no space to write cifar-10-binary.tar.gz in ")
    assert not list((tmp_path / "cache" / "cifar10").iterdir())


def test_download_cli_fetches_and_reports(server, small, monkeypatch, tmp_path, capsys):
    from ffbench.cli import main
    monkeypatch.setenv("FFBENCH_FASHION_MNIST_MIRRORS", server + "good/")
    assert main(["download", "fashion_mnist", "synthetic_rgb32"]) == 0
    out = capsys.readouterr().out
    assert "fashion_mnist: verified, 30 training and 10 test images" in out and "synthetic_rgb32: nothing to download" in out
    assert main(["download", "imagenet"]) == 2 and "unknown dataset 'imagenet'" in capsys.readouterr().err


# ---------------------------------------------------------------- splits and scaling

def test_splits(mnist_dir, raw):
    ds = data.prepare(DataSpec(), mnist_dir)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (50000, 10000, 10000) and ds.shape == (1, 28, 28)
    np.testing.assert_array_equal(ds.val.y, raw["y_train"][50000:])
    assert ds.train.x.dtype == np.float32 and ds.train.x.shape == (50000, 784) and ds.train.x.max() == 1.0
    small = data.prepare(DataSpec(train_subset=2000, validation_size=0), mnist_dir)
    assert len(small.train) == 2000 and small.val is None
    np.testing.assert_array_equal(small.train.y, raw["y_train"][:2000])
    np.testing.assert_array_equal(small.train.x, ds.train.x[:2000])
    std = data.prepare(DataSpec(pixel_scale="standardize"), mnist_dir)
    assert abs(float(std.train.x.mean())) < 0.05 and abs(float(std.train.x.std()) - 1) < 0.05
    np.testing.assert_array_equal(std.train.x[:5], ((ds.train.x[:5] - np.float32(0.1307)) / np.float32(0.3081)))
    with pytest.raises(ConfigError, match="data.train_subset: 55000 exceeds the 50000 training images"):
        data.prepare(DataSpec(train_subset=55000), mnist_dir)  # bad input (exit 2), not a missing dataset


def test_colour_rows_are_channel_major_and_standardised_per_channel():
    ds = data.prepare(DataSpec(name="synthetic_rgb32", train_subset=500, test_subset=100, validation_size=1000))
    raw = data.load("synthetic_rgb32")
    assert ds.shape == (3, 32, 32) and ds.train.x.shape == (500, 3072) and len(ds.val) == 1000 and len(ds.test) == 100
    np.testing.assert_array_equal(ds.train.x[3, 1024:2048], raw["x_train"][3, 1].ravel() / np.float32(255))  # green
    std = data.prepare(DataSpec(name="synthetic_rgb32", pixel_scale="standardize", train_subset=500, validation_size=1000))
    from ffbench.variants.builtin_datasets import SyntheticRGB32 as S
    for ch in range(3):
        want = (ds.train.x[:, ch * 1024:(ch + 1) * 1024] - np.float32(S.pixel_mean[ch])) / np.float32(S.pixel_std[ch])
        np.testing.assert_array_equal(std.train.x[:, ch * 1024:(ch + 1) * 1024], want)
    assert abs(float(std.train.x.mean())) < 0.05 and abs(float(std.train.x.std()) - 1) < 0.05  # the stats are its own


def test_synthetic_data_are_deterministic_and_learnable():
    from ffbench import synthetic
    from ffbench.geometry import Geometry
    a, b = synthetic.generate(Geometry(3, 8, 8), 300, 100), synthetic.generate(Geometry(3, 8, 8), 300, 100)
    assert all((a[k] == b[k]).all() for k in a) and a["x_train"].shape == (300, 3, 8, 8)
    # nearest class mean on the training images classifies most test images, but not all
    a = synthetic.generate(Geometry(1, 28, 28), 3000, 500)
    x, y = a["x_train"].reshape(3000, -1).astype(float), a["y_train"]
    means = np.stack([x[y == c].mean(axis=0) for c in range(10)])
    pred = ((a["x_test"].reshape(500, -1)[:, None, :] - means[None]) ** 2).sum(axis=2).argmin(axis=1)
    assert 0.8 < (pred == a["y_test"]).mean() < 0.99


def test_classes_keep_their_images_for_training_and_evaluation_and_pool_the_rest(mnist_dir, raw):
    ds = data.prepare(DataSpec(classes=[4, 0, 1, 2, 3], train_subset=3000), mnist_dir)
    y = raw["y_train"][:3000]
    assert set(ds.train.y) == {0, 1, 2, 3, 4} and set(ds.rest.y) == {5, 6, 7, 8, 9}
    assert len(ds.train) == (y < 5).sum() and len(ds.rest) == (y >= 5).sum()
    np.testing.assert_array_equal(ds.train.x, data.prepare(DataSpec(train_subset=3000), mnist_dir).train.x[y < 5])
    assert len(ds.test) == (raw["y_test"] < 5).sum() and len(ds.val) == (raw["y_train"][50000:] < 5).sum()
    assert data.prepare(DataSpec(), mnist_dir).rest is None
