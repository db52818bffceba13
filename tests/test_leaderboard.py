"""Leaderboard from hand-made records: exact means, intervals, ranks, ties, merging, exports, report, bad input."""

import base64
import dataclasses
import io
import json
import math
import warnings

import pandas as pd
import pytest
from scipy.stats import friedmanchisquare, ttest_ind, ttest_rel

from harness.results import leaderboard as lb
from harness.cli import main
from harness.results.records import CellRecord, FinalRecord, TrialRecord
from harness.results.plots import pareto_front
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


def test_exact_means_intervals_ranks_and_verdicts(run):
    df = lb.load([run])
    assert len(df) == 6
    ft = row(df, "digits", "finetune")
    assert ft.test_accuracy == pytest.approx(0.92)
    assert ft.test_accuracy_ci95 == pytest.approx(T975_DF2 * 0.02 / math.sqrt(3))
    assert ft.test_macro_f1 == pytest.approx(0.91)
    assert (ft.seeds, ft.params_trainable, ft.train_seconds, ft.peak_memory_mb) == (3, 78000, 11.0, 502.0)
    assert (ft.search_trials, ft.search_stopped_early, ft.search_trial_seconds) == (3, 1, 6.0)
    assert json.loads(ft.best_config) == {"lr": 0.2}  # only the searched keys
    ranks = {(r.dataset, r.method): (int(r["rank"]), r.verdict, r.test_used if pd.notna(r.test_used) else None)
             for _, r in df.iterrows()}
    assert ranks == {
        # all data: the seeds vary only the initialisation, so the runs do not pair: Welch
        ("digits", "finetune"): (1, "best", None),
        ("digits", "linear_probe"): (2, "not distinguishable from the best", "welch_t"),
        ("digits", "scratch"): (3, "significantly worse than the best", "welch_t"),
        # few-shot: each seed draws its own subset (records without subset_seed drew it with the seed): paired
        ("digits:5-9", "scratch"): (1, "best", None),
        ("digits:5-9", "finetune"): (2, "significantly worse than the best", "paired_t"),
        ("digits:5-9", "linear_probe"): (3, "significantly worse than the best", "paired_t"),
    }
    welch_lp = ttest_ind(ACCS["digits", 0, "linear_probe"], ACCS["digits", 0, "finetune"], equal_var=False).pvalue
    welch_sc = ttest_ind(ACCS["digits", 0, "scratch"], ACCS["digits", 0, "finetune"], equal_var=False).pvalue
    lp, sc = row(df, "digits", "linear_probe"), row(df, "digits", "scratch")
    assert (lp.p_value, sc.p_value) == (pytest.approx(welch_lp), pytest.approx(welch_sc))  # 0.572, 0.0036
    assert (lp.p_holm, sc.p_holm) == (pytest.approx(max(welch_lp, 2 * welch_sc)), pytest.approx(2 * welch_sc))
    paired_lp = ttest_rel(ACCS["digits:5-9", 10, "linear_probe"], ACCS["digits:5-9", 10, "scratch"]).pvalue
    few = row(df, "digits:5-9", "linear_probe")
    assert few.p_value == pytest.approx(paired_lp) and few.p_holm == pytest.approx(paired_lp)  # 0.0102
    assert row(df, "digits:5-9", "finetune").p_value == 0.0  # differences constant at 0.10
    assert math.isnan(ft.p_value) and math.isnan(ft.p_holm)


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
    assert list(m.index) == ["finetune/resnet8/src", "scratch/resnet8/none", "linear_probe/resnet8/src"]
    assert m.loc["finetune/resnet8/src", "avg_rank"] == 1.5 and m.loc["scratch/resnet8/none", "avg_rank"] == 2.0
    assert m.loc["linear_probe/resnet8/src", "avg_score"] == pytest.approx((0.90 + 0.55) / 2)
    assert m.loc["scratch/resnet8/none", "digits:5-9@10/class"] == pytest.approx(0.72)
    assert m.attrs["metrics"] == {"digits": "accuracy", "digits:5-9@10/class": "accuracy"}
    assert m.attrs["friedman"].reason == "needs 3 or more datasets; these results have 2"


def test_two_sources_for_one_backbone_are_two_entries_never_averaged(tmp_path):
    store = RunStore(tmp_path / "r")
    store.dir.mkdir()
    for stem, accs in (("digits_0-4-resnet8-3f2a1b", [0.85, 0.86, 0.86]), ("shapes-resnet8-99aa00", [0.77, 0.78, 0.77])):
        recs = records_for(("digits", 0, "finetune"), accs)
        store.append([dataclasses.replace(r, cell_id=stem, weights=f"checkpoint:/long/path/{stem}.pt") for r in recs])
    df = lb.load([store.dir])
    assert len(df) == 2 and list(df.weights) == ["checkpoint:/long/path/digits_0-4-resnet8-3f2a1b.pt",
                                                 "checkpoint:/long/path/shapes-resnet8-99aa00.pt"]
    assert list(df.entry) == ["finetune/resnet8/digits_0-4-resnet8-3f2a1b", "finetune/resnet8/shapes-resnet8-99aa00"]
    m = lb.summary_matrix(df)
    assert m["digits"].round(3).to_dict() == {"finetune/resnet8/digits_0-4-resnet8-3f2a1b": 0.857,
                                              "finetune/resnet8/shapes-resnet8-99aa00": 0.773}
    text = lb.to_text(df)
    table = text.split("Summary")[0]
    assert "digits_0-4-resnet8-3f2a1b" in table and "shapes-resnet8-99aa00" in table and "/long/path" not in table
    assert "0.815" not in text
    assert pd.read_csv(io.StringIO(lb.render(df, "csv").decode())).weights.str.startswith("checkpoint:/long").all()


def test_weights_that_read_the_same_are_told_apart(tmp_path):
    store = RunStore(tmp_path / "r")
    store.dir.mkdir()
    for n, folder in enumerate(("a", "b")):
        recs = records_for(("digits", 0, "finetune"), [0.8 + n / 10] * 2)
        store.append([dataclasses.replace(r, cell_id=folder, weights=f"checkpoint:/{folder}/src.pt") for r in recs])
    entries = list(lb.load([store.dir]).entry)
    assert len(set(entries)) == 2 and all(e.startswith("finetune/resnet8/src~") for e in entries)


def test_one_seed_gives_no_interval_and_no_verdict_but_too_few_seeds(tmp_path):
    store = RunStore(tmp_path / "r")
    store.dir.mkdir()
    for method, accs in (("finetune", [0.90]), ("scratch", [0.75, 0.76, 0.74]), ("linear_probe", [0.80, 0.81])):
        store.append(records_for(("digits", 0, method), accs))
    df = lb.load([store.dir])
    assert [(r.method, r.verdict) for r in df.itertuples()] == [
        ("finetune", "best"), ("linear_probe", "too few seeds"), ("scratch", "too few seeds")]
    assert math.isnan(row(df, "digits", "finetune").test_score_ci95)
    assert df.test_used.isna().all() and df.p_value.isna().all()
    assert "| 0.9000 " in lb.to_markdown(df) and "0.9000 ±" not in lb.to_markdown(df)


def test_seeds_pair_only_when_their_split_and_subset_match_and_vary(tmp_path):
    """Finals with a fixed few-shot subset vary only the initialisation: Welch. Finals that redraw the subset
    per seed (the same draw for both methods) pair: the paired test."""
    store = RunStore(tmp_path / "r")
    store.dir.mkdir()
    accs = {"finetune": [0.80, 0.86, 0.83], "scratch": [0.78, 0.85, 0.81]}
    for spc, subset in ((10, lambda seed: 7), (20, lambda seed: 100 + seed)):
        for method, values in accs.items():
            recs = records_for(("digits:5-9", spc, method), values)
            store.append([dataclasses.replace(r, config={"seed": r.seed, "split_seed": 0, "subset_seed": subset(r.seed)})
                          if isinstance(r, FinalRecord) else r for r in recs])
    df = lb.load([store.dir]).set_index(["samples_per_class", "method"])
    assert df.loc[(10, "scratch"), "test_used"] == "welch_t"
    assert df.loc[(10, "scratch"), "p_value"] == pytest.approx(
        ttest_ind(accs["scratch"], accs["finetune"], equal_var=False).pvalue)  # 0.58
    assert df.loc[(20, "scratch"), "test_used"] == "paired_t"
    assert df.loc[(20, "scratch"), "p_value"] == pytest.approx(ttest_rel(accs["scratch"], accs["finetune"]).pvalue)
    assert df.loc[(20, "scratch"), "verdict"] == "significantly worse than the best"  # p = 0.038
    assert df.loc[(10, "scratch"), "verdict"] == "not distinguishable from the best"


FRIEDMAN = {  # target -> entry -> mean test accuracy (3 seeds each: mean - 0.01, mean, mean + 0.01)
    "digits": {"finetune": 0.95, "linear_probe": 0.90, "scratch": 0.85, "partial": 0.93},
    "shapes": {"finetune": 0.82, "linear_probe": 0.80, "scratch": 0.70, "partial": 0.75},
    "digits:5-9": {"finetune": 0.70, "linear_probe": 0.60, "scratch": 0.50, "partial": 0.65},
}


@pytest.fixture
def three_datasets(tmp_path):
    store = RunStore(tmp_path / "three")
    store.dir.mkdir()
    for dataset, means in FRIEDMAN.items():
        for method, mean in means.items():
            store.append(records_for((dataset, 0, method), [mean - 0.01, mean, mean + 0.01]))
    return store.dir


def test_friedman_test_and_critical_difference_over_three_datasets(three_datasets):
    df = lb.load([three_datasets])
    m = lb.summary_matrix(df)
    f = m.attrs["friedman"]
    assert f == lb.friedman_test(df)
    entries = ["finetune/resnet8/src", "linear_probe/resnet8/src", "partial/resnet8/src", "scratch/resnet8/none"]
    res = friedmanchisquare(*([FRIEDMAN[t][e.split("/")[0]] for t in FRIEDMAN] for e in entries))
    assert f.chi2 == pytest.approx(res.statistic) == pytest.approx(8.2) and f.p_value == pytest.approx(res.pvalue)
    # ranks: digits ft1 pa2 lp3 sc4; shapes ft1 lp2 pa3 sc4; digits:5-9 ft1 pa2 lp3 sc4
    expected = {"finetune/resnet8/src": 1.0, "partial/resnet8/src": 7 / 3, "linear_probe/resnet8/src": 8 / 3,
                "scratch/resnet8/none": 4.0}
    assert f.ranks == pytest.approx(expected) and m["avg_rank"].to_dict() == pytest.approx(expected)
    assert list(m.index) == list(expected)
    assert f.cd == pytest.approx(2.569 * math.sqrt(4 * 5 / 18), abs=1e-3)  # 2.708
    assert f.groups == [["finetune/resnet8/src", "partial/resnet8/src", "linear_probe/resnet8/src"],
                        ["partial/resnet8/src", "linear_probe/resnet8/src", "scratch/resnet8/none"]]
    md = lb.to_markdown(df)
    section = md.split("## Friedman test and critical difference")[1]
    assert "- finetune/resnet8/src: average rank 1.00" in section and "- partial/resnet8/src: average rank 2.33" in section
    assert f"Friedman chi2 = 8.200 (3 df), p = {res.pvalue:.4g}: the ranks reject" in section  # p = 0.042
    assert "CD = 2.708" in section
    assert ("{finetune/resnet8/src, partial/resnet8/src, linear_probe/resnet8/src}; "
            "{partial/resnet8/src, linear_probe/resnet8/src, scratch/resnet8/none}") in section


def test_the_report_draws_the_critical_difference_diagram(three_datasets, tmp_path):
    path = tmp_path / "report.html"
    lb.write(lb.load([three_datasets]), "html", path, lb.load_records([three_datasets]))
    text = path.read_text()
    assert "Critical-difference diagram" in text and "CD = 2.708" in text
    assert len(decode_images(text)) == 6  # the five of two datasets (parallel coordinates too) and the diagram


def test_tables_name_the_metrics_they_show(tmp_path):
    store = RunStore(tmp_path / "r")
    store.dir.mkdir()
    store.append(records_for(("digits", 0, "finetune"), [0.9, 0.91]))
    store.append(records_for(("pets", 0, "finetune"), [0.6, 0.61], metric="balanced_accuracy"))
    df = lb.load([store.dir])
    heading = "Summary: mean test accuracy (digits); balanced accuracy (pets) per dataset, average rank and score"
    assert f"## {heading}" in lb.to_markdown(df) and heading in lb.to_text(df)
    assert heading in lb.render(df, "html", lb.load_records([store.dir])).decode()
    assert "## Summary: mean test accuracy per dataset" in lb.to_markdown(lb.select(df, datasets=["digits"]))


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


def test_html_report_is_self_contained_with_sortable_tables_and_plots(run, tmp_path):
    """Two datasets: no critical-difference diagram, and the report says why."""
    path = tmp_path / "report.html"
    lb.write(lb.load([run]), "html", path, lb.load_records([run]))
    text = path.read_text()
    assert text.count("<table class='sortable") == 4  # leaderboard, summary, hyperparameter importance, configs
    images = decode_images(text)
    assert len(images) == 5 and all(i.startswith(b"\x89PNG") and len(i) > 5000 for i in images)
    assert "http://" not in text and "https://" not in text  # nothing fetched from the network
    assert "0.920 ± 0.050" in text and ">nan<" not in text.lower()
    assert "Friedman test not computed: needs 3 or more datasets; these results have 2." in text
    assert "significantly worse than the best" in text and "tied" not in text


def test_pareto_front():
    cost, acc = [1.0, 2.0, 3.0, 4.0, 2.5], [0.5, 0.7, 0.6, 0.9, 0.8]
    assert pareto_front(cost, acc) == [0, 1, 4, 3]


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


def test_detection_cells_rank_by_their_own_headline_beside_classification_cells(tmp_path):
    store = RunStore(tmp_path / "mixed")
    store.dir.mkdir()
    store.append(records_for(("digits", 0, "finetune"), ACCS["digits", 0, "finetune"]))
    for method, maps in (("finetune", [0.40, 0.42, 0.44]), ("scratch", [0.20, 0.22, 0.24])):
        recs = records_for(("shapes_det", 0, method), maps, metric="map50")
        for r in recs:
            if isinstance(r, FinalRecord):
                acc = r.test.pop("accuracy")
                r.test.clear()
                r.test.update(map50=acc, map50_area=acc + 0.01, map=0.1, per_class_ap50=[0.5, None])
        store.append(recs)
    df = lb.load([store.dir])
    ft, sc, cls = row(df, "shapes_det", "finetune"), row(df, "shapes_det", "scratch"), row(df, "digits", "finetune")
    assert (ft.metric, ft.test_score, ft.test_map50_area, ft["rank"]) == ("map50", pytest.approx(0.42),
                                                                           pytest.approx(0.43), 1)
    assert sc["rank"] == 2 and math.isnan(ft.test_accuracy) and math.isnan(cls.test_map50)
    assert (cls.metric, cls.test_score) == ("accuracy", pytest.approx(0.92))
    assert "test_map50" in lb.to_text(df) and "map50" in lb.to_markdown(df)
    assert "test_map50" not in lb.load([make_run(tmp_path, "cls", [("digits", 0, "scratch")])]).columns
    detection_only = df[df.dataset == "shapes_det"]
    assert "test_accuracy" not in lb.to_text(detection_only.reset_index(drop=True))


def test_source_and_target_networks_are_columns_of_their_own(tmp_path):
    """Distillation names its teacher and student, feature transfer its source and alexnet_style target; records
    written before finals named them read as the backbone (no source, None, for weights none)."""
    store = RunStore(tmp_path / "r")
    store.dir.mkdir(parents=True)
    models = {"distill": {"source_network": "resnet20", "target_network": "resnet8"},
              "feature_transfer": {"source_network": "resnet18", "target_network": "alexnet_style"}}
    for method, model in [*models.items(), ("finetune", None), ("scratch", None)]:
        records = records_for(("digits", 0, method), [0.9, 0.91])
        store.append([dataclasses.replace(r, model=model) if isinstance(r, FinalRecord) else r for r in records])
    df = lb.load(store.dir)
    got = {m: (row(df, "digits", m).source_network, row(df, "digits", m).target_network) for m in df.method}
    assert pd.isna(got.pop("scratch")[0])
    assert got == {"distill": ("resnet20", "resnet8"), "feature_transfer": ("resnet18", "alexnet_style"),
                   "finetune": ("resnet8", "resnet8")}
    text = lb.to_text(df)
    assert "source_network" in text.splitlines()[0] and "alexnet_style" in text


def test_finals_without_cost_figures_give_a_row_from_the_finals_that_recorded_them(tmp_path):
    """An ok final whose loop recorded no cost, or a cost without throughput, still counts: each cost figure is
    taken over the finals that recorded it, and is missing where none did."""
    store = RunStore(tmp_path / "r")
    store.dir.mkdir()
    recs = records_for(("digits", 0, "finetune"), [0.90, 0.92, 0.94])
    throughput_lost = {k: v for k, v in recs[4].cost.items() if k != "train_images_per_s"}
    costs = {0: None, 1: throughput_lost, 2: recs[5].cost}
    store.append([dataclasses.replace(r, cost=costs[r.seed]) if isinstance(r, FinalRecord) else r for r in recs])
    store.append([dataclasses.replace(r, cost=None) if isinstance(r, FinalRecord) else r
                  for r in records_for(("digits", 0, "scratch"), [0.80, 0.81, 0.82])])
    df = lb.load(store.dir)
    ft, sc = row(df, "digits", "finetune"), row(df, "digits", "scratch")
    assert (ft.seeds, ft.test_accuracy, ft["rank"]) == (3, pytest.approx(0.92), 1)
    assert (ft.params_total, ft.train_seconds, ft.images_per_s, ft.peak_memory_mb) == (78000, 11.5, 1000.0, 502.0)
    assert sc.seeds == 3 and sc.verdict == "significantly worse than the best"
    assert all(pd.isna(sc[c]) for c in ("params_total", "params_trainable", "train_seconds", "images_per_s",
                                        "peak_memory_mb"))
    assert len(pd.read_csv(io.StringIO(lb.render(df, "csv").decode()))) == 2
