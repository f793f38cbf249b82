"""Report plots (matplotlib, PNG + PDF): error curves, error vs budget, time-to-target, memory vs depth."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from ffbench.report.tables import prepare  # noqa: E402


def _save(fig, out: Path, name: str) -> list[Path]:
    fig.tight_layout()
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=130)
    plt.close(fig)
    return paths


def error_curves(df: pd.DataFrame, curves: pd.DataFrame, out: Path) -> list[Path]:
    """Test error against epoch, FF against BP, one panel per backend, mean ± std over seeds."""
    df = prepare(df[df["status"] == "ok"])
    test = curves[curves["metric"] == "test_error"].merge(df[["trial_id", "backend", "algorithm", "hidden", "experiment"]])
    if test.empty:
        return []
    backends = sorted(test["backend"].unique())
    fig, axes = plt.subplots(1, len(backends), figsize=(5 * len(backends), 3.6), squeeze=False, sharey=True)
    for ax, b in zip(axes[0], backends):
        for (exp, algo, hidden), g in test[test["backend"] == b].groupby(["experiment", "algorithm", "hidden"]):
            stat = g.groupby("epoch")["value"].agg(["mean", "std"]).fillna({"std": 0.0})
            x = stat.index + 1
            line, = ax.plot(x, 100 * stat["mean"], marker="o", ms=3, ls="-" if algo == "ff" else "--",
                            label=f"{algo.upper()} {hidden}" + (f" ({exp})" if exp and exp != algo else ""))
            ax.fill_between(x, 100 * (stat["mean"] - stat["std"]), 100 * (stat["mean"] + stat["std"]),
                            color=line.get_color(), alpha=0.2)
        ax.set(title=f"backend: {b}", xlabel="epoch", yscale="log")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("test error (%), mean ± std over seeds")
    return _save(fig, out, "error_vs_epoch")


def error_vs_budget(df: pd.DataFrame, out: Path) -> list[Path]:
    df = prepare(df[df["status"] == "ok"])
    if df.empty or df["epochs"].nunique() < 2:
        return []
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for (algo, hidden, backend), g in df.groupby(["algorithm", "hidden", "backend"]):
        stat = g.groupby("epochs")["test_error"].agg(["mean", "std"]).fillna({"std": 0.0})
        ax.errorbar(stat.index, 100 * stat["mean"], yerr=100 * stat["std"], marker="o", capsize=3,
                    ls="-" if algo == "ff" else "--", label=f"{algo.upper()} {hidden} ({backend})")
    ax.set(xlabel="epoch budget", ylabel="final test error (%)", title="error against epoch budget")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out, "error_vs_budget")


def time_to_target_bars(ttt: pd.DataFrame, out: Path) -> list[Path]:
    if ttt.empty:
        return []
    labels = [f"{r.algorithm.upper()} {r.hidden}\n{r.backend}" for r in ttt.itertuples()]
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(ttt)), 3.8))
    seconds = pd.to_numeric(ttt["train s to target"], errors="coerce")
    reached = seconds.notna()
    ax.bar(range(len(ttt)), seconds.fillna(0),
           color=["C0" if a == "ff" else "C1" for a in ttt.get("algorithm", ["ff"] * len(ttt))])
    for i, ok in enumerate(reached):
        if not ok:
            ax.text(i, 0, "not\nreached", ha="center", va="bottom", fontsize=7, color="red")
    ax.set_xticks(range(len(ttt)), labels, fontsize=7)
    ax.set(ylabel="training time to target (s)", title="time to the target test error (FF blue, BP orange)")
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, out, "time_to_target")


def memory_vs_depth(df: pd.DataFrame, out: Path) -> list[Path]:
    df = prepare(df[(df["status"] == "ok") & df["peak_memory_bytes"].notna()])
    if df.empty:
        return []
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for (algo, backend, source), g in df.groupby(["algorithm", "backend", "peak_memory_source"]):
        stat = g.groupby("depth")["peak_memory_bytes"].mean() / 2**20
        ax.plot(stat.index, stat.values, marker="o", ls="-" if algo == "ff" else "--",
                label=f"{algo.upper()} ({backend}, {source})")
    ax.set(xlabel="depth (hidden layers)", ylabel="peak memory (MiB)", title="peak memory against depth")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out, "memory_vs_depth")
