"""The statistics of a report, as small pure functions (checked by hand in tests/test_report.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1; NaN for n < 2) and n, ignoring NaNs."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if v.size == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan, int(v.size)


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float, int]:
    """(mean, low, high, n): the Student-t confidence interval of the mean (NaN bounds for n < 2)."""
    mean, sd, n = mean_std(values)
    if n < 2:
        return mean, math.nan, math.nan, n
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half, n


def first_reaching(epochs: Sequence[int], errors: Sequence[float], seconds: Sequence[float], target: float):
    """(epochs run, train seconds) at the first evaluation with error <= target, or None if never."""
    for e, err, s in sorted(zip(epochs, errors, seconds)):
        if err <= target:
            return e + 1, s
    return None


def anova_p(groups: Sequence[Sequence[float]]) -> float:
    """One-way ANOVA p-value that all groups share one mean (NaN if it cannot be computed)."""
    groups = [np.asarray(g, float) for g in groups if len(g) >= 2]
    if len(groups) < 2:
        return math.nan
    if all(np.ptp(g) == 0 for g in groups):  # no seed noise at all: any difference is significant
        return 0.0 if len({float(g[0]) for g in groups}) > 1 else 1.0
    return float(stats.f_oneway(*groups).pvalue)


def max_concurrency(starts: Sequence, ends: Sequence) -> int:
    """The most intervals [start, end) open at one instant (an end at t closes before a start at t)."""
    events = sorted([(t, 1) for t in starts] + [(t, -1) for t in ends], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak
