"""Time the canonical configurations on every installed backend; print a Markdown table.

    python benchmarks/canonical.py [--backend torch ...] [--epochs 3] [--train-subset N] [--test-subset N] [--pack 8] [--out FILE]

Configurations (issue 7; `../shared/reference/gpu-anchors.md` has the H100 anchors):
  ff-3x1000      supervised FF 784-1000-1000-1000, batch 100, simultaneous (the loeweX recipe)
  ff-4x2000      the paper's 4x2000, batch 100
  ff-2x500-full  784-500-500, greedy, one full-batch step per layer per epoch (the PyTorch script)
  ff-conv        Hinton's FF on CwComp's conv 20-80-240-480 net (3x3, padding 1, 2x2 max pooling
                 after layers 2 and 4) at CIFAR-10's geometry (synthetic_rgb32: 3x32x32, the label
                 in every channel), batch 128, Adam 1e-3 (suites/variants.yaml's ff-conv-cifar10)
  bp-*           backprop of the same widths (bp-conv: the same conv layers) and batch
With --pack N, each FF configuration is also timed with N seeds packed into one program on the
backends that pack (samples/s is then the pack's aggregate; compare with the unpacked row).
Each row is `ffbench.bench.bench_backend` in this process (no Ray): compile and warm-up timed
apart, `epoch_seconds` the median of the timed epochs (greedy: one epoch of every layer), and
"test eval s" one evaluation of the 10,000 test images after them (a pack: of every member). On a
CPU use --train-subset to keep it short; the per-epoch figures then scale with the subset.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RECIPE = {"norm": "rms", "goodness": "sum", "relu_grad": "straight_through", "peer_weight": 0.03, "init": "normal_fan_out"}
SGD = {"name": "sgd", "lr": 0.001, "momentum": 0.9, "weight_decay": 0.0003}
ADAM = {"name": "adam", "lr": 0.001}
CWCOMP_NET = {"channels": [20, 80, 240, 480], "kernel": 3, "padding": 1, "pool": ["none", "max", "none", "max"]}
CONFIGS = {
    "ff-3x1000": {"algorithm": "ff", "hidden": [1000] * 3, "batch_size": 100, "optimizer": SGD,
                  "ff": {**RECIPE, "threshold": 1000.0, "prediction_layers": [1, 2]}},
    "ff-4x2000": {"algorithm": "ff", "hidden": [2000] * 4, "batch_size": 100, "optimizer": SGD,
                  "ff": {**RECIPE, "threshold": 2000.0, "prediction_layers": [1, 2, 3]}},
    "ff-2x500-full": {"algorithm": "ff", "hidden": [500, 500], "batch_size": "full", "optimizer": {"name": "adam", "lr": 0.03},
                      "data": {"pixel_scale": "standardize"},
                      "ff": {"schedule": "greedy", "norm": "l2", "norm_eps": 1e-4, "threshold": 2.0,
                             "negatives": "permuted_label", "negatives_refresh": "once"}},
    "ff-conv": {"algorithm": "ff", "conv": CWCOMP_NET, "batch_size": 128, "optimizer": ADAM,
                "data": {"name": "synthetic_rgb32"},
                "ff": {"negatives": "wrong_label", "prediction": "goodness", "label_channels": "all"}},
    "bp-conv": {"algorithm": "bp", "conv": CWCOMP_NET, "batch_size": 128, "optimizer": ADAM,
                "data": {"name": "synthetic_rgb32"}},
    "bp-3x1000": {"algorithm": "bp", "hidden": [1000] * 3, "batch_size": 100, "optimizer": {"name": "adam", "lr": 0.001}},
    "bp-4x2000": {"algorithm": "bp", "hidden": [2000] * 4, "batch_size": 100, "optimizer": {"name": "adam", "lr": 0.001}},
    "bp-2x500-full": {"algorithm": "bp", "hidden": [500, 500], "batch_size": "full", "optimizer": {"name": "adam", "lr": 0.001}},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", action="append", default=[])
    ap.add_argument("--config", action="append", default=[], choices=sorted(CONFIGS))
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs, after one warm-up epoch")
    ap.add_argument("--train-subset", type=int)
    ap.add_argument("--test-subset", type=int, help="evaluate on the first N test images (the conv nets on a CPU)")
    ap.add_argument("--pack", type=int, default=1, help="also time N seeds packed as one program (backends that pack)")
    ap.add_argument("--out", help="also write the table to this file")
    args = ap.parse_args()

    from ffbench import registry
    from ffbench.bench import bench_backend
    from ffbench.spec import parse_trial

    backends = args.backend or registry.installed()
    rows = []
    for name in args.config or list(CONFIGS):
        spec = {**CONFIGS[name], "seed": 0}
        data = {**spec.get("data", {}), "validation_size": 10000}
        if args.train_subset:
            data["train_subset"] = args.train_subset
        if args.test_subset:
            data["test_subset"] = args.test_subset
        for backend in backends:
            packs = [1] + ([args.pack] if args.pack > 1 and spec["algorithm"] == "ff"
                           and registry.load(backend).pack_skip(parse_trial({**spec, "backend": backend, "epochs": 1})) is None
                           else [])
            for pack in packs:
                r = bench_backend(backend, {**spec, "data": data}, args.epochs, pack)
                rows.append((name if pack == 1 else f"{name} x{pack} packed", r))
                print(f"{rows[-1][0]} {backend}: {r['epoch_seconds']:.3f} s/epoch", file=sys.stderr)
    lines = [f"Measured {date.today()} on {rows[0][1]['device_name']}; "
             + ", ".join(f"{k} {v}" for k, v in sorted({k: v for _, r in rows for k, v in r["versions"].items()}.items()))
             + f"; {rows[0][1]['train_images']} training images, median of {args.epochs} epochs after a warm-up.", "",
             "| config | backend | s / epoch | compile s | warm-up s | samples/s | TFLOP/s | test eval s | peak memory |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows:
        mem = f"{r['peak_memory_bytes'] / 2**20:.0f} MiB ({r['peak_memory_source']})" if r["peak_memory_bytes"] else "n/a"
        lines.append(f"| {name} | {r['backend']} | {r['epoch_seconds']:.4f} | {r['compile_seconds']:.2f} | "
                     f"{r['warmup_seconds']:.2f} | {r['samples_per_second']:,.0f} | {r['tflops']:.3f} | "
                     f"{'-' if r['eval_seconds'] is None else format(r['eval_seconds'], '.3f')} | {mem} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
