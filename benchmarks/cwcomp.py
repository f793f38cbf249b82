"""CwComp's own code next to ffbench's `cwc` objective on the same conv net, on this CPU.

    python benchmarks/cwcomp.py --src ~/src/CwComp/src [--backend torch ...] [--peer-bn keep|drop] [--cfse] \\
        [--train-subset 512] [--epochs 2] [--repeats 2] [--threads 2] [--out FILE]

The authors' code (andreaspapac/CwComp, `src/`, Papachristodoulou et al., AAAI 2024) is not part
of ffbench: give the path of your own checkout's `src` folder. Their model is built by their
own `Models.CW_Comp([20, 80, 240, 480], batch_size=128, dataset='CIFAR', loss_='CwC_CE')` (CFSE
off: every conv has one group, or with `--cfse` its grouped convolutions; each layer its own Adam,
lr 0.01) and trained by their own
`Conv_Layer.forward_forward`, layer after layer on each batch from a shuffled torch DataLoader of
128, as their `CW_Comp.train_` does at an epoch where every layer trains. Changes, all made in
the peer's process and listed in the output: `.cuda()` is the identity (their code hard-codes it;
this is a CPU), their `Datasets` module is left out (it imports torchvision and cv2 for the
downloads only). Each layer's BatchNorm2d after pooling is kept, as published, and ffbench's
side has its batch norm too (`conv.norm: batch`, eps 1e-4); `--peer-bn drop` makes the peer's an
identity and leaves ffbench's out (`train_` also trains a softmax classifier on the last layer,
which is not timed). ffbench's side is `ffbench.bench.bench_backend` on the same net: objective
`cwc`, negatives `none`, norm `none`, Adam lr 0.01, batch 128, its groups [1, 10, 1, 10] with
`--cfse`. Both sides see the same synthetic_rgb32 images
(3 x 32 x 32, scaled to [0, 1]) and the same thread count, one process per run, alternating
(peer, then each backend, `--repeats` times); each time is the median epoch after one warm-up
epoch. The table is Markdown, to paste into `benchmarks/RESULTS.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = [20, 80, 240, 480]
SPEC = {"algorithm": "ff", "seed": 0, "batch_size": 128, "optimizer": {"name": "adam", "lr": 0.01},
        "conv": {"channels": CHANNELS, "kernel": 3, "padding": 1, "pool": ["none", "max", "none", "max"]},
        "ff": {"objective": "cwc", "negatives": "none", "norm": "none", "prediction": "goodness"}}

PEER = r'''
import json, statistics, sys, time, types
import numpy as np
import torch
src, data, epochs, bn, cfse = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
sys.path.insert(0, src)
sys.modules["Datasets"] = types.ModuleType("Datasets")  # torchvision and cv2, for the downloads only
torch.Tensor.cuda = lambda self, *a, **k: self
torch.nn.Module.cuda = lambda self, *a, **k: self
from Models import CW_Comp
torch.manual_seed(0)
model = CW_Comp(CHANNELS, batch_size=128, CFSE=cfse == "cfse", sf_pred=False, dataset="CIFAR", ILT="Acc", loss_="CwC_CE")
if bn == "drop":
    for layer in model.conv_layers:
        layer.conv_bn = torch.nn.Identity()
d = np.load(data)
ds = torch.utils.data.TensorDataset(torch.tensor(d["x"]), torch.tensor(d["y"]).long())
loader = torch.utils.data.DataLoader(ds, batch_size=128, shuffle=True)
model.train()
times = []
for epoch in range(epochs + 1):
    t0 = time.perf_counter()
    for x, y in loader:
        h = x
        for layer in model.conv_layers:
            h = layer.forward_forward(h, y, False)
    times.append(time.perf_counter() - t0)
print("PEER_EPOCH_SECONDS", json.dumps(times[1:]))
'''.replace("CHANNELS", repr(CHANNELS))

OURS = r'''
import json, sys
from ffbench.bench import bench_backend
backend, spec, epochs = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
r = bench_backend(backend, spec, epochs)
print("OURS", json.dumps({k: r[k] for k in ("epoch_seconds", "compile_seconds", "train_images", "versions", "device_name")}))
'''


def run(code: str, args: list[str], env: dict, mark: str) -> object:
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, cwd=ROOT)
    found = [line.split(" ", 1)[1] for line in out.stdout.splitlines() if line.startswith(mark + " ")]
    if out.returncode != 0 or not found:
        raise SystemExit(f"cwcomp: {mark} run failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(found[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, required=True, help="your checkout's CwComp/src folder")
    ap.add_argument("--backend", action="append", default=[])
    ap.add_argument("--train-subset", type=int, default=512, help="training images per epoch, both sides")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up, both sides")
    ap.add_argument("--repeats", type=int, default=2, help="alternating runs of each side")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--peer-bn", choices=["drop", "keep"], default="keep",
                    help="the peer's BatchNorm2d as published and ffbench's conv.norm: batch, or neither")
    ap.add_argument("--cfse", action="store_true", help="grouped convolutions (CwComp's CFSE blocks) on both sides")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if not (args.src / "Models.py").is_file() or not (args.src / "Layer_cnn.py").is_file():
        ap.error(f"--src: {args.src} has no Models.py and Layer_cnn.py (give the CwComp checkout's src folder)")

    import numpy as np

    from ffbench import registry
    from ffbench.variants.builtin_datasets import SyntheticRGB32

    backends = args.backend or registry.installed()
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TF_CPP_MIN_LOG_LEVEL": "2"}
    conv = {**SPEC["conv"], **({"norm": "batch", "bn_eps": 1e-4} if args.peer_bn == "keep" else {}),
            **({"groups": [1, 10, 1, 10]} if args.cfse else {})}
    spec = {**SPEC, "conv": conv, "data": {"name": "synthetic_rgb32", "train_subset": args.train_subset, "test_subset": 128,
                                           "validation_size": 10000}}
    peer_s: list[float] = []
    ours: dict[str, list[float]] = {b: [] for b in backends}
    versions: dict[str, str] = {}  # every backend's frameworks, merged
    device = ""
    with tempfile.TemporaryDirectory(prefix="ffbench-cwcomp-") as tmp:
        # the images ffbench trains on: synthetic_rgb32's first training images (`train_subset` keeps the first N),
        # as ffbench scales them (pixel_scale unit: x / 255)
        d = SyntheticRGB32().load()
        np.savez(np_path := Path(tmp) / "data.npz", x=d["x_train"][: args.train_subset].astype(np.float32) / 255.0,
                 y=d["y_train"][: args.train_subset].astype(np.int64))
        for k in range(args.repeats):
            epochs = run(PEER, [str(args.src.resolve()), str(np_path), str(args.epochs), args.peer_bn,
                                "cfse" if args.cfse else "plain"], env, "PEER_EPOCH_SECONDS")
            peer_s.append(statistics.median(epochs))
            print(f"run {k + 1}: CwComp's code {peer_s[-1]:.2f} s/epoch", file=sys.stderr, flush=True)
            for b in backends:
                r = run(OURS, [b, json.dumps({**spec, "backend": b}), str(args.epochs)], env, "OURS")
                ours[b].append(r["epoch_seconds"])
                versions.update(r["versions"])
                device = r["device_name"].split(" (")[0]
                print(f"run {k + 1}: ffbench {b} {r['epoch_seconds']:.2f} s/epoch", file=sys.stderr, flush=True)
    peer = statistics.median(peer_s)
    lines = [f"{device}, {threads} threads; " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
             + f"; {args.train_subset} synthetic_rgb32 images per epoch, batch 128, {args.repeats} alternating runs "
             f"of {args.epochs} timed epochs after a warm-up; batch norm: {args.peer_bn} (both sides); "
             f"CFSE groups: {'on' if args.cfse else 'off'}.", "",
             "| code | s / epoch (each run) | median s / epoch | extrapolated to 50,000 images, s | "
             "ratio (ffbench / CwComp's code) |",
             "|---|---|---|---|---|",
             f"| CwComp's code (torch) | {', '.join(f'{s:.2f}' for s in peer_s)} | {peer:.2f} | "
             f"{peer * 50_000 / args.train_subset:,.0f} | 1 |"]
    for b, ts in ours.items():
        m = statistics.median(ts)
        lines.append(f"| ffbench {b} | {', '.join(f'{s:.2f}' for s in ts)} | {m:.2f} | {m * 50_000 / args.train_subset:,.0f} "
                     f"| **{m / peer:.2f}** |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
