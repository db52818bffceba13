"""Statistics over seeds: mean with a t-interval, and Welch's test between two methods."""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
from scipy import stats


def mean_confidence_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the t-distribution confidence interval; half-width NaN for one value."""
    a = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(a) == 0:
        return float("nan"), float("nan")
    if len(a) == 1:
        return float(a[0]), float("nan")
    sem = stats.sem(a)
    half = float(sem * stats.t.ppf((1 + confidence) / 2, len(a) - 1))
    return float(a.mean()), half


def welch_p_value(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Welch t-test p-value; 1.0 when both samples are constant and equal, NaN when undefined."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return 1.0 if a[0] == b[0] else 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)
