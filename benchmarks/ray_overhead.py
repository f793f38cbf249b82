"""What Ray costs: embedded start-up and shutdown, and the scheduling overhead per trial.

    python benchmarks/ray_overhead.py [--trials 12] [--backend torch]

Runs the same N tiny trials (100 images, one layer of 8, one epoch: well under a second of
work each) three ways into fresh folders: the local executor; Ray with one trial at a time
(each asks for every CPU); Ray with one trial per CPU. The per-trial overhead is the
executor's wall time minus the time spent inside the trials (each row's wall_seconds, which
includes loading the backend and the data), divided by N. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class _Quiet:
    def skipped(self, n): ...
    def trial_started(self, p, where): ...
    def epoch(self, p, done, total, info): ...
    def trial_finished(self, p, row): ...


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--backend", default="torch")
    args = ap.parse_args()

    from ffbench import results, runner
    from ffbench.env import cpu_name
    from ffbench.ray_executor import RayExecutor
    from ffbench.report.stats import max_concurrency
    from ffbench.runner import LocalExecutor
    from ffbench.spec import parse_trial

    trials = runner.plan(parse_trial({"algorithm": "ff", "backend": args.backend, "seed": s, "hidden": [8], "epochs": 1,
                                      "eval_every": 0, "data": {"train_subset": 100, "validation_size": 0}})
                         for s in range(args.trials))
    runner.check_runnable(trials)
    ncpu = os.cpu_count() or 1
    root = Path(tempfile.mkdtemp(prefix="ffbench-overhead-"))
    lines = []

    def timed(name: str, executor) -> None:
        out = root / name.replace(" ", "-")
        t0 = time.perf_counter()
        runner.run(trials, out, executor, _Quiet())
        wall = time.perf_counter() - t0
        df = results.read_trials(out)
        assert (df["status"] == "ok").all(), df["error"].dropna().tolist()
        inside = df["wall_seconds"].sum()
        conc = max_concurrency(df["started_at"], df["finished_at"])
        per_trial = (wall - inside / conc) / len(trials)
        lines.append(f"| {name} | {conc} | {wall:.2f} | {inside / len(trials):.3f} | {per_trial:.3f} |")

    timed("local", LocalExecutor())
    t0 = time.perf_counter()
    ex = RayExecutor(temp_dir=Path(tempfile.gettempdir()) / f"ffbench-ray-{os.getuid()}")
    ex.__enter__()
    startup = time.perf_counter() - t0
    try:
        ex.cpus = float(ncpu)
        timed("ray, 1 at a time", ex)
        ex.cpus = 1.0
        timed(f"ray, {ncpu} at a time", ex)
    finally:
        t0 = time.perf_counter()
        ex.__exit__(None, None, None)
        shutdown = time.perf_counter() - t0
    import ray
    print(f"Ray {ray.__version__}, {cpu_name()} ({ncpu} CPUs), Python {sys.version.split()[0]}, "
          f"{len(trials)} tiny {args.backend} trials\n")
    print(f"embedded Ray start-up {startup:.2f} s, shutdown {shutdown:.2f} s\n")
    print("| executor | trials at once | wall s | inside a trial, s (mean) | overhead per trial, s |")
    print("|---|---|---|---|---|")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
