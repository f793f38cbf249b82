"""The `ffbench` command.

Exit codes: 0 all trials ok; 1 some trials failed, diverged or timed out; 2 bad input (a
suite, spec or argument), nothing run or written; 3 a backend or the data is missing;
130 interrupted (finished trials are kept; re-run to finish).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ffbench import __version__
from ffbench.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_TRIALS_FAILED, ConfigError, FFBenchError
from ffbench.packing import DEFAULT_PACK_SIZE
from ffbench.stderr_guard import only_ffbench_lines, say
from ffbench.suites import MAX_TRIALS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        print(f"ffbench: error: {message} (see ffbench --help)", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, not {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, not {text!r}")
    return value


def _nonneg(text: str) -> float:
    value = _positive(text) if text.strip() not in ("0", "0.0") else 0.0
    if value > 1 and value != int(value):
        raise argparse.ArgumentTypeError(f"more than 1 GPU per trial must be a whole number, not {text!r}")
    return value


@contextmanager
def _sigterm_interrupts():
    """SIGTERM stops a run the way Ctrl-C does: in-flight trials are cancelled, finished ones kept."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ffbench", description="Forward-Forward against backprop: one spec, several frameworks.",
                epilog="exit codes: 0 ok, 1 some trials failed, 2 bad input, 3 backend or data missing, 130 interrupted")
    p.add_argument("--version", action="version", version=f"ffbench {__version__}")
    common = _Parser(add_help=False)
    common.add_argument("--verbose", action="store_true", help="let the frameworks' own messages (absl, XLA, TensorFlow, "
                        "Ray, Python warnings) through to stderr; by default stderr holds ffbench's lines only")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="run a suite of trials", description="Expand a suite, run what is not done yet, "
                       "and write one Parquet row per trial under DIR/trials/.", parents=[common])
    r.add_argument("suite", type=Path, help="a suite YAML file, e.g. suites/quickstart.yaml")
    r.add_argument("--out", type=Path, help="results folder (default: results/<suite name>/)")
    r.add_argument("--dry-run", action="store_true", help="list the expanded trials; run nothing")
    r.add_argument("--json", action="store_true", help="with --dry-run: print the trials as a JSON list")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec field in every trial, e.g. --set epochs=1 --set data.train_subset=2000")
    r.add_argument("--only", action="append", default=[], metavar="TAG", help="run only trials with this tag (repeatable)")
    r.add_argument("--skip", action="append", default=[], metavar="TAG", help="leave out trials with this tag (repeatable)")
    r.add_argument("--backend", action="append", default=[], metavar="B", help="run only this backend's trials (repeatable)")
    r.add_argument("--force", action="store_true", help="re-run trials that already have an ok row")
    r.add_argument("--executor", choices=["auto", "ray", "local"], default="auto",
                   help="ray: each trial a Ray task (embedded local Ray, or --address); local: one at a time in this "
                   "process; auto (default): ray if installed, else local")
    r.add_argument("--address", help="join a running Ray cluster: host:port, auto, or ray://host:port (default: start "
                   "an embedded Ray using every CPU and GPU here)")
    r.add_argument("--gpus-per-trial", type=_nonneg, metavar="G", help="GPUs each trial asks for; a fraction packs trials "
                   "(0.25: 4 per GPU). Overrides the suite's `resources`. Default: 1 where the cluster has GPUs, else 0")
    r.add_argument("--cpus-per-trial", type=_positive, metavar="C", help="CPUs each trial asks for (default 1)")
    r.add_argument("--max-retries", type=int, default=2, metavar="N", help="retries of a trial whose worker process died "
                   "(killed, out of memory, node lost); default 2")
    r.add_argument("--trial-timeout", type=_positive, metavar="SECONDS", help="record a trial running longer as `timeout`")
    r.add_argument("--pack-size", type=_positive_int, default=DEFAULT_PACK_SIZE, metavar="N",
                   help=f"train up to N trials that differ only in seed or learning rate as one program, on backends "
                   f"that can (jax, torch, keras on jax); each keeps its own row (default {DEFAULT_PACK_SIZE})")
    r.add_argument("--no-pack", action="store_true", help="train every trial alone (same as --pack-size 1)")
    r.add_argument("--quiet", action="store_true", help="no progress display or summary")
    r.add_argument("--max-trials", type=_positive_int, default=MAX_TRIALS, metavar="N",
                   help=f"refuse a suite that expands to more than N trials (default {MAX_TRIALS:,}); "
                        "counted before any is built")

    sub.add_parser("list", help="backends (with install status), variants, datasets and suites", parents=[common])

    d = sub.add_parser("download", help="fetch and verify datasets (before going offline)",
                       description="Find each dataset in $FFBENCH_DATA_DIR or the cache, else download its published "
                       "files into the cache ($FFBENCH_CACHE_DIR, default ~/.cache/ffbench), checking their MD5s.",
                       parents=[common])
    d.add_argument("datasets", nargs="+", metavar="NAME", help="a registered dataset, e.g. fashion_mnist cifar10")

    rep = sub.add_parser("report", help="tables, statistics and plots from a results folder",
                         description="Write DIR/report/report.{md,tex,html}, CSV tables and PNG/PDF plots.", parents=[common])
    rep.add_argument("dir", type=Path, help="a results folder written by `ffbench run`")
    rep.add_argument("--where", help="""a pandas query on the rows, e.g. 'backend=="jax"'""")
    rep.add_argument("--group-by", help="comma-separated columns that define a configuration "
                     "(default: experiment,algorithm,hidden,negatives,objective,epochs)")
    rep.add_argument("--target", type=float, help="target test error for time-to-target, as a fraction (0.015)")

    b = sub.add_parser("bench", help="time training epochs of one spec on each backend (no Ray)",
                       description="Compile and warm-up are timed apart; epoch_seconds is the median of the timed epochs.",
                       parents=[common])
    b.add_argument("--backend", action="append", default=[], help="repeatable (default: every installed backend)")
    b.add_argument("--algorithm", choices=["ff", "bp"], default="ff")
    b.add_argument("--hidden", default="1000,1000,1000", help="comma-separated widths (default 1000,1000,1000)")
    b.add_argument("--batch", type=_batch, default=100, help="minibatch size, or `full` (the whole training split)")
    b.add_argument("--epochs", type=int, default=3, help="timed epochs, after one warm-up epoch")
    b.add_argument("--train-subset", type=int, help="time on the first N training images only")
    b.add_argument("--pack", type=_positive_int, default=1, metavar="N",
                   help="train N seeds as one packed program (backends that pack: jax, torch, keras on KERAS_BACKEND=jax); "
                        "rates are the pack's aggregate")
    b.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="any other spec field")
    b.add_argument("--json", action="store_true", help="print a JSON list of results")

    c = sub.add_parser("check", help="check every backend against the NumPy reference",
                       description="Compare each backend with the float64 NumPy reference on the same spec, weights "
                       "and batch: per-layer goodness, loss and gradients; parameters after 1 and N steps of both "
                       "schedules; the BP baseline; predictions. Exits 1 on any FAIL.", parents=[common])
    c.add_argument("--backends", help="comma-separated (default: every installed backend)")
    c.add_argument("--spec", type=Path, help="a YAML file with one FF trial (fields as in a suite experiment)")
    c.add_argument("--fixture", type=Path, help="run the FF layer stack of this .npz fixture (format in the README)")
    c.add_argument("--out", type=Path, help="with --fixture: write DIR/<backend>.npz and DIR/reference.npz")
    c.add_argument("--variant", dest="variants", action="append", metavar="NAME",
                   help="check only this registered negative strategy or layer objective (repeatable; "
                        "implies --no-e2e): a plugin author's quick check")
    c.add_argument("--section", dest="sections", action="append", metavar="NAME",
                   help="run only this section of the check (repeatable; implies --no-e2e): layers, schedules, "
                        "variants, jitter, episodes, local, rgb, recurrent, conv, scff, bp, bp.local, predict")
    c.add_argument("--no-e2e", action="store_true", help="skip the end-to-end training agreement on MNIST")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with only_ffbench_lines(verbose=args.verbose):
        try:
            return {"run": _run, "list": _list, "check": _check, "report": _report, "bench": _bench,
                    "download": _download}[args.command](args)
        except FFBenchError as exc:
            say(f"ffbench: error: {exc}")
            return exc.exit_code
        except KeyboardInterrupt:
            say("ffbench: interrupted; finished trials are saved, re-run the same command to finish")
            return EXIT_INTERRUPTED


def _dry_run_rows(planned, done: set[str]) -> list[dict[str, Any]]:
    from ffbench.spec_paths import flatten
    rows = []
    for p in planned:
        s = p.spec
        rows.append({
            "trial_id": p.trial_id, "experiment": s["meta"]["experiment"], "algorithm": s["algorithm"],
            "backend": s["backend"], "hidden": s["hidden"],
            "channels": (s.get("conv") or {}).get("channels"), "epochs": s["epochs"], "batch_size": s["batch_size"],
            "negatives": s["ff"]["negatives"] if s["algorithm"] == "ff" else None, "seed": s["seed"],
            "reference_error": s["meta"]["reference_error"], "reference_source": s["meta"]["reference_source"],
            "tags": s["meta"]["tags"], "done": p.trial_id in done,
            **{f"spec.{k}": v for k, v in flatten({k: v for k, v in s.items() if k != "meta"}).items()},
        })
    return rows


def _run(args: argparse.Namespace) -> int:
    from ffbench import results, runner, suites
    from ffbench.console import Progress
    from ffbench.ray_executor import executor_for

    if args.json and not args.dry_run:
        raise FFBenchError("--json goes with --dry-run")
    name, trials = suites.load_suite(args.suite, args.overrides, max_trials=args.max_trials)
    trials = suites.select(trials, only=args.only, skip=args.skip, backends=args.backend)
    planned = runner.plan(trials)
    out = args.out or Path("results") / name
    if out.exists() and not out.is_dir():
        raise ConfigError("is a file; expected a results folder (new or written by ffbench run)", file=str(out), field="--out")
    done = results.completed_ids(out)
    if args.dry_run:
        for bad in results.unreadable(out):
            say(f"ffbench: warning: {bad.path}: unreadable ({bad.reason}); a run sets it aside and runs its trial again")
        rows = _dry_run_rows(planned, done)
        if args.json:
            print(json.dumps(rows, indent=1))
        else:
            from ffbench.console import print_plan
            print_plan(name, rows)
        return EXIT_OK
    if args.max_retries < 0:
        raise FFBenchError(f"--max-retries {args.max_retries}: expected 0 or more")
    runner.check_runnable(planned)
    executor = executor_for(args.executor, args.address, gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial,
                            max_retries=args.max_retries, trial_timeout=args.trial_timeout)
    with results.exclusive(out), executor as ex, _sigterm_interrupts():
        for bad, moved in results.quarantine(out):
            say(f"ffbench: warning: {bad.path}: unreadable ({bad.reason}); moved to {moved}, its trial runs again")
        results.save_suite(out, args.suite)
        with Progress(len(planned), quiet=args.quiet) as progress:
            summary = runner.run(planned, out, ex, progress, force=args.force, pack_size=1 if args.no_pack else args.pack_size)
    if not args.quiet:
        from ffbench.console import print_summary
        print_summary(results.read_trials(out), out, summary)
    return EXIT_TRIALS_FAILED if summary.failed else EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from ffbench import check, fixture, registry
    from ffbench.console import print_check
    from ffbench.errors import BackendUnavailable

    names = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else registry.installed()
    for name in names:
        registry.load(name)  # unknown or not installed: one line, exit 3
    if not names:
        raise BackendUnavailable("no backend is installed: pip install 'ffbench[torch]' (or jax, keras)")
    if args.fixture:
        if not args.out:
            raise FFBenchError("--fixture needs --out DIR")
        comparisons = [c for cs in fixture.run_fixture(args.fixture, args.out, names).values() for c in cs]
        print_check(comparisons, names, f"fixture {args.fixture}: outputs in {args.out}/")
        return EXIT_OK if all(c.passed for c in comparisons) else EXIT_TRIALS_FAILED
    spec = None
    if args.spec:
        from ffbench.suites import load_trial_spec
        spec = load_trial_spec(args.spec)
    only = None
    if args.variants:
        from ffbench.variants import NEGATIVES, OBJECTIVES
        only = set(args.variants)
        unknown = sorted(only - set(NEGATIVES) - set(OBJECTIVES))
        if unknown:
            raise FFBenchError(f"--variant: unknown {', '.join(map(repr, unknown))}; expected a negative strategy "
                               f"({', '.join(NEGATIVES)}) or a layer objective ({', '.join(OBJECTIVES)})")
    sections = None
    if args.sections:
        sections = set(args.sections)
        if only is not None:
            raise FFBenchError("--section and --variant: give one (a variant's check is its own sections)")
        unknown = sorted(sections - set(check.SECTIONS))
        if unknown:
            raise FFBenchError(f"--section: unknown {', '.join(map(repr, unknown))}; expected one of {', '.join(check.SECTIONS)}")
    comparisons = [c for name in names for c in check.check_backend(name, spec, variants=only, sections=sections)]
    print_check(comparisons, names, "each backend (float32) against the NumPy reference (float64)")
    if not args.no_e2e and only is None and sections is None:
        from ffbench.console import print_agreement
        e2e, errors = check.agreement(names, check.e2e_spec())
        comparisons += e2e
        print_agreement(e2e, errors)
    return EXIT_OK if all(c.passed for c in comparisons) else EXIT_TRIALS_FAILED


def _batch(text: str) -> int | str:
    if text == "full":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'full', got {text!r}") from None


def _bench(args: argparse.Namespace) -> int:
    from ffbench import bench, registry
    from ffbench.suites import _set, parse_override

    try:
        hidden = [int(w) for w in args.hidden.split(",")]
    except ValueError:
        raise FFBenchError(f"--hidden {args.hidden!r}: expected comma-separated widths, e.g. 1000,1000,1000") from None
    spec: dict[str, Any] = {"algorithm": args.algorithm, "seed": 0, "hidden": hidden, "batch_size": args.batch}
    if args.train_subset:
        spec["data"] = {"train_subset": args.train_subset}
    for text in args.overrides:
        path, value = parse_override(text)
        _set(spec, path, value)
    names = args.backend or registry.installed()
    for name in names:
        registry.load(name)
    rows = []
    for name in names:
        try:
            rows.append(bench.bench_backend(name, spec, args.epochs, args.pack))
        except ValueError as exc:  # pydantic ValidationError included: a bad --set or --hidden
            raise FFBenchError(
                f"bench: {str(exc).splitlines()[0] if not hasattr(exc, 'errors') else exc.errors()[0]['msg']}") from None
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        from ffbench.console import print_bench
        print_bench(rows)
    return EXIT_OK


def _report(args: argparse.Namespace) -> int:
    from ffbench import report
    group_by = [c.strip() for c in args.group_by.split(",") if c.strip()] if args.group_by else None
    written = report.build(args.dir, args.where, group_by, args.target,
                           warn=lambda bad: say(f"ffbench: warning: {bad.path}: unreadable ({bad.reason}); "
                                                "left out of the report (`ffbench run` sets it aside and runs it again)"))
    print(f"wrote {len(written)} files to {args.dir / 'report'}/: " + ", ".join(p.name for p in written))
    return EXIT_OK


def _download(args: argparse.Namespace) -> int:
    from ffbench.console import DownloadProgress
    from ffbench.datastore import PublishedDataset
    from ffbench.variants import DATASETS, VariantError
    for name in args.datasets:
        try:
            source = DATASETS.get(name)
        except VariantError as exc:
            raise ConfigError(str(exc)) from None
        if not isinstance(source, PublishedDataset):
            print(f"{name}: nothing to download ({source.description})")
            continue
        with DownloadProgress() as progress:
            arrays = source.load(progress=progress)
        print(f"{name}: verified, {len(arrays['y_train']):,} training and {len(arrays['y_test']):,} test images")
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    from ffbench.console import print_listing
    print_listing()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
