"""The HTML report: one self-contained file (inline CSS, PNG plots embedded as data URIs, no network).

Tables (leaderboard, summary matrix) and four plots: test accuracy with 95% intervals per method and
dataset; accuracy against cost with each dataset's Pareto front; the validation curve of each cell's
best trial; validation score against learning rate for every search trial.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from harness.results import transferability  # noqa: E402
from harness.results.records import EstimateRecord, TrialRecord, target_label  # noqa: E402

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}td:nth-child(-n+4){text-align:left}figure{margin:1em 0}img{max-width:100%}
figcaption,.note{color:#555;font-size:.9em}
"""


def pareto_front(cost: list[float], score: list[float]) -> list[int]:
    """Indices of the points no other point beats on both cost (lower) and score (higher), by cost."""
    order = sorted(range(len(cost)), key=lambda i: (cost[i], -score[i]))
    front, best = [], -math.inf
    for i in order:
        if score[i] > best:
            front.append(i)
            best = score[i]
    return front


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _targets(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df["target"]))


def _with_target(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(target=[target_label(d, k) for d, k in zip(df.dataset, df.samples_per_class)],
                     entry=df.method + "/" + df.backbone)


def _panels(n: int, width: float = 4.2, height: float = 3.2) -> tuple[plt.Figure, list[plt.Axes]]:
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, list(axes[0])


def plot_accuracy(df: pd.DataFrame) -> str | None:
    d = _with_target(df).dropna(subset=["test_score"])
    if d.empty:  # no cell had a winner with finals
        return None
    targets = _targets(d)
    fig, axes = _panels(len(targets))
    for ax, t in zip(axes, targets):
        rows = d[d.target == t].sort_values("test_score", ascending=False)
        err = rows.test_score_ci95.fillna(0).tolist()
        colors = ["#2a7ab9" if tie else "#9bbbd6" for tie in rows.tied_with_best]
        ax.barh(rows.entry, rows.test_score, xerr=err, color=colors, capsize=3)
        ax.invert_yaxis()
        lo = max(0.0, float((rows.test_score - rows.test_score_ci95.fillna(0)).min()) - 0.05)
        ax.set_xlim(lo, 1.0)
        ax.set_title(t)
        ax.set_xlabel(f"test {rows.metric.iloc[0].replace('_', ' ')} (mean, 95% CI)")
    return _png(fig)


def plot_cost(df: pd.DataFrame) -> tuple[str | None, str]:
    d = _with_target(df).dropna(subset=["test_score"])
    gpu = bool((d.search_gpu_hours > 0).any())
    col, label = (("search_gpu_hours", "search GPU-hours") if gpu else ("train_seconds", "training seconds per run"))
    if d.empty:
        return None, label
    targets = _targets(d)
    fig, axes = _panels(len(targets))
    for ax, t in zip(axes, targets):
        rows = d[d.target == t].reset_index(drop=True)
        cost, acc = rows[col].astype(float).tolist(), rows.test_score.astype(float).tolist()
        ax.scatter(cost, acc, color="#888")
        for c, a, name in zip(cost, acc, rows.entry):
            ax.annotate(name, (c, a), fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = pareto_front(cost, acc)
        ax.plot([cost[i] for i in front], [acc[i] for i in front], "-o", color="#d2542a", label="Pareto front")
        if min(cost) > 0:
            ax.set_xscale("log")
        ax.set_title(t)
        ax.set_xlabel(label)
        ax.set_ylabel(f"test {rows.metric.iloc[0].replace('_', ' ')}")
        ax.legend(fontsize=7, loc="lower right")
    return _png(fig), label


def plot_curves(df: pd.DataFrame, trials: list[TrialRecord]) -> str | None:
    best = {(r.cell_id, r.best_trial_id) for r in df.itertuples() if getattr(r, "best_trial_id", None)}
    d = _with_target(df).set_index("cell_id")
    curves = [t for t in trials if (t.cell_id, t.trial_id) in best and t.history]
    if not curves:
        return None
    targets = _targets(d)
    fig, axes = _panels(len(targets))
    for ax, target in zip(axes, targets):
        for t in curves:
            if t.cell_id in d.index and d.loc[t.cell_id, "target"] == target:
                h = [row for row in t.history if row.get(t.metric) is not None]
                ax.plot([row["epoch"] for row in h], [row[t.metric] for row in h], marker=".",
                        label=d.loc[t.cell_id, "entry"])
        ax.set_title(target)
        ax.set_xlabel("epoch")
        ax.set_ylabel(curves[0].metric)
        ax.legend(fontsize=7)
    return _png(fig)


def plot_lr(df: pd.DataFrame, trials: list[TrialRecord]) -> str | None:
    d = _with_target(df).set_index("cell_id")
    points = [t for t in trials if t.cell_id in d.index and t.value is not None
              and isinstance(t.config.get("lr"), (int, float)) and math.isfinite(t.value)]
    if not points:
        return None
    targets = _targets(d)
    fig, axes = _panels(len(targets))
    for ax, target in zip(axes, targets):
        by_entry: dict[str, list[tuple[float, float, str]]] = {}
        for t in points:
            if d.loc[t.cell_id, "target"] == target:
                by_entry.setdefault(d.loc[t.cell_id, "entry"], []).append((t.config["lr"], t.value, t.status))
        for entry, pts in by_entry.items():
            full = [(lr, v) for lr, v, s in pts if s == "ok"]
            early = [(lr, v) for lr, v, s in pts if s != "ok"]
            line = ax.scatter([p[0] for p in full], [p[1] for p in full], label=entry)
            if early:
                ax.scatter([p[0] for p in early], [p[1] for p in early], facecolors="none",
                           edgecolors=line.get_facecolor()[0])
        ax.set_xscale("log")
        ax.set_title(target)
        ax.set_xlabel("learning rate")
        ax.set_ylabel(points[0].metric)
        ax.legend(fontsize=7)
    return _png(fig)


def _figure(title: str, png: str | None, caption: str) -> str:
    if png is None:
        return f"<h2>{html.escape(title)}</h2><p class='note'>No data for this plot in these runs.</p>"
    return (f"<h2>{html.escape(title)}</h2><figure><img alt='{html.escape(title)}' src='data:image/png;base64,{png}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def render(df: pd.DataFrame, summary: pd.DataFrame, trials: list[TrialRecord], runs: list[str],
           table: Callable[[pd.DataFrame], pd.DataFrame], estimates: list[EstimateRecord] = ()) -> str:
    """The whole report as one HTML string."""
    cost_png, cost_label = plot_cost(df)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>transfer-harness leaderboard</title>",
        f"<style>{CSS}</style></head><body><h1>Transfer-learning leaderboard</h1>",
        f"<p class='note'>Runs: {html.escape(', '.join(runs))}. Test metrics are means over the final seeds with "
        "95% t-intervals; each method's hyperparameters were searched on validation only; '=' marks methods "
        "whose difference from the best of their dataset is not significant (Welch t-test, p &gt; 0.05).</p>",
        "<h2>Leaderboard</h2>", table(df).to_html(index=False, na_rep="", escape=True, classes="leaderboard"),
        "<h2>Summary: mean test score per dataset, average rank and score</h2>",
        summary.to_html(float_format=lambda x: f"{x:.4f}", na_rep="", classes="summary"),
        _figure("Test score per method", plot_accuracy(df),
                "Bars: mean headline test metric over seeds; whiskers: 95% confidence interval; dark: best or tied with it."),
        _figure("Accuracy against cost", cost_png,
                f"x: {cost_label}; the orange line joins the Pareto front (no method is both cheaper and better)."),
        _figure("Validation curves of each cell's best trial", plot_curves(df, trials),
                "The searched metric per epoch of the trial that won each cell's search."),
        _figure("Validation score against learning rate", plot_lr(df, trials),
                "Every search trial; hollow markers: trials stopped early by the scheduler."),
        transferability.report_section(df, list(estimates), _png),
        "<h2>Chosen hyperparameters</h2>",
        _config_table(df).to_html(index=False, escape=True, classes="configs"),
        "<script>window.addEventListener('load',()=>{document.body.dataset.imagesLoaded="
        "[...document.images].filter(i=>i.complete&&i.naturalWidth>0).length;});</script>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _config_table(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in df.itertuples():
        cfg = json.loads(r.best_config) if isinstance(r.best_config, str) else {}
        rows.append({"dataset": r.dataset, "samples_per_class": r.samples_per_class, "method": r.method,
                     "backbone": r.backbone, **cfg})
    return pd.DataFrame(rows)
