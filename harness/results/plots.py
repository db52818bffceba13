"""The report's figures (matplotlib, Agg): one figure per view, panels laid out so that no label runs into another
panel (long titles wrap within their panel, legends sit below the panels, and constrained layout makes room).

Text and ticks are what a figure costs to draw (matplotlib lays each label out at every layout pass and draws it
glyph by glyph), so panels share what they can: one entry axis named once per row of panels, axis names and shared
tick labels on the outer panels only, a few ticks in plain numbers (no mathtext), a legend of methods and networks
where that is shorter than one line per entry. The heatmaps are in `heatmaps`.

Each `figure_*` function returns a Figure, or None when the records hold nothing to draw; `png` encodes one."""

from __future__ import annotations

import base64
import io
import math
import re
import textwrap
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator
from PIL import Image

from harness.results.records import (
    CellRecord,
    TrialRecord,
    by_cell,
    target_label,
)
from harness.results.stats import BEST, TOO_FEW, UNDISTINGUISHED, WORSE, Friedman

VERDICT_COLORS = {BEST: "#1f5f99", UNDISTINGUISHED: "#5b9bd0", WORSE: "#c6d9ea", TOO_FEW: "#bbbbbb"}
DPI = 90
MARKERS = "osD^v<>ph*"
PANELS_MAX = 12  # datasets drawn in a per-dataset figure (a panel each); the first ones in leaderboard order
PARALLEL_MAX = 24  # cells drawn in parallel coordinates (a panel each); beyond, the best-ranked of each dataset
ROW = 0.2  # inches per entry where a figure has a row per entry


def png(fig: plt.Figure) -> str:
    """The figure as a base64 PNG at DPI (closed afterwards). A constrained-layout figure is laid out once and
    drawn once, its opaque canvas encoded as RGB (savefig would lay it out and draw it twice, and keep alpha);
    any other figure is saved cropped to its contents. An axis without a name is not laid out around one (matplotlib
    would measure every tick label of the axis, at every layout pass and draw, to place the empty name)."""
    buf = io.BytesIO()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if not axis.label.get_text():  # nothing to place: no search for a spot beside the tick labels
                axis.set_label_coords(0.0, 0.0)
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


def panels(n: int, width: float = 4.6, height: float = 3.2, per_row: int = 2, share: bool = False
           ) -> tuple[plt.Figure, list[plt.Axes]]:
    """One panel per dataset, at most `per_row` to a row. `share`: one x and one y scale for all, tick labels only
    on the bottom panel of each column and the first of each row."""
    rows, cols = math.ceil(n / per_row), min(n, per_row)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained",
                             sharex=share, sharey=share)
    fig.get_layout_engine().set(wspace=0.08, hspace=0.08)  # a gap between one panel's ticks and the next one's
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    if share:
        for ax in axes.flat[max(0, n - cols):n]:  # the bottom panel of a column whose last row is short
            ax.xaxis.set_tick_params(labelbottom=True)
    return fig, list(axes.flat[:n])


def axis_names(axes: Sequence[plt.Axes], xlabel: str, ylabels: Sequence[str], per_row: int = 2) -> None:
    """Axis names on the outer panels only: the x name under the bottom panel of each column, the y name left of
    the first panel of each row (on every panel where the panels' y names differ)."""
    same = len(set(ylabels)) == 1
    for i, ax in enumerate(axes):
        if i + per_row >= len(axes):
            ax.set_xlabel(xlabel, fontsize=8)
        if i % per_row == 0 or not same:
            ax.set_ylabel(ylabels[0] if same else ylabels[i], fontsize=8)


def few_ticks(ax: plt.Axes, log_x: bool = False) -> None:
    """At most four ticks on a linear axis; a log x axis with decades (1-2-5 steps where fewer than two decades
    are in view, four even steps within one), no minor ticks, labelled in plain numbers: mathtext labels are slow
    to lay out."""
    ax.yaxis.set_major_locator(MaxNLocator(4))
    if not log_x:
        ax.xaxis.set_major_locator(MaxNLocator(4))
        return
    lo, hi = sorted(ax.get_xlim())
    if lo > 0 and hi / lo < 10:
        ax.xaxis.set_major_locator(MaxNLocator(4))
    elif lo > 0 and hi / lo < 100:
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def title(ax: plt.Axes, text: str, fontsize: float) -> None:
    """A panel's title, right above the panel: no panel here has tick labels on top, so matplotlib's search for
    them (a layout of the y axis per title, per layout pass) is skipped."""
    ax.set_title(text, fontsize=fontsize, y=1.0)


def wrapped(text: str, width_in: float, fontsize: float = 9) -> str:
    """A panel title broken into lines that fit the panel's width (about 0.62 em a character), after `@`, `/`, `?`,
    `:`, `_` or a space where it can (`shapes?seed=0@` / `10/class`)."""
    width = max(8, int(width_in * 72 / (0.62 * fontsize)))
    lines, line = [], ""
    for part in re.findall(r"[^@/?:_ ]*[@/?:_ ]?", text)[:-1]:
        if line and len(line) + len(part.rstrip()) > width:
            lines.append(line.rstrip())
            line = ""
        line += part
        while len(line.rstrip()) > width:
            lines.append(line[:width])
            line = line[width:]
    return "\n".join([*lines, line.rstrip()] if line.strip() else lines)


def entry_order(d: pd.DataFrame) -> list[str]:
    """The entries of a per-dataset figure, best first (their mean rank over the datasets drawn)."""
    return list(d.groupby("entry", sort=False)["rank"].mean().sort_values(kind="stable").index)


def entry_grid(n: int, entries: Sequence[str], width: float, per_row: int = 6, row_height: float = ROW
               ) -> tuple[plt.Figure, list[plt.Axes]]:
    """Panels side by side on one entry axis (a row per entry, top to bottom), the entry names written on the first
    panel of each row of panels only, so that many datasets cost no more names than one; faint lines carry each
    row across the panels."""
    per_row = min(n, per_row)
    rows = math.ceil(n / per_row)
    names = 0.3 + 0.065 * max(len(e) for e in entries)
    fig, axes = plt.subplots(rows, per_row, figsize=(names + width * per_row, rows * (1.0 + row_height * len(entries))),
                             squeeze=False, layout="constrained")
    fig.get_layout_engine().set(wspace=0.04, hspace=0.08)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_visible(False)
            continue
        ax.set_ylim(len(entries) - 0.5, -0.5)
        if i % per_row == 0:
            ax.set_yticks(range(len(entries)), entries, fontsize=8)
        else:
            ax.set_yticks([])
    return fig, list(axes.flat[:n])


def entry_styles(entries: Sequence[str]) -> tuple[dict[str, dict[str, Any]], list[Any]]:
    """One colour and marker per entry, the same in every panel of a figure, and the legend handles naming them.
    Where it takes fewer legend lines and still tells every entry apart, the colour names the method and the marker
    the network (backbone and weights): 10 methods on 5 networks are 15 lines, not 50."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    entries = list(dict.fromkeys(entries))
    parts = {e: tuple(e.split("/", 1)) if "/" in e else (e, "") for e in entries}
    methods = list(dict.fromkeys(m for m, _ in parts.values()))
    networks = list(dict.fromkeys(n for _, n in parts.values()))
    if len(methods) <= len(colors) and len(networks) <= len(MARKERS) and len(methods) + len(networks) < len(entries):
        styles = {e: {"color": colors[methods.index(m)], "marker": MARKERS[networks.index(n)]}
                  for e, (m, n) in parts.items()}
        return styles, ([Patch(color=colors[i], label=m) for i, m in enumerate(methods)]
                        + [Line2D([], [], linestyle="", color="#555555", marker=MARKERS[i], label=n)
                           for i, n in enumerate(networks)])
    styles = {e: {"color": colors[i % len(colors)], "marker": MARKERS[i // len(colors) % len(MARKERS)]}
              for i, e in enumerate(entries)}
    return styles, [Line2D([], [], linestyle="", **style, label=e) for e, style in styles.items()]


def figure_legend(fig: plt.Figure, handles: Sequence[Any]) -> None:
    """One legend for the whole figure, below the panels (the layout makes room: it never covers a panel)."""
    column = 0.5 + 0.06 * max((len(h.get_label()) for h in handles), default=0)  # inches: a marker, a name at 7 pt
    fits = int(fig.get_figwidth() // column)
    fig.legend(handles=handles, loc="outside lower center", ncols=max(1, min(3, fits, len(handles))), fontsize=7,
               frameon=False)


def label_of(metric: str) -> str:
    return metric.replace("_", " ")


def figure_accuracy(df: pd.DataFrame) -> plt.Figure | None:
    """Bars of the headline test score per entry with 95% intervals, coloured by verdict; a panel per dataset, side
    by side on one entry axis (best entries on top), so that an entry reads across the datasets. The bars of a panel
    are one line collection (a bar each is a patch each)."""
    d = with_target(df).dropna(subset=["test_score"])
    if d.empty:  # no cell had a winner with finals
        return None
    ts = targets(d)
    shown = d[d.target.isin(ts)]
    entries = entry_order(shown)
    row_of = {e: i for i, e in enumerate(entries)}
    metrics = {t: label_of(shown.metric[shown.target == t].iloc[0]) for t in ts}
    one_metric = len(set(metrics.values())) == 1
    width = 1.9
    fig, axes = entry_grid(len(ts), entries, width)
    for ax, t in zip(axes, ts):
        rows = shown[shown.target == t]
        y, score = [row_of[e] for e in rows.entry], rows.test_score.to_numpy(dtype=float)
        err = rows.test_score_ci95.fillna(0).to_numpy(dtype=float)
        lo = max(0.0, float((score - err).min()) - 0.05)
        ax.hlines(range(len(entries)), 0, 1, transform=ax.get_yaxis_transform(), colors="#eeeeee", lw=0.5, zorder=0)
        ax.hlines(y, lo, score, colors=[VERDICT_COLORS[v] for v in rows.verdict], lw=0.7 * 72 * ROW, capstyle="butt")
        ax.errorbar(score, y, xerr=err, fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
        ax.set_xlim(lo, max(1.0, float((score + err).max())))
        ax.xaxis.set_major_locator(MaxNLocator(3))
        ax.tick_params(axis="x", labelsize=7)
        title(ax, wrapped(t if one_metric else f"{t} ({metrics[t]})", width), 9)
    fig.supxlabel(f"test {metrics[ts[0]]} (mean, 95% CI)" if one_metric else
                  "each dataset's headline test metric (mean, 95% CI)", fontsize=8)
    return note_shown(fig, d)


def cost_column(df: pd.DataFrame) -> tuple[str, str]:
    """The cost axis: search GPU-hours where any cell used a GPU, else training seconds per run."""
    gpu = bool((df.search_gpu_hours.fillna(0) > 0).any())
    return ("search_gpu_hours", "search GPU-hours") if gpu else ("train_seconds", "training seconds per run")


def figure_cost(df: pd.DataFrame) -> plt.Figure | None:
    """Headline test score against cost per dataset, each entry its own marker (legend below), the Pareto front;
    each panel on its own scales (datasets differ in cost and score), axis names on the outer panels."""
    d = with_target(df).dropna(subset=["test_score"])
    col, label = cost_column(df)
    d = d.dropna(subset=[col])
    if d.empty:
        return None
    ts = targets(d)
    fig, axes = panels(len(ts))
    styles, handles = entry_styles(d.entry)
    for ax, t in zip(axes, ts):
        rows = d[d.target == t].reset_index(drop=True)
        cost, acc = rows[col].astype(float).tolist(), rows.test_score.astype(float).tolist()
        for c, a, name in zip(cost, acc, rows.entry):
            ax.plot([c], [a], linestyle="", zorder=3, **styles[name])  # one Line2D: a scatter's point, cheaper
        front = pareto_front(cost, acc)
        ax.plot([cost[i] for i in front], [acc[i] for i in front], "-", color="#d2542a", label="Pareto front")
        if min(cost) > 0:
            ax.set_xscale("log")
        few_ticks(ax, log_x=min(cost) > 0)
        title(ax, t, 10)
    axis_names(axes, label, [f"test {label_of(d.metric[d.target == t].iloc[0])}" for t in ts])
    from matplotlib.lines import Line2D

    figure_legend(fig, [*handles, Line2D([], [], color="#d2542a", label="Pareto front")])
    return note_shown(fig, d)


def figure_curves(df: pd.DataFrame, trials: Sequence[TrialRecord]) -> plt.Figure | None:
    """The searched metric per epoch of each cell's winning trial, one panel per dataset, all on one scale."""
    best = {(r.cell_id, r.best_trial_id) for r in df.itertuples() if getattr(r, "best_trial_id", None)}
    d = with_target(df)
    target_of, entry_of = dict(zip(d.cell_id, d.target)), dict(zip(d.cell_id, d.entry))
    curves = [t for t in trials if (t.cell_id, t.trial_id) in best and t.history]
    if not curves:
        return None
    ts = targets(d)
    fig, axes = panels(len(ts), share=True)
    styles, handles = entry_styles([entry_of[t.cell_id] for t in curves if t.cell_id in entry_of])
    per_target: dict[str, list[TrialRecord]] = {}
    for t in curves:
        if t.cell_id in target_of:
            per_target.setdefault(target_of[t.cell_id], []).append(t)
    for ax, target in zip(axes, ts):
        for t in per_target.get(target, []):
            h = [row for row in t.history if row.get(t.metric) is not None]
            ax.plot([row["epoch"] for row in h], [row[t.metric] for row in h], markersize=4,
                    **styles[entry_of[t.cell_id]])
        title(ax, target, 10)
    few_ticks(axes[0])
    axes[0].xaxis.set_major_locator(MaxNLocator(4, integer=True))
    axis_names(axes, "epoch", [label_of(curves[0].metric)] * len(axes))
    figure_legend(fig, handles)
    return note_shown(fig, d)


def figure_lr(df: pd.DataFrame, trials: Sequence[TrialRecord]) -> plt.Figure | None:
    """Searched metric against learning rate for every trial, one panel per dataset, all on one scale; hollow:
    stopped early."""
    d = with_target(df)
    target_of, entry_of = dict(zip(d.cell_id, d.target)), dict(zip(d.cell_id, d.entry))
    points = [t for t in trials if t.cell_id in target_of and t.value is not None
              and isinstance(t.config.get("lr"), (int, float)) and math.isfinite(t.value)]
    if not points:
        return None
    ts = targets(d)
    fig, axes = panels(len(ts), share=True)
    styles, handles = entry_styles([entry_of[t.cell_id] for t in points])
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
        title(ax, target, 10)
    few_ticks(axes[0], log_x=True)
    axis_names(axes, "learning rate", [label_of(points[0].metric)] * len(axes))
    figure_legend(fig, handles)
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
    scale where it was searched on one), the searched metric last; a trial's line is coloured by that metric. The
    axes' names are written under a panel unless the panel below has the same ones."""
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
    names = [[*keys, ts[0].metric] for _, keys, ts in views]
    cols = min(len(views), 2)
    cmap = plt.get_cmap("viridis")
    for n, (ax, (cell, keys, ts)) in enumerate(zip(axes, views)):
        columns = [_axis([t.config[k] for t in ts], _log_scaled(cell.space.get(k))) for k in keys]
        values = np.array([t.value for t in ts], dtype=float)
        columns.append(_axis(list(values), False))
        lo, hi = float(values.min()), float(values.max())
        for i, t in enumerate(ts):
            shade = (values[i] - lo) / (hi - lo) if hi > lo else 0.5
            ax.plot(range(len(columns)), [c[0][i] for c in columns], color=cmap(shade), alpha=0.8, lw=1.2,
                    linestyle="-" if t.status == "ok" else ":")
        ax.vlines(range(len(columns)), 0, 1, colors="#999", lw=0.8)  # each axis ends where its labels begin
        for j, (_, ticks) in enumerate(columns):
            for y, text in ticks:
                ax.text(j, y + (0.02 if y >= 0.5 else -0.02), text, fontsize=6, ha="center",
                        va="bottom" if y >= 0.5 else "top")
        below = names[n + cols] if n + cols < len(views) else None  # the panel under this one names the same axes
        ax.set_xticks(range(len(columns)), names[n], fontsize=7, rotation=30, ha="right")
        ax.tick_params(axis="x", labelbottom=below != names[n])
        ax.set_yticks([])
        ax.set_ylim(-0.12, 1.12)
        ax.set_xlim(-0.3, len(columns) - 0.7)
        name = f"{d.loc[cell.cell_id, 'target']} · {d.loc[cell.cell_id, 'entry']} ({len(ts)} trials)"
        title(ax, textwrap.fill(name, width=int(11 * width)), 8)  # long names wrap within the panel
    if shown > len(views):
        fig.suptitle(f"{len(views)} of {shown} cells: the best-ranked of each dataset first", fontsize=9)
    return fig
