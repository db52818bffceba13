"""The HTML report: one self-contained file (inline CSS, PNG plots embedded as data URIs, no network).

Tables (leaderboard, summary matrix) and plots: the headline test score with 95% intervals per entry and
dataset, coloured by its verdict against the best; score against cost with each dataset's Pareto front; the
validation curve of each cell's best trial; validation score against learning rate for every search trial;
with three or more datasets, the critical-difference diagram of the Friedman test (Demsar 2006).
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
from harness.results.records import EstimateRecord, TrialRecord, target_label, weights_label  # noqa: E402
from harness.results.stats import BEST, TOO_FEW, UNDISTINGUISHED, WORSE, Friedman  # noqa: E402

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}td:nth-child(-n+4){text-align:left}figure{margin:1em 0}img{max-width:100%}
figcaption,.note{color:#555;font-size:.9em}
"""


VERDICT_COLORS = {BEST: "#1f5f99", UNDISTINGUISHED: "#5b9bd0", WORSE: "#c6d9ea", TOO_FEW: "#bbbbbb"}


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
    return df.assign(target=[target_label(d, k) for d, k in zip(df.dataset, df.samples_per_class)])


def _panels(n: int, width: float = 4.2, height: float = 3.2, per_row: int = 3) -> tuple[plt.Figure, list[plt.Axes]]:
    """One panel per dataset, at most `per_row` to a row so that many datasets stay readable."""
    rows, cols = math.ceil(n / per_row), min(n, per_row)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def plot_accuracy(df: pd.DataFrame) -> str | None:
    d = _with_target(df).dropna(subset=["test_score"])
    if d.empty:  # no cell had a winner with finals
        return None
    targets = _targets(d)
    fig, axes = _panels(len(targets), width=2.8 + 0.065 * max(map(len, d.entry)))  # room for the entry labels
    for ax, t in zip(axes, targets):
        rows = d[d.target == t].sort_values("test_score", ascending=False)
        err = rows.test_score_ci95.fillna(0).tolist()
        ax.barh(rows.entry, rows.test_score, xerr=err, color=[VERDICT_COLORS[v] for v in rows.verdict], capsize=3)
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


def plot_cd(f: Friedman) -> str | None:
    """The critical-difference diagram in Demsar's layout: the rank axis (1 = best, on the left), each entry
    at its average rank, labelled on the nearer side, and bars joining entries whose ranks differ by less than CD."""
    if f.reason or not f.ranks:
        return None
    names = sorted(f.ranks, key=f.ranks.get)
    k, half = len(names), (len(names) + 1) // 2
    step, top = 0.28, 0.18 + 0.12 * len(f.groups)
    fig, ax = plt.subplots(figsize=(8, 1.0 + step * max(half, k - half) + 0.12 * len(f.groups)))
    ax.plot([1, k], [0, 0], color="black", lw=1)
    for t in range(1, k + 1):
        ax.plot([t, t], [0, -0.08], color="black", lw=1)
        ax.text(t, -0.12, str(t), ha="center", va="bottom", fontsize=9)
    cd_y = -0.5
    ax.plot([1, 1 + f.cd], [cd_y, cd_y], color="black", lw=1.5)
    for x in (1, 1 + f.cd):
        ax.plot([x, x], [cd_y - 0.05, cd_y + 0.05], color="black", lw=1)
    ax.text(1 + f.cd / 2, cd_y - 0.07, f"CD = {f.cd:.2f}", ha="center", va="bottom", fontsize=9)
    for n, group in enumerate(f.groups):
        y = 0.1 + 0.12 * n
        ax.plot([f.ranks[group[0]] - 0.03, f.ranks[group[-1]] + 0.03], [y, y], color="black", lw=3,
                solid_capstyle="round")
    for i, name in enumerate(names):
        left = i < half
        y = top + step * (i if left else k - 1 - i)
        x_end = 0.8 if left else k + 0.2
        ax.plot([f.ranks[name], f.ranks[name], x_end], [0, y, y], color="#444", lw=0.8)
        ax.text(x_end + (-0.05 if left else 0.05), y, f"{name} ({f.ranks[name]:.2f})", va="center",
                ha="right" if left else "left", fontsize=8)
    ax.set_xlim(0.8, k + 0.2)
    ax.set_ylim(top + step * max(half, k - half), cd_y - 0.2)
    ax.axis("off")
    return _png(fig)


def _figure(title: str, png: str | None, caption: str) -> str:
    if png is None:
        return f"<h2>{html.escape(title)}</h2><p class='note'>No data for this plot in these runs.</p>"
    return (f"<h2>{html.escape(title)}</h2><figure><img alt='{html.escape(title)}' src='data:image/png;base64,{png}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def render(df: pd.DataFrame, summary: pd.DataFrame, trials: list[TrialRecord], runs: list[str],
           table: Callable[[pd.DataFrame], pd.DataFrame], metrics: str = "score",
           estimates: list[EstimateRecord] = ()) -> str:
    """The whole report as one HTML string; `summary` is the summary matrix (its `attrs["friedman"]` gives the
    critical-difference diagram), `metrics` names the metric(s) it shows, `estimates` the transferability
    estimates to set against the real scores."""
    cost_png, cost_label = plot_cost(df)
    f: Friedman = summary.attrs.get("friedman", Friedman(reason="no summary"))
    cd_caption = (f"Entries at their average rank over {len(f.datasets)} datasets (1 = best); bars join entries "
                  f"whose average ranks differ by less than the critical difference CD = {f.cd:.3f} (Nemenyi, "
                  f"alpha {f.alpha:g}). Friedman chi2 = {f.chi2:.3f}, p = {f.p_value:.4g}."
                  if not f.reason else "")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>transfer-harness leaderboard</title>",
        f"<style>{CSS}</style></head><body><h1>Transfer-learning leaderboard</h1>",
        (f"<p class='note'>Runs: {html.escape(', '.join(runs))}. Test metrics are means over the final seeds with "
         "95% t-intervals (none from one seed); each method's hyperparameters were searched on validation only. "
         "The verdict compares each entry with the best of its dataset on the headline test score: a paired "
         "t-test where the seeds share their data splits and subsets, else Welch's t-test, Holm-corrected across "
         "the entries of the dataset; 'significantly worse than the best' needs p &lt; 0.05 after correction, "
         "'not distinguishable from the best' is absence of evidence, not evidence of a tie, and "
         "'too few seeds' means fewer than two on either side.</p>"),
        "<h2>Leaderboard</h2>", table(df).to_html(index=False, na_rep="", escape=True, classes="leaderboard"),
        f"<h2>Summary: mean test {html.escape(metrics)} per dataset, average rank and score</h2>",
        summary.to_html(float_format=lambda x: f"{x:.4f}", na_rep="", classes="summary"),
        _figure("Test score per entry", plot_accuracy(df),
                "Bars: mean headline test metric over seeds; whiskers: 95% confidence interval; colour: the "
                "verdict (darkest: best; dark: not distinguishable from the best; light: significantly worse; "
                "grey: too few seeds)."),
        _figure("Critical-difference diagram (Friedman test, Nemenyi post-hoc)", plot_cd(f), cd_caption)
        if not f.reason else
        f"<h2>Critical-difference diagram</h2><p class='note'>Friedman test not computed: {html.escape(f.reason)}.</p>",
        _figure("Accuracy against cost", cost_png,
                f"x: {cost_label}; the orange line joins the Pareto front (no method is both cheaper and better)."),
        _figure("Validation curves of each cell's best trial", plot_curves(df, trials),
                "The searched metric per epoch of the trial that won each cell's search."),
        _figure("Validation score against learning rate", plot_lr(df, trials),
                "Every search trial; hollow markers: trials stopped early by the scheduler."),
        transferability.report_section(df, list(estimates), _png),
        "<h2>Chosen hyperparameters</h2>",
        _config_table(df).to_html(index=False, escape=True, classes="configs"),
        ("<script>window.addEventListener('load',()=>{document.body.dataset.imagesLoaded="
         "[...document.images].filter(i=>i.complete&&i.naturalWidth>0).length;});</script>"),
        "</body></html>",
    ]
    return "\n".join(parts)


def _config_table(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in df.itertuples():
        cfg = json.loads(r.best_config) if isinstance(r.best_config, str) else {}
        rows.append({"dataset": r.dataset, "samples_per_class": r.samples_per_class, "method": r.method,
                     "backbone": r.backbone, "weights": weights_label(r.weights), **cfg})
    return pd.DataFrame(rows)
