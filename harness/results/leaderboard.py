"""Leaderboard: final-run records -> one row per (dataset, method, backbone, weights) cell with means, 95% intervals,
ranks, a verdict against the best of its dataset, cost and chosen hyperparameters; a summary matrix with the
Friedman test; exported as text, Markdown, CSV, JSON, Parquet and HTML."""

from __future__ import annotations

import hashlib
import io
import json
import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.core.errors import ConfigError
from harness.core.files import atomic_write
from harness.core.federation import SETTING_KEYS, setting
from harness.results import frames, transferability
from harness.results.records import (CellRecord, EstimateRecord, FinalRecord, Record, TrialRecord, by_cell,
                                     entry_label, target_label)
from harness.results.stats import (ALPHA, BEST, TOO_FEW, Friedman, average_ranks, compare, friedman, holm,
                                   mean_confidence_interval, mean_confidence_intervals, seeds_pair, verdict)
from harness.results.store import RunStore

CELL_KEYS = ["dataset", "samples_per_class", "method", "backbone"]
TARGET_KEYS = ["dataset", "samples_per_class"]
TEST_METRICS = ["accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "nll", "ece"]
# federated cells only (a leaderboard without one has none of these columns)
SETTING_COLUMNS = ["setting", "clients", "alpha", "client_fraction"]
FEDERATED_COLUMNS = ["test_client_accuracy_mean", "test_client_accuracy_worst", "mb_per_round", "mb_total",
                     "rounds_to_90"]
DETECTION_METRICS = ["map50", "map50_area", "map"]  # columns a leaderboard gains when it holds detection cells


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
        with warnings.catch_warnings(record=True) as skipped:
            warnings.simplefilter("always")
            records = store.records()
        if not records and skipped:
            raise ConfigError(f"{d}: records.jsonl holds no readable record ({len(skipped)} skipped; the first: "
                              f"{skipped[0].message})")
        if not records:
            raise ConfigError(f"{d}: records.jsonl holds no records yet (the run has not finished a trial)")
        for w in skipped:
            warnings.warn(w.message, stacklevel=2)
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


LEVELS = ("cell", "trial", "final")


def load(run_dirs: Iterable[Path | str] | Path | str, level: str = "cell") -> pd.DataFrame:
    """One or more run folders as a DataFrame: `cell` the leaderboard (one row per cell, the columns of
    leaderboard.csv), `trial` one row per search trial, `final` one row per seeded final run (the fields of
    records.jsonl, nested objects as `config.lr`, `test.accuracy`)."""
    if level not in LEVELS:
        raise ConfigError(f"level={level!r}: choose from: {', '.join(LEVELS)}")
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    records = load_records(run_dirs)
    if level == "trial":
        return frames.trial_frame(records.trials)
    if level == "final":
        return frames.final_frame(records.finals)
    return frame(records)


def hardware(nodes: list[dict[str, Any] | None]) -> str:
    """What the cost figures were measured on, from the final runs' placements: `cpu x8` (threads) or
    `NVIDIA H100 80GB HBM3 x1` (GPUs each run saw), distinct ones joined; `not recorded` for runs written
    before records named their node."""
    seen = [f"{n['accelerator']} x{n['devices']}" for n in nodes if n and "accelerator" in n]
    return "; ".join(dict.fromkeys(seen)) or "not recorded"


def frame(records: Records) -> pd.DataFrame:
    """One row per finished cell: test means and intervals over seeds, cost, search cost, rank and verdict. The
    means and intervals of every cell are computed at once, one matrix (cells x final runs) per metric."""
    cells, finals_of = records.cells, by_cell(records.finals)
    runs_of = [sorted((r for r in finals_of.get(c.cell_id, []) if r.status == "ok" and r.test), key=lambda r: r.seed)
               for c in cells]
    headlines = [next((r.data["metric"] for r in runs if (r.data or {}).get("metric")), "accuracy") for runs in runs_of]
    extra = [m for m in DETECTION_METRICS if any(m in (r.test or {}) for r in records.finals)]
    score, score_ci95 = mean_confidence_intervals(per_run(runs_of, lambda i, r: r.test.get(headlines[i])))
    metrics = {m: mean_confidence_intervals(per_run(runs_of, lambda i, r, m=m: r.test.get(m)))
               for m in TEST_METRICS + extra}
    rows = []
    for i, (c, runs) in enumerate(zip(cells, runs_of)):
        row = {k: getattr(c, k) for k in CELL_KEYS}
        row.update(weights=c.weights, **networks(c, runs), seeds=len(runs), status=c.status)
        row.update(metric=headlines[i], test_score=score[i], test_score_ci95=score_ci95[i],
                   _scores={r.seed: _number(r.test.get(headlines[i])) for r in runs},
                   _data_seeds={r.seed: data_seeds(r, c.samples_per_class) for r in runs})
        for m, (mean, half) in metrics.items():
            row[f"test_{m}"] = mean[i]
            if m == "accuracy":
                row["test_accuracy_ci95"] = half[i]
        row.update(
            val_best=c.best_value, **cost_columns(runs), hardware=hardware([r.node for r in runs]),
            search_trials=c.trials, search_stopped_early=c.trials_stopped_early,
            search_errored=c.trials_errored, search_diverged=c.trials_diverged,
            search_trial_seconds=c.trial_seconds,
            search_gpu_hours=c.trial_seconds * c.gpus_per_trial / 3600,
            best_config=json.dumps(_searched(c)), best_trial_id=c.best_trial_id, cell_id=c.cell_id,
            run_id=c.run_id,
        )
        row.update(federated_columns(c, runs))
        row.update(untrained_columns(headlines[i], runs))
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        raise ConfigError("no finished cells in these run folders")
    if "setting" in df:
        df["setting"] = df["setting"].fillna("")
    df.insert(df.columns.get_loc("weights") + 1, "entry", entry_labels(df))
    return _rank(df)


def per_run(runs_of: list[list[FinalRecord]], value: Callable[[int, FinalRecord], Any]) -> np.ndarray:
    """A matrix with a row per cell and a column per final run: `value(cell index, run)`, NaN where it is None or
    the cell has fewer runs."""
    out = np.full((len(runs_of), max(map(len, runs_of), default=0)), np.nan)
    for i, runs in enumerate(runs_of):
        for j, r in enumerate(runs):
            v = value(i, r)
            if v is not None:
                out[i, j] = v
    return out


def cost_columns(runs: list[FinalRecord]) -> dict[str, float | None]:
    """Parameters, mean training seconds and throughput, and peak memory of a cell's final runs, each over the runs
    that recorded it (a run's loop may record no cost, or no throughput); None where none did."""
    costs = [r.cost or {} for r in runs]

    def recorded(key: str) -> list[float]:
        return [x[key] for x in costs if x.get(key) is not None]

    params_total, params_trainable = recorded("params_total"), recorded("params_trainable")
    seconds, speed, memory = recorded("train_seconds"), recorded("train_images_per_s"), recorded("peak_memory_mb")
    return {"params_total": params_total[0] if params_total else None,
            "params_trainable": params_trainable[0] if params_trainable else None,
            "train_seconds": float(np.mean(seconds)) if seconds else None,
            "images_per_s": float(np.mean(speed)) if speed else None,
            "peak_memory_mb": float(np.max(memory)) if memory else None}


def networks(cell: CellRecord, runs: list[FinalRecord]) -> dict[str, str | None]:
    """The network transferred from (`source_network`: the weights' network, a distillation teacher; None when
    nothing is transferred) and the network trained (`target_network`: the backbone, a student, feature_transfer's
    alexnet_style), as the final runs recorded them; records written before they did: the backbone for both."""
    model = next((r.model for r in runs if r.model and "target_network" in r.model), None)
    if model is not None:
        return {"source_network": model.get("source_network"), "target_network": model["target_network"]}
    source = next((r.model["source_backbone"] for r in runs if r.model and "source_backbone" in r.model), cell.backbone)
    return {"source_network": None if cell.weights == "none" else source, "target_network": cell.backbone}


def federated_columns(cell: CellRecord, runs: list[FinalRecord]) -> dict[str, object]:
    """A federated cell's setting (clients, alpha, client_fraction, and in words) and its federated figures, each
    the mean over the final seeds: per-client test accuracy (mean and worst client), MB sent per round and in
    all, rounds to 90% of the final validation score. Nothing for a centralised cell."""
    config = cell.best_config or (runs[0].config if runs else None) or {}
    if "clients" not in config:
        return {}
    out: dict[str, object] = {"setting": setting(config), **{k: config[k] for k in SETTING_KEYS}}
    for name in ("client_accuracy_mean", "client_accuracy_worst"):
        out[f"test_{name}"] = _mean([r.test.get(name) for r in runs])
    for name in ("mb_per_round", "mb_total", "rounds_to_90"):
        out[name] = _mean([(r.cost or {}).get(name) for r in runs])
    return out


def untrained_columns(headline: str, runs: list[FinalRecord]) -> dict[str, object]:
    """The zero-training score of a cell whose network is a predictor before any step (label_mapping: LEEP's
    expected empirical predictor): the mean over the final seeds of its headline test metric, untrained, and its
    95% interval. Nothing for a cell without one."""
    values = [r.test.get(f"untrained_{headline}") for r in runs]
    if not any(v is not None for v in values):
        return {}
    mean, half = mean_confidence_interval([v for v in values if v is not None])
    return {"test_untrained_score": mean, "test_untrained_score_ci95": half}


def _mean(values: list[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else float("nan")


def target_keys(df: pd.DataFrame) -> list[str]:
    """What a row is ranked within: its dataset and few-shot size, and its federated setting where there is one."""
    return TARGET_KEYS + (["setting"] if "setting" in df else [])


def _number(v: float | None) -> float:
    return float("nan") if v is None else float(v)


def data_seeds(final: FinalRecord, samples_per_class: int) -> tuple[int, int | None]:
    """The seeds that decide a final run's data: (split_seed, subset_seed). Records written before
    `subset_seed` existed drew the few-shot subset with `seed`; without a few-shot subset it decides nothing."""
    seeds = final.seeds
    return int(seeds["split_seed"]), seeds["subset_seed"] if samples_per_class else None


def entry_labels(df: pd.DataFrame) -> list[str]:
    """The readable entry (method/backbone/weights) of each row; where two different weights would read the
    same, a short hash of the full weights string tells them apart."""
    keys = list(zip(df.method, df.backbone, df.weights))
    labels = {k: entry_label(*k) for k in keys}
    seen: dict[str, set[tuple]] = {}
    for k, label in labels.items():
        seen.setdefault(label, set()).add(k)
    return [labels[k] if len(seen[labels[k]]) == 1 else f"{labels[k]}~{hashlib.sha1(k[2].encode()).hexdigest()[:6]}"
            for k in keys]


def _searched(cell: CellRecord) -> dict:
    space = cell.space or {}
    best = cell.best_config or {}
    return {k: float(f"{best[k]:.4g}") if isinstance(best[k], float) else best[k]
            for k, v in space.items() if isinstance(v, dict) and k in best}


def _rank(df: pd.DataFrame) -> pd.DataFrame:
    """Rank within each dataset and few-shot size by the mean headline test score; compare every other entry with
    the best (paired t-test where seeds pair, else Welch), Holm-correct within the dataset, and name the verdict."""
    keys = target_keys(df)
    df = df.sort_values([*keys, "method", "backbone", "weights"], kind="stable").reset_index(drop=True)
    df["rank"] = df.groupby(keys)["test_score"].rank(ascending=False, method="min")
    nan = float("nan")
    rows = {i: [TOO_FEW, None, nan, nan] for i in df.index}
    scores, data_seeds = df["_scores"], df["_data_seeds"]
    for _, group in df.groupby(keys, sort=False)["rank"]:
        top = group.index[group == 1]
        if top.empty:
            continue
        best = top[0]
        tests = {i: compare(scores[i], scores[best], seeds_pair(data_seeds[i], data_seeds[best]))
                 for i in group.index[group != 1]}
        adjusted = holm([t.p_value for t in tests.values()])
        for i in top:
            rows[i][0] = BEST
        for (i, t), p_holm in zip(tests.items(), adjusted):
            rows[i] = [verdict(False, t, p_holm, ALPHA), t.test or None, t.p_value, p_holm]
    out = pd.DataFrame.from_dict(rows, orient="index", columns=["verdict", "test_used", "p_value", "p_holm"])
    out["test_used"] = out["test_used"].astype("str")
    df = pd.concat([df.drop(columns=["_scores", "_data_seeds"]), out], axis=1)
    return df.sort_values([*keys, "rank", "method", "backbone", "weights"], kind="stable").reset_index(drop=True)


def summary_matrix(df: pd.DataFrame) -> pd.DataFrame:
    """Entries x datasets: mean headline test score per dataset (few-shot sizes apart), then the average rank
    (1 = best, ties averaged) and average score across datasets (as VTAB summarises). `attrs["metrics"]` names
    each dataset's metric; `attrs["friedman"]` holds the Friedman test and critical difference over the entries
    present on every dataset (see `friedman_test`)."""
    settings = df["setting"] if "setting" in df else [""] * len(df)
    d = df.assign(target=[target_label(a, b) + (f" [{s}]" if s else "")
                          for a, b, s in zip(df.dataset, df.samples_per_class, settings)])
    m = d.pivot_table(index="entry", columns="target", values="test_score", aggfunc="mean", sort=False)
    m.columns.name = None
    scores = m.copy()
    m["avg_rank"] = average_ranks(scores)
    m["avg_score"] = scores.mean(axis=1)
    m = m.sort_values(["avg_rank", "avg_score"], ascending=[True, False])
    m.attrs["metrics"] = {t: d.loc[d.target == t, "metric"].dropna().iloc[0] for t in scores.columns}
    m.attrs["friedman"] = friedman(scores)
    return m


def friedman_test(df: pd.DataFrame) -> Friedman:
    """The Friedman test with the Nemenyi critical difference (Demsar 2006) over a leaderboard's datasets."""
    return summary_matrix(df).attrs["friedman"]


def metric_names(metrics: dict[str, str]) -> str:
    """The metric(s) a summary shows, in words: `accuracy`, or `accuracy (digits, cifar10); balanced accuracy (pets)`."""
    by_metric: dict[str, list[str]] = {}
    for target, metric in metrics.items():
        by_metric.setdefault(metric.replace("_", " "), []).append(target)
    if len(by_metric) == 1:
        return next(iter(by_metric))
    return "; ".join(f"{m} ({', '.join(ts)})" for m, ts in by_metric.items())


def friedman_lines(f: Friedman) -> list[str]:
    """The Friedman test and the Nemenyi groups as a few short paragraphs (plain text that reads as Markdown)."""
    if f.reason:
        return [f"Friedman test not computed: {f.reason}."]
    decided = "reject" if f.p_value < f.alpha else "do not reject"
    ranks = "\n".join(f"- {e}: average rank {f.ranks[e]:.2f}" for e in sorted(f.entries, key=f.ranks.get))
    groups = ("; ".join("{" + ", ".join(g) + "}" for g in f.groups) if f.groups else "none (every pair differs "
              "by at least CD)")
    return [(f"Over the {len(f.entries)} entries present on all {len(f.datasets)} datasets, ranked on each by its "
             f"headline test score (1 = best, ties averaged):\n\n{ranks}"),
            (f"Friedman chi2 = {f.chi2:.3f} ({len(f.entries) - 1} df), p = {f.p_value:.4g}: the ranks {decided} the "
             f"hypothesis that all entries perform alike (alpha {f.alpha:g}). Nemenyi critical difference "
             f"(Demsar 2006): CD = {f.cd:.3f}."),
            f"Groups not significantly different (average ranks within CD): {groups}."]


def _display(df: pd.DataFrame) -> pd.DataFrame:
    show = df.copy()
    show["test_score"] = [f"{m:.4f} ± {h:.4f}" if not math.isnan(h) else f"{m:.4f}"
                          for m, h in zip(show.test_score, show.test_score_ci95)]
    show["weights"] = [e.split("/", 2)[2] for e in show.entry]  # as the entry names them
    show["rank"] = show["rank"].map(lambda r: "" if pd.isna(r) else str(int(r)))
    show["p_holm"] = show.p_holm.map(lambda p: "" if pd.isna(p) else f"{p:.3g}")
    show["test_used"] = show.test_used.fillna("")
    show["source_network"] = show.source_network.fillna("")
    cols = ["dataset", "samples_per_class", "method", "backbone", "weights", "source_network", "target_network", "rank", "verdict", "p_holm", "test_used",
            "metric", "test_score", "test_accuracy", "test_macro_f1", "test_ece", "seeds", "params_trainable",
            "train_seconds", "hardware", "search_trials", "search_trial_seconds", "best_config"]
    detection = [f"test_{m}" for m in DETECTION_METRICS if f"test_{m}" in show.columns]
    at = cols.index("test_ece") + 1
    cols = cols[:at] + detection + cols[at:]
    if detection and show.test_accuracy.isna().all():  # detection alone: no empty accuracy columns
        cols = [c for c in cols if c not in ("test_accuracy", "test_macro_f1", "test_ece")]
    if "test_untrained_score" in show:
        cols.insert(cols.index("test_score") + 1, "test_untrained_score")
    if "setting" in show:
        cols[2:2] = ["setting"]
        cols[cols.index("seeds"):cols.index("seeds")] = FEDERATED_COLUMNS
    return show[cols]


def _summary_heading(m: pd.DataFrame) -> str:
    return f"Summary: mean test {metric_names(m.attrs['metrics'])} per dataset, average rank and score"


def to_markdown(df: pd.DataFrame) -> str:
    m = summary_matrix(df)
    return (_display(df).to_markdown(index=False, floatfmt=".4g") + f"\n\n## {_summary_heading(m)}\n\n"
            + m.to_markdown(floatfmt=".4f") + "\n\n## Friedman test and critical difference\n\n"
            + "\n\n".join(friedman_lines(m.attrs["friedman"])) + "\n")


def to_text(df: pd.DataFrame) -> str:
    m = summary_matrix(df)
    return (_display(df).to_string(index=False) + f"\n\n{_summary_heading(m)}\n" + m.round(4).to_string()
            + "\n\n" + "\n".join(friedman_lines(m.attrs["friedman"])))


FORMATS = ("text", "md", "csv", "json", "parquet", "html")
BINARY_FORMATS = ("parquet",)
HIGHER_IS_BETTER = ("test_score", "test_accuracy", "test_balanced_accuracy", "test_macro_f1", "test_roc_auc", "val_best",
                    "images_per_s", "seeds", "test_client_accuracy_mean", "test_client_accuracy_worst", "test_map50",
                    "test_map50_area", "test_map", "test_untrained_score")


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
        m = summary_matrix(df)
        return report.render(df, m, records.trials, records.runs, metric_names(m.attrs["metrics"]),
                             records.estimates, records.finals, records.cells).encode()
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
