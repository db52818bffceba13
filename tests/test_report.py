"""The report and the integrations on one real tiny run (a local Ray cluster, logged live to an MLflow file store):
the report in headless Chromium, MLflow read back with its client, TensorBoard event files, pandas levels."""

from __future__ import annotations

import base64
import io
import shutil
import struct
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

ray = pytest.importorskip("ray")
mlflow = pytest.importorskip("mlflow")

from harness import leaderboard
from harness.cli import main
from harness.core.errors import ConfigError
from harness.results import heatmaps, plots
from harness.results.html import interval, number
from harness.results.records import CellRecord, FinalRecord, TrialRecord
from harness.results.store import RunStore, read_records

WIDTH = 1280


@pytest.fixture(scope="module")
def tiny_run(source_checkpoint, tmp_path_factory):
    """One finished run (2 cells x 2 trials, 2 final seeds each) logged live to an MLflow file store."""
    root = tmp_path_factory.mktemp("tiny")
    suite = {"name": "tiny", "datasets": ["digits:0-4"], "methods": ["scratch", "linear_probe"],
             "backbones": [{"name": "resnet8", "weights": f"checkpoint:{source_checkpoint}"}],
             "search": {"num_samples": 2, "scheduler": "fifo", "max_concurrent_trials": 2},
             "final_seeds": 2, "overrides": {"epochs": 2, "lr": 0.05}}
    (root / "tiny.yaml").write_text(yaml.safe_dump(suite))
    uri = (root / "mlruns").as_uri()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main(["run", "--suite", str(root / "tiny.yaml"), "--results-dir", str(root / "results"),
                     "--mlflow", uri]) == 0
    finally:
        ray.shutdown()
    (run_dir,) = [d for d in (root / "results").iterdir() if d.name.startswith("tiny-")]
    return run_dir, uri


def records_of(run_dir: Path, kind: type) -> list:
    return [r for r in read_records(run_dir / "records.jsonl") if isinstance(r, kind)]


# ------------------------------------------------------------------ MLflow

def runs_of(client, experiment: str, kind: str) -> list:
    return client.search_runs([experiment], f"tags.`harness.kind` = '{kind}'")


def test_mlflow_holds_the_run_its_cells_trials_and_finals(tiny_run, capsys):
    run_dir, uri = tiny_run
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny").experiment_id
    (top,) = runs_of(client, experiment, "run")
    cells, trials, finals = (runs_of(client, experiment, k) for k in ("cell", "trial", "final"))
    assert (len(cells), len(trials), len(finals)) == (2, 4, 4)
    assert top.data.tags["harness.run_id"] == run_dir.name
    artifacts = {a.path for a in client.list_artifacts(top.info.run_id)}
    assert {"report.html", "leaderboard.csv", "leaderboard.md", "leaderboard.json"} <= artifacts
    board = pd.read_csv(run_dir / "leaderboard.csv").set_index("cell_id")
    by_cell = {c.data.tags["harness.cell_id"]: c for c in cells}
    for cell_id, c in by_cell.items():
        assert c.data.tags["mlflow.parentRunId"] == top.info.run_id and c.data.tags["verdict"] == board.verdict[cell_id]
        assert c.data.metrics["test_score"] == pytest.approx(board.test_score[cell_id])
        assert c.data.params["method"] == board.method[cell_id]
    records = {f"trial:{r.cell_id}:{r.trial_id}": r for r in records_of(run_dir, TrialRecord)}
    for t in trials:  # logged live by Tune's MLflowLoggerCallback, under their cells
        r = records[t.data.tags["harness.record"]]
        assert t.data.tags["mlflow.parentRunId"] == by_cell[r.cell_id].info.run_id
        assert t.data.tags["harness.status"] == r.status == "ok" and t.info.status == "FINISHED"
        assert float(t.data.params["dropout"]) == pytest.approx(r.config["dropout"])
        history = client.get_metric_history(t.info.run_id, "val_accuracy")
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
            [h["val_accuracy"] for h in r.history])
        assert t.data.metrics["cost_train_seconds"] > 0
    seeds = sorted(int(f.data.params["seed"]) for f in finals)
    assert seeds == [1, 1, 2, 2] and all(f.data.metrics["test_accuracy"] > 0 for f in finals)
    # the export after the fact adds nothing to a store the run logged, and builds the same from the records alone
    other = (run_dir.parent / "mlruns-later").as_uri()
    for target, added in ((uri, "(0 cells, 0 trials and 0 finals added)"), (other, "(2 cells, 4 trials and 4 finals")):
        assert main(["leaderboard", str(run_dir), "--mlflow", target]) == 0
        assert added in capsys.readouterr().err
    later = mlflow.MlflowClient(other)
    exp = later.get_experiment_by_name("tiny").experiment_id
    assert [len(runs_of(later, exp, k)) for k in ("run", "cell", "trial", "final")] == [1, 2, 4, 4]


# ------------------------------------------------------------------ TensorBoard

def scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    """The scalar summaries of a TensorBoard event file (TFRecord framing, tensorboardX's protobuf)."""
    from tensorboardX.proto.event_pb2 import Event

    out: dict[str, list[tuple[int, float]]] = {}
    data, pos = path.read_bytes(), 0
    while pos < len(data):
        (n,) = struct.unpack("<Q", data[pos:pos + 8])
        event = Event.FromString(data[pos + 12:pos + 12 + n])
        pos += 12 + n + 4
        for v in event.summary.value:
            out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def test_tensorboard_event_files_hold_the_searched_metric(tiny_run):
    run_dir, _ = tiny_run
    trials = records_of(run_dir, TrialRecord)
    files = {p.parent.name: p for p in (run_dir / "tune").glob("search-*/trial_*/events.out.tfevents.*")}
    # the shared Tuner's folder holds its search trials and the final runs that followed each cell's search
    assert len(files) == len(trials) + len(records_of(run_dir, FinalRecord)) == 8 and len(trials) == 4
    for t in trials:
        values = [v for _, v in sorted(scalars(files[f"trial_{t.trial_id}"])["ray/tune/val_accuracy"])]
        assert values == pytest.approx([h["val_accuracy"] for h in t.history])


# ------------------------------------------------------------------ pandas

def test_load_gives_cell_trial_and_final_frames_with_the_files_names(tiny_run):
    run_dir, _ = tiny_run
    cells = leaderboard.load(run_dir)
    assert list(cells.columns) == list(pd.read_csv(run_dir / "leaderboard.csv").columns)
    trials = leaderboard.load([run_dir], level="trial")
    assert len(trials) == 4 and {"trial_id", "status", "value", "config.lr", "config.dropout", "history",
                                 "cost.train_seconds", "val.accuracy"} <= set(trials.columns)
    assert (trials["config.lr"] == 0.05).all() and set(trials.cell_id) == set(cells.cell_id)
    finals = leaderboard.load(run_dir, level="final")
    assert len(finals) == 4 and sorted(finals.seed) == [1, 1, 2, 2]
    mean = finals.groupby("cell_id")["test.accuracy"].mean()
    assert cells.set_index("cell_id").test_accuracy.to_dict() == pytest.approx(mean.to_dict())
    with pytest.raises(ConfigError, match="level='trials': choose from: cell, trial, final"):
        leaderboard.load(run_dir, level="trials")


# ------------------------------------------------------------------ the report in a browser

def chrome():
    """A headless Chromium driven through Debian's chromedriver, or None with the reason."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        return None, "no Chromium here (apt-get install chromium chromium-driver)"
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={WIDTH},900", "--disable-background-networking", "--no-first-run"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver)), ""


def test_the_report_in_headless_chromium(tiny_run):
    run_dir, _ = tiny_run
    report = run_dir / "report.html"
    assert report.stat().st_size < 1_000_000
    text = report.read_text()
    assert "http://" not in text and "https://" not in text  # nothing fetched
    browser, why = chrome()
    if browser is None:
        pytest.skip(why)
    try:
        browser.get(report.as_uri())
        js = browser.execute_script
        assert js("return window.innerWidth") == WIDTH
        overflow = js("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than the window"
        images = js("return [...document.images].map(i => [i.alt, i.complete && i.naturalWidth > 0])")
        assert len(images) >= 6 and all(ok for _, ok in images), images
        alts = {alt for alt, _ in images}
        assert {"Per-class test accuracy", "Confusion matrix of each dataset's best entry",
                "Every search trial (parallel coordinates)"} <= alts
        index = js("return [...document.querySelectorAll('table.leaderboard thead th')]"
                   ".findIndex(th => th.textContent === 'test score')")
        column = ("return [...document.querySelectorAll('table.leaderboard tbody tr')]"
                  f".map(r => r.children[{index}].dataset.v)")
        before = js(column)
        browser.find_element("xpath", "//table[contains(@class,'leaderboard')]//th[text()='test score']").click()
        ascending = js(column)
        browser.find_element("xpath", "//table[contains(@class,'leaderboard')]//th[text()='test score']").click()
        descending = js(column)
        assert sorted(before, key=float) == ascending and descending == ascending[::-1] and before != ascending
        select = browser.find_element("css selector", ".filters select[data-key='method']")
        select.find_element("xpath", "option[text()='scratch']").click()
        shown = js("return [...document.querySelectorAll('table.leaderboard tbody tr')].filter(r => !r.hidden)"
                   ".map(r => r.dataset.method)")
        assert shown == ["scratch"]
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        browser.quit()


# ------------------------------------------------------------------ layout without a browser

def test_numbers_read_as_people_write_them():
    assert number(0.996296) == "0.996" and number(32.0) == "32" and number(78000) == "78,000"
    assert number(None) == number(float("nan")) == "–" and number(12.3456) == "12.35"
    assert interval(0.93, 0.042) == "0.930 ± 0.042" and interval(0.93, float("nan")) == "0.930"


def long_named_run(root: Path) -> Path:
    """Hand-made records of two datasets and three methods with long names (the report reads any method name)."""
    store = RunStore(root / "long-1")
    store.dir.mkdir(parents=True)
    records = []
    for d, dataset in enumerate(["a_dataset_with_a_rather_long_name:0-4", "another_long_dataset_name_for_labels"]):
        for m, method in enumerate(["linear_probe_with_a_very_long_method_name", "finetune_everything_slowly",
                                    "scratch"]):
            fields = {"cell_id": f"c{d}{m}", "dataset": dataset, "samples_per_class": 0, "method": method,
                      "backbone": "resnet8", "weights": "checkpoint:/x/a_source_network_with_a_long_name.pt"}
            for t, lr in enumerate([0.01, 0.05, 0.2]):
                records.append(TrialRecord(**fields, trial_id=f"t{t}", status="ok", config={"lr": lr, "dropout": 0.1 * t},
                                           metric="val_accuracy", value=0.5 + 0.1 * t + 0.01 * m,
                                           history=[{"epoch": e, "val_accuracy": 0.3 + 0.1 * e} for e in (1, 2)]))
            for seed in (1, 2):
                acc = 0.6 + 0.1 * m + 0.01 * seed
                records.append(FinalRecord(**fields, seed=seed, status="ok", data={"class_names": list("abcde")},
                                           test={"accuracy": acc, "balanced_accuracy": acc, "macro_f1": acc,
                                                 "nll": 0.5, "ece": 0.1, "per_class_accuracy": [acc] * 5,
                                                 "confusion_matrix": [[5 if i == j else 1 for j in range(5)]
                                                                      for i in range(5)]},
                                           cost={"params_total": 78000, "params_trainable": 78000,
                                                 "train_seconds": 3.0 + m, "train_images_per_s": 100.0,
                                                 "peak_memory_mb": 10.0}))
            records.append(CellRecord(**fields, status="ok", metric="val_accuracy", trials=3, trial_seconds=6.0,
                                      best_value=0.7, best_trial_id="t2", best_config={"lr": 0.2, "dropout": 0.2},
                                      space={"lr": {"loguniform": [0.01, 0.3]}, "dropout": {"uniform": [0, 0.5]}}))
    store.append(records)
    return store.dir


def overlaps(fig) -> list[str]:
    """Texts of one panel (tick labels, titles, axis labels, legends) that run into another panel or its texts, once
    the figure is laid out (twice here: a second layout must not move anything into another panel either)."""
    fig.canvas.draw()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    boxes = {}
    for ax in axes:
        (x0, x1), (y0, y1) = sorted(ax.get_xbound()), sorted(ax.get_ybound())
        ticks = [t for t in ax.get_xticklabels() if x0 <= t.get_position()[0] <= x1]  # those drawn
        ticks += [t for t in ax.get_yticklabels() if y0 <= t.get_position()[1] <= y1]
        texts = [*ticks, ax.title, ax.xaxis.label, ax.yaxis.label]
        legend = ax.get_legend()
        boxes[ax] = [t.get_window_extent(renderer) for t in texts if t.get_text() and t.get_visible()]
        if legend is not None:
            boxes[ax].append(legend.get_window_extent(renderer))
    found = []
    for a in axes:
        for b in axes:
            if a is b:
                continue
            for box in boxes[a]:
                if box.overlaps(b.get_window_extent(renderer)) or any(box.overlaps(o) for o in boxes[b]):
                    found.append(f"{a.get_title()!r} runs into {b.get_title()!r}")
    return found


def test_plot_labels_never_overlap_with_long_names(tmp_path):
    run_dir = long_named_run(tmp_path)
    records = leaderboard.load_records([run_dir])
    df = leaderboard.frame(records)
    figures = {"accuracy": plots.figure_accuracy(df), "cost": plots.figure_cost(df),
               "curves": plots.figure_curves(df, records.trials), "lr": plots.figure_lr(df, records.trials),
               "per_class": heatmaps.figure_per_class(df, records.finals),
               "confusion": heatmaps.figure_confusion(df, records.finals),
               "parallel": plots.figure_parallel(records.cells, records.trials, df)}
    for name, fig in figures.items():
        assert fig is not None, name
        assert len([ax for ax in fig.axes if ax.get_visible()]) >= 2, name
        assert not overlaps(fig), (name, overlaps(fig))
    text = leaderboard.render(df, "html", records).decode()
    assert "0.615 ± 0.064" in text and "78,000" in text  # 3 significant digits with the interval; integers


def test_png_draws_a_laid_out_figure_once_at_its_size_and_crops_any_other():
    """A constrained-layout figure comes back at its own size (DPI per inch) as an opaque RGB PNG, its panels
    laid out; a figure without a layout engine is cropped to what it draws."""
    fig, axes = plots.panels(2, width=3.0, height=2.0)
    for ax in axes:
        ax.set_ylabel("a rather long label that needs room")
    image = Image.open(io.BytesIO(base64.b64decode(plots.png(fig))))
    assert image.mode == "RGB" and image.size == (round(6.0 * plots.DPI), round(2.0 * plots.DPI))
    assert axes[0].get_position().x0 > 0.05  # room made for the label
    plain = plots.plt.figure(figsize=(4.0, 4.0))
    plain.text(0.5, 0.5, "x")
    cropped = Image.open(io.BytesIO(base64.b64decode(plots.png(plain))))
    assert cropped.size[0] < 4.0 * plots.DPI and cropped.size[1] < 4.0 * plots.DPI
