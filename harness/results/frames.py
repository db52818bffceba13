"""Records as pandas frames: one row per search trial or per final run, with the records' own field names (nested
objects one level deep as `config.lr`, `test.accuracy`, `cost.train_seconds`), for notebooks and the report."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from harness.results.records import FinalRecord, TrialRecord, entry_label, target_label

FLAT = ("config", "val", "test", "cost", "data", "model")  # nested objects spread into `name.key` columns


def records_frame(records: Sequence[TrialRecord | FinalRecord]) -> pd.DataFrame:
    """One row per record: its JSON fields as in records.jsonl, objects spread one level (`config.lr`), lists
    (history, per-class accuracy) kept as they are; `entry` and `target` name the cell as the leaderboard does."""
    rows = []
    for r in records:
        data = r.to_json()
        row = {k: v for k, v in data.items() if k not in FLAT}
        for k in FLAT:
            for key, value in (data.get(k) or {}).items():
                row[f"{k}.{key}"] = value
        row["entry"] = entry_label(r.method, r.backbone, r.weights)
        row["target"] = target_label(r.dataset, r.samples_per_class)
        rows.append(row)
    return pd.DataFrame(rows)


def trial_frame(trials: Sequence[TrialRecord]) -> pd.DataFrame:
    """Every search trial: cell, trial id, status, the searched metric's `value`, `config.*`, `val.*`, `cost.*`."""
    return records_frame(trials)


def final_frame(finals: Sequence[FinalRecord]) -> pd.DataFrame:
    """Every seeded final run: cell, seed, status, `config.*`, `val.*`, `test.*`, `cost.*`, `data.*`."""
    return records_frame(finals)
