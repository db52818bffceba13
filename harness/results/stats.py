"""Statistics over seeds that do not overclaim: t-intervals, paired or Welch t-tests against the best with
Holm's correction, and the Friedman test with the Nemenyi critical difference (Demsar 2006, JMLR 7:1-30).

The distributions come from scipy.special (Student's t, chi-squared, the normal), not scipy.stats, whose import
alone takes a second: `harness leaderboard` answers in about one. The tests check every statistic against its
scipy.stats counterpart."""

from __future__ import annotations

import functools
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

ALPHA = 0.05
BEST = "best"
WORSE = "significantly worse than the best"
UNDISTINGUISHED = "not distinguishable from the best"
TOO_FEW = "too few seeds"
VERDICTS = (BEST, WORSE, UNDISTINGUISHED, TOO_FEW)
PAIRED, WELCH = "paired_t", "welch_t"


def finite(values: Sequence[float | None]) -> np.ndarray:
    """The values that are numbers (None and NaN dropped), as floats."""
    a = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    return a[np.isfinite(a)]


def _constant(a: np.ndarray) -> bool:
    return float(np.ptp(a)) <= 1e-12 * max(1.0, float(np.max(np.abs(a))))


def mean_confidence_interval(values: Sequence[float | None], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the t-distribution confidence interval over the finite values; half-width NaN
    below two values (no interval from one seed)."""
    means, halves = mean_confidence_intervals(finite(values)[None, :], confidence)
    return float(means[0]), float(halves[0])


def mean_confidence_intervals(rows: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """`mean_confidence_interval` of every row of a matrix at once (NaN and infinities are missing values), the
    same numbers as row by row: rows with as many values are reduced together, so thousands of leaderboard cells
    take a few array operations."""
    rows = np.asarray(rows, dtype=float).reshape(len(rows), -1)
    ok = np.isfinite(rows)
    packed = np.take_along_axis(rows, np.argsort(~ok, axis=1, kind="stable"), axis=1)  # each row's values first
    counts = ok.sum(axis=1)
    means, halves = np.full(len(rows), np.nan), np.full(len(rows), np.nan)
    for n in np.unique(counts[counts > 0]).tolist():
        at = counts == n
        values = np.ascontiguousarray(packed[at, :n])
        means[at] = values.mean(axis=1)
        if n > 1:
            halves[at] = np.std(values, axis=1, ddof=1) / math.sqrt(n) * t_quantile((1 + confidence) / 2, n - 1)
    return means, halves


@functools.lru_cache(maxsize=256)
def t_quantile(q: float, df: int) -> float:
    """Student's t quantile (scipy's t.ppf, which is `special.stdtrit`), computed once per (q, df): a leaderboard
    of thousands of cells asks for the same few."""
    from scipy import special

    return float(special.stdtrit(df, q))


def _sample_var(a: np.ndarray) -> float:
    """The unbiased variance as scipy's t-tests compute it: the mean squared deviation times n / (n - 1)."""
    n = float(len(a))
    return float(np.mean((a - np.mean(a)) ** 2) * (n / (n - 1)))


def _two_sided_t(t: float, df: float) -> float:
    """The two-sided p-value of a t statistic (scipy's t-tests: twice `special.stdtr` of -|t|)."""
    from scipy import special

    return float(2 * special.stdtr(df, -abs(t)))


def welch_p_value(a: Sequence[float | None], b: Sequence[float | None]) -> float:
    """Two-sided Welch t-test on the finite values, computed as scipy's ttest_ind(equal_var=False) computes it but
    with scipy.special alone (scipy.stats takes a second to import). NaN below two values a side; two constant
    samples give 1.0 when equal, else 0.0."""
    a, b = finite(a), finite(b)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if _constant(a) and _constant(b):
        return 1.0 if math.isclose(a[0], b[0], rel_tol=1e-12, abs_tol=1e-12) else 0.0
    vn1, vn2 = np.float64(_sample_var(a) / len(a)), np.float64(_sample_var(b) / len(b))
    with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
        df = (vn1 + vn2) ** 2 / (vn1 ** 2 / (len(a) - 1) + vn2 ** 2 / (len(b) - 1))
    return _two_sided_t(float(np.mean(a) - np.mean(b)) / math.sqrt(vn1 + vn2), 1.0 if np.isnan(df) else float(df))


def paired_p_value(a: Sequence[float | None], b: Sequence[float | None]) -> float:
    """Two-sided paired t-test over the positions finite on both sides, computed as scipy's ttest_rel computes it.
    NaN below two pairs; constant differences give 1.0 when they are zero, else 0.0."""
    x = np.asarray([np.nan if v is None else v for v in a], dtype=float)
    y = np.asarray([np.nan if v is None else v for v in b], dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired samples of different lengths: {len(x)} and {len(y)}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 2:
        return float("nan")
    d = x - y
    if _constant(d):
        return 1.0 if math.isclose(d[0], 0.0, abs_tol=1e-12) else 0.0
    return _two_sided_t(float(np.mean(d)) / math.sqrt(_sample_var(d) / len(d)), len(d) - 1)


@dataclass(frozen=True)
class Comparison:
    """One entry against the best of its target: the test used (`paired_t`, `welch_t`, or '' when there
    was too little data) and its two-sided p-value (NaN when not computed)."""

    test: str
    p_value: float


def compare(a: Mapping[Hashable, float | None], b: Mapping[Hashable, float | None], paired: bool) -> Comparison:
    """Two samples keyed by seed. Paired t-test over the seeds finite on both sides when `paired` and there
    are at least two; otherwise Welch over each side's finite values; no test below two values a side."""
    if len(finite(list(a.values()))) < 2 or len(finite(list(b.values()))) < 2:
        return Comparison("", float("nan"))
    common = [s for s in a if s in b]
    if paired:
        p = paired_p_value([a[s] for s in common], [b[s] for s in common])
        if not math.isnan(p):
            return Comparison(PAIRED, p)
    return Comparison(WELCH, welch_p_value(list(a.values()), list(b.values())))


def seeds_pair(a: Mapping[Hashable, tuple], b: Mapping[Hashable, tuple]) -> bool:
    """Whether two entries' final runs pair seed by seed: the same seeds, each with the same data seeds
    (e.g. split and few-shot subset) on both sides, and the data differing between seeds. When only the
    initialisation varies, the runs of one seed share nothing and an unpaired test is the honest one."""
    return dict(a) == dict(b) and len(set(a.values())) >= 2


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given); NaN stays NaN and is not counted among
    the hypotheses."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), np.nan)
    idx = [i for i in np.argsort(p, kind="stable") if not math.isnan(p[i])]
    running = 0.0
    for j, i in enumerate(idx):
        running = max(running, min(1.0, (len(idx) - j) * p[i]))
        out[i] = running
    return out.tolist()


def verdict(is_best: bool, comparison: Comparison, p_holm: float, alpha: float = ALPHA) -> str:
    """What a comparison with the best supports, named for what it is."""
    if is_best:
        return BEST
    if not comparison.test:
        return TOO_FEW
    return WORSE if p_holm < alpha else UNDISTINGUISHED


@functools.lru_cache(maxsize=64)
def nemenyi_q(k: int, alpha: float = ALPHA) -> float:
    """Critical value q_alpha of the Nemenyi test for k entries: the studentized range quantile (infinite
    degrees of freedom) over sqrt(2), as tabled by Demsar 2006 (k=2: 1.960, k=3: 2.343, k=10: 3.164). The
    range of k standard normals has CDF k * integral phi(z) (Phi(z + q) - Phi(z))^(k-1) dz, integrated on a
    fine grid and inverted by bisection (scipy's studentized_range.ppf to 1e-9)."""
    from scipy import special

    z = np.linspace(-12.0, 12.0, 24001)
    phi = np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    lo, hi = 0.0, 20.0
    while hi - lo > 1e-12:
        q = (lo + hi) / 2
        below = np.trapezoid(k * phi * (special.ndtr(z + q) - special.ndtr(z)) ** (k - 1), z) < 1 - alpha
        lo, hi = (q, hi) if below else (lo, q)
    return (lo + hi) / 2 / math.sqrt(2)


def critical_difference(k: int, n: int, alpha: float = ALPHA) -> float:
    """Nemenyi critical difference of average ranks for k entries over n datasets: q_alpha sqrt(k(k+1)/(6n))."""
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6 * n))


def average_ranks(scores: pd.DataFrame) -> pd.Series:
    """Mean over columns (datasets) of each row's (entry's) rank in that column: 1 = highest score, ties
    averaged, NaN cells skipped."""
    return scores.rank(axis=0, ascending=False, method="average").mean(axis=1)


def cd_groups(ranks: Mapping[str, float], cd: float) -> list[list[str]]:
    """Maximal runs of entries (best rank first) whose average ranks differ by less than `cd`: the groups a
    critical-difference diagram joins with a bar. Entries alone are left out."""
    order = sorted(ranks, key=lambda e: ranks[e])
    runs = []
    for i, e in enumerate(order):
        j = i
        while j + 1 < len(order) and ranks[order[j + 1]] - ranks[e] < cd:
            j += 1
        if j > i and (not runs or j > runs[-1][1]):
            runs.append((i, j))
    return [order[i:j + 1] for i, j in runs]


@dataclass(frozen=True)
class Friedman:
    """The Friedman test over the entries present on every dataset, with the Nemenyi critical difference.
    `reason` says why it was not computed (then the numbers are NaN)."""

    entries: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    ranks: dict[str, float] = field(default_factory=dict)
    chi2: float = float("nan")
    p_value: float = float("nan")
    cd: float = float("nan")
    alpha: float = ALPHA
    groups: list[list[str]] = field(default_factory=list)
    reason: str = ""


def friedman_chi2(values: np.ndarray) -> tuple[float, float]:
    """Friedman's chi-squared with the tie correction, and its p-value, for a table of k entries (rows) by n
    blocks (columns), as scipy's friedmanchisquare(*rows) computes them."""
    from scipy import special

    k, n = values.shape
    ranks = pd.DataFrame(values).rank(axis=0, method="average").to_numpy()
    ties = sum(float((c ** 3 - c).sum()) for c in (np.unique(col, return_counts=True)[1] for col in values.T))
    correction = 1 - ties / (k * (k * k - 1) * n)
    chi2 = (12 / (k * n * (k + 1)) * float((ranks.sum(axis=1) ** 2).sum()) - 3 * n * (k + 1)) / correction
    return chi2, float(special.chdtrc(k - 1, chi2))


def friedman(scores: pd.DataFrame, alpha: float = ALPHA) -> Friedman:
    """Friedman test (scipy's friedmanchisquare) of a scores table (rows: entries, columns: datasets, higher
    is better) over the entries with a score on every dataset; needs 3 datasets and 3 such entries."""
    datasets = [str(c) for c in scores.columns]
    if len(datasets) < 3:
        return Friedman(datasets=datasets, alpha=alpha,
                        reason=f"needs 3 or more datasets; these results have {len(datasets)}")
    complete = scores.dropna(axis=0, how="any")
    entries = [str(e) for e in complete.index]
    if len(entries) < 3:
        return Friedman(entries=entries, datasets=datasets, alpha=alpha,
                        reason=f"needs 3 or more entries with a score on every dataset; these results have "
                               f"{len(entries)}")
    values = complete.to_numpy(dtype=float)
    if all(_constant(column) for column in values.T):  # every dataset ties every entry: nothing to rank
        chi2, p = 0.0, 1.0
    else:
        chi2, p = friedman_chi2(values)
    ranks = {str(e): float(r) for e, r in average_ranks(complete).items()}
    cd = critical_difference(len(entries), len(datasets), alpha)
    return Friedman(entries=entries, datasets=datasets, ranks=ranks, chi2=chi2, p_value=p, cd=cd, alpha=alpha,
                    groups=cd_groups(ranks, cd))
