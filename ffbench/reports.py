"""Tables from results rows. `summary()` is what `ffbench run` prints at the end."""

from __future__ import annotations

import pandas as pd


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (all but the seed): test error mean and std over ok seeds, n, times."""
    if df.empty:
        return pd.DataFrame()
    df = df.assign(hidden=df["spec.hidden"].map(lambda h: "x".join(map(str, h))),
                   experiment=df["experiment"].fillna(""))
    keys = ["experiment", "algorithm", "backend", "hidden", "spec.epochs"]
    ok = df[df["status"] == "ok"]
    g = ok.groupby(keys, dropna=False)
    table = pd.DataFrame({
        "n": g.size(),
        "test_error_mean": g["test_error"].mean(),
        "test_error_std": g["test_error"].std(ddof=1),
        "train_error_mean": g["train_error"].mean(),
        "train_seconds_mean": g["train_seconds"].mean(),
        "samples_per_second": g["samples_per_second"].mean(),
        "reference_error": g["reference_error"].first(),
    })
    not_ok = df[df["status"] != "ok"].groupby(keys, dropna=False).size().rename("not_ok")
    table = table.join(not_ok, how="outer").fillna({"n": 0, "not_ok": 0}).reset_index()
    return table.rename(columns={"spec.epochs": "epochs"}).astype({"n": int, "not_ok": int})


def format_pct(mean: float, std: float, n: int) -> str:
    if n == 0 or pd.isna(mean):
        return "-"
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if n > 1 and not pd.isna(std) else "")
