"""How well estimates ordered the candidates that were then trained for real: weighted Kendall tau (Vigna,
2015, hyperbolic weights, as TLlib's model-selection table reports) and Spearman rho, each from scipy."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _pairs(estimates: Sequence[float], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    e, s = np.asarray(estimates, dtype=float), np.asarray(scores, dtype=float)
    keep = np.isfinite(e) & np.isfinite(s)
    return e[keep], s[keep]


def weighted_tau(estimates: Sequence[float], scores: Sequence[float]) -> float:
    """scipy.stats.weightedtau: Kendall's tau where swaps among the top candidates (by either ranking) weigh
    more; NaN with fewer than two candidates or when either side is constant."""
    from scipy import stats

    e, s = _pairs(estimates, scores)
    if len(e) < 2 or np.ptp(e) == 0 or np.ptp(s) == 0:
        return math.nan
    return float(stats.weightedtau(e, s).statistic)


def spearman_rho(estimates: Sequence[float], scores: Sequence[float]) -> float:
    """Spearman's rank correlation; NaN with fewer than two candidates or when either side is constant."""
    from scipy import stats

    e, s = _pairs(estimates, scores)
    if len(e) < 2 or np.ptp(e) == 0 or np.ptp(s) == 0:
        return math.nan
    return float(stats.spearmanr(e, s).statistic)
