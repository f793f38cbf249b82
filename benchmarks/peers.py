"""Each seed implementation's own public code next to ffbench's row of the same recipe.

    python benchmarks/peers.py --pytorch-script ~/src/pytorch_forward_forward/main.py \\
        --keras-io ~/src/keras-io/examples/vision/forwardforward.py \\
        --jax-example ~/src/ff_jax_example.py --steps 20 --repeats 2 --out peers.md

The peers' code is not part of ffbench: give the path of your own checkout of each (any you
leave out is not run). Each is copied to a temporary folder and changed only where a CPU
and a shorter run need it (device, data path, step counts) and where its training is timed;
every change is listed in the output, and a change whose anchor is missing from your copy
stops the run (the peer's code has moved on: update the edit here). Peer and ffbench run
alternately, each in its own process, with the same thread count and the same reduced step
counts on both sides. A peer's time is its training call (`time.perf_counter` around it);
ffbench's is the row's `train_seconds` (its training epochs: negatives and the cached layer
input included, evaluation not) plus its `compile_seconds`, since the peers compile inside
their timed call. The table is Markdown, to paste into
`benchmarks/RESULTS.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "PEERS_TRAIN_SECONDS"
TIMED = f'print("{MARK}", __import__("time").perf_counter() - _peers_t0, flush=True); raise SystemExit(0)'


@dataclass(frozen=True)
class Edit:
    why: str  # listed in the output
    pattern: str  # a regex (MULTILINE) that must match in the peer's file
    replacement: str  # may hold {steps}, {episodes}
    count: int = 1  # 0: every match


@dataclass(frozen=True)
class Peer:
    name: str
    source: str  # where the code is published
    backend: str
    experiment: str  # its row in suites/implementations.yaml
    edits: tuple[Edit, ...]
    sets: tuple[str, ...]  # ffbench's --set overrides for the same reduced run
    env: dict[str, str] = field(default_factory=dict)

    def patched(self, text: str, steps: int, episodes: int) -> str:
        for e in self.edits:
            new, n = re.subn(e.pattern, e.replacement.format(steps=steps, episodes=episodes), text, count=e.count,
                             flags=re.MULTILINE | re.DOTALL)
            if n == 0:
                raise SystemExit(f"peers: {self.name}: this copy has no match for the edit {e.why!r} "
                                 f"(pattern {e.pattern!r}); is it the published file?")
            text = new
        return text


OPTIONAL_TQDM = Edit("tqdm made optional (a progress bar only)", r"^from tqdm(\.auto)? import tqdm *$",
                     "try:\n    from tqdm import tqdm\nexcept ImportError:\n    class tqdm(list):\n"
                     "        def __init__(self, it, **kw):\n            super().__init__(it)\n\n"
                     "        def set_postfix(self, *a, **kw):\n            pass")

PEERS = {
    "pytorch-script": Peer(
        "pytorch-script", "mohammadpz/pytorch_forward_forward main.py", "torch", "pytorch-script",
        (Edit("device: the CPU (`.cuda()` removed)", r"\.cuda\(\)", "", count=0),
         Edit("data: MNIST from the local mnist.npz, not torchvision's download (the same ToTensor, "
              "Normalize((0.1307,), (0.3081,)), flatten; the same loaders and batch sizes, the training one shuffled)",
              r"^def MNIST_loaders\(.*?\n(?=\n\ndef )",
              "def MNIST_loaders(train_batch_size=50000, test_batch_size=10000):\n"
              "    import os\n    import numpy as np\n    from torch.utils.data import TensorDataset\n"
              "    d = np.load(os.environ['PEERS_MNIST'])\n"
              "    def split(x, y):\n"
              "        x = ((torch.tensor(x, dtype=torch.float32) / 255 - 0.1307) / 0.3081).flatten(1)\n"
              "        return TensorDataset(x, torch.tensor(y, dtype=torch.long))\n"
              "    return (DataLoader(split(d['x_train'], d['y_train']), batch_size=train_batch_size, shuffle=True),\n"
              "            DataLoader(split(d['x_test'], d['y_test']), batch_size=test_batch_size, shuffle=False))\n"),
         Edit("data: the torchvision imports dropped (only the download used them)", r"^from torchvision.*?\n", "", count=0),
         OPTIONAL_TQDM,
         Edit("steps: num_epochs = {steps} full-batch steps per layer (1000 published)",
              r"self\.num_epochs = \d+", "self.num_epochs = {steps}"),
         Edit("timing: perf_counter around net.train; the evaluation after it skipped",
              r"^    net\.train\(x_pos, x_neg\)$",
              f"    _peers_t0 = __import__('time').perf_counter()\n    net.train(x_pos, x_neg)\n    {TIMED}")),
        ("epochs={steps}",)),
    "keras-io": Peer(
        "keras-io", "keras-team/keras-io examples/vision/forwardforward.py", "keras", "keras-io",
        (Edit("data: MNIST from the local mnist.npz, not keras.datasets' download (the same arrays)",
              r"^\(x_train, y_train\), \(x_test, y_test\) = keras\.datasets\.mnist\.load_data\(\)$",
              "with np.load(os.environ['PEERS_MNIST']) as _d:\n"
              "    (x_train, y_train), (x_test, y_test) = (_d['x_train'], _d['y_train']), (_d['x_test'], _d['y_test'])"),
         Edit("sklearn made optional (used only after training)", r"^from sklearn\.metrics import accuracy_score$",
              "try:\n    from sklearn.metrics import accuracy_score\nexcept ImportError:\n    accuracy_score = None"),
         Edit("steps: num_epochs={steps} steps per layer per episode (50 published)",
              r"num_epochs=50,", "num_epochs={steps},"),
         Edit("steps: epochs = {episodes} episodes (250 published)", r"^epochs = 250$", "epochs = {episodes}"),
         Edit("timing: perf_counter around model.fit; the evaluation and plots after it skipped",
              r"^history = model\.fit\(train_dataset, epochs=epochs\)$",
              f"_peers_t0 = __import__('time').perf_counter()\nhistory = model.fit(train_dataset, epochs=epochs)\n{TIMED}")),
        ("epochs={steps}", "ff.episodes={episodes}"), {"KERAS_BACKEND": "tensorflow", "MPLBACKEND": "Agg"}),
    "jax-example": Peer(
        "jax-example", "the JAX FF example (Sowmen Das, 2023)", "jax", "jax-example",
        (Edit("data: MNIST from the local mnist.npz, not torchvision's download (the same pixel values; "
              "torchvision gives them as PIL images)",
              r"self\.base_dataset = MNIST\(root='train_mnist', download=True, train=train\)",
              "import os\n        _d = np.load(os.environ['PEERS_MNIST'])\n"
              "        _k = 'train' if train else 'test'\n"
              "        self.base_dataset = list(zip(_d['x_' + _k], _d['y_' + _k].astype(int)))"),
         Edit("data: the torchvision import dropped (only the download used it)", r"^from torchvision\.datasets import MNIST\n",
              ""),
         OPTIONAL_TQDM,
         Edit("steps: n_epochs = {steps} epochs per layer per episode (60 published)", r"^n_epochs = 60$",
              "n_epochs = {steps}"),
         Edit("steps: n_episodes = {episodes} (5 published)", r"^n_episodes = 5$", "n_episodes = {episodes}"),
         Edit("evaluation: train_net's per-episode train and test accuracy skipped (ffbench's train_seconds has no "
              "evaluation either)",
              r"^        # Evaluate at the end of episode\n.*?print\(\"Test Accuracy: \", test_acc\)\n", ""),
         Edit("timing: perf_counter around train_net (its hard-negative mining included); what follows skipped",
              r"^states, loss_hists = train_net\((.*?)\)$",
              f"_peers_t0 = __import__('time').perf_counter()\nstates, loss_hists = train_net(\\1)\n{TIMED}")),
        ("epochs={steps}", "ff.episodes={episodes}"), {"MPLBACKEND": "Agg"}),
}


def run_peer(peer: Peer, path: Path, steps: int, episodes: int, env: dict, work: Path) -> float:
    script = work / f"{peer.name}.py"
    script.write_text(peer.patched(path.read_text(), steps, episodes))
    out = subprocess.run([sys.executable, str(script)], cwd=work, env={**env, **peer.env}, capture_output=True, text=True)
    found = re.findall(rf"^{MARK} ([0-9.eE+-]+)$", out.stdout, flags=re.MULTILINE)
    if out.returncode != 0 or not found:
        raise SystemExit(f"peers: {peer.name} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return float(found[-1])


def one_row_suite(experiment: str, work: Path) -> Path:
    """suites/implementations.yaml cut to `experiment` (its defaults kept), in `work`."""
    import yaml
    suite = yaml.safe_load((ROOT / "suites" / "implementations.yaml").read_text())
    suite["experiments"] = [e for e in suite["experiments"] if e["name"] == experiment]
    suite["name"] = f"peers-{experiment}"
    path = work / f"{experiment}.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def run_ffbench(peer: Peer, steps: int, episodes: int, env: dict, work: Path, k: int) -> tuple[float, float]:
    """(train_seconds, compile_seconds) of ffbench's row, run as `ffbench run` in its own process."""
    import pandas as pd
    out_dir = work / f"ffbench-{peer.name}-{k}"
    sets = [a for s in (f"backend={peer.backend}", "seed=0", *(s.format(steps=steps, episodes=episodes) for s in peer.sets))
            for a in ("--set", s)]
    cmd = [sys.executable, "-m", "ffbench", "run", str(one_row_suite(peer.experiment, work)), *sets,
           "--executor", "local", "--quiet", "--out", str(out_dir)]
    done = subprocess.run(cmd, env={**env, **peer.env}, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"peers: ffbench on {peer.name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    row = pd.read_parquet(out_dir / "trials").iloc[0]
    if row["status"] != "ok":
        raise SystemExit(f"peers: ffbench's {peer.experiment} row: {row['status']}: {row.get('error')}")
    return float(row["train_seconds"]), float(row["compile_seconds"])


def cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    found = re.search(r"^model name\s*:\s*(.+)$", text, flags=re.MULTILINE)
    return found.group(1).strip() if found else platform.machine()


def versions() -> str:
    code = ("import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
            "('torch', 'jax', 'keras', 'tensorflow-cpu', 'optax') if __import__('importlib.util').util.find_spec("
            "p.replace('-cpu', '')) }))")
    got = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout or "{}")
    return ", ".join(f"{k} {v}" for k, v in got.items())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in PEERS:
        ap.add_argument(f"--{name}", type=Path, metavar="FILE", help=f"your copy of {PEERS[name].source}")
    ap.add_argument("--steps", type=int, default=20, help="steps (epochs) per layer per episode, both sides")
    ap.add_argument("--episodes", type=int, default=2, help="episodes, both sides (keras-io, jax-example)")
    ap.add_argument("--repeats", type=int, default=2, help="alternating runs of each side")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="OMP/MKL threads, both sides")
    ap.add_argument("--mnist", type=Path, default=Path(os.environ.get("FFBENCH_DATA_DIR", ROOT.parent / "shared" / "data"))
                    / "mnist.npz", help="the local mnist.npz (Keras layout)")
    ap.add_argument("--out", type=Path, help="also write the Markdown here")
    args = ap.parse_args(argv)
    chosen = {n: p for n, p in PEERS.items() if getattr(args, n.replace("-", "_")) is not None}
    if not chosen:
        ap.error("give the path of at least one peer's code (--pytorch-script, --keras-io, --jax-example)")
    for name in chosen:
        if not getattr(args, name.replace("-", "_")).is_file():
            ap.error(f"--{name}: no such file: {getattr(args, name.replace('-', '_'))}")
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PEERS_MNIST": str(args.mnist.resolve()), "FFBENCH_DATA_DIR": str(args.mnist.resolve().parent)}
    lines = [f"Machine: {cpu_name()} ({platform.machine()}), {os.cpu_count()} CPUs, {threads} threads; "
             f"Python {platform.python_version()}; {versions()}.", "",
             f"Command: `python benchmarks/peers.py {' '.join((argv if argv is not None else sys.argv[1:]))}`", ""]
    rows = []
    with tempfile.TemporaryDirectory(prefix="ffbench-peers-") as tmp:
        for name, peer in chosen.items():
            path, peer_s, ours = getattr(args, name.replace("-", "_")), [], []
            for k in range(args.repeats):  # alternating: peer, ffbench, peer, ffbench, ...
                peer_s.append(run_peer(peer, path, args.steps, args.episodes, env, Path(tmp)))
                ours.append(run_ffbench(peer, args.steps, args.episodes, env, Path(tmp), k))
                print(f"{name} run {k + 1}: peer {peer_s[-1]:.2f} s, ffbench {ours[-1][0]:.2f} s "
                      f"(+ {ours[-1][1]:.2f} s compiling)", file=sys.stderr, flush=True)
            rows.append((peer, peer_s, ours))
            lines += [f"**{name}** ({peer.source}) against ffbench's `{peer.experiment}` row on {peer.backend}; "
                      "the changes made to the peer's copy:", ""]
            lines += [f"- {e.why.format(steps=args.steps, episodes=args.episodes)}" for e in peer.edits]
            lines += [f"- ffbench: the `{peer.experiment}` row alone, `--set backend={peer.backend} "
                      + " ".join(f"--set {s.format(steps=args.steps, episodes=args.episodes)}" for s in peer.sets) + "`", ""]
    lines += ["The author's time includes its own tracing and compiling (its programs compile at their first "
              "call), so ffbench's is given with its ahead-of-time compiling added, and the ratio is of those sums.", "",
              "| recipe | the author's code, s | ffbench, train + compile s | ffbench train s (compile s) | "
              "ratio (ffbench / author, medians) |", "|---|---|---|---|---|"]
    for peer, peer_s, ours in rows:
        ratio = statistics.median(t + c for t, c in ours) / statistics.median(peer_s)
        lines.append(f"| {peer.name} ({peer.backend}) | {', '.join(f'{s:.2f}' for s in peer_s)} | "
                     f"{', '.join(f'{t + c:.2f}' for t, c in ours)} | {', '.join(f'{t:.2f} ({c:.2f})' for t, c in ours)} "
                     f"| **{ratio:.2f}** |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
