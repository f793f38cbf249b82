"""Write a report's tables to Markdown, LaTeX (booktabs), CSV and one self-contained HTML page.

Every format is rendered from the same DataFrames (`ffbench.report.tables`).
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import pandas as pd

TEX_REPLACE = {"±": r"$\pm$", "Δ": r"$\Delta$", "−": "$-$", "–": "--"}


def _visible(df: pd.DataFrame) -> pd.DataFrame:
    """The columns a reader sees (helper columns start with "_"); CSV files keep their raw numbers."""
    return df[[c for c in df.columns if not str(c).startswith("_")]]


def _display(df: pd.DataFrame) -> pd.DataFrame:
    """For Markdown, LaTeX and HTML: floats to 3 significant digits, NaN as blank."""
    def fmt(v):
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.3g}"
        return v
    return _visible(df).map(fmt)


def markdown(sections: list[tuple[str, str, pd.DataFrame]], notes: list[str]) -> str:
    parts = ["# ffbench report", ""]
    for title, caption, df in sections:
        parts += [f"## {title}", "", caption, ""]
        parts += [_display(df).to_markdown(index=False, disable_numparse=True) if not df.empty else "_no rows_", ""]
    return "\n".join(parts + notes) + "\n"


def latex(df: pd.DataFrame, caption: str, label: str, best_of: list[str] | None = None) -> str:
    """A booktabs table, ready to \\input; in each `best_of` column the lowest error is bold."""
    shown = _display(df).copy()
    for col in best_of or []:
        means = df.get(f"_{col}_mean")
        if means is not None and means.notna().any():
            i = means.idxmin()
            shown.loc[i, col] = f"\\textbf{{{shown.loc[i, col]}}}"
    def tex(v):
        text = str(v)
        if not text.startswith("\\textbf"):
            text = text.replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")
        else:
            text = "\\textbf{" + text[8:-1].replace("_", r"\_") + "}"
        for k, r in TEX_REPLACE.items():
            text = text.replace(k, r)
        return text
    shown = shown.map(tex)
    shown.columns = [tex(c) for c in shown.columns]
    body = shown.style.hide(axis="index").to_latex(hrules=True, column_format="l" * len(shown.columns),
                                                   caption=tex(caption), label=label, position="htbp",
                                                   position_float="centering")
    return body


def html_page(sections: list[tuple[str, str, pd.DataFrame]], images: list[Path], notes: list[str]) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>ffbench report</title><style>",
             "body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:13px}"
             "th,td{border-bottom:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}"
             "caption{caption-side:top;text-align:left;color:#555;padding:4px 0}img{max-width:100%;margin:1em 0}",
             "</style></head><body><h1>ffbench report</h1>"]
    for title, caption, df in sections:
        parts.append(f"<h2>{html.escape(title)}</h2><p>{html.escape(caption)}</p>")
        parts.append(_display(df).to_html(index=False) if not df.empty else "<p><i>no rows</i></p>")
    for img in images:
        data = base64.b64encode(img.read_bytes()).decode()
        parts.append(f"<h3>{html.escape(img.stem.replace('_', ' '))}</h3>"
                     f"<img alt='{img.stem}' src='data:image/png;base64,{data}'>")
    parts += ["<h2>Reproducibility</h2><pre>", html.escape("\n".join(notes)), "</pre></body></html>"]
    return "\n".join(parts)


def fmt_p(p: float) -> str:
    return "" if p is None or (isinstance(p, float) and math.isnan(p)) else f"{p:.2g}"
