"""ffbench's torch FF epoch against a tight eager PyTorch loop of the same math, side by side.

    python benchmarks/eager_loop.py [--hidden 1000,1000,1000] [--batch 100] [--train-subset 10000] [--epochs 5] [--adam fused]

The tight loop is what a careful user writes by hand (gpu-anchors.md's "tight eager PyTorch
loop"): data resident on the device, torch.randperm order, wrong labels by torch.randint, RMS
layer norm, mean goodness, threshold 1, torch.optim.Adam(foreach=True) (`--adam fused`:
fused=True, one kernel a step, as ffbench's own Adam), no host syncs. ffbench
runs the same spec through its real trainer (hash-drawn order and negatives, its own Adam). The
two alternate epoch by epoch in one process, so both see the same machine state; the table
gives the median seconds per epoch and the ratio (issue 7's CPU target: ratio <= 1).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def tight_loop(widths: list[int], x: torch.Tensor, y: torch.Tensor, batch: int, lr: float, adam: str = "foreach"):
    layers = [(torch.nn.Parameter(torch.empty(o, i).uniform_(-i ** -0.5, i ** -0.5)),
               torch.nn.Parameter(torch.empty(o).uniform_(-i ** -0.5, i ** -0.5))) for i, o in zip(widths, widths[1:])]
    opt = torch.optim.Adam([p for wb in layers for p in wb], lr=lr, **{adam: True})
    eye = torch.eye(10, device=x.device)

    def overlay(xb, labels):
        return torch.cat([eye[labels], xb[:, 10:]], dim=1)

    def epoch() -> None:
        order = torch.randperm(len(y), device=x.device)
        for s in range(len(y) // batch):
            idx = order[s * batch:(s + 1) * batch]
            xb, yb = x[idx], y[idx]
            wrong = (yb + torch.randint(1, 10, yb.shape, device=x.device)) % 10
            h, loss = torch.cat([overlay(xb, yb), overlay(xb, wrong)]), 0.0
            for w, b in layers:
                h = h.detach()
                h = F.relu(F.linear(h / (h.pow(2).mean(1, keepdim=True).sqrt() + 1e-8), w, b))
                g = h.pow(2).mean(1) - 1.0
                loss = loss + F.softplus(torch.cat([-g[:batch], g[batch:]])).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return epoch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", default="1000,1000,1000")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--train-subset", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=5, help="timed epochs of each, after one warm-up epoch each")
    ap.add_argument("--adam", choices=["foreach", "fused"], default="foreach",
                    help="the tight loop's torch.optim.Adam implementation")
    args = ap.parse_args()

    from ffbench import registry
    from ffbench.data import prepare
    from ffbench.spec import parse_trial

    hidden = [int(w) for w in args.hidden.split(",")]
    trial = parse_trial({"algorithm": "ff", "backend": "torch", "seed": 0, "hidden": hidden, "epochs": args.epochs + 1,
                         "batch_size": args.batch, "eval_every": 0, "optimizer": {"name": "adam", "lr": 1e-3},
                         "data": {"train_subset": args.train_subset}})
    data = prepare(trial.data)
    backend = registry.load("torch")
    tr = backend.trainer(trial, data)
    (phase,) = tr.phases()
    tr.begin_phase(phase)
    x, y = tr.splits["train"]
    tight = tight_loop([x.shape[1], *hidden], x, y, args.batch, 1e-3, args.adam)
    times: dict[str, list[float]] = {"ffbench": [], "tight": []}
    for e in range(args.epochs + 1):
        for name, run in (("ffbench", lambda e=e: tr.train_epoch(phase, e, 1e-3)), ("tight", tight)):
            t0 = time.perf_counter()
            run()
            tr.sync()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v[1:]) for k, v in times.items()}
    print(f"{backend.device_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"FF {'-'.join(map(str, [x.shape[1], *hidden]))}, batch {args.batch}, {len(y)} images, "
          f"median of {args.epochs} epochs after a warm-up, alternating\n")
    print("| loop | s / epoch | all timed epochs |\n|---|---|---|")
    for k, v in times.items():
        print(f"| {k} | {med[k]:.3f} | {', '.join(f'{t:.3f}' for t in v[1:])} |")
    print(f"\nffbench / tight = {med['ffbench'] / med['tight']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
