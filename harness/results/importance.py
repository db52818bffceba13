"""Which hyperparameter mattered: per searched cell, the Spearman rank correlation of each searched numeric
hyperparameter with the searched metric over the cell's trials."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from harness.results.records import CellRecord, TrialRecord, by_cell, entry_label

MIN_TRIALS = 3  # below this a rank correlation says nothing


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho as scipy.stats.spearmanr computes it: Pearson's r of pandas' average ranks (ties sharing the
    mean of their places), without scipy.stats (a second of the report's start; pandas' own `corr(method=
    "spearman")` imports it); NaN below MIN_TRIALS points or when either side is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < MIN_TRIALS or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(pd.Series(x).rank().corr(pd.Series(y).rank()))


def importance(cells: Sequence[CellRecord], trials: Sequence[TrialRecord]) -> pd.DataFrame:
    """One row per searched cell (sorted by method): dataset, few-shot size, method, backbone, entry, metric,
    `trials` (those with a finite score), then one column per numeric hyperparameter searched anywhere, holding
    its rho with the metric (NaN where the cell did not search it, or it says nothing). Categorical
    hyperparameters are left out; trials stopped early count with the score they stopped at."""
    rows = []
    trials_of = by_cell(trials)
    for cell in cells:
        keys = [k for k, v in (cell.space or {}).items() if isinstance(v, dict)]
        ts = [t for t in trials_of.get(cell.cell_id, []) if t.value is not None and math.isfinite(t.value)]
        if not keys or not ts:
            continue
        row: dict[str, object] = {"dataset": cell.dataset, "samples_per_class": cell.samples_per_class,
                                  "method": cell.method, "backbone": cell.backbone,
                                  "entry": entry_label(cell.method, cell.backbone, cell.weights),
                                  "metric": cell.metric or ts[0].metric, "trials": len(ts)}
        for k in keys:
            values = [t.config.get(k) for t in ts]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                row[k] = spearman(values, [t.value for t in ts])
        rows.append(row)
    df = pd.DataFrame(rows)
    return df.sort_values(["method", "dataset", "samples_per_class"], kind="stable").reset_index(drop=True) \
        if not df.empty else df
