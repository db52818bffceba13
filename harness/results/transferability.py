"""Transferability tables: the candidates of `harness rank` ranked by each estimator, and, for a run whose
suite asked for estimates, how well each estimator's scores ordered the candidates that were then trained
(weighted Kendall tau and Spearman rho against the mean test score, per target and method) with its plot."""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from harness.core.errors import ConfigError
from harness.core.files import atomic_write
from harness.ranking import ESTIMATORS
from harness.ranking.agreement import spearman_rho, weighted_tau
from harness.results.records import EstimateRecord, target_label

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

RANK_COLUMNS = ["estimator", "rank", "candidate", "score", "seconds", "backbone", "weights", "feature_seconds",
                "precision", "images", "refused"]
AGREEMENT_COLUMNS = ["dataset", "samples_per_class", "method", "estimator", "candidates", "weighted_tau",
                     "spearman_rho"]
OUT_FORMATS = ("csv", "json")


def weights_key(weights: str) -> str:
    """Weights as they are matched across runs and machines: a checkpoint by its file name, as cell ids do."""
    return "checkpoint:" + Path(weights[len("checkpoint:"):]).name if weights.startswith("checkpoint:") else weights


def _estimators(records: list[EstimateRecord]) -> list[str]:
    """The estimators these records hold, in the registry's order."""
    seen = {name for r in records for name in (*r.scores, *r.refused)}
    return [name for name in ESTIMATORS if name in seen] + sorted(seen - set(ESTIMATORS))


# ---------------------------------------------------------------- harness rank

def rank_table(records: list[EstimateRecord]) -> pd.DataFrame:
    """One row per (estimator, candidate): rank 1 = the highest score; refused candidates last, unranked."""
    rows = []
    for name in _estimators(records):
        for r in records:
            rows.append({"estimator": name, "candidate": r.label, "score": r.scores.get(name),
                         "seconds": r.seconds.get(name), "backbone": r.backbone, "weights": r.weights,
                         "feature_seconds": r.feature_seconds, "precision": r.precision, "images": r.images,
                         "refused": r.refused.get(name) or r.error or ""})
    df = pd.DataFrame(rows, columns=[c for c in RANK_COLUMNS if c != "rank"])
    df["score"] = pd.to_numeric(df["score"])
    df.insert(1, "rank", df.groupby("estimator", sort=False)["score"].rank(ascending=False, method="min"))
    df["rank"] = df["rank"].astype("Int64")
    order = {name: i for i, name in enumerate(dict.fromkeys(df.estimator))}
    df = df.assign(_e=df.estimator.map(order)).sort_values(["_e", "rank"], na_position="last", kind="stable")
    return df.drop(columns="_e").reset_index(drop=True)


def rank_text(df: pd.DataFrame) -> str:
    """The ranking for the terminal: per estimator, candidates best first with the score and its seconds."""
    from tabulate import tabulate

    rows = [["" if r.estimator == prev else r.estimator, "-" if pd.isna(r.rank) else int(r.rank), r.candidate,
             "refused" if pd.isna(r.score) else f"{r.score:.4f}", "" if pd.isna(r.seconds) else f"{r.seconds:.4f}"]
            for prev, r in zip([None, *df.estimator[:-1]], df.itertuples())]
    return tabulate(rows, headers=["estimator", "rank", "candidate", "score", "seconds"], tablefmt="simple",
                    disable_numparse=True)


def out_format(path: Path | str) -> str:
    """csv or json, from the file name `--out` gives."""
    fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in OUT_FORMATS:
        raise ConfigError(f"--out={path}: cannot tell the format from '.{fmt}'; use a .csv or .json file")
    return fmt


def write_table(df: pd.DataFrame, path: Path) -> None:
    """The ranking as CSV or JSON (a list of rows), the format from the file name."""
    fmt = out_format(path)
    text = df.to_csv(index=False) if fmt == "csv" else df.to_json(orient="records", indent=2) + "\n"
    atomic_write(Path(path), text.encode())


# ---------------------------------------------------------------- estimates against real test scores

def _joined(df: pd.DataFrame, estimates: list[EstimateRecord]) -> pd.DataFrame:
    """Leaderboard rows with a test score, one column per estimator holding the estimate of the row's candidate
    (target, backbone, weights), and the candidate's label."""
    found = {(r.dataset, r.samples_per_class, r.backbone, weights_key(r.weights)): r
             for r in estimates if r.status == "ok"}
    d = df.dropna(subset=["test_score"]).copy()
    keys = [(a, int(b), c, weights_key(w)) for a, b, c, w in zip(d.dataset, d.samples_per_class, d.backbone, d.weights)]
    d["candidate"] = [found[k].label if k in found else weights_key(k[3]) for k in keys]
    for name in _estimators(list(found.values())):
        d[f"estimate_{name}"] = [found[k].scores.get(name) if k in found else None for k in keys]
        d[f"estimate_{name}"] = pd.to_numeric(d[f"estimate_{name}"])
    return d


def agreement(df: pd.DataFrame, estimates: list[EstimateRecord]) -> pd.DataFrame:
    """Per (target, method) with two or more candidate weights, per estimator: the candidates it scored and the
    weighted Kendall tau and Spearman rho between its scores and their mean test scores (NaN below two)."""
    d = _joined(df, estimates)
    names = [c[len("estimate_"):] for c in d.columns if c.startswith("estimate_")]
    rows = []
    for (dataset, spc, method), group in d.groupby(["dataset", "samples_per_class", "method"], sort=False):
        group = group.drop_duplicates(["backbone", "weights"])
        if len(group) < 2:
            continue
        for name in names:
            scored = group.dropna(subset=[f"estimate_{name}"])
            est, real = scored[f"estimate_{name}"].tolist(), scored.test_score.tolist()
            rows.append({"dataset": dataset, "samples_per_class": spc, "method": method, "estimator": name,
                         "candidates": len(scored), "weighted_tau": weighted_tau(est, real),
                         "spearman_rho": spearman_rho(est, real)})
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def section(df: pd.DataFrame, estimates: list[EstimateRecord], fmt: str) -> str:
    """The leaderboard's transferability section as text or Markdown; empty without estimates to compare."""
    table = agreement(df, estimates) if estimates else pd.DataFrame()
    if table.empty:
        return ""
    title = "Transferability: estimates against test scores (weighted Kendall tau, Spearman rho)"
    if fmt == "md":
        return f"\n## {title}\n\n" + table.to_markdown(index=False, floatfmt=".3f") + "\n"
    return f"\n\n{title}\n" + table.to_string(index=False, float_format=lambda x: f"{x:.3f}") + "\n"


def write_outputs(run_dir: Path, df: pd.DataFrame, estimates: list[EstimateRecord]) -> None:
    """transferability.csv and .json in a run folder whose suite asked for estimates."""
    table = agreement(df, estimates) if estimates else pd.DataFrame()
    if table.empty:
        return
    atomic_write(run_dir / "transferability.csv", table.to_csv(index=False).encode())
    atomic_write(run_dir / "transferability.json", (table.to_json(orient="records", indent=2) + "\n").encode())


def figure(df: pd.DataFrame, estimates: list[EstimateRecord]) -> plt.Figure | None:
    """Estimate (x) against mean test score (y) of every candidate: a row of panels per target, a column per
    estimator; one colour per method, its weighted tau in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = _joined(df, estimates)
    names = [c[len("estimate_"):] for c in d.columns if c.startswith("estimate_") and d[c].notna().any()]
    if not names:
        return None
    d["target"] = [target_label(a, b) for a, b in zip(d.dataset, d.samples_per_class)]
    targets = list(dict.fromkeys(d.target))
    fig, axes = plt.subplots(len(targets), len(names), figsize=(3.6 * len(names), 3.0 * len(targets)),
                             squeeze=False)
    for row, target in enumerate(targets):
        for col, name in enumerate(names):
            ax, part = axes[row][col], d[d.target == target].dropna(subset=[f"estimate_{name}"])
            for method, group in part.groupby("method", sort=False):
                tau = weighted_tau(group[f"estimate_{name}"], group.test_score)
                label = method if math.isnan(tau) else f"{method} (τw {tau:.2f})"
                ax.scatter(group[f"estimate_{name}"], group.test_score, label=label)
                for x, y, text in zip(group[f"estimate_{name}"], group.test_score, group.candidate):
                    ax.annotate(text, (x, y), fontsize=6, xytext=(3, 2), textcoords="offset points")
            ax.set_title(f"{target} · {name}", fontsize=9)
            ax.set_xlabel(f"{name} (training split)", fontsize=8)
            if col == 0:
                ax.set_ylabel(f"test {part.metric.iloc[0] if len(part) else 'score'}", fontsize=8)
            if len(part):
                ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def report_section(df: pd.DataFrame, estimates: list[EstimateRecord], png: Callable[[plt.Figure], str]) -> str:
    """The report's transferability section (table and plot) as HTML; empty without estimates."""
    if not estimates:
        return ""
    table = agreement(df, estimates)
    fig = figure(df, estimates)
    parts = ["<h2>Transferability estimates against real test scores</h2>",
             ("<p class='note'>Each estimator scored every candidate source network from the target's training "
              "split before any training; per target and method, weighted Kendall tau (scipy.stats.weightedtau) "
              "and Spearman rho between its scores and the mean test scores, over the candidates it scored.</p>")]
    if not table.empty:
        parts.append(table.to_html(index=False, na_rep="–", float_format=lambda x: f"{x:.3f}", classes="estimates"))
    if fig is not None:
        parts.append(f"<figure><img alt='estimates against test scores' src='data:image/png;base64,{png(fig)}'>"
                     f"<figcaption>{html.escape('x: the estimate; y: the mean test score of the trained cell.')}"
                     f"</figcaption></figure>")
    return "\n".join(parts)
