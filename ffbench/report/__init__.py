"""`ffbench report DIR`: the tables, statistics and plots a paper needs, from the Parquet results.

`build(DIR)` writes DIR/report/report.{md,tex,html}, the CSV tables and the PNG/PDF plots.
Every format comes from the same DataFrames (`tables.py`); the statistics are in `stats.py`.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pandas as pd

from ffbench.errors import ConfigError
from ffbench.report import plots, render, tables
from ffbench.results import TRIAL_SCHEMA, read_all
from ffbench.stderr_guard import say


def load(out_dir: Path, where: str | None = None, warn=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The trial rows (optionally filtered by a pandas query) and their curves. A fragment
    that does not read back is left out, and `warn(results.Unreadable)` is told of it."""
    out_dir = Path(out_dir)
    trials = out_dir / "trials"
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError("is a file; expected a results folder written by `ffbench run`", file=str(out_dir))
    if not out_dir.is_dir():
        raise ConfigError("no such folder", file=str(out_dir))
    if not trials.is_dir():
        raise ConfigError("not an ffbench results folder (no trials/ inside; run `ffbench run SUITE --out DIR`)",
                          file=str(out_dir))
    df, curves, bad = read_all(out_dir)  # each folder read once
    bad_rows = [b for b in bad if b.path.parent.name == "trials"]
    if bad_rows and len(bad_rows) == len(list(trials.glob("*.parquet"))):
        raise ConfigError("not an ffbench results folder: no fragment in trials/ reads as ffbench rows", file=str(out_dir))
    for b in bad:
        (warn or _warn)(b)
    if df["trial_id"].isna().any() or not df["status"].dropna().isin(("ok", "failed", "diverged", "timeout")).all():
        raise ConfigError("not an ffbench results folder: trials/ holds rows that ffbench did not write", file=str(out_dir))
    if where:
        try:
            df = df.query(where, engine="python")
        except Exception as exc:
            raise ConfigError(f"cannot apply {where!r}: {exc}; columns include backend, algorithm, seed, status, "
                              "test_error, experiment, spec.*", field="--where") from None
    return df, curves[curves["trial_id"].isin(df["trial_id"])]


def _warn(bad) -> None:
    say(f"ffbench: warning: {bad.path}: unreadable ({bad.reason}); left out of the report")


def appendix(out_dir: Path, df: pd.DataFrame) -> list[str]:
    """The reproducibility notes: suites and hashes, versions, devices, data, and what did not finish."""
    lines = ["## Reproducibility", ""]
    suites = sorted((Path(out_dir) / "suites").glob("*.yaml"))
    for s in suites:
        lines.append(f"- suite file `{s.name}`: sha256 {hashlib.sha256(s.read_bytes()).hexdigest()}")
    if not suites:
        lines.append("- suite file: not recorded in this folder")
    def uniq(col):
        return ", ".join(sorted({str(v) for v in df[col].dropna()})) or "unknown"
    lines += [f"- ffbench version: {uniq('ffbench_version')}; git SHA: {uniq('git_sha')}"
              + ("; uncommitted changes in some runs" if df["git_dirty"].fillna(False).any() else ""),
              f"- frameworks: {'; '.join(sorted({fv for fv in df['framework_versions'].dropna()}))}",
              f"- devices: {uniq('device_name')}", f"- Python: {uniq('python_version')}; hosts: {uniq('hostname')}",
              f"- dataset checksum (sha256): {uniq('dataset_checksum')}",
              f"- trials: {len(df)} ({(df['status'] == 'ok').sum()} ok)", ""]
    bad = df[df["status"] != "ok"]
    if len(bad):
        lines += ["### Trials that did not finish", ""]
        lines += [f"- `{r.trial_id}` {r.experiment or ''} {r.algorithm} {r.backend} seed {r.seed}: **{r.status}**: {r.error}"
                  for r in bad.itertuples()]
    return lines


def per_dataset(title: str, table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The table as it is, or where it has a dataset column (rows of several datasets), one
    table per dataset without that column, titled "<title>: <dataset>"."""
    if table.empty or "dataset" not in table:
        return [(title, table)]
    return [(f"{title}: {name}", g.drop(columns="dataset").reset_index(drop=True))
            for name, g in table.groupby("dataset", sort=True)]


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def build(out_dir: Path, where: str | None = None, group_by: list[str] | None = None, target: float | None = None,
          warn=None) -> list[Path]:
    out_dir = Path(out_dir)
    df, curves = load(out_dir, where, warn)
    config = group_by or tables.default_config(df)
    if not df.empty:
        known = set(tables.prepare(df).columns)
        unknown = [c for c in config if c not in known]
        if unknown:
            raise ConfigError(f"unknown column(s) {unknown}; try experiment, algorithm, hidden, negatives, objective, epochs, "
                              "depth, backend or any spec.* column", field="--group-by")
    report = out_dir / "report"
    report.mkdir(exist_ok=True)
    backends = sorted(df["backend"].unique()) if not df.empty else []
    main = tables.main_table(df, backends, config)
    cost = tables.cost_table(df, backends, config)
    agree = tables.agreement_table(df, config)
    ttt = tables.time_to_target(df, curves, target, config) if not df.empty else pd.DataFrame()
    summary = tables.summary(df, config)
    ci_note = ("FF − BP: test error difference in percentage points, paired by backend, architecture, epoch budget "
               "and seed; 95% Student-t interval over the pairs.")
    target_note = (f"target: {100 * target:.2f}% test error" if target is not None else
                   "target: per architecture, the BP test error at 20 epochs (else at its largest budget) + 0.2 pp")
    error_note = ("Test error in % as mean ± std over seeds (ddof=1), n seeds; reference = the published number; "
                  f"Δ = mean over backends and seeds minus reference. {ci_note}")
    methods = tables.methods_table(df)
    methods_note = ("Test error in % as mean ± std over seeds (ddof=1; every backend's seeds pooled), n trials; "
                    "ref = the published number of the row's source (its reference_source).")
    sections = ([("Methods", methods_note, methods)] if not methods.empty else []) + [
        (title, error_note, t) for title, t in per_dataset("Test error", main)] + [
        ("Cost", "Mean training seconds (device-synchronised; evaluation and compilation excluded), compile seconds "
                 "(building each phase's program, JAX's XLA compilation), training samples per second, and peak memory "
                 "(see peak_memory_source) per backend.", cost),
        ("Cross-framework agreement", "Configurations run on several backends: the spread of the mean test error "
                                      "across backends, the pooled seed std, and a one-way ANOVA p-value; flagged where "
                                      "p < 0.01 (a difference seed noise does not explain).",
         agree.assign(**{"ANOVA p": agree["ANOVA p"].map(render.fmt_p)}) if not agree.empty else agree),
        ("Time to target", f"Epochs and training seconds to the first evaluation at or below the {target_note}; "
                           "means over the seeds that reached it.", ttt),
    ]
    notes = appendix(out_dir, df)
    if df.empty:
        notes = ["**No trials in this folder yet.**", ""] + notes
    missing = df[df["status"] != "ok"]
    if len(missing):
        notes = [f"**{len(missing)} trial(s) are not ok** and are left out of the statistics (listed below).", ""] + notes
    written = []
    images = []
    if not df.empty:
        images = [p for p in plots.error_curves(df, curves, report) + plots.error_vs_budget(df, report)
                  + plots.time_to_target_bars(ttt, report) + plots.memory_vs_depth(df, report)]
    for name, text in (("report.md", render.markdown(sections, notes)),
                       ("report.html", render.html_page(sections, [p for p in images if p.suffix == ".png"], notes))):
        (report / name).write_text(text)
        written.append(report / name)
    tex = "\n\n".join(render.latex(t, f"{title}. {cap}", f"tab:ffbench-{_slug(title)}",
                                   best_of=backends if title.startswith("Test error") else None)
                      for title, cap, t in sections if not t.empty)
    (report / "report.tex").write_text(tex or "% no trials\n")
    written.append(report / "report.tex")
    for name, t in (("summary.csv", summary), ("main.csv", main), ("agreement.csv", agree), ("time_to_target.csv", ttt)):
        render._visible(t).to_csv(report / name, index=False)
        written.append(report / name)
    (report / "meta.json").write_text(json.dumps({"where": where, "group_by": config, "target": target,
                                                  "columns": len(TRIAL_SCHEMA.names)}, indent=1))
    return written + images
