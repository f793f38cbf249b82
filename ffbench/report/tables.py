"""Every table of a report, built once from the results rows as DataFrames.

A configuration is everything but the seed and the backend: by default experiment,
algorithm, architecture, negatives and epoch budget (`--group-by` changes it).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from ffbench.report.stats import anova_p, first_reaching, mean_std, t_interval
from ffbench.spec_conv import architecture

CONFIG = ["experiment", "algorithm", "hidden", "negatives", "objective", "epochs"]


def variant_label(name, params) -> str:
    """A registered variant as a table shows it: its name, and its non-default parameters
    (the results' canonical JSON column) as `name(k=v, ...)`; "-" where there is none (BP)."""
    if not isinstance(name, str):
        return "-"
    if not isinstance(params, str) or not params:
        return name
    return f"{name}({', '.join(f'{k}={v}' for k, v in json.loads(params).items())})"


def _variant(df: pd.DataFrame, field: str) -> pd.Series:
    params = df[f"spec.ff.{field}_params"] if f"spec.ff.{field}_params" in df else pd.Series(None, index=df.index)
    names = df[f"spec.ff.{field}"] if f"spec.ff.{field}" in df else pd.Series(None, index=df.index)
    labels = [variant_label(n, p) if a == "ff" else "-" for n, p, a in zip(names, params, df["algorithm"])]
    return pd.Series(labels, index=df.index, dtype=object)


def default_config(df: pd.DataFrame) -> list[str]:
    """CONFIG, less the objective column where every trial has the paper's (a report of the
    2022 recipes reads as it did before layer objectives were a choice), led by the dataset
    where the rows hold more than one."""
    config = CONFIG
    if df.empty or set(prepare(df)["objective"]) <= {"logistic", "-"}:
        config = [c for c in CONFIG if c != "objective"]
    mixed = not df.empty and "dataset" in df and df["dataset"].nunique() > 1
    return ["dataset", *config] if mixed else config


def prepare(df: pd.DataFrame) -> pd.DataFrame:
    """Result rows with the configuration columns a report groups by."""
    conv = {k: df[f"spec.conv.{k}"] if f"spec.conv.{k}" in df else pd.Series(None, index=df.index, dtype=object)
            for k in ("channels", "groups", "norm")}
    return df.assign(
        dataset=df["dataset"].fillna("") if "dataset" in df else "",
        experiment=df["experiment"].fillna(""),
        hidden=[architecture(h, *c) for h, *c in zip(df["spec.hidden"], conv["channels"], conv["groups"], conv["norm"])],
        depth=df["spec.hidden"].map(len),
        negatives=_variant(df, "negatives"),
        objective=_variant(df, "objective"),
        epochs=df["spec.epochs"],
    )


def summary(df: pd.DataFrame, config: list[str] | None = None) -> pd.DataFrame:
    """One row per configuration and backend: test error mean/std/n over ok seeds, costs."""
    config = config or default_config(df)
    if df.empty:
        return pd.DataFrame()
    df = prepare(df)
    keys = [*config, "backend"]
    rows = []
    for key, g in df.groupby(keys, sort=True, dropna=False):
        ok = g[g["status"] == "ok"]
        mean, std, n = mean_std(ok["test_error"].tolist())
        rows.append({**dict(zip(keys, key)), "n": n, "not_ok": int((g["status"] != "ok").sum()),
                     "test_error_mean": mean, "test_error_std": std,
                     "train_seconds_mean": ok["train_seconds"].mean() if n else math.nan,
                     "compile_seconds_mean": ok["compile_seconds"].mean() if n else math.nan,
                     "samples_per_second": ok["samples_per_second"].mean() if n else math.nan,
                     "peak_memory_mb": ok["peak_memory_bytes"].mean() / 2**20 if n else math.nan,
                     "reference_error": (g["reference_error"].dropna().iloc[0] if g["reference_error"].notna().any()
                                         else math.nan)})
    return pd.DataFrame(rows)


def paired_ff_minus_bp(df: pd.DataFrame, config: list[str] | None = None, level: float = 0.95) -> pd.DataFrame:
    """For each FF configuration: FF − BP test error, paired by dataset, backend, architecture,
    epoch budget and seed (only pairs where both are ok), with a t-interval."""
    config = config or default_config(df)
    df = prepare(df)
    ok = df[df["status"] == "ok"]
    bp = ok[ok["algorithm"] == "bp"].set_index(["dataset", "backend", "hidden", "epochs", "seed"])["test_error"]
    bp = bp[~bp.index.duplicated()]
    rows = []
    for key, g in ok[ok["algorithm"] == "ff"].groupby(config, sort=True):
        diffs = [r.test_error - bp[(r.dataset, r.backend, r.hidden, r.epochs, r.seed)] for r in g.itertuples()
                 if (r.dataset, r.backend, r.hidden, r.epochs, r.seed) in bp.index]
        mean, lo, hi, n = t_interval(diffs, level)
        rows.append({**dict(zip(config, key)), "ff_minus_bp": mean, "ci_low": lo, "ci_high": hi, "pairs": n})
    return pd.DataFrame(rows, columns=[*config, "ff_minus_bp", "ci_low", "ci_high", "pairs"])


def _keyed(df: pd.DataFrame, config: list[str]) -> pd.DataFrame:
    """A `_key` column holding each row's configuration as one tuple (any number of columns)."""
    return df.assign(_key=list(zip(*[df[c] for c in config])))


def main_table(df: pd.DataFrame, backends: list[str], config: list[str] | None = None) -> pd.DataFrame:
    """Rows: configurations; per backend "mean ± std (n)" of test error in %; reference, Δ, FF−BP."""
    config = config or default_config(df)
    s = summary(df, config)
    if s.empty:
        return pd.DataFrame()
    paired = {r["_key"]: r for r in _keyed(paired_ff_minus_bp(df, config), config).to_dict("records")}
    ok = _keyed(prepare(df), config)
    ok = ok[ok["status"] == "ok"]
    rows = []
    for key, g in _keyed(s, config).groupby("_key", sort=True):
        row, by = dict(zip(config, key)), g.set_index("backend")
        for b in backends:
            row[b] = cell(*by.loc[b, ["test_error_mean", "test_error_std", "n"]]) if b in by.index else "–"
            row[f"_{b}_mean"] = by.loc[b, "test_error_mean"] if b in by.index else math.nan
        pooled = ok.loc[ok["_key"] == key, "test_error"]  # every backend and seed
        ref = g["reference_error"].dropna()
        row["reference"] = f"{100 * ref.iloc[0]:.2f}" if len(ref) else ""
        row["Δ vs ref (pp)"] = f"{100 * (pooled.mean() - ref.iloc[0]):+.2f}" if len(ref) and len(pooled) else ""
        p = paired.get(key)
        row["FF − BP (pp) [95% CI]"] = "" if p is None else diff_cell(p["ff_minus_bp"], p["ci_low"], p["ci_high"], p["pairs"])
        rows.append(row)
    return pd.DataFrame(rows)


def cost_table(df: pd.DataFrame, backends: list[str], config: list[str] | None = None) -> pd.DataFrame:
    config = config or default_config(df)
    s = summary(df, config)
    if s.empty:
        return pd.DataFrame()
    rows = []
    for key, g in s.groupby(config, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        by, row = g.set_index("backend"), dict(zip(config, key))
        for b in backends:
            ok = b in by.index and by.loc[b, "n"] > 0
            row[f"{b} train s"] = f"{by.loc[b, 'train_seconds_mean']:.1f}" if ok else "–"
            compile_s = by.loc[b, "compile_seconds_mean"] if ok else math.nan
            row[f"{b} compile s"] = f"{compile_s:.1f}" if compile_s == compile_s else "–"
            row[f"{b} samples/s"] = f"{by.loc[b, 'samples_per_second']:,.0f}" if ok else "–"
            row[f"{b} peak MiB"] = f"{by.loc[b, 'peak_memory_mb']:,.0f}" if ok else "–"
        rows.append(row)
    return pd.DataFrame(rows)


def agreement_table(df: pd.DataFrame, config: list[str] | None = None, alpha: float = 0.01) -> pd.DataFrame:
    """Configurations run on several backends: the spread of the mean error across backends,
    the pooled seed std, and a one-way ANOVA p-value; flagged where p < alpha."""
    config = config or default_config(df)
    df = prepare(df)
    ok = df[df["status"] == "ok"]
    rows = []
    for key, g in ok.groupby(config, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        groups = {b: gb["test_error"].tolist() for b, gb in g.groupby("backend")}
        if len(groups) < 2:
            continue
        means = {b: float(np.mean(v)) for b, v in groups.items()}
        resid = [x - means[b] for b, v in groups.items() for x in v]
        dof = len(resid) - len(groups)
        pooled = math.sqrt(sum(r * r for r in resid) / dof) if dof > 0 else math.nan
        p = anova_p(list(groups.values()))
        rows.append({**dict(zip(config, key)), "backends": len(groups),
                     "spread (pp)": 100 * (max(means.values()) - min(means.values())),
                     "seed std (pp)": 100 * pooled, "ANOVA p": p,
                     "flag": "differs beyond seed noise" if (p == p and p < alpha) else ""})
    return pd.DataFrame(rows, columns=[*config, "backends", "spread (pp)", "seed std (pp)", "ANOVA p", "flag"])


def default_targets(df: pd.DataFrame) -> dict[str, float]:
    """Per architecture: the mean test error of BP at 20 epochs (else at its largest budget) + 0.2 pp."""
    df = prepare(df)
    bp = df[(df["algorithm"] == "bp") & (df["status"] == "ok")]
    targets = {}
    for hidden, g in bp.groupby("hidden"):
        budget = 20 if (g["epochs"] == 20).any() else g["epochs"].max()
        targets[hidden] = float(g.loc[g["epochs"] == budget, "test_error"].mean()) + 0.002
    return targets


def time_to_target(df: pd.DataFrame, curves: pd.DataFrame, target: float | None = None,
                   config: list[str] | None = None) -> pd.DataFrame:
    """Per configuration and backend: epochs and train seconds to reach the target test error
    (mean over the seeds that reached it), or "not reached"."""
    config = config or default_config(df)
    df = prepare(df)
    ok = df[df["status"] == "ok"]
    targets = default_targets(df)
    test = curves[curves["metric"] == "test_error"]
    secs = curves[curves["metric"] == "train_seconds"].set_index(["trial_id", "epoch"])["value"]
    rows = []
    for key, g in ok.groupby([*config, "backend"], sort=True):
        cfg = dict(zip([*config, "backend"], key))
        tgt = target if target is not None else targets.get(g["hidden"].iloc[0])
        if tgt is None:
            continue
        reached = []
        for tid in g["trial_id"]:
            c = test[test["trial_id"] == tid]
            hit = first_reaching(c["epoch"].tolist(), c["value"].tolist(),
                                 [secs.get((tid, e), math.nan) for e in c["epoch"]], tgt)
            if hit:
                reached.append(hit)
        rows.append({**cfg, "target (%)": 100 * tgt, "reached": f"{len(reached)}/{len(g)}",
                     "epochs to target": round(float(np.mean([r[0] for r in reached])), 1) if reached else "not reached",
                     "train s to target": round(float(np.mean([r[1] for r in reached])), 2) if reached else "not reached"})
    return pd.DataFrame(rows, columns=[*config, "backend", "target (%)", "reached", "epochs to target", "train s to target"])


def methods_table(df: pd.DataFrame) -> pd.DataFrame:
    """A paper's table: one row per method (`meta.method`: BP, FF, each variant) and
    architecture, one column per dataset holding "mean ± std (n)" of test error in % over
    the ok seeds (every backend's), the published number in the "<dataset> ref" column beside
    it. Rows in the order the results first name them; only rows with a method."""
    if df.empty or "method" not in df or df["method"].isna().all():
        return pd.DataFrame()
    df = prepare(df[df["method"].notna()])
    datasets = list(dict.fromkeys(df["dataset"]))
    rows = []
    for (method, arch), g in df.groupby(["method", "hidden"], sort=False):
        row = {"method": method, "architecture": arch}
        for d in datasets:
            cells = g[g["dataset"] == d]
            ok = cells[cells["status"] == "ok"]
            row[d] = cell(*mean_std(ok["test_error"].tolist())) if len(cells) else ""
            ref = cells["reference_error"].dropna()
            row[f"{d} ref"] = f"{100 * ref.iloc[0]:.2f}" if len(ref) else ""
        rows.append(row)
    return pd.DataFrame(rows)


def cell(mean: float, std: float, n: int) -> str:
    if not n or mean != mean:
        return "–"
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if n > 1 else "") + f" (n={int(n)})"


def diff_cell(mean: float, lo: float, hi: float, n: int) -> str:
    if not n:
        return "no pairs"
    ci = f" [{100 * lo:+.2f}, {100 * hi:+.2f}]" if n > 1 else ""
    return f"{100 * mean:+.2f}{ci} (n={int(n)})"
