"""Leaderboard: final-run records -> one row per (dataset, method, backbone) cell with means, 95% intervals,
ranks, ties, cost and chosen hyperparameters; exported as Markdown, CSV, JSON and Parquet."""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from harness.core.errors import ConfigError
from harness.core.files import atomic_write
from harness.results import transferability
from harness.results.records import CellRecord, EstimateRecord, FinalRecord, Record, TrialRecord, target_label
from harness.results.stats import mean_confidence_interval, welch_p_value
from harness.results.store import RunStore

CELL_KEYS = ["dataset", "samples_per_class", "method", "backbone"]
TEST_METRICS = ["accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "nll", "ece"]


@dataclass
class Records:
    """What the leaderboard reads from one or more run folders, duplicates dropped."""

    finals: list[FinalRecord] = field(default_factory=list)
    cells: list[CellRecord] = field(default_factory=list)
    trials: list[TrialRecord] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    estimates: list[EstimateRecord] = field(default_factory=list)


def load_records(run_dirs: Iterable[Path | str]) -> Records:
    """Final, cell and trial records of several runs. A cell found in several runs (same configuration
    hash) is kept once, with its finals and trials, from the first run that finished it."""
    per_run: list[list[Record]] = []
    runs = []
    for d in run_dirs:
        store = RunStore(d)
        if not store.dir.is_dir():
            raise ConfigError(f"{d}: no such run folder")
        if not store.records_path.exists():
            raise ConfigError(f"{d}: no records.jsonl; is it a run folder written by `harness run`?")
        records = store.records()
        if not records:
            raise ConfigError(f"{d}: records.jsonl holds no records yet (the run has not finished a trial)")
        runs.append(str(d))
        per_run.append(records)
    cells: dict[str, CellRecord] = {}
    owner: dict[str, int] = {}
    for i, records in enumerate(per_run):
        for r in records:
            if isinstance(r, CellRecord) and r.cell_id not in cells:
                cells[r.cell_id], owner[r.cell_id] = r, i
    mine = [r for i, records in enumerate(per_run) for r in records
            if isinstance(r, (FinalRecord, TrialRecord)) and owner.get(r.cell_id) == i]
    finals = {(r.cell_id, r.seed): r for r in mine if isinstance(r, FinalRecord)}
    trials = {(r.cell_id, r.trial_id): r for r in mine if isinstance(r, TrialRecord)}
    estimates: dict[str, EstimateRecord] = {}
    for r in (r for records in per_run for r in records if isinstance(r, EstimateRecord)):
        estimates.setdefault(r.job, r)
    return Records(list(finals.values()), list(cells.values()), list(trials.values()), runs, list(estimates.values()))


def load(run_dirs: Iterable[Path | str]) -> pd.DataFrame:
    """The leaderboard of one or more run folders as a DataFrame (one row per cell); columns in the README."""
    return frame(load_records(run_dirs))


def frame(records: Records) -> pd.DataFrame:
    """One row per finished cell: test means and intervals over seeds, cost, search cost, rank and ties."""
    finals, cells = records.finals, records.cells
    by_cell: dict[str, list[FinalRecord]] = {}
    for r in finals:
        by_cell.setdefault(r.cell_id, []).append(r)
    rows = []
    for c in cells:
        runs = [r for r in by_cell.get(c.cell_id, []) if r.status == "ok" and r.test]
        row = {k: getattr(c, k) for k in CELL_KEYS}
        row.update(weights=c.weights, seeds=len(runs), status=c.status)
        headline = next((r.data["metric"] for r in runs if (r.data or {}).get("metric")), "accuracy")
        for m in TEST_METRICS:
            vals = [v for v in (r.test.get(m) for r in runs) if v is not None]
            mean, half = mean_confidence_interval(vals)
            row[f"test_{m}"] = mean
            if m == "accuracy":
                row["test_accuracy_ci95"] = half
            if m == headline:
                row.update(metric=m, test_score=mean, test_score_ci95=half, _scores=vals)
        cost = [r.cost for r in runs]
        row.update(
            val_best=c.best_value,
            params_total=cost[0]["params_total"] if cost else None,
            params_trainable=cost[0]["params_trainable"] if cost else None,
            train_seconds=float(np.mean([x["train_seconds"] for x in cost])) if cost else None,
            images_per_s=float(np.mean([x["train_images_per_s"] for x in cost])) if cost else None,
            peak_memory_mb=float(np.max([x["peak_memory_mb"] for x in cost])) if cost else None,
            search_trials=c.trials, search_stopped_early=c.trials_stopped_early,
            search_errored=c.trials_errored, search_diverged=c.trials_diverged,
            search_trial_seconds=c.trial_seconds,
            search_gpu_hours=c.trial_seconds * c.gpus_per_trial / 3600,
            best_config=json.dumps(_searched(c)), best_trial_id=c.best_trial_id, cell_id=c.cell_id,
            run_id=c.run_id,
        )
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        raise ConfigError("no finished cells in these run folders")
    return _rank(df)


def _searched(cell: CellRecord) -> dict:
    space = cell.space or {}
    best = cell.best_config or {}
    return {k: float(f"{best[k]:.4g}") if isinstance(best[k], float) else best[k]
            for k, v in space.items() if isinstance(v, dict) and k in best}


def _rank(df: pd.DataFrame) -> pd.DataFrame:
    """Rank within each dataset by the mean headline test score; Welch p > 0.05 against the best marks a tie."""
    df = df.copy()
    df["rank"] = df.groupby(["dataset", "samples_per_class"])["test_score"].rank(ascending=False, method="min")
    tied = []
    for _, row in df.iterrows():
        group = df[(df.dataset == row.dataset) & (df.samples_per_class == row.samples_per_class)]
        best = group.loc[group.test_score.idxmax()] if group.test_score.notna().any() else None
        if best is None or math.isnan(row.test_score):
            tied.append(False)
        elif row.cell_id == best.cell_id:
            tied.append(True)
        else:
            p = welch_p_value(row["_scores"], best["_scores"])
            tied.append(bool(not math.isnan(p) and p > 0.05))
    df["tied_with_best"] = tied
    df = df.drop(columns=["_scores"])
    return df.sort_values(["dataset", "samples_per_class", "rank", "method"]).reset_index(drop=True)


def summary_matrix(df: pd.DataFrame) -> pd.DataFrame:
    """Methods x datasets: mean headline test score per dataset, then average rank and average score
    across datasets (as VTAB summarises)."""
    d = df.assign(target=[target_label(a, b) for a, b in zip(df.dataset, df.samples_per_class)],
                  entry=df.method + "/" + df.backbone)
    m = d.pivot_table(index="entry", columns="target", values="test_score", aggfunc="mean", sort=False)
    m["avg_rank"] = d.groupby("entry")["rank"].mean()
    m["avg_score"] = d.groupby("entry")["test_score"].mean()
    return m.sort_values(["avg_rank", "avg_score"], ascending=[True, False])


def _display(df: pd.DataFrame) -> pd.DataFrame:
    show = df.copy()
    show["test_score"] = [f"{m:.4f} ± {h:.4f}" if not math.isnan(h) else f"{m:.4f}"
                          for m, h in zip(show.test_score, show.test_score_ci95)]
    show["tied_with_best"] = show.tied_with_best.map({True: "=", False: ""})
    show["rank"] = show["rank"].map(lambda r: "" if pd.isna(r) else str(int(r)))
    cols = ["dataset", "samples_per_class", "method", "backbone", "rank", "tied_with_best", "metric", "test_score",
            "test_accuracy", "test_macro_f1", "test_ece", "seeds", "params_trainable", "train_seconds",
            "search_trials", "search_trial_seconds", "best_config"]
    return show[cols]


def to_markdown(df: pd.DataFrame) -> str:
    return (_display(df).to_markdown(index=False, floatfmt=".4g") + "\n\n## Summary (mean test accuracy)\n\n"
            + summary_matrix(df).to_markdown(floatfmt=".4f") + "\n")


def to_text(df: pd.DataFrame) -> str:
    return _display(df).to_string(index=False) + "\n\n" + summary_matrix(df).round(4).to_string()


FORMATS = ("text", "md", "csv", "json", "parquet", "html")
BINARY_FORMATS = ("parquet",)
HIGHER_IS_BETTER = ("test_score", "test_accuracy", "test_balanced_accuracy", "test_macro_f1", "test_roc_auc", "val_best",
                    "images_per_s", "seeds", "tied_with_best")


def select(df: pd.DataFrame, datasets: list[str] | None = None, methods: list[str] | None = None,
           sort: str | None = None, ascending: bool | None = None) -> pd.DataFrame:
    """Rows of some datasets and methods (ranks stay those of the full table), sorted by a column.

    Without `ascending`, a column where higher is better sorts best first."""
    for col, wanted in (("dataset", datasets), ("method", methods)):
        if wanted:
            have = list(dict.fromkeys(df[col]))
            for w in wanted:
                if w not in have:
                    raise ConfigError(f"--{col}={w}: not in these runs; choose from: {', '.join(have)}")
            df = df[df[col].isin(wanted)]
    if sort:
        if sort not in df.columns:
            raise ConfigError(f"--sort={sort}: no such column; choose from: {', '.join(df.columns)}")
        if ascending is None:
            ascending = sort not in HIGHER_IS_BETTER
        df = df.sort_values(sort, ascending=ascending, kind="stable", na_position="last")
    return df.reset_index(drop=True)


def render(df: pd.DataFrame, fmt: str, records: Records | None = None) -> bytes:
    """The leaderboard in one format: text (terminal), md, csv, json, parquet or html (self-contained report)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format={fmt}: choose from: {', '.join(FORMATS)}")
    if fmt == "parquet":
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        return buf.getvalue()
    if fmt == "html":
        from harness.results import report

        records = records or Records()
        return report.render(df, summary_matrix(df), records.trials, records.runs, _display,
                             records.estimates).encode()
    text = {"text": lambda: to_text(df) + "\n", "md": lambda: to_markdown(df),
            "csv": lambda: df.to_csv(index=False),
            "json": lambda: df.to_json(orient="records", indent=2) + "\n"}[fmt]()
    if fmt in ("text", "md") and records is not None:
        text += transferability.section(df, records.estimates, fmt)
    return text.encode()


def write(df: pd.DataFrame, fmt: str, path: Path, records: Records | None = None) -> None:
    atomic_write(Path(path), render(df, fmt, records))


def format_for(path: Path) -> str:
    """The format a file name asks for (leaderboard.md -> md, report.html -> html)."""
    ext = Path(path).suffix.lstrip(".").lower()
    ext = {"markdown": "md", "htm": "html", "txt": "text", "pq": "parquet"}.get(ext, ext)
    if ext not in FORMATS:
        raise ConfigError(f"--out={path}: cannot tell the format from '.{ext}'; give --format "
                          f"({', '.join(FORMATS)})")
    return ext


def write_run_outputs(run_dir: Path | str) -> str:
    """leaderboard.md / .csv / .json and report.html in the run folder; returns the terminal table."""
    run_dir = Path(run_dir)
    records = load_records([run_dir])
    df = frame(records)
    for fmt in ("md", "csv", "json"):
        write(df, fmt, run_dir / f"leaderboard.{fmt}", records)
    write(df, "html", run_dir / "report.html", records)
    transferability.write_outputs(run_dir, df, records.estimates)
    return to_text(df) + transferability.section(df, records.estimates, "text")
