"""Typed records: one JSON encoding (schema 3), version-1 folders still read, and read into the same leaderboard."""

import io
import json
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import ttest_ind

from harness.core.config import TrialConfig
from harness.results import leaderboard as lb
from harness.results.records import (SCHEMA_VERSION, CellRecord, FinalRecord, SourceRecord, TrialRecord,
                                     from_json, target_label)
from harness.results.store import RunStore

# lines of a run written by schema version 1 (quick suite, cells digits/scratch and digits/finetune: their
# finals, cell records and best trials) and those two rows of the leaderboard.csv that run wrote
V1_RUN = Path(__file__).parent / "data" / "v1-run"
CELL = {"cell_id": "c1", "dataset": "digits:5-9", "samples_per_class": 10, "method": "finetune",
        "backbone": "resnet8", "weights": "none"}


@pytest.fixture
def v1_run(tmp_path):
    run = tmp_path / "quick-20261124-225456"
    run.mkdir()
    shutil.copy(V1_RUN / "records.jsonl", run / "records.jsonl")
    return run


def examples():
    return [
        TrialRecord(**CELL, trial_id="t0", status="ok", config={"lr": 0.1}, metric="val_accuracy", value=0.8,
                    history=[{"epoch": 1, "val_accuracy": 0.8}], trial_seconds=1.5, finished_at=1795560908),
        FinalRecord(**CELL, seed=1, status="error", error="RuntimeError: boom"),
        CellRecord(**CELL, status="no_winner", trials=1, trials_errored=1, reason="RuntimeError: boom"),
        SourceRecord.of("digits04", "source", TrialConfig(dataset="digits:0-4", backbone="resnet8"),
                        Path("/tmp/s.pt"), job="abc123", seconds=3.0, val_accuracy=0.97),
    ]


@pytest.mark.parametrize("record", examples(), ids=lambda r: r.kind)
def test_every_kind_round_trips_through_one_json_encoding(record):
    line = record.to_json()
    assert list(line)[:3] == ["schema", "run_id", "kind"] and line["schema"] == SCHEMA_VERSION == 3
    assert from_json(json.loads(json.dumps(line))) == record


def test_a_source_record_is_built_from_the_config_that_trained_it():
    source = examples()[-1]
    assert (source.kind, source.role, source.dataset, source.backbone, source.path) == (
        "source", "source", "digits:0-4", "resnet8", "/tmp/s.pt")
    assert source.config["dataset"] == "digits:0-4" and source.status == "ok" and not source.reused


def test_the_store_stamps_the_run_and_reads_typed_records_back(tmp_path):
    store = RunStore(tmp_path / "run-1")
    store.dir.mkdir()
    written = store.append(examples())
    assert all(r.run_id == "run-1" for r in written)
    assert store.records() == written
    assert store.records(CellRecord) == [written[2]] and store.records(SourceRecord) == [written[3]]


def test_target_label_names_few_shot_targets_per_class():
    assert target_label("digits", 0) == "digits"
    assert target_label("digits:5-9", 10) == "digits:5-9@10/class" == CellRecord(**CELL, status="ok").target


def test_version_1_lines_are_read_as_typed_records(v1_run):
    records = RunStore(v1_run).records()
    assert [r.kind for r in records] == ["trial"] * 2 + ["final"] * 6 + ["cell"] * 2
    assert all(r.schema == 1 and r.run_id == "quick-20261124-225456" for r in records)
    trial, final, cell = records[0], records[2], records[-1]
    assert isinstance(trial, TrialRecord) and trial.status == "ok" and len(trial.history) == 6
    assert isinstance(final, FinalRecord) and final.test["accuracy"] == pytest.approx(0.9944444444444445)
    assert isinstance(cell, CellRecord) and cell.best_trial_id == "1a63a_00000" and cell.reason is None


@pytest.mark.filterwarnings("ignore:Precision loss")  # scipy, on a constant sample
def test_the_leaderboard_of_a_version_1_folder_is_what_that_version_wrote(v1_run):
    """Every column that version wrote holds the same values, except `tied_with_best`, which the verdict replaced
    (there: Welch p > 0.05; here the same finetune row is significantly worse than the best, p = 0.026)."""
    expected = pd.read_csv(V1_RUN / "leaderboard.csv")
    got = pd.read_csv(io.StringIO(lb.load([v1_run]).to_csv(index=False)))
    same = [c for c in expected.columns if c != "tied_with_best"]
    pd.testing.assert_frame_equal(got[same], expected[same])
    assert expected.tied_with_best.tolist() == [True, False]
    assert got.verdict.tolist() == ["best", "significantly worse than the best"]
    finals = RunStore(v1_run).records(FinalRecord)
    acc = {m: [f.test["accuracy"] for f in finals if f.method == m] for m in ("finetune", "scratch")}
    p = ttest_ind(acc["finetune"], acc["scratch"], equal_var=False).pvalue
    assert got.test_used.tolist()[1] == "welch_t" and got.p_value[1] == pytest.approx(p)


def test_a_version_1_folder_still_renders_its_report(v1_run):
    html = lb.render(lb.load([v1_run]), "html", lb.load_records([v1_run])).decode()
    assert html.count("data:image/png;base64,") == 5  # score, score vs cost, per-class, curves, score vs lr
    assert "Per-class test accuracy" in html


def test_a_resumed_version_1_run_holds_both_versions(v1_run):
    store = RunStore(v1_run)
    store.append([examples()[0]])
    records = store.records()
    assert [r.schema for r in records[-2:]] == [1, SCHEMA_VERSION] and records[-1].run_id == v1_run.name
    assert len(lb.load([v1_run])) == 2


@pytest.mark.parametrize("key, value, why", [
    ("kind", "checkpoint", "unknown record kind 'checkpoint'; known: trial, final, cell, source, estimate"),
    ("status", "finished", "status='finished': expected one of ok, stopped_early, diverged, error, interrupted, lost"),
    ("trial_id", None, "a trial record without trial_id"),
])
def test_a_line_that_is_no_record_is_skipped_with_a_warning(tmp_path, key, value, why):
    store = RunStore(tmp_path / "r")
    store.dir.mkdir()
    store.append(examples()[:2])
    first, second = store.records_path.read_text().splitlines()
    bad = {k: v for k, v in json.loads(first).items() if k != key}
    if value is not None:
        bad[key] = value
    store.records_path.write_text(json.dumps(bad) + "\n" + second + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [r.kind for r in store.records()] == ["final"]
    assert [str(w.message) for w in caught] == [f"{store.records_path}:1: skipped a corrupt record ({why})"]
