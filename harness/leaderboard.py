"""Leaderboard: final-run records -> one row per (dataset, method, backbone) cell with means, 95% intervals,
ranks, ties, cost and chosen hyperparameters; exported as Markdown, CSV, JSON and Parquet."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from harness.errors import ConfigError
from harness.metrics import mean_confidence_interval, welch_p_value
from harness.results import RunStore, atomic_write

CELL_KEYS = ["dataset", "samples_per_class", "method", "backbone"]
TEST_METRICS = ["accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "nll", "ece"]


def load_records(run_dirs: Iterable[Path | str]) -> tuple[list[dict], list[dict]]:
    """Final and cell records of several runs; a cell found in two runs is kept once (by its hash)."""
    finals: dict[tuple[str, int], dict] = {}
    cells: dict[str, dict] = {}
    for d in run_dirs:
        store = RunStore(d)
        if not store.records_path.exists():
            raise ConfigError(f"{d}: no records.jsonl; is it a run folder written by `harness run`?")
        records = store.records()
        if not records:
            raise ConfigError(f"{d}: records.jsonl holds no records yet")
        for r in records:
            if r.get("kind") == "final":
                finals.setdefault((r["cell_id"], r["seed"]), r)
            elif r.get("kind") == "cell":
                cells.setdefault(r["cell_id"], r)
    return list(finals.values()), list(cells.values())


def load(run_dirs: Iterable[Path | str]) -> pd.DataFrame:
    """The leaderboard of one or more run folders as a DataFrame (one row per cell)."""
    finals, cells = load_records(run_dirs)
    by_cell: dict[str, list[dict]] = {}
    for r in finals:
        by_cell.setdefault(r["cell_id"], []).append(r)
    rows = []
    for c in cells:
        runs = [r for r in by_cell.get(c["cell_id"], []) if r.get("status") == "ok" and r.get("test")]
        row = {k: c[k] for k in CELL_KEYS}
        row.update(weights=c["weights"], seeds=len(runs), status=c["status"])
        for m in TEST_METRICS:
            vals = [r["test"].get(m) for r in runs]
            vals = [v for v in vals if v is not None]
            mean, half = mean_confidence_interval(vals)
            row[f"test_{m}"] = mean
            if m == "accuracy":
                row["test_accuracy_ci95"] = half
                row["_accs"] = vals
        cost = [r["cost"] for r in runs]
        row.update(
            val_best=c.get("best_value"),
            params_total=cost[0]["params_total"] if cost else None,
            params_trainable=cost[0]["params_trainable"] if cost else None,
            train_seconds=float(np.mean([x["train_seconds"] for x in cost])) if cost else None,
            images_per_s=float(np.mean([x["train_images_per_s"] for x in cost])) if cost else None,
            peak_memory_mb=float(np.max([x["peak_memory_mb"] for x in cost])) if cost else None,
            search_trials=c["trials"], search_stopped_early=c["trials_stopped_early"],
            search_errored=c["trials_errored"], search_diverged=c["trials_diverged"],
            search_trial_seconds=c["trial_seconds"],
            search_gpu_hours=c["trial_seconds"] * c.get("gpus_per_trial", 0.0) / 3600,
            best_config=json.dumps(_searched(c)), cell_id=c["cell_id"], run_id=c.get("run_id"),
        )
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        raise ConfigError("no finished cells in these run folders")
    return _rank(df)


def _searched(cell: dict) -> dict:
    space = cell.get("space") or {}
    best = cell.get("best_config") or {}
    return {k: float(f"{best[k]:.4g}") if isinstance(best[k], float) else best[k]
            for k, v in space.items() if isinstance(v, dict) and k in best}


def _rank(df: pd.DataFrame) -> pd.DataFrame:
    """Rank within each dataset by mean test accuracy; Welch p > 0.05 against the best marks a tie."""
    df = df.copy()
    df["rank"] = df.groupby(["dataset", "samples_per_class"])["test_accuracy"].rank(ascending=False, method="min")
    tied = []
    for _, row in df.iterrows():
        group = df[(df.dataset == row.dataset) & (df.samples_per_class == row.samples_per_class)]
        best = group.loc[group.test_accuracy.idxmax()] if group.test_accuracy.notna().any() else None
        if best is None or math.isnan(row.test_accuracy):
            tied.append(False)
        elif row.cell_id == best.cell_id:
            tied.append(True)
        else:
            p = welch_p_value(row["_accs"], best["_accs"])
            tied.append(bool(not math.isnan(p) and p > 0.05))
    df["tied_with_best"] = tied
    df = df.drop(columns=["_accs"])
    return df.sort_values(["dataset", "samples_per_class", "rank", "method"]).reset_index(drop=True)


def summary_matrix(df: pd.DataFrame) -> pd.DataFrame:
    """Methods x datasets: mean test accuracy per dataset, then average rank and average accuracy."""
    d = df.assign(target=[f"{a}@{b}" if b else a for a, b in zip(df.dataset, df.samples_per_class)],
                  entry=df.method + "/" + df.backbone)
    m = d.pivot_table(index="entry", columns="target", values="test_accuracy", aggfunc="mean")
    m["avg_rank"] = d.groupby("entry")["rank"].mean()
    m["avg_accuracy"] = d.groupby("entry")["test_accuracy"].mean()
    return m.sort_values("avg_rank")


def _display(df: pd.DataFrame) -> pd.DataFrame:
    show = df.copy()
    show["test_accuracy"] = [f"{m:.4f} ± {h:.4f}" if not math.isnan(h) else f"{m:.4f}"
                             for m, h in zip(show.test_accuracy, show.test_accuracy_ci95)]
    show["tied_with_best"] = show.tied_with_best.map({True: "=", False: ""})
    cols = ["dataset", "samples_per_class", "method", "backbone", "rank", "tied_with_best", "test_accuracy",
            "test_macro_f1", "test_ece", "seeds", "params_trainable", "train_seconds", "search_trials",
            "best_config"]
    return show[cols]


def to_markdown(df: pd.DataFrame) -> str:
    return (_display(df).to_markdown(index=False, floatfmt=".4g") + "\n\n## Summary (mean test accuracy)\n\n"
            + summary_matrix(df).to_markdown(floatfmt=".4f") + "\n")


def to_text(df: pd.DataFrame) -> str:
    return _display(df).to_string(index=False) + "\n\n" + summary_matrix(df).round(4).to_string()


def write(df: pd.DataFrame, fmt: str, path: Path) -> None:
    writers = {
        "md": lambda: atomic_write(path, to_markdown(df).encode()),
        "csv": lambda: atomic_write(path, df.to_csv(index=False).encode()),
        "json": lambda: atomic_write(path, df.to_json(orient="records", indent=2).encode()),
        "parquet": lambda: _parquet(df, path),
    }
    if fmt not in writers:
        raise ConfigError(f"--format={fmt}: choose from: {', '.join(writers)}")
    writers[fmt]()


def _parquet(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_parquet(tmp, index=False)
    tmp.replace(path)


def write_run_outputs(run_dir: Path | str) -> str:
    """leaderboard.md / .csv / .json in the run folder; returns the terminal table."""
    run_dir = Path(run_dir)
    df = load([run_dir])
    for fmt in ("md", "csv", "json"):
        write(df, fmt, run_dir / f"leaderboard.{fmt}")
    return to_text(df)
