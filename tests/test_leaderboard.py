"""Leaderboard from hand-made records: exact means, intervals, ranks, ties, merging, exports, report, bad input."""

import base64
import json
import math
import shutil
import subprocess
import warnings

import pandas as pd
import pytest

from harness.results import leaderboard as lb
from harness.cli import main
from harness.results.records import CellRecord, FinalRecord, TrialRecord
from harness.results.report import pareto_front
from harness.results.store import RunStore

ACCS = {  # (dataset, samples_per_class, method) -> test accuracy of seeds 0, 1, 2
    ("digits", 0, "finetune"): [0.90, 0.92, 0.94],
    ("digits", 0, "linear_probe"): [0.85, 0.95, 0.90],
    ("digits", 0, "scratch"): [0.80, 0.82, 0.84],
    ("digits:5-9", 10, "finetune"): [0.60, 0.62, 0.64],
    ("digits:5-9", 10, "linear_probe"): [0.50, 0.55, 0.60],
    ("digits:5-9", 10, "scratch"): [0.70, 0.72, 0.74],
}
T975_DF2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2)


def cell_id(dataset, spc, method):
    return f"{dataset}-{spc}-{method}".replace(":", "")


def records_for(key, accs, shift=0.0, metric=None):
    dataset, spc, method = key
    cid = cell_id(*key)
    fields = {"cell_id": cid, "dataset": dataset, "samples_per_class": spc, "method": method,
              "backbone": "resnet8", "weights": "none" if method == "scratch" else "checkpoint:src.pt"}
    out = []
    for n, lr in enumerate([0.01, 0.05, 0.2]):
        out.append(TrialRecord(**fields, trial_id=f"t{n}", status="ok" if n else "stopped_early",
                               config={"lr": lr}, metric="val_accuracy", value=0.5 + 0.1 * n, trial_seconds=2.0,
                               history=[{"epoch": e, "val_accuracy": 0.3 + 0.1 * e + 0.05 * n} for e in (1, 2, 3)]))
    for seed, acc in enumerate(accs):
        out.append(FinalRecord(**fields, seed=seed, status="ok",
                               test={"accuracy": acc + shift, "balanced_accuracy": acc, "macro_f1": acc - 0.01,
                                     "roc_auc": 0.99, "nll": 0.3, "ece": 0.02},
                               data={"metric": metric} if metric else None,
                               cost={"params_total": 78000,
                                     "params_trainable": 650 if method == "linear_probe" else 78000,
                                     "train_seconds": 10.0 + seed, "train_images_per_s": 1000.0,
                                     "peak_memory_mb": 500.0 + seed}))
    out.append(CellRecord(**fields, status="ok", trials=3, trials_completed=2, trials_stopped_early=1,
                          trials_errored=0, trials_diverged=0, trial_seconds=6.0, gpus_per_trial=0.0, best_value=0.7,
                          best_trial_id="t2", best_config={"lr": 0.2, "epochs": 6},
                          space={"lr": {"loguniform": [0.01, 0.3]}, "epochs": 6}))
    return out


def make_run(root, name, keys, shift=0.0):
    store = RunStore(root / name)
    store.dir.mkdir(parents=True)
    for key in keys:
        store.append(records_for(key, ACCS[key], shift))
    return store.dir


@pytest.fixture
def run(tmp_path):
    return make_run(tmp_path, "quick-1", list(ACCS))


def row(df, dataset, method):
    r = df[(df.dataset == dataset) & (df.method == method)]
    assert len(r) == 1
    return r.iloc[0]


def test_exact_means_intervals_ranks_and_ties(run):
    df = lb.load([run])
    assert len(df) == 6
    ft = row(df, "digits", "finetune")
    assert ft.test_accuracy == pytest.approx(0.92)
    assert ft.test_accuracy_ci95 == pytest.approx(T975_DF2 * 0.02 / math.sqrt(3))
    assert ft.test_macro_f1 == pytest.approx(0.91)
    assert (ft.seeds, ft.params_trainable, ft.train_seconds, ft.peak_memory_mb) == (3, 78000, 11.0, 502.0)
    assert (ft.search_trials, ft.search_stopped_early, ft.search_trial_seconds) == (3, 1, 6.0)
    assert json.loads(ft.best_config) == {"lr": 0.2}  # only the searched keys
    ranks = {(r.dataset, r.method): (int(r["rank"]), bool(r.tied_with_best)) for _, r in df.iterrows()}
    assert ranks == {
        ("digits", "finetune"): (1, True), ("digits", "linear_probe"): (2, True),  # p = 0.55: tied
        ("digits", "scratch"): (3, False),  # p = 0.0036
        ("digits:5-9", "scratch"): (1, True), ("digits:5-9", "finetune"): (2, False),
        ("digits:5-9", "linear_probe"): (3, False),
    }


def test_the_headline_is_the_metric_the_dataset_literature_reports(tmp_path):
    store = RunStore(tmp_path / "r")
    store.dir.mkdir()
    for method, accs in (("finetune", [0.90, 0.92, 0.94]), ("scratch", [0.95, 0.95, 0.96])):
        recs = records_for(("pets", 0, method), accs, metric="balanced_accuracy")
        for r in recs:  # mean per-class accuracy reverses the order that plain accuracy gives
            if isinstance(r, FinalRecord):
                r.test["balanced_accuracy"] = r.test["accuracy"] - (0.0 if method == "finetune" else 0.2)
        store.append(recs)
    df = lb.load([store.dir])
    ft, sc = row(df, "pets", "finetune"), row(df, "pets", "scratch")
    assert (ft.metric, ft.test_score, ft["rank"]) == ("balanced_accuracy", pytest.approx(0.92), 1)
    assert sc.test_score == pytest.approx(0.7533333) and sc["rank"] == 2 and sc.test_accuracy > ft.test_accuracy


def test_summary_matrix_averages_ranks_and_accuracy_across_datasets(run):
    m = lb.summary_matrix(lb.load([run]))
    assert list(m.index) == ["finetune/resnet8", "scratch/resnet8", "linear_probe/resnet8"]
    assert m.loc["finetune/resnet8", "avg_rank"] == 1.5 and m.loc["scratch/resnet8", "avg_rank"] == 2.0
    assert m.loc["linear_probe/resnet8", "avg_score"] == pytest.approx((0.90 + 0.55) / 2)
    assert m.loc["scratch/resnet8", "digits:5-9@10/class"] == pytest.approx(0.72)


def test_merging_runs_keeps_an_overlapping_cell_once_from_the_first_run(tmp_path):
    a = make_run(tmp_path, "a", [k for k in ACCS if k[0] == "digits"])
    b = make_run(tmp_path, "b", [("digits", 0, "finetune"), *[k for k in ACCS if k[0] != "digits"]], shift=0.01)
    merged = lb.load([a, b])
    assert len(merged) == 6
    assert row(merged, "digits", "finetune").test_accuracy == pytest.approx(0.92)
    assert row(merged, "digits", "finetune").run_id == "a"
    assert row(lb.load([b, a]), "digits", "finetune").test_accuracy == pytest.approx(0.93)
    assert row(merged, "digits:5-9", "scratch").test_accuracy == pytest.approx(0.73)


def test_csv_json_and_parquet_round_trip_through_pandas(run, tmp_path):
    df = lb.load([run])
    for fmt, read in (("csv", pd.read_csv), ("parquet", pd.read_parquet), ("json", pd.read_json)):
        path = tmp_path / f"board.{fmt}"
        lb.write(df, fmt, path)
        back = read(path)
        pd.testing.assert_frame_equal(back[df.columns], df, check_dtype=False)


def test_filters_and_sort(run):
    df = lb.select(lb.load([run]), datasets=["digits"], sort="test_accuracy")
    assert list(df.method) == ["finetune", "linear_probe", "scratch"]
    df = lb.select(lb.load([run]), methods=["scratch"], sort="test_accuracy", ascending=True)
    assert list(df.dataset) == ["digits:5-9", "digits"] and list(df["rank"]) == [1, 3]


def test_cli_prints_and_writes_every_format(run, tmp_path, capsys):
    assert main(["leaderboard", str(run), "--format", "md", "--dataset", "digits"]) == 0
    out = capsys.readouterr().out
    assert "| digits " in out and "0.9200 ± 0.0497" in out and "digits:5-9" not in out.split("## Summary")[0]
    for name in ("b.csv", "b.json", "b.parquet", "b.html", "b.md"):
        assert main(["leaderboard", str(run), "--out", str(tmp_path / name)]) == 0
        assert (tmp_path / name).stat().st_size > 0
    assert len(pd.read_parquet(tmp_path / "b.parquet")) == 6


def decode_images(text):
    chunks = text.split("src='data:image/png;base64,")[1:]
    return [base64.b64decode(c.split("'", 1)[0]) for c in chunks]


def test_html_report_is_self_contained_with_tables_and_four_plots(run, tmp_path):
    path = tmp_path / "report.html"
    lb.write(lb.load([run]), "html", path, lb.load_records([run]))
    text = path.read_text()
    assert text.count("<table") == 3  # leaderboard, summary, chosen hyperparameters
    images = decode_images(text)
    assert len(images) == 4 and all(i.startswith(b"\x89PNG") and len(i) > 5000 for i in images)
    assert "http://" not in text and "https://" not in text  # nothing fetched from the network
    assert "0.9200 ± 0.0497" in text


def test_pareto_front():
    cost, acc = [1.0, 2.0, 3.0, 4.0, 2.5], [0.5, 0.7, 0.6, 0.9, 0.8]
    assert pareto_front(cost, acc) == [0, 1, 4, 3]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(not CHROMIUM, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(run, tmp_path):
    path = tmp_path / "report.html"
    lb.write(lb.load([run]), "html", path, lb.load_records([run]))
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
                          "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120)
    dom = out.stdout
    assert dom.count("<table") == 3 and dom.count("<img") == 4, out.stderr[-2000:]
    assert 'data-images-loaded="4"' in dom, "the embedded images did not decode in the browser"


def test_a_folder_without_records_is_a_clear_error(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path)]) == 2
    assert "no records.jsonl; is it a run folder written by `harness run`?" in capsys.readouterr().err
    (tmp_path / "records.jsonl").write_text("")
    assert main(["leaderboard", str(tmp_path)]) == 2
    assert "holds no records yet" in capsys.readouterr().err


def test_a_corrupt_line_is_skipped_with_a_warning_naming_file_and_line(run):
    path = run / "records.jsonl"
    lines = path.read_text().splitlines()
    lines[3] = lines[3][: len(lines[3]) // 2]  # a truncated trial record
    path.write_text("\n".join(lines) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = lb.load([run])
    assert len(df) == 6
    assert any(f"{path}:4: skipped a corrupt record" in str(w.message) for w in caught)


def test_a_corrupt_line_warns_on_one_line_from_the_cli(run, capsys):
    path = run / "records.jsonl"
    path.write_text(path.read_text() + '{"kind": "final", "cell_')
    assert main(["leaderboard", str(run)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    n = len(path.read_text().splitlines())
    assert err == [f"harness: warning: {path}:{n}: skipped a torn last line (a write cut short)"]


def test_an_unknown_schema_version_is_refused(run, capsys):
    path = run / "records.jsonl"
    lines = path.read_text().splitlines()
    lines[0] = lines[0].replace('"schema": 3', '"schema": 7')
    path.write_text("\n".join(lines) + "\n")
    assert main(["leaderboard", str(run)]) == 2
    assert "records of schema version 7; this harness reads versions 1, 2 and 3" in capsys.readouterr().err


def test_bad_filters_sort_and_format(run, capsys):
    assert main(["leaderboard", str(run), "--dataset", "cifar10"]) == 2
    assert "--dataset=cifar10: not in these runs; choose from: digits, digits:5-9" in capsys.readouterr().err
    assert main(["leaderboard", str(run), "--sort", "accuracy"]) == 2
    assert "--sort=accuracy: no such column" in capsys.readouterr().err
    assert main(["leaderboard", str(run), "--format", "xlsx"]) == 2
    assert "--format=xlsx: choose from: text, md, csv, json, parquet, html" in capsys.readouterr().err
    assert main(["leaderboard", str(run), "--format", "parquet"]) == 2
    assert "binary; give --out FILE" in capsys.readouterr().err
