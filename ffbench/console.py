"""Everything `ffbench` shows on the terminal: progress, plans, summaries, listings (rich)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from ffbench.spec_conv import architecture, conv_label
from ffbench.stderr_guard import OWN

_err, _out = Console(file=OWN), Console()  # OWN: the real stderr, also while framework chatter is dropped
# files and pipes get whole lines and tables, not 80-column wraps
console = _err if _err.is_terminal else Console(file=OWN, width=200)
out = _out if _out.is_terminal else Console(width=150)


def _label(spec: dict[str, Any]) -> str:
    return (f"{spec['meta']['experiment'] or spec['algorithm']} {spec['backend']} "
            f"{architecture(spec['hidden'], **conv_label(spec.get('conv')))} seed {spec['seed']}")


class Progress:
    """Live progress: a header bar over the trials to run (done, running, not ok, skipped,
    ETA) and one line per running trial (its epochs, where it runs). Silent with quiet=True.

    Where stderr is not a terminal (a log file, nohup, a batch job) a live display would show
    nothing until the end, so progress is plain lines instead: each trial's start, its epochs
    with a test error, an epoch at least every `log_every` seconds, and each trial's end with
    the count done."""

    def __init__(self, total: int, quiet: bool = False, log_every: float = 60.0):
        self.quiet = quiet
        self.log_lines = not quiet and not console.is_terminal
        self.log_every, self.logged = log_every, {}  # trial_id -> time of its last line
        self.bar = RichProgress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                                disable=quiet or self.log_lines)
        self.total = total
        self.counts = {"done": 0, "running": 0, "not ok": 0, "skipped": 0}
        self.lines: dict[str, Any] = {}  # trial_id -> rich task of a running trial
        self.where: dict[str, str] = {}

    def __enter__(self) -> Progress:
        self.bar.__enter__()
        self.trials = self.bar.add_task(self._header(), total=self.total)
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def _header(self) -> str:
        return "trials: " + ", ".join(f"{v} {k}" for k, v in self.counts.items() if v or k in ("done", "running"))

    def _refresh(self) -> None:
        self.bar.update(self.trials, description=self._header())

    def skipped(self, n: int) -> None:
        self.counts["skipped"] = n
        self.bar.update(self.trials, total=self.total - n)
        self._refresh()
        if n and not self.quiet:
            console.print(f"skipping {n} trial(s) already done (--force re-runs them)")

    def trial_started(self, p, where: dict[str, Any]) -> None:
        place = []
        if where.get("attempt", 1) > 1:
            place.append(f"attempt {where['attempt']}")
        if where.get("node"):
            place.append(f"node {where['node']}")
        if where.get("devices"):
            place.append(f"GPU {where['devices']}")
        self.where[p.trial_id] = f" ({', '.join(place)})" if place else ""
        if p.trial_id in self.lines:  # a retry after a worker died
            self.bar.reset(self.lines[p.trial_id], total=None, description=f"  {_label(p.spec)}{self.where[p.trial_id]}")
        else:
            self.counts["running"] += 1
            self.lines[p.trial_id] = self.bar.add_task(f"  {_label(p.spec)}{self.where[p.trial_id]}", total=None)
        self._refresh()
        if self.log_lines:
            self.logged[p.trial_id] = time.monotonic()
            console.print(f"{'started':>8} {p.trial_id} {_label(p.spec)}{self.where[p.trial_id]}", highlight=False, markup=False)

    def epoch(self, p, done: int, total: int, info: dict[str, Any]) -> None:
        if p.trial_id not in self.lines:  # a late message from a finished trial
            return
        err = info.get("test_error")
        extra = f" test {100 * err:.2f}%" if err is not None else ""
        self.bar.update(self.lines[p.trial_id], completed=done, total=total,
                        description=f"  {_label(p.spec)}{self.where[p.trial_id]} [{info.get('phase', '')}]{extra}")
        now = time.monotonic()
        if self.log_lines and (err is not None or now - self.logged.get(p.trial_id, now) >= self.log_every):
            self.logged[p.trial_id] = now
            console.print(f"{'epoch':>8} {p.trial_id} {_label(p.spec)} {done}/{total} [{info.get('phase', '')}]{extra}",
                          highlight=False, markup=False)

    def trial_finished(self, p, row: dict[str, Any]) -> None:
        task = self.lines.pop(p.trial_id, None)
        if task is not None:
            self.bar.remove_task(task)
            self.counts["running"] -= 1
        self.counts["done"] += 1
        self.counts["not ok"] += row["status"] != "ok"
        self.bar.advance(self.trials)
        self._refresh()
        if not self.quiet:
            status = row["status"]
            what = (f"test error {100 * row['test_error']:.2f}%, {row['train_seconds']:.1f}s training" if status == "ok"
                    else row["error"])
            colour = "green" if status == "ok" else "red"
            attempt = f" (attempt {row['attempt']})" if (row.get("attempt") or 1) > 1 else ""
            count = f" [{self.counts['done']}/{self.total - self.counts['skipped']} done]" if self.log_lines else ""
            console.print(f"[{colour}]{status:>8}[/] {p.trial_id} {escape(_label(p.spec))}{attempt}: "
                          f"{escape(str(what))}{escape(count)}",
                          highlight=False)
        self.logged.pop(p.trial_id, None)


def _net(row: dict[str, Any]) -> str:
    """A planned row's architecture label (`spec_conv.architecture`)."""
    return architecture(row["hidden"], row["channels"], row.get("spec.conv.groups"), row.get("spec.conv.norm"))


def print_plan(name: str, rows: list[dict[str, Any]]) -> None:
    t = Table(title=f"suite {name}: {len(rows)} trial(s)")
    for col in ("trial_id", "experiment", "algorithm", "backend", "hidden", "epochs", "negatives", "seed", "reference", "done"):
        t.add_column(col, no_wrap=col in ("trial_id", "hidden"))
    for r in rows:
        ref = f"{100 * r['reference_error']:.2f}%" if r["reference_error"] is not None else ""
        t.add_row(r["trial_id"], r["experiment"] or "", r["algorithm"], r["backend"],
                  _net(r), str(r["epochs"]), r["negatives"] or "", str(r["seed"]), ref,
                  "yes" if r["done"] else "")
    out.print(t)


def print_summary(df, out_dir: Path, summary) -> None:
    from ffbench.report.tables import cell, default_config
    from ffbench.report.tables import summary as summarise
    table = summarise(df, default_config(df))
    t = Table(title=f"results in {out_dir} ({summary.planned} planned, {summary.skipped} already done, "
                    f"{len(summary.rows)} run, {summary.failed} not ok)")
    objective = "objective" in table  # only where a trial departs from the paper's logistic objective
    left = ("experiment", "algorithm", "backend", "negatives", "objective")
    for col in ("experiment", "algorithm", "backend", "hidden", "negatives", *(("objective",) if objective else ()),
                "epochs", "test error % (mean ± std, n)", "not ok", "train s", "samples/s", "reference %"):
        t.add_column(col, justify="left" if col in left else "right")
    for _, r in table.iterrows():
        ref = f"{100 * r['reference_error']:.2f}" if pd.notna(r["reference_error"]) else ""
        t.add_row(r["experiment"], r["algorithm"], r["backend"], r["hidden"], r["negatives"],
                  *((r["objective"],) if objective else ()), str(r["epochs"]),
                  cell(r["test_error_mean"], r["test_error_std"], r["n"]), str(r["not_ok"]),
                  f"{r['train_seconds_mean']:.1f}" if r["n"] else "-",
                  f"{r['samples_per_second']:,.0f}" if r["n"] else "-", ref)
    out.print(t)
    out.print(f'read it with: pandas.read_parquet("{out_dir}/trials"); tables and plots: ffbench report {out_dir}')


def print_listing() -> None:
    from ffbench import registry, variants
    t = Table(title="backends")
    for col in ("name", "status", "description"):
        t.add_column(col)
    for name, entry in sorted(registry.entries().items()):
        ok, reason = registry.status(name)
        t.add_row(name, "installed" if ok else f"not installed: {reason}", entry.description)
    out.print(t)
    for title, reg in (("negative-data strategies", variants.NEGATIVES), ("layer objectives", variants.OBJECTIVES),
                       ("datasets", variants.DATASETS)):
        t = Table(title=f"{title} (plugins: entry points {reg.group})")
        for col in ("name", "backends", "parameters", "origin", "description"):
            t.add_column(col)
        for name in reg.names():
            try:
                v = reg.get(name)
            except variants.VariantError as exc:
                t.add_row(name, "-", "-", reg.origin(name), f"(cannot load: {exc})")
                continue
            impl = "all (host data)" if reg is variants.DATASETS else ", ".join(sorted(v.backends)) or "none"
            params = ", ".join(f"{k}={f.default!r}" for k, f in v.Params.model_fields.items()) or "-"
            if reg is variants.DATASETS:
                params = v.summary()
            t.add_row(name, impl, params, reg.origin(name), v.description)
        out.print(t)
    t = Table(title="suites (./suites)")
    t.add_column("file")
    t.add_column("description")
    for path in sorted(Path("suites").glob("*.yaml")):
        from ffbench.errors import ConfigError
        from ffbench.safe_yaml import load_yaml
        try:
            data = load_yaml(path)[0]
            desc = data.get("description", "") if isinstance(data, dict) else "(not a suite)"
        except ConfigError as exc:
            desc = f"(unreadable: {exc.message})"
        t.add_row(str(path), str(desc).strip().splitlines()[0] if desc else "")
    out.print(t)



def print_check(comparisons, backends: list[str], title: str) -> None:
    """Rows: quantities (layers folded together); per backend the worst max_rel and PASS/FAIL."""
    import re
    groups: dict[str, dict] = {}
    for c in comparisons:
        key = re.sub(r"(layer|W|b|dW|db)\d+", r"\1*", c.quantity)
        g = groups.setdefault(key, {"kind": c.kind, "tol": c.tolerance})
        worst = g.get(c.backend)
        if worst is None or (not c.passed, c.max_rel) > (not worst.passed, worst.max_rel):  # a failure first, then the largest
            g[c.backend] = c
    t = Table(title=f"ffbench check: {title}", caption="max_rel = max|backend − reference| / max|reference| "
              "(for predict: the fraction of labels that differ); max_abs in brackets")
    t.add_column("quantity", no_wrap=True)
    t.add_column("tolerance", justify="right")
    for b in backends:
        t.add_column(f"{b} max_rel (max_abs)", justify="right")
        t.add_column(b, justify="center")
    for key, g in groups.items():
        cells = []
        for b in backends:
            c = g.get(b)
            if c is None:
                cells += ["-", "-"]
            elif c.note:  # skipped (not implemented on this backend) or refused (a failure)
                cells += ["-", "[yellow]SKIP[/]" if c.passed else "[bold red]FAIL[/]"]
            else:
                cells += [f"{c.max_rel:.1e} ({c.max_abs:.1e})", "[green]PASS[/]" if c.passed else "[bold red]FAIL[/]"]
        t.add_row(escape(key), "-" if g["kind"] in ("skipped", "refused") else f"{g['tol']:.0e}", *cells)
    out.print(t)
    for c in comparisons:
        if c.note:
            out.print(f"{'SKIP' if c.passed else 'FAIL'} {escape(c.quantity)} on {c.backend}: {escape(c.note)}")
    failed = [c for c in comparisons if not c.passed]
    n_skipped = sum(c.kind == "skipped" for c in comparisons)
    tail = f" ({n_skipped} skipped)" if n_skipped else ""
    out.print(f"{len(comparisons) - len(failed)} passed, {len(failed)} failed{tail}" if failed else
              f"all {len(comparisons) - n_skipped} comparisons PASS{tail}")


def print_agreement(e2e, errors: dict[str, float]) -> None:
    t = Table(title="end-to-end: the smoke FF trial trained on every backend and on the reference")
    for col in ("", *errors):
        t.add_column(col, justify="right")
    t.add_row("test error %", *[f"{100 * e:.2f}" for e in errors.values()])
    by = {c.backend: c for c in e2e}
    t.add_row("loss curve max_rel", "-", *[f"{by[b].max_rel:.1e} {'PASS' if by[b].passed else 'FAIL'}" for b in list(errors)[1:]])
    out.print(t)


def print_bench(rows: list[dict]) -> None:
    t = Table(title="ffbench bench (compile and warm-up excluded; median over timed epochs)")
    for col in ("backend", "algorithm", "hidden", "batch", "pack", "s / epoch", "compile s", "warm-up s", "samples/s", "TFLOP/s",
                "test eval s", "peak MiB", "device"):
        t.add_column(col, justify="left" if col in ("backend", "algorithm", "device") else "right")
    for r in rows:
        arch = r.get("architecture") or "x".join(map(str, r["hidden"]))
        t.add_row(r["backend"], r["algorithm"], arch, str(r["batch_size"]), str(r["pack"]),
                  f"{r['epoch_seconds']:.3f}",
                  f"{r['compile_seconds']:.2f}", f"{r['warmup_seconds']:.2f}", f"{r['samples_per_second']:,.0f}",
                  f"{r['tflops']:.3f}", "-" if r["eval_seconds"] is None else f"{r['eval_seconds']:.3f}",
                  f"{(r['peak_memory_bytes'] or 0) / 2**20:,.0f}", r["device_name"])
    out.print(t)


class DownloadProgress:
    """A byte bar per file being downloaded (`ffbench.download.Progress`); plain lines, one
    per file, where stderr is not a terminal."""

    def __init__(self):
        from rich.progress import DownloadColumn, TransferSpeedColumn
        self.plain = not console.is_terminal
        self.bar = RichProgress(TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(),
                                TransferSpeedColumn(), TimeRemainingColumn(), console=console, disable=self.plain)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> DownloadProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def __call__(self, name: str, advance: int, total: int | None) -> None:
        if name not in self.tasks:
            self.tasks[name] = self.bar.add_task(name, total=total)
            if self.plain:
                console.print(f"downloading {name}" + (f" ({total:,} bytes)" if total else ""))
        self.bar.update(self.tasks[name], advance=advance)
