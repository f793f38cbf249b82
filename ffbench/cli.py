"""The `ffbench` command.

Exit codes: 0 all trials ok; 1 some trials failed, diverged or timed out; 2 bad input (a
suite, spec or argument), nothing run or written; 3 a backend or the data is missing;
130 interrupted (finished trials are kept; re-run to finish).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ffbench import __version__
from ffbench.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_TRIALS_FAILED, FFBenchError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        print(f"ffbench: error: {message} (see ffbench --help)", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ffbench", description="Forward-Forward against backprop: one spec, several frameworks.",
                epilog="exit codes: 0 ok, 1 some trials failed, 2 bad input, 3 backend or data missing, 130 interrupted")
    p.add_argument("--version", action="version", version=f"ffbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="run a suite of trials", description="Expand a suite, run what is not done yet, "
                       "and write one Parquet row per trial under DIR/trials/.")
    r.add_argument("suite", type=Path, help="a suite YAML file, e.g. suites/quickstart.yaml")
    r.add_argument("--out", type=Path, help="results folder (default: results/<suite name>/)")
    r.add_argument("--dry-run", action="store_true", help="list the expanded trials; run nothing")
    r.add_argument("--json", action="store_true", help="with --dry-run: print the trials as a JSON list")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec field in every trial, e.g. --set epochs=1 --set data.train_subset=2000")
    r.add_argument("--force", action="store_true", help="re-run trials that already have an ok row")
    r.add_argument("--executor", choices=["local"], default="local", help="where trials run (local: in this process)")
    r.add_argument("--quiet", action="store_true", help="no progress display")

    sub.add_parser("list", help="backends (with install status), negative strategies and suites")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"run": _run, "list": _list}[args.command](args)
    except FFBenchError as exc:
        print(f"ffbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ffbench: interrupted; finished trials are saved, re-run the same command to finish", file=sys.stderr)
        return EXIT_INTERRUPTED


def _dry_run_rows(planned, done: set[str]) -> list[dict[str, Any]]:
    from ffbench.spec import flatten
    rows = []
    for p in planned:
        s = p.spec
        rows.append({
            "trial_id": p.trial_id, "experiment": s["meta"]["experiment"], "algorithm": s["algorithm"],
            "backend": s["backend"], "hidden": s["hidden"], "epochs": s["epochs"], "batch_size": s["batch_size"],
            "negatives": s["ff"]["negatives"] if s["algorithm"] == "ff" else None, "seed": s["seed"],
            "reference_error": s["meta"]["reference_error"], "reference_source": s["meta"]["reference_source"],
            "tags": s["meta"]["tags"], "done": p.trial_id in done,
            **{f"spec.{k}": v for k, v in flatten({k: v for k, v in s.items() if k != "meta"}).items()},
        })
    return rows


def _run(args: argparse.Namespace) -> int:
    from ffbench import results, runner, suites
    from ffbench.console import Progress

    if args.json and not args.dry_run:
        raise FFBenchError("--json goes with --dry-run")
    name, trials = suites.load_suite(args.suite, args.overrides)
    planned = runner.plan(trials)
    out = args.out or Path("results") / name
    done = results.completed_ids(out)
    if args.dry_run:
        rows = _dry_run_rows(planned, done)
        if args.json:
            print(json.dumps(rows, indent=1))
        else:
            from ffbench.console import print_plan
            print_plan(name, rows)
        return EXIT_OK
    runner.check_runnable(planned)
    with Progress(len(planned), quiet=args.quiet) as progress:
        summary = runner.run(planned, out, runner.LocalExecutor(), progress, force=args.force)
    if not args.quiet:
        from ffbench.console import print_summary
        print_summary(results.read_trials(out), out, summary)
    return EXIT_TRIALS_FAILED if summary.failed else EXIT_OK


def _list(args: argparse.Namespace) -> int:
    from ffbench.console import print_listing
    print_listing()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
