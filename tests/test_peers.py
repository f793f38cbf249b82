"""benchmarks/peers.py: the edits it makes to a peer's copy, on miniatures with the published
files' anchors (the peers' code is not part of ffbench)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("ffbench_benchmarks_peers", ROOT / "benchmarks" / "peers.py")
peers = sys.modules["ffbench_benchmarks_peers"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peers)

# the lines of mohammadpz/pytorch_forward_forward's main.py that the edits anchor on
MAIN = '''import torch
from tqdm import tqdm
from torchvision.datasets import MNIST
from torchvision.transforms import Compose, ToTensor, Normalize, Lambda
from torch.utils.data import DataLoader


def MNIST_loaders(train_batch_size=50000, test_batch_size=10000):

    transform = Compose([ToTensor()])

    return train_loader, test_loader


def overlay_y_on_x(x, y):
    return x


class Layer:
    def __init__(self):
        self.num_epochs = 1000

    def train(self, x_pos, x_neg):
        for i in tqdm(range(self.num_epochs)):
            pass


if __name__ == "__main__":
    torch.manual_seed(1234)
    train_loader, test_loader = MNIST_loaders(train_batch_size=4, test_batch_size=2)
    x, y = next(iter(train_loader))
    x, y = x.cuda(), y.cuda()
    net = Layer()
    print("steps", net.num_epochs, "x", x.shape[0], "xmax", float(x.max()))
    torch.save((x, y), "batch.pt")
    net.train(x_pos, x_neg)

    print('train error:', 1.0)
'''


def test_a_copy_without_an_edits_anchor_stops_with_the_edit_named():
    with pytest.raises(SystemExit, match="no match for the edit 'device: the CPU"):
        peers.PEERS["pytorch-script"].patched("print('not main.py')\n", 20, 1)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_the_pytorch_script_edits_read_the_local_npz_with_its_transform_and_time_its_training(tmp_path):
    import torch
    g = np.random.default_rng(0)
    data = {"x_train": g.integers(0, 256, (6, 28, 28), dtype=np.uint8), "y_train": g.integers(0, 10, 6).astype(np.uint8),
            "x_test": g.integers(0, 256, (2, 28, 28), dtype=np.uint8), "y_test": g.integers(0, 10, 2).astype(np.uint8)}
    np.savez(tmp_path / "mnist.npz", **data)
    text = peers.PEERS["pytorch-script"].patched(MAIN, 3, 1)
    assert ".cuda()" not in text and "torchvision" not in text and "self.num_epochs = 3" in text
    script = tmp_path / "main.py"
    script.write_text(text.replace("    net.train(x_pos, x_neg)", "    x_pos = x_neg = x\n    net.train(x_pos, x_neg)"))
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                         env={"PEERS_MNIST": str(tmp_path / "mnist.npz"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "steps 3 x 4" in out.stdout and "train error" not in out.stdout  # stopped after the timed call
    assert len([ln for ln in out.stdout.splitlines() if ln.startswith(peers.MARK + " ")]) == 1
    x, y = torch.load(tmp_path / "batch.pt")
    # torchvision's ToTensor + Normalize((0.1307,), (0.3081,)) + flatten, by hand; a shuffled batch of the training set
    expect = ((data["x_train"].reshape(6, -1).astype(np.float32) / 255 - 0.1307) / 0.3081)
    gaps = np.abs(x.numpy()[:, None, :] - expect[None]).max(axis=2)  # each batch row against each image
    rows = gaps.argmin(axis=1).tolist()
    assert gaps.min(axis=1).max() < 1e-5 and len(set(rows)) == 4 and y.tolist() == data["y_train"][rows].tolist()
