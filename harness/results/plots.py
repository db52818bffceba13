"""The report's figures (matplotlib, Agg): one figure per view, panels laid out so that no label runs into another
panel (long names stack panels vertically or move legends outside the axes, and constrained layout makes room).

Each `figure_*` function returns a Figure, or None when the records hold nothing to draw; `png` encodes one."""

from __future__ import annotations

import base64
import io
import math
import textwrap
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.layout_engine import ConstrainedLayoutEngine
from PIL import Image

from harness.results.records import (
    CellRecord,
    FinalRecord,
    TrialRecord,
    by_cell,
    target_label,
)
from harness.results.stats import BEST, TOO_FEW, UNDISTINGUISHED, WORSE, Friedman

VERDICT_COLORS = {BEST: "#1f5f99", UNDISTINGUISHED: "#5b9bd0", WORSE: "#c6d9ea", TOO_FEW: "#bbbbbb"}
DPI = 90
MARKERS = "osD^v<>ph*"
HEATMAP_LABELS_MAX = 40  # class names shown on an axis up to this many classes
ANNOTATE_MAX = 150  # values written in heatmap cells up to this many cells
PANELS_MAX = 12  # datasets drawn in a per-dataset figure (a panel each); the first ones in leaderboard order
PARALLEL_MAX = 24  # cells drawn in parallel coordinates (a panel each); beyond, the best-ranked of each dataset


def png(fig: plt.Figure) -> str:
    """The figure as a base64 PNG at DPI (closed afterwards). A constrained-layout figure is laid out once and
    drawn once, its opaque canvas encoded as RGB (savefig would lay it out and draw it twice, and keep alpha);
    any other figure is saved cropped to its contents."""
    buf = io.BytesIO()
    engine = fig.get_layout_engine()
    if isinstance(engine, ConstrainedLayoutEngine):
        fig.set_dpi(DPI)
        engine.execute(fig)
        fig.set_layout_engine("none")
        fig.canvas.draw()
        Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB").save(buf, format="png")
    else:
        fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def pareto_front(cost: list[float], score: list[float]) -> list[int]:
    """Indices of the points no other point beats on both cost (lower) and score (higher), by cost."""
    order = sorted(range(len(cost)), key=lambda i: (cost[i], -score[i]))
    front, best = [], -math.inf
    for i in order:
        if score[i] > best:
            front.append(i)
            best = score[i]
    return front


def with_target(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(target=[target_label(d, k) for d, k in zip(df.dataset, df.samples_per_class)])


def targets(df: pd.DataFrame) -> list[str]:
    """The datasets (few-shot sizes apart) a per-dataset figure draws, in leaderboard order: at most PANELS_MAX."""
    return list(dict.fromkeys(df["target"]))[:PANELS_MAX]


def note_shown(fig: plt.Figure, df: pd.DataFrame) -> plt.Figure:
    """A per-dataset figure titled with what it leaves out, where the run has more datasets than it draws."""
    total = df["target"].nunique()
    if total > PANELS_MAX:
        fig.suptitle(f"The first {PANELS_MAX} of {total} datasets (the tables cover all)", fontsize=10)
    return fig



def panels(n: int, width: float = 4.6, height: float = 3.2, per_row: int = 2) -> tuple[plt.Figure, list[plt.Axes]]:
    """One panel per dataset, at most `per_row` to a row."""
    rows, cols = math.ceil(n / per_row), min(n, per_row)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")
    fig.get_layout_engine().set(wspace=0.08, hspace=0.08)  # a gap between one panel's ticks and the next one's
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def entry_styles(entries: Sequence[str]) -> dict[str, dict[str, Any]]:
    """One colour and marker per entry, the same in every panel of a figure."""
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {e: {"color": colors[i % len(colors)], "marker": MARKERS[i % len(MARKERS)]}
            for i, e in enumerate(dict.fromkeys(entries))}


def figure_legend(fig: plt.Figure, styles: dict[str, dict[str, Any]], extra: Sequence[Any] = ()) -> None:
    """One legend for the whole figure, below the panels (the layout makes room: it never covers a panel)."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], linestyle="", **style, label=e) for e, style in styles.items()] + list(extra)
    long = max((len(e) for e in styles), default=0) > 40
    fig.legend(handles=handles, loc="outside lower center", ncols=1 if long else min(3, len(handles)), fontsize=7,
               frameon=False)


def label_of(metric: str) -> str:
    return metric.replace("_", " ")


def figure_accuracy(df: pd.DataFrame) -> plt.Figure | None:
    """Bars of the headline test score per entry with 95% intervals, coloured by verdict; one panel per dataset,
    stacked, so entry names have the full width."""
    d = with_target(df).dropna(subset=["test_score"])
    if d.empty:  # no cell had a winner with finals
        return None
    ts = targets(d)
    sizes = [int((d.target == t).sum()) for t in ts]
    fig, axes = plt.subplots(len(ts), 1, figsize=(8, sum(0.9 + 0.28 * s for s in sizes)), squeeze=False,
                             layout="constrained", gridspec_kw={"height_ratios": [0.9 + 0.28 * s for s in sizes]})
    for ax, t in zip(axes.flat, ts):
        rows = d[d.target == t].sort_values("test_score", ascending=False)
        err = rows.test_score_ci95.fillna(0).tolist()
        ax.barh(rows.entry, rows.test_score, xerr=err, color=[VERDICT_COLORS[v] for v in rows.verdict], capsize=3)
        ax.invert_yaxis()
        lo = max(0.0, float((rows.test_score - rows.test_score_ci95.fillna(0)).min()) - 0.05)
        ax.set_xlim(lo, max(1.0, float((rows.test_score + rows.test_score_ci95.fillna(0)).max())))
        ax.tick_params(axis="y", labelsize=8)
        ax.set_title(t, fontsize=10)
        ax.set_xlabel(f"test {label_of(rows.metric.iloc[0])} (mean, 95% CI)", fontsize=8)
    return note_shown(fig, d)


def cost_column(df: pd.DataFrame) -> tuple[str, str]:
    """The cost axis: search GPU-hours where any cell used a GPU, else training seconds per run."""
    gpu = bool((df.search_gpu_hours.fillna(0) > 0).any())
    return ("search_gpu_hours", "search GPU-hours") if gpu else ("train_seconds", "training seconds per run")


def figure_cost(df: pd.DataFrame) -> plt.Figure | None:
    """Headline test score against cost per dataset, each entry its own marker (legend below), the Pareto front."""
    d = with_target(df).dropna(subset=["test_score"])
    col, label = cost_column(df)
    d = d.dropna(subset=[col])
    if d.empty:
        return None
    ts = targets(d)
    fig, axes = panels(len(ts))
    styles = entry_styles(d.entry)
    for ax, t in zip(axes, ts):
        rows = d[d.target == t].reset_index(drop=True)
        cost, acc = rows[col].astype(float).tolist(), rows.test_score.astype(float).tolist()
        for c, a, name in zip(cost, acc, rows.entry):
            ax.plot([c], [a], linestyle="", zorder=3, **styles[name])  # one Line2D: a scatter's point, cheaper
        front = pareto_front(cost, acc)
        ax.plot([cost[i] for i in front], [acc[i] for i in front], "-", color="#d2542a", label="Pareto front")
        if min(cost) > 0:
            ax.set_xscale("log")
        ax.set_title(t, fontsize=10)
        ax.set_xlabel(label, fontsize=8)
        ax.set_ylabel(f"test {label_of(rows.metric.iloc[0])}", fontsize=8)
    from matplotlib.lines import Line2D

    figure_legend(fig, styles, [Line2D([], [], color="#d2542a", label="Pareto front")])
    return note_shown(fig, d)


def figure_curves(df: pd.DataFrame, trials: Sequence[TrialRecord]) -> plt.Figure | None:
    """The searched metric per epoch of each cell's winning trial, one panel per dataset."""
    best = {(r.cell_id, r.best_trial_id) for r in df.itertuples() if getattr(r, "best_trial_id", None)}
    d = with_target(df)
    target_of, entry_of = dict(zip(d.cell_id, d.target)), dict(zip(d.cell_id, d.entry))
    curves = [t for t in trials if (t.cell_id, t.trial_id) in best and t.history]
    if not curves:
        return None
    ts = targets(d)
    fig, axes = panels(len(ts))
    styles = entry_styles([entry_of[t.cell_id] for t in curves if t.cell_id in entry_of])
    per_target: dict[str, list[TrialRecord]] = {}
    for t in curves:
        if t.cell_id in target_of:
            per_target.setdefault(target_of[t.cell_id], []).append(t)
    for ax, target in zip(axes, ts):
        for t in per_target.get(target, []):
            h = [row for row in t.history if row.get(t.metric) is not None]
            ax.plot([row["epoch"] for row in h], [row[t.metric] for row in h], markersize=4,
                    **styles[entry_of[t.cell_id]])
        ax.set_title(target, fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel(label_of(curves[0].metric), fontsize=8)
    figure_legend(fig, styles)
    return note_shown(fig, d)


def figure_lr(df: pd.DataFrame, trials: Sequence[TrialRecord]) -> plt.Figure | None:
    """Searched metric against learning rate for every trial; hollow: stopped early."""
    d = with_target(df)
    target_of, entry_of = dict(zip(d.cell_id, d.target)), dict(zip(d.cell_id, d.entry))
    points = [t for t in trials if t.cell_id in target_of and t.value is not None
              and isinstance(t.config.get("lr"), (int, float)) and math.isfinite(t.value)]
    if not points:
        return None
    ts = targets(d)
    fig, axes = panels(len(ts))
    styles = entry_styles([entry_of[t.cell_id] for t in points])
    per_target: dict[str, dict[str, list[tuple[float, float, str]]]] = {}
    for t in points:
        per_target.setdefault(target_of[t.cell_id], {}).setdefault(entry_of[t.cell_id], []).append(
            (t.config["lr"], t.value, t.status))
    for ax, target in zip(axes, ts):
        for entry, pts in per_target.get(target, {}).items():
            full = [(lr, v) for lr, v, s in pts if s == "ok"]
            early = [(lr, v) for lr, v, s in pts if s != "ok"]
            style = styles[entry]
            ax.plot([p[0] for p in full], [p[1] for p in full], linestyle="", zorder=1, **style)
            if early:
                ax.plot([p[0] for p in early], [p[1] for p in early], linestyle="", zorder=1, markerfacecolor="none",
                        **style)
        ax.set_xscale("log")
        ax.set_title(target, fontsize=10)
        ax.set_xlabel("learning rate", fontsize=8)
        ax.set_ylabel(label_of(points[0].metric), fontsize=8)
    figure_legend(fig, styles)
    return note_shown(fig, d)


def figure_cd(f: Friedman) -> plt.Figure | None:
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
    return fig


def _class_names(finals: Sequence[FinalRecord], n: int) -> list[str]:
    names = next(((r.data or {}).get("class_names") for r in finals if (r.data or {}).get("class_names")), None)
    return [str(x) for x in names] if names and len(names) == n else [str(i) for i in range(n)]


def _heatmap(ax: plt.Axes, values: np.ndarray, rows: list[str], cols: list[str], cmap: str,
             fmt: str = "{:.2f}") -> Any:
    image = ax.imshow(values, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    if len(cols) <= HEATMAP_LABELS_MAX:
        ax.set_xticks(range(len(cols)), cols, fontsize=7, rotation=90)
    else:
        ax.set_xlabel(f"{len(cols)} classes", fontsize=8)
        ax.set_xticks([])
    if values.size <= ANNOTATE_MAX:
        for (i, j), v in np.ndenumerate(values):
            if not math.isnan(v):
                ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=6,
                        color="white" if v > 0.6 else "black", in_layout=False)  # inside its cell
    return image


def per_class_table(df: pd.DataFrame, finals: Sequence[FinalRecord]) -> dict[str, tuple[list[str], list[str],
                                                                                          np.ndarray]]:
    """Per dataset: (entries, class names, mean per-class test accuracy over each entry's finished seeds)."""
    d = with_target(df)
    entry_of = dict(zip(d.cell_id, d.entry))
    runs = by_cell(finals)
    scores: dict[str, list[list[float | None]]] = {}
    for r in finals:
        per_class = (r.test or {}).get("per_class_accuracy")
        if r.status == "ok" and per_class and r.cell_id in entry_of:
            scores.setdefault(r.cell_id, []).append(per_class)
    cells_of: dict[str, list[str]] = {}
    for cell, target in zip(d.cell_id, d.target):
        if cell in scores:
            cells_of.setdefault(target, []).append(cell)
    out = {}
    for target in targets(d):
        cells = cells_of.get(target)
        if not cells:
            continue
        n = max(len(v) for c in cells for v in scores[c])
        values = np.array([np.nanmean(np.array([[np.nan if x is None else x for x in v] for v in scores[c]
                                                 if len(v) == n], dtype=float), axis=0) for c in cells])
        names = _class_names([r for c in cells for r in runs[c]], n)
        out[target] = ([entry_of[c] for c in cells], names, values)
    return out


def figure_per_class(df: pd.DataFrame, finals: Sequence[FinalRecord]) -> plt.Figure | None:
    """Heatmaps of the per-class test accuracy (mean over seeds) of every entry, one panel per dataset, stacked."""
    tables = per_class_table(df, finals)
    if not tables:
        return None
    heights = [1.2 + 0.3 * len(entries) + (0.6 if len(names) <= HEATMAP_LABELS_MAX else 0)
               for entries, names, _ in tables.values()]
    width = min(14.0, 4.0 + 0.32 * max(len(names) for _, names, _ in tables.values()))
    fig, axes = plt.subplots(len(tables), 1, figsize=(width, sum(heights)), squeeze=False, layout="constrained",
                             gridspec_kw={"height_ratios": heights})
    for ax, (target, (entries, names, values)) in zip(axes.flat, tables.items()):
        image = _heatmap(ax, values, entries, names, "viridis")
        ax.set_title(target, fontsize=10)
        fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01)
    return note_shown(fig, with_target(df))


def figure_confusion(df: pd.DataFrame, finals: Sequence[FinalRecord]) -> plt.Figure | None:
    """The row-normalised test confusion matrix (summed over seeds) of each dataset's best entry."""
    d = with_target(df)
    runs_of = by_cell(finals)
    mats = {}
    for target in targets(d):
        best = d[(d.target == target) & (d["rank"] == 1)]
        if best.empty:
            continue
        row = best.iloc[0]
        runs = [np.array(r.test["confusion_matrix"], dtype=float) for r in runs_of.get(row.cell_id, [])
                if r.status == "ok" and (r.test or {}).get("confusion_matrix")]
        if runs and all(m.shape == runs[0].shape for m in runs):
            total = np.sum(runs, axis=0)
            names = _class_names(runs_of[row.cell_id], total.shape[0])
            mats[target] = (row.entry, names, total / np.maximum(total.sum(axis=1, keepdims=True), 1))
    if not mats:
        return None
    side = min(6.0, 2.5 + 0.25 * max(len(n) for _, n, _ in mats.values()))
    fig, axes = panels(len(mats), width=side + 1.0, height=side + 0.6)
    for ax, (target, (entry, names, values)) in zip(axes, mats.items()):
        image = _heatmap(ax, values, names, names, "Blues")
        ax.set_title(f"{target}\n{entry}", fontsize=9)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    return note_shown(fig, d)


def searched_keys(cell: CellRecord) -> list[str]:
    """The hyperparameters a cell searched (those its space gives a distribution)."""
    return [k for k, v in (cell.space or {}).items() if isinstance(v, dict)]


def _log_scaled(spec: Any) -> bool:
    return isinstance(spec, dict) and any("log" in k for k in spec)


def _axis(values: list[Any], log: bool) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """Values placed on [0, 1] (numbers linearly or on a log scale, categories evenly) and the axis's labels."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        x = np.asarray(values, dtype=float)
        if log and (x > 0).all():
            x = np.log10(x)
        lo, hi = float(np.min(x)), float(np.max(x))
        scaled = (x - lo) / (hi - lo) if hi > lo else np.full(len(x), 0.5)
        lo_v, hi_v = min(values), max(values)
        return scaled, [(0.0, f"{lo_v:.3g}"), (1.0, f"{hi_v:.3g}")] if hi > lo else [(0.5, f"{lo_v:.3g}")]
    cats = sorted({str(v) for v in values})
    pos = {c: (i / (len(cats) - 1) if len(cats) > 1 else 0.5) for i, c in enumerate(cats)}
    return np.array([pos[str(v)] for v in values]), [(p, c) for c, p in pos.items()]


def figure_parallel(cells: Sequence[CellRecord], trials: Sequence[TrialRecord], df: pd.DataFrame
                    ) -> plt.Figure | None:
    """Parallel coordinates of every search trial per cell: each searched hyperparameter on its own axis (log
    scale where it was searched on one), the searched metric last; a trial's line is coloured by that metric."""
    d = with_target(df).set_index("cell_id")
    trials_of = by_cell(trials)
    views = []
    for cell in cells:
        keys = searched_keys(cell)
        ts = [t for t in trials_of.get(cell.cell_id, []) if t.value is not None and math.isfinite(t.value)
              and all(k in t.config for k in keys)]
        if keys and len(ts) >= 2 and cell.cell_id in d.index:
            views.append((cell, keys, ts))
    if not views:
        return None
    shown = len(views)
    if shown > PARALLEL_MAX:  # the best-ranked cells of every dataset first, in leaderboard order
        order = {c: i for i, c in enumerate(d.index)}
        views = sorted(views, key=lambda v: (d.loc[v[0].cell_id, "rank"], order[v[0].cell_id]))[:PARALLEL_MAX]
        views.sort(key=lambda v: order[v[0].cell_id])
    width = 1.2 + 0.75 * max(len(k) + 1 for _, k, _ in views)
    fig, axes = panels(len(views), width=width, height=2.6)
    cmap = plt.get_cmap("viridis")
    for ax, (cell, keys, ts) in zip(axes, views):
        columns = [_axis([t.config[k] for t in ts], _log_scaled(cell.space.get(k))) for k in keys]
        values = np.array([t.value for t in ts], dtype=float)
        columns.append(_axis(list(values), False))
        lo, hi = float(values.min()), float(values.max())
        for i, t in enumerate(ts):
            shade = (values[i] - lo) / (hi - lo) if hi > lo else 0.5
            ax.plot(range(len(columns)), [c[0][i] for c in columns], color=cmap(shade), alpha=0.8, lw=1.2,
                    linestyle="-" if t.status == "ok" else ":")
        for j, (_, ticks) in enumerate(columns):
            ax.axvline(j, color="#999", lw=0.8)
            for y, text in ticks:
                ax.text(j, y, text, fontsize=6, ha="center", va="bottom" if y >= 0.5 else "top",
                        bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
        ax.set_xticks(range(len(columns)), [*keys, ts[0].metric], fontsize=7, rotation=30, ha="right")
        ax.set_yticks([])
        ax.set_ylim(-0.12, 1.12)
        ax.set_xlim(-0.3, len(columns) - 0.7)
        title = f"{d.loc[cell.cell_id, 'target']} · {d.loc[cell.cell_id, 'entry']} ({len(ts)} trials)"
        ax.set_title(textwrap.fill(title, width=int(11 * width)), fontsize=8)  # long names wrap within the panel
    if shown > len(views):
        fig.suptitle(f"{len(views)} of {shown} cells: the best-ranked of each dataset first", fontsize=9)
    return fig
