"""The report's heatmaps: per-class test accuracy of every entry and each dataset's best confusion matrix, a panel
per dataset. Every value lies on one scale (0 to 1), so a figure has one colour bar; tick labels that the panel
below or to the left already carries are not repeated; values are written in the cells only while the whole figure
holds few of them (hundreds of cells read by colour, and each written value costs as much to draw as a label)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from harness.results.plots import (entry_grid, entry_order, note_shown, panels, targets, title, with_target,
                                   wrapped)
from harness.results.records import FinalRecord, by_cell

HEATMAP_LABELS_MAX = 40  # class names shown on an axis up to this many classes
ANNOTATE_MAX = 150  # values written in the cells while a figure holds at most this many cells


def class_names(finals: Sequence[FinalRecord], n: int) -> list[str]:
    """The class names the final runs recorded, or the class indices."""
    names = next(((r.data or {}).get("class_names") for r in finals if (r.data or {}).get("class_names")), None)
    return [str(x) for x in names] if names and len(names) == n else [str(i) for i in range(n)]


def outer_labels(names: Sequence[Sequence[str]], per_row: int) -> list[tuple[bool, bool]]:
    """Per panel of a grid: whether it writes its x and its y tick labels (not where the panel below, or the one to
    its left, carries the same names)."""
    n = len(names)
    return [(i + per_row >= n or list(names[i + per_row]) != list(names[i]),
             i % per_row == 0 or list(names[i - 1]) != list(names[i])) for i in range(n)]


def _image(ax: plt.Axes, values: np.ndarray, cmap: str) -> Any:
    return ax.imshow(values, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")


def _classes(ax: plt.Axes, names: list[str], shown: bool) -> None:
    if len(names) > HEATMAP_LABELS_MAX:
        ax.set_xticks([])
        ax.set_xlabel(f"{len(names)} classes", fontsize=8)
    elif shown:
        ax.set_xticks(range(len(names)), names, fontsize=7, rotation=90)
    else:
        ax.set_xticks([])  # no tick objects where no name is written: they cost as much to lay out


def _annotate(ax: plt.Axes, values: np.ndarray) -> None:
    for (i, j), v in np.ndenumerate(values):
        if not math.isnan(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="white" if v > 0.6 else "black",
                    in_layout=False)  # inside its cell


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
        names = class_names([r for c in cells for r in runs[c]], n)
        out[target] = ([entry_of[c] for c in cells], names, values)
    return out


def figure_per_class(df: pd.DataFrame, finals: Sequence[FinalRecord]) -> plt.Figure | None:
    """Heatmaps of the per-class test accuracy (mean over seeds) of every entry, a panel per dataset, side by side on
    one entry axis (best entries on top; blank where an entry did not run on the dataset)."""
    tables = per_class_table(df, finals)
    if not tables:
        return None
    d = with_target(df)
    entries = entry_order(d[d.target.isin(tables)])
    row_of = {e: i for i, e in enumerate(entries)}
    classes = max(len(names) for _, names, _ in tables.values())
    annotate = len(tables) * len(entries) * classes <= ANNOTATE_MAX
    width = min(4.0, 0.4 + (0.32 if annotate else 0.14) * classes)  # a written value needs a wider cell
    per_row = min(len(tables), max(2, int(12 // width)))
    fig, axes = entry_grid(len(tables), entries, width, per_row=per_row)
    image = None
    for ax, (x_shown, _), (target, (rows, names, values)) in zip(
            axes, outer_labels([t[1] for t in tables.values()], per_row), tables.items()):
        grid = np.full((len(entries), len(names)), np.nan)
        grid[[row_of[e] for e in rows]] = values
        image = _image(ax, grid, "viridis")
        _classes(ax, names, x_shown)
        title(ax, wrapped(target, width), 9)
        if annotate:
            _annotate(ax, grid)
    fig.colorbar(image, ax=axes, fraction=0.04 / per_row, pad=0.01, aspect=40)
    return note_shown(fig, d)


def figure_confusion(df: pd.DataFrame, finals: Sequence[FinalRecord]) -> plt.Figure | None:
    """The row-normalised test confusion matrix (summed over seeds) of each dataset's best entry; class names
    written once per row or column of panels where the panels name the same classes."""
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
            names = class_names(runs_of[row.cell_id], total.shape[0])
            mats[target] = (row.entry, names, total / np.maximum(total.sum(axis=1, keepdims=True), 1))
    if not mats:
        return None
    side = min(6.0, 2.5 + 0.25 * max(len(n) for _, n, _ in mats.values()))
    fig, axes = panels(len(mats), width=side + 0.4, height=side + 0.4)
    annotate = sum(values.size for _, _, values in mats.values()) <= ANNOTATE_MAX
    image = None
    for ax, (x_shown, y_shown), (target, (entry, names, values)) in zip(
            axes, outer_labels([n for _, n, _ in mats.values()], 2), mats.items()):
        image = _image(ax, values, "Blues")
        _classes(ax, names, x_shown)
        if len(names) <= HEATMAP_LABELS_MAX and y_shown:
            ax.set_yticks(range(len(names)), names, fontsize=7)
        else:
            ax.set_yticks([])
        title(ax, "\n".join(wrapped(line, side) for line in (target, entry)), 9)
        if annotate:
            _annotate(ax, values)
    fig.supxlabel("predicted class", fontsize=8)
    fig.supylabel("true class", fontsize=8)
    fig.colorbar(image, ax=axes, fraction=0.02, pad=0.01, aspect=40)
    return note_shown(fig, d)
