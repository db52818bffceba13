"""The HTML report: one self-contained file (inline CSS and JavaScript, PNG plots embedded as data URIs, nothing
fetched), with sortable tables and a filter bar (dataset, few-shot size, method, backbone, free text).

Sections: the leaderboard; the summary matrix; the headline test score per entry coloured by its verdict; the
critical-difference diagram (Friedman test, Demsar 2006) where the statistics give one; score against cost with
each dataset's Pareto front; per-class test accuracy of every entry; the best entry's confusion matrix per dataset;
validation curves of each cell's best trial; every search trial in parallel coordinates; which hyperparameter
mattered (rank correlations over trials); score against learning rate; transferability estimates; each
auxiliary branch of the multi-branch cells (its validation accuracy); the chosen hyperparameters. Per-task parts
read whatever the records hold (per-class accuracy, confusion matrices), so a task that records neither simply has
no such section. The leaderboard gains the zero-training score where a cell has one (label_mapping).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence

import pandas as pd

from harness.results import transferability
from harness.results.html import (
    CSS,
    JS,
    MISSING,
    Column,
    config_cell,
    filter_bar,
    interval,
    missing,
    number,
    p_value,
    table,
)
from harness.results.heatmaps import figure_confusion, figure_per_class
from harness.results.importance import importance
from harness.results.plots import (
    cost_column,
    figure_accuracy,
    figure_cd,
    figure_cost,
    figure_curves,
    figure_lr,
    figure_parallel,
    png,
)
from harness.results.records import (
    CellRecord,
    EstimateRecord,
    FinalRecord,
    TrialRecord,
    weights_label,
)
from harness.results.stats import Friedman

TEXT = {"text": True}


def _best_config(value: object, _row: Mapping[str, object]) -> str:
    return config_cell(json.loads(value) if isinstance(value, str) else {})


LEADERBOARD = [
    Column("dataset", **TEXT), Column("samples_per_class", "shots"), Column("method", **TEXT),
    Column("backbone", **TEXT), Column("weights", show=lambda v, r: weights_label(v), text=True),
    Column("source_network", "source network", **TEXT), Column("target_network", "target network", **TEXT),
    Column("rank"), Column("verdict", **TEXT), Column("p_holm", "p (Holm)", show=lambda v, r: p_value(v)),
    Column("metric", **TEXT),
    Column("test_score", "test score", show=lambda v, r: interval(v, r.get("test_score_ci95"))),
    Column("test_accuracy", "accuracy", show=lambda v, r: interval(v, r.get("test_accuracy_ci95"))),
    Column("test_macro_f1", "macro-F1"), Column("test_ece", "ECE"), Column("seeds"),
    Column("params_trainable", "trainable params"), Column("train_seconds", "train s"),
    Column("search_trials", "trials"), Column("search_trial_seconds", "search s"),
    Column("best_config", "chosen hyperparameters", show=_best_config, text=True, raw=True),
]


UNTRAINED = Column("test_untrained_score", "untrained score",
                   show=lambda v, r: interval(v, r.get("test_untrained_score_ci95")))


def leaderboard_columns(df: pd.DataFrame) -> list[Column]:
    """The leaderboard's columns, with the zero-training score after the test score where a cell has one."""
    if "test_untrained_score" not in df:
        return LEADERBOARD
    at = [c.key for c in LEADERBOARD].index("test_score") + 1
    return LEADERBOARD[:at] + [UNTRAINED] + LEADERBOARD[at:]


def _section(title: str, body: str, note: str = "") -> str:
    return f"<h2>{html.escape(title)}</h2>" + (f"<p class='note'>{note}</p>" if note else "") + body


def _figure(title: str, fig: object, caption: str) -> str:
    if fig is None:
        return f"<h2>{html.escape(title)}</h2><p class='note'>No data for this plot in these runs.</p>"
    return (f"<h2>{html.escape(title)}</h2><figure><img alt='{html.escape(title, quote=True)}' "
            f"src='data:image/png;base64,{png(fig)}'><figcaption>{html.escape(caption)}</figcaption></figure>")


def summary_table(summary: pd.DataFrame) -> str:
    frame = summary.reset_index().rename(columns={"index": "entry"})
    columns = [Column("entry", **TEXT)] + [Column(str(c)) for c in summary.columns]
    return table(frame, columns, filterable=False, cls="summary")


def importance_table(cells: Sequence[CellRecord], trials: Sequence[TrialRecord]) -> str:
    imp = importance(cells, trials)
    if imp.empty:
        return "<p class='note'>No searched hyperparameters with scored trials in these runs.</p>"
    fixed = ["dataset", "samples_per_class", "method", "backbone", "entry", "metric", "trials"]
    keys = [c for c in imp.columns if c not in fixed]
    rho = [Column(k, show=lambda v, r: MISSING if missing(v) else f"{v:+.2f}") for k in keys]
    return table(imp, [Column("method", **TEXT), Column("dataset", **TEXT), Column("samples_per_class", "shots"),
                       Column("backbone", **TEXT), Column("metric", **TEXT), Column("trials"), *rho], cls="importance")


def config_table(df: pd.DataFrame) -> str:
    rows = [{"dataset": r.dataset, "samples_per_class": r.samples_per_class, "method": r.method, "backbone": r.backbone,
             "weights": weights_label(r.weights), **(json.loads(r.best_config) if isinstance(r.best_config, str)
                                                     else {})} for r in df.itertuples()]
    frame = pd.DataFrame(rows)
    keys = [c for c in frame.columns if c not in ("dataset", "samples_per_class", "method", "backbone", "weights")]
    return table(frame, [Column("dataset", **TEXT), Column("samples_per_class", "shots"), Column("method", **TEXT),
                         Column("backbone", **TEXT), Column("weights", **TEXT),
                         *[Column(k, show=lambda v, r: number(v) if not isinstance(v, str) else v) for k in keys]],
                 cls="configs")


def branches_table(finals: Sequence[FinalRecord]) -> str:
    """One row per auxiliary branch of every multi-branch cell: its task, loss weight, classes and validation
    accuracy (mean over the final seeds); empty where no final run had auxiliary branches."""
    rows = []
    for f in finals:
        for b in (f.model or {}).get("aux_branches") or []:
            rows.append({"dataset": f.dataset, "samples_per_class": f.samples_per_class, "method": f.method,
                         "backbone": f.backbone, "weights": weights_label(f.weights), "branch": b["branch"],
                         "task": b["task"], "weight": b["weight"], "classes": b["classes"],
                         "val_accuracy": (f.val or {}).get(f"aux{b['branch']}_accuracy"),
                         "main_val_accuracy": (f.val or {}).get("accuracy")})
    if not rows:
        return ""
    keys = ["dataset", "samples_per_class", "method", "backbone", "weights", "branch", "task", "weight", "classes"]
    groups = pd.DataFrame(rows).groupby(keys, sort=False, dropna=False)
    frame = groups.mean(numeric_only=True).reset_index().assign(seeds=groups.size().to_numpy())
    return _section("Auxiliary branches of multi-branch cells", table(frame, [
        Column("dataset", **TEXT), Column("samples_per_class", "shots"), Column("method", **TEXT),
        Column("backbone", **TEXT), Column("weights", **TEXT), Column("branch"), Column("task", **TEXT),
        Column("weight", "loss weight"), Column("classes"), Column("val_accuracy", "branch val accuracy"),
        Column("main_val_accuracy", "target val accuracy"), Column("seeds")], cls="branches"),
        "Each auxiliary task's head on its own validation data (a dataset's validation split; rotation: the "
        "target's validation images, each turned by its index mod 4 quarter turns), mean over the final seeds; "
        "– for a branch of weight 0, whose head is not trained. Only the target task is the cell's score.")


def _scrolling(section: str) -> str:
    """Tables of another module's section, wrapped so that they scroll inside their own box."""
    return re.sub(r"(<table.*?</table>)", r"<div class='scroll'>\1</div>", section, flags=re.DOTALL)


INTRO = ("Test metrics are means over the final seeds with 95% t-intervals (none from one seed); each method's "
         "hyperparameters were searched on validation only. The verdict compares each entry with the best of its "
         "dataset on the headline test score: a paired t-test where the seeds share their data splits and subsets, "
         "else Welch's t-test, Holm-corrected across the entries of the dataset; 'significantly worse than the "
         "best' needs p &lt; 0.05 after correction, 'not distinguishable from the best' is absence of evidence, not "
         "evidence of a tie, and 'too few seeds' means fewer than two on either side. Click a column heading to "
         "sort; the bar above filters every table; – marks a missing value.")


def render(df: pd.DataFrame, summary: pd.DataFrame, trials: Sequence[TrialRecord], runs: Sequence[str],
           metrics: str = "score", estimates: Sequence[EstimateRecord] = (), finals: Sequence[FinalRecord] = (),
           cells: Sequence[CellRecord] = ()) -> str:
    """The whole report as one HTML string; `summary` is the summary matrix (its `attrs["friedman"]` gives the
    critical-difference diagram), `metrics` names the metric(s) it shows; `finals` give the per-class views,
    `cells` and `trials` the search views, `estimates` the transferability estimates."""
    f: Friedman = summary.attrs.get("friedman", Friedman(reason="no summary"))
    cd = (_figure("Critical-difference diagram (Friedman test, Nemenyi post-hoc)", figure_cd(f),
                  f"Entries at their average rank over {len(f.datasets)} datasets (1 = best); bars join entries whose "
                  f"average ranks differ by less than the critical difference CD = {f.cd:.3f} (Nemenyi, alpha "
                  f"{f.alpha:g}). Friedman chi2 = {f.chi2:.3f}, p = {f.p_value:.4g}.")
          if not f.reason else
          f"<h2>Critical-difference diagram</h2><p class='note'>Friedman test not computed: {html.escape(f.reason)}.</p>")
    parts = [
        ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
         "<meta name='viewport' content='width=device-width, initial-scale=1'><title>transfer-harness report</title>"),
        f"<style>{CSS}</style></head><body><h1>Transfer-learning leaderboard</h1>",
        f"<p class='note'>Runs: {html.escape(', '.join(runs))}. {INTRO}</p>",
        filter_bar(df),
        _section("Leaderboard", table(df, leaderboard_columns(df), cls="leaderboard")),
        _section(f"Summary: mean test {metrics} per dataset, average rank and score", summary_table(summary)),
        _figure("Test score per entry", figure_accuracy(df),
                "A panel per dataset, entries in rows (best on average first). Bars: mean headline test metric "
                "over seeds; whiskers: 95% confidence interval; colour: the verdict (darkest: best; dark: not "
                "distinguishable from the best; light: significantly worse; grey: too few seeds)."),
        cd,
        _figure("Score against cost", figure_cost(df),
                f"x: {cost_column(df)[1]}; the orange line joins the Pareto front (no entry is both cheaper and "
                f"better)."),
        _figure("Per-class test accuracy", figure_per_class(df, finals),
                "Mean over the final seeds of each class's test accuracy (recall), every entry of each dataset "
                "(entries in rows, best on average first; blank where an entry did not run on a dataset)."),
        _figure("Confusion matrix of each dataset's best entry", figure_confusion(df, finals),
                "Test predictions summed over the final seeds, each row (true class) normalised to 1."),
        _figure("Validation curves of each cell's best trial", figure_curves(df, trials),
                "The searched metric per epoch of the trial that won each cell's search."),
        _figure("Every search trial (parallel coordinates)", figure_parallel(cells, trials, df),
                "One line per trial through its hyperparameters (log axes where searched on a log scale) to the "
                "searched metric, coloured by it (yellow: best); dotted: stopped early by the scheduler."),
        _section("Which hyperparameter mattered", importance_table(cells, trials),
                 "Spearman rank correlation of each searched numeric hyperparameter with the searched metric over "
                 "the cell's trials (trials stopped early with the score they reached); – where fewer than 3 trials "
                 "or the value did not vary. With few trials these are hints, not findings."),
        _figure("Validation score against learning rate", figure_lr(df, trials),
                "Every search trial; hollow markers: trials stopped early by the scheduler."),
        _scrolling(transferability.report_section(df, list(estimates), png)),
        branches_table(finals),
        _section("Chosen hyperparameters", config_table(df)),
        f"<script>{JS}</script>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)
